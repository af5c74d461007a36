// Immense peer dashboard. Reads the control API of the peer that served it
// with the bearer token, which comes from the URL fragment (#token=...,
// never sent to the server) or the form, and stays in sessionStorage.
// Everything shown comes from GET /v1/status, /v1/peers, /v1/storage and
// the counters of /metrics; rates are computed here from counter deltas.
"use strict";

const TOKEN_KEY = "immense.dashboard.token";
const TICK_MS = 1000;        // status, peers and metrics
const STORAGE_EVERY = 5;     // ticks between /v1/storage reads
const HISTORY = 120;         // samples kept per chart: 2 minutes
const MAX_ROWS = 50;         // rows shown per table

const $ = (id) => document.getElementById(id);

// ---- token -------------------------------------------------------------

function takeFragmentToken() {
  const params = new URLSearchParams(location.hash.slice(1));
  const tok = params.get("token");
  if (location.hash) {
    // Clear the fragment whatever it held: the token must not stay in the
    // address bar, the history or a bookmark.
    history.replaceState(null, "", location.pathname + location.search);
  }
  if (tok) sessionStorage.setItem(TOKEN_KEY, tok.trim());
}

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

class Unauthorized extends Error {}

async function api(path) {
  const resp = await fetch(path, {
    headers: { Authorization: "Bearer " + token() },
    cache: "no-store",
    credentials: "omit",
  });
  if (resp.status === 401) throw new Unauthorized(path);
  if (!resp.ok) {
    let msg = "";
    try { msg = (await resp.json()).error || ""; } catch (e) { /* not JSON */ }
    throw new Error(`${path}: ${resp.status} ${resp.statusText}${msg ? ": " + msg : ""}`);
  }
  return path === "/metrics" ? resp.text() : resp.json();
}

// ---- state shown in the header ------------------------------------------

function setState(state, text) {
  const el = $("state");
  el.dataset.state = state;
  el.textContent = text;
}

function showAuth(message) {
  $("auth").hidden = false;
  $("auth-message").textContent = message;
  $("panels").hidden = true;
  $("forget").hidden = true;
  $("error").hidden = true;
  $("token-input").focus();
}

function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = !message;
}

// ---- Prometheus text: counters only -------------------------------------

const WANTED = /^immense_(overlay_messages_(published|received|rejected)_total|state_repairs_total)$/;

// parseMetrics returns {name: [{labels, value}]} for the wanted series.
function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (line === "" || line[0] === "#") continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || !WANTED.test(m[1])) continue;
    const labels = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    let l;
    while ((l = re.exec(m[2] || "")) !== null) {
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    (out[m[1]] = out[m[1]] || []).push({ labels, value: Number(m[3]) });
  }
  return out;
}

// Rates turns counter samples into per-second rates.
class Rates {
  constructor() { this.prev = new Map(); }
  // rate returns the rate of counter key since its last sample (0 on the
  // first sample or after a reset).
  rate(key, value, now) {
    const p = this.prev.get(key);
    this.prev.set(key, { value, now });
    if (!p || value < p.value || now <= p.now) return 0;
    return (value - p.value) / ((now - p.now) / 1000);
  }
}

// ---- charts: hand-written canvas sparklines -----------------------------

class Series {
  constructor() { this.values = []; }
  push(v) {
    this.values.push(v);
    if (this.values.length > HISTORY) this.values.shift();
  }
  last() { return this.values.length ? this.values[this.values.length - 1] : 0; }
}

const COLORS = ["#2563eb", "#059669", "#d97706", "#7c3aed"];

// spark draws series (up to four) in canvas, scaled to the largest value
// or cap; cap, when given, is drawn as a dashed line.
function spark(canvas, series, cap) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (w === 0 || h === 0) return;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  let max = cap || 0;
  for (const s of series) for (const v of s.values) max = Math.max(max, v);
  if (max <= 0) max = 1;
  const y = (v) => h - 2 - (v / max) * (h - 4);
  const x = (i) => (i / (HISTORY - 1)) * (w - 2) + 1;
  if (cap) {
    ctx.strokeStyle = "#dc2626";
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    ctx.moveTo(0, y(cap));
    ctx.lineTo(w, y(cap));
    ctx.stroke();
    ctx.setLineDash([]);
  }
  series.forEach((s, k) => {
    const off = HISTORY - s.values.length;
    ctx.strokeStyle = COLORS[k % COLORS.length];
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    s.values.forEach((v, i) => (i === 0 ? ctx.moveTo(x(off + i), y(v)) : ctx.lineTo(x(off + i), y(v))));
    ctx.stroke();
  });
}

// ---- formatting ---------------------------------------------------------

function bytes(n) {
  if (!isFinite(n)) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
}
const rateText = (r) => (r < 10 ? r.toFixed(1) : r.toFixed(0));
const short = (id) => (id.length > 16 ? id.slice(0, 6) + "…" + id.slice(-6) : id);

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

// ---- the panels ---------------------------------------------------------

const charts = {
  peers: new Series(), rt: new Series(), msgs: new Series(),
  out: new Series(), in: new Series(), browsers: new Series(), storage: new Series(),
};
const topicCharts = new Map(); // topic -> Series of published+received per second
const rates = new Rates();
let topicRates = new Map();    // topic -> {published, received, rejected}
let repairRates = {};          // outcome -> checks per minute

function renderStatus(st) {
  $("peer-short").textContent = short(st.peer_id);
  $("node-id").textContent = st.peer_id;
  $("node-version").textContent = st.version;
  $("node-uptime").textContent = st.uptime;
  const joined = $("node-joined");
  joined.textContent = st.joined ? "yes" : "no: " + (st.join_state || "joining");
  joined.className = st.joined ? "ok" : "warn";
  if (st.joined && st.join_state) joined.textContent = "yes (" + st.join_state + ")";
  $("node-reach").textContent = st.reachability;
  const nat = st.nat || {};
  $("node-nat").textContent = Object.keys(nat).map((k) => `${k}: ${nat[k]}`).join(", ") || "-";
  $("node-dht").textContent = st.dht_mode;
  $("node-addrs").textContent = (st.listen_addrs || []).join("\n") || "-";
  $("node-relays").textContent = (st.relay_addrs || []).join("\n") || "none";

  charts.peers.push(st.connected_peers);
  charts.rt.push(st.routing_table_size);
  $("ov-peers").textContent = st.connected_peers;
  $("ov-rt").textContent = st.routing_table_size;

  const bw = st.bandwidth || {};
  charts.out.push(bw.rate_out || 0);
  charts.in.push(bw.rate_in || 0);
  $("bw-out").textContent = bytes(bw.rate_out || 0) + "/s";
  $("bw-in").textContent = bytes(bw.rate_in || 0) + "/s";
  $("bw-out-cap").textContent = bw.max_upload ? "cap " + bytes(bw.max_upload) + "/s" : "no cap";
  $("bw-in-cap").textContent = bw.max_download ? "cap " + bytes(bw.max_download) + "/s" : "no cap";
  $("bw-total").textContent = `${bytes(bw.total_out || 0)} sent, ${bytes(bw.total_in || 0)} received`;
  spark($("chart-out"), [charts.out], bw.max_upload);
  spark($("chart-in"), [charts.in], bw.max_download);

  const sessions = st.browser_sessions;
  $("br-sessions").textContent = sessions === undefined ? "no browser bridge" : sessions;
  charts.browsers.push(sessions || 0);
  spark($("chart-browsers"), [charts.browsers]);

  const stor = st.storage;
  $("storage-none").hidden = !!stor;
  $("storage-body").hidden = !stor;
  if (stor) {
    $("st-used").textContent = `${bytes(stor.used_bytes)} of ${bytes(stor.quota_bytes)}`;
    $("st-bar").style.width = Math.min(100, (100 * stor.used_bytes) / (stor.quota_bytes || 1)).toFixed(1) + "%";
    $("st-shards").textContent = stor.shards;
    $("st-objects").textContent = stor.objects;
    charts.storage.push(stor.used_bytes);
    spark($("chart-storage"), [charts.storage]);
  }
  renderTopics(st.topics || []);
  spark($("chart-peers"), [charts.peers]);
  spark($("chart-rt"), [charts.rt]);
}

function renderMetrics(text, now) {
  const m = parseMetrics(text);
  const next = new Map();
  for (const kind of ["published", "received", "rejected"]) {
    for (const s of m[`immense_overlay_messages_${kind}_total`] || []) {
      const topic = s.labels.topic;
      if (topic === undefined) continue;
      const r = next.get(topic) || { published: 0, received: 0, rejected: 0 };
      r[kind] = rates.rate(kind + "\u0000" + topic, s.value, now);
      next.set(topic, r);
    }
  }
  topicRates = next;
  let total = 0;
  for (const [topic, r] of topicRates) {
    total += r.published + r.received;
    if (!topicCharts.has(topic)) topicCharts.set(topic, new Series());
    topicCharts.get(topic).push(r.published + r.received);
  }
  charts.msgs.push(total);
  $("msg-rate").textContent = rateText(total);
  spark($("chart-msgs"), [charts.msgs]);

  const rep = {};
  for (const s of m.immense_state_repairs_total || []) {
    rep[s.labels.outcome] = 60 * rates.rate("repair\u0000" + s.labels.outcome, s.value, now);
  }
  repairRates = rep;
  $("repairs").textContent = Object.keys(rep).sort().map((k) => `${k} ${rateText(rep[k])}`).join(", ") || "none yet";
}

function renderTopics(topics) {
  const body = $("topics-body");
  const names = new Set(topics.map((t) => t.name));
  for (const name of topicRates.keys()) {
    // Topics published to but no longer joined still show their rates.
    if (!names.has(name)) topics.push({ name, subscribers: 0, peers: 0 });
  }
  topics.sort((a, b) => a.name.localeCompare(b.name));
  $("topics-none").hidden = topics.length > 0;
  body.replaceChildren();
  for (const t of topics.slice(0, MAX_ROWS)) {
    const r = topicRates.get(t.name) || { published: 0, received: 0, rejected: 0 };
    const tr = document.createElement("tr");
    tr.dataset.topic = t.name;
    tr.dataset.rate = String(r.published + r.received);
    tr.append(cell(t.name, "mono"), cell(t.subscribers), cell(t.peers),
      cell(rateText(r.published), "rate-published"), cell(rateText(r.received), "rate-received"),
      cell(rateText(r.rejected), r.rejected > 0 ? "bad" : ""));
    const td = document.createElement("td");
    const c = document.createElement("canvas");
    c.className = "spark";
    td.append(c);
    tr.append(td);
    body.append(tr);
    spark(c, [topicCharts.get(t.name) || new Series()]);
  }
}

function renderPeers(p) {
  const body = $("peers-body");
  body.replaceChildren();
  for (const x of p.peers.slice(0, MAX_ROWS)) {
    const tr = document.createElement("tr");
    tr.dataset.peer = x.id;
    const av = x.availability === undefined ? "-" : (100 * x.availability).toFixed(0) + " %";
    tr.append(cell(short(x.id), "mono"), cell(x.transports.join(", ")),
      cell(x.direct ? "direct" : "relayed", x.direct ? "ok" : "warn"), cell(x.direction),
      cell(x.latency_ms ? x.latency_ms.toFixed(1) + " ms" : "-"), cell(x.routing_table ? "yes" : "no"),
      cell(av), cell(x.since));
    tr.title = `${x.id}\n${x.addr}${x.agent ? "\n" + x.agent : ""}`;
    body.append(tr);
  }
  const more = $("peers-more");
  more.hidden = p.total <= MAX_ROWS;
  more.textContent = `and ${p.total - MAX_ROWS} more`;
}

function renderStorage(s) {
  $("st-backlog").textContent = s.repair_backlog;
  $("st-backlog").className = "value " + (s.repair_backlog > 0 ? "warn" : "");
  $("tracked-count").textContent = s.tracked_total > s.tracked.length ? `(first ${s.tracked.length} of ${s.tracked_total})` : `(${s.tracked_total})`;
  const tb = $("tracked-body");
  tb.replaceChildren();
  for (const k of s.tracked) {
    const tr = document.createElement("tr");
    tr.dataset.key = k.key;
    const cls = { healthy: "ok", degraded: "warn", unreadable: "bad", error: "bad" }[k.state] || "";
    tr.append(cell(k.key, "mono"), cell(k.version || "-"), cell(k.size ? bytes(k.size) : "-"),
      cell(k.k ? `${k.k} + ${k.m}` : "-"), cell(k.k ? `${k.online} of ${k.k + k.m} (${k.holders} peers)` : "-"),
      cell(k.probability ? k.probability.toFixed(4) : "-"), cell(k.error ? `${k.state}: ${k.error}` : k.state, cls));
    tb.append(tr);
  }
  $("held-count").textContent = s.held_total > s.held.length ? `(largest ${s.held.length} of ${s.held_total})` : `(${s.held_total})`;
  const hb = $("held-body");
  hb.replaceChildren();
  for (const o of s.held.slice(0, MAX_ROWS)) {
    const tr = document.createElement("tr");
    tr.append(cell(short(o.namespace), "mono"), cell(short(o.object), "mono"), cell(o.indices.join(", ")),
      cell(o.shards), cell(bytes(o.bytes)));
    hb.append(tr);
  }
}

// ---- the loop -----------------------------------------------------------

let ticks = 0;
let timer = 0;
let generation = 0; // a new token starts a new loop; the old one stops

async function tick(gen) {
  if (gen !== generation) return;
  const now = performance.now();
  try {
    const [st, peers, metrics] = await Promise.all([api("/v1/status"), api("/v1/peers"), api("/metrics")]);
    if (gen !== generation) return;
    renderMetrics(metrics, now);
    renderStatus(st);
    renderPeers(peers);
    if (st.storage && ticks % STORAGE_EVERY === 0) renderStorage(await api("/v1/storage"));
    ticks++;
    setState("live", "live");
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    $("auth").hidden = true;
    $("panels").hidden = false;
    $("forget").hidden = false;
    showError("");
    document.body.dataset.samples = String(ticks);
  } catch (e) {
    if (gen !== generation) return;
    if (e instanceof Unauthorized) {
      sessionStorage.removeItem(TOKEN_KEY);
      setState("unauthorized", "401: token refused");
      showAuth("401 Unauthorized: this peer refused the token. Paste the token in <data-dir>/api-token (a devnet prints it as IMMENSE_TOKEN).");
      return;
    }
    setState("error", "error");
    showError("Cannot read the peer: " + e.message + " (retrying)");
  }
  timer = setTimeout(() => tick(gen), TICK_MS);
}

function start() {
  clearTimeout(timer);
  generation++;
  ticks = 0;
  if (!token()) {
    setState("token-needed", "token needed");
    showAuth("Token needed: this dashboard reads the peer's control API, which needs its token.");
    return;
  }
  setState("connecting", "connecting");
  tick(generation);
}

document.addEventListener("DOMContentLoaded", () => {
  takeFragmentToken();
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = $("token-input").value.trim();
    $("token-input").value = "";
    if (v) sessionStorage.setItem(TOKEN_KEY, v);
    start();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    start();
  });
  window.addEventListener("hashchange", () => {
    takeFragmentToken();
    start();
  });
  start();
});
