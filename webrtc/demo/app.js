// The demo page: a chat room and a live message rate, over the browser
// client served by the same peer.
//
// Query parameters:
//   room=...      the chat topic (default demo/chat)
//   tokenURL=...  a path on this page's own origin returning a token (text,
//                 or JSON {"token"}), fetched again on every reconnect, with
//                 the browser's public key as ?key= for a bound token
//   transport=... websocket or webrtc to force one (default: WebSocket,
//                 falling back to WebRTC)
//
// The page connects only to the peer that served it, and takes a token
// only from its own origin: the tokenURL path above, or a token pasted
// into the form (kept in this tab's sessionStorage). Never from the query
// string, where it would land in history, logs and Referer headers, and
// never fetched from or sent to another origin: a link such as
// ?tokenURL=https://app.example/token&peer=https://evil.example would
// otherwise hand the user's token to a stranger.

import { comparePositions, connect, ErrorCode } from "./client.js";

const params = new URLSearchParams(location.search);
const room = params.get("room") || "demo/chat";
const pulse = "demo/pulse";
const peer = location.origin;
const $ = (id) => document.getElementById(id);
const tokenKey = "immense-token";

$("room").textContent = room;
$("peer").textContent = peer;

let token = sessionStorage.getItem(tokenKey) || "";
const tokenURL = params.get("tokenURL");
if (tokenURL) {
  const url = new URL(tokenURL, location.href);
  if (url.origin !== location.origin) {
    token = async () => {
      throw new Error(`tokenURL must be on this page's origin (${location.origin}), not ${url.origin}`);
    };
  } else {
    // The client's public key goes along as ?key=, so that the app can bind
    // the token to it (docs/browser-protocol.md, "Bound tokens").
    token = async ({ publicKey } = {}) => {
      const u = new URL(url);
      if (publicKey) u.searchParams.set("key", publicKey);
      const res = await fetch(u, { credentials: "same-origin" });
      if (!res.ok) throw new Error(`token: ${res.status} from ${url.pathname}`);
      const body = await res.text();
      try {
        return JSON.parse(body).token;
      } catch {
        return body.trim();
      }
    };
  }
}
$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const t = $("token").value.trim();
  if (t) sessionStorage.setItem(tokenKey, t);
  else sessionStorage.removeItem(tokenKey);
  location.reload();
});

// transport=websocket|webrtc forces one (the default, auto, prefers a
// WebSocket and falls back to WebRTC); harmless in a URL, it grants nothing.
const transport = ["websocket", "webrtc"].includes(params.get("transport")) ? params.get("transport") : "auto";
const client = connect(peer, { token, transport });
window.immense = client; // for the console, and for browser tests

function setState(state) {
  $("state").textContent = state;
  $("state").dataset.state = state;
}
function showError(err) {
  $("error").textContent = err ? String(err.message || err) : "";
}
client.addEventListener("open", (e) => {
  setState("open");
  $("transport").textContent = `over ${e.detail.transport === "websocket" ? "WebSocket" : "WebRTC"}`;
  $("transport").dataset.transport = e.detail.transport;
  showError(null);
});
client.addEventListener("disconnect", (e) => {
  setState("connecting");
  showError(`${e.detail.error.message}; retrying in ${(e.detail.retryIn / 1000).toFixed(1)}s`);
});
client.addEventListener("close", (e) => {
  setState("closed");
  showError(e.detail.error);
});
client.addEventListener("gap", (e) => {
  if (e.detail.topic === room && resumed) showError("some messages of this room were missed while away (older than the peer's history)");
});
// Who is here, on a room with presence (the peer's --presence topics).
client.addEventListener("presence", (e) => {
  if (e.detail.topic !== room) return;
  const names = client.members(room).map((m) => m.id.replace(/^token:/, ""));
  $("present").textContent = names.length ? `here: ${[...new Set(names)].sort().join(", ")}` : "";
});
// Relays (docs/browser-protocol.md, section 8): this browser feeds others
// only once its user ticked the box (the peer must allow relays too);
// unticking withdraws. The line below says how this browser is fed.
$("relay-consent").addEventListener("change", (e) => client.setRelay(e.target.checked ? { maxChildren: 4 } : null));
client.addEventListener("relay", (e) => {
  const { topics, children } = e.detail;
  const viaRelay = topics.filter((t) => t.fedBy === "relay").map((t) => t.topic);
  $("relay-status").textContent =
    (viaRelay.length ? `fed by another browser on ${viaRelay.join(", ")}` : "fed by the peer") +
    (children ? ` · feeding ${children} browser${children === 1 ? "" : "s"}` : "");
});
client.addEventListener("error", (e) => {
  const err = e.detail.error;
  if (err.code === ErrorCode.MESSAGES_DROPPED) return; // the counter shows it
  if (err.code === ErrorCode.RELAY_REFUSED && $("relay-consent").checked) {
    $("relay-consent").checked = false;
    $("relay-status").textContent = "this peer does not use browser relays";
    return;
  }
  showError(err);
});

// --- chat ---

const nameInput = $("name");
nameInput.value = localStorage.getItem("immense-demo-name") || `guest-${Math.floor(Math.random() * 1000)}`;
nameInput.addEventListener("change", () => localStorage.setItem("immense-demo-name", nameInput.value));

const list = $("messages");
// The room's conversation survives a page reload: what was shown is kept
// in this tab's sessionStorage with the position of the last message, and
// the reloaded page resumes after it (the peer replays what it missed).
// A fresh page shows the peer's recent history instead.
const logKey = `immense-demo-log:${room}`;
const cursorKey = `immense-demo-cursor:${room}`;
const kept = JSON.parse(sessionStorage.getItem(logKey) || "[]");
const resumed = sessionStorage.getItem(cursorKey);
function remember(entry, id) {
  kept.push(entry);
  while (kept.length > 500) kept.shift();
  const cursor = sessionStorage.getItem(cursorKey);
  if (!cursor || comparePositions(id, cursor) > 0) sessionStorage.setItem(cursorKey, id);
  sessionStorage.setItem(logKey, JSON.stringify(kept));
}
function addMessage(who, text, time) {
  const li = document.createElement("li");
  const w = document.createElement("span");
  w.className = "who";
  w.textContent = who;
  const t = document.createElement("span");
  t.className = "when";
  t.textContent = (time || new Date()).toLocaleTimeString();
  li.append(t, w, document.createTextNode(text));
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.append(li);
  while (list.children.length > 500) list.firstElementChild.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
}

for (const e of kept) addMessage(e.who, e.text, new Date(e.time));

// For the console and browser tests: resolves once the room is followed.
window.roomReady = client
  .subscribe(
    room,
    (msg) => {
      count(msg);
      let m;
      try {
        m = JSON.parse(msg.text);
      } catch {
        m = { name: "?", text: msg.text };
      }
      const who = String(m.name ?? "?");
      const text = String(m.text ?? "");
      const time = msg.time || new Date();
      addMessage(who, text, time);
      remember({ who, text, time: time.getTime() }, msg.id);
    },
    { since: resumed || new Date(Date.now() - 5 * 60_000) },
  )
  .catch(showError);

$("send").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = $("text");
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  try {
    await client.publish(room, JSON.stringify({ name: nameInput.value || "anonymous", text }));
  } catch (err) {
    showError(err);
    input.value = text;
  }
});

// --- message rate across the overlay ---

let total = 0;
let window1s = 0;
const latencies = [];
function count(msg) {
  total++;
  window1s++;
  if (msg.timeMicros) {
    latencies.push(Date.now() - msg.timeMicros / 1000);
    if (latencies.length > 1000) latencies.shift();
  }
}
client.subscribe(pulse, count).catch(showError);
setInterval(() => {
  $("rate").textContent = String(window1s);
  $("total").textContent = String(total);
  if (latencies.length) {
    const sorted = [...latencies].sort((a, b) => a - b);
    $("p50").textContent = Math.max(0, sorted[Math.floor(sorted.length / 2)]).toFixed(0);
  }
  window1s = 0;
}, 1000);

const loadRate = 20;
$("load-rate").textContent = String(loadRate);
let loadTimer = null;
$("load").addEventListener("click", () => {
  const button = $("load");
  if (loadTimer) {
    clearInterval(loadTimer);
    loadTimer = null;
    button.setAttribute("aria-pressed", "false");
    button.textContent = "Generate load";
    return;
  }
  button.setAttribute("aria-pressed", "true");
  button.textContent = "Stop load";
  let n = 0;
  loadTimer = setInterval(() => {
    if (client.state === "open") client.publish(pulse, `pulse ${n++}`).catch(showError);
  }, 1000 / loadRate);
});
