// The demo page: a chat room and a live message rate, over the browser
// client served by the same peer.
//
// Query parameters:
//   token=...     a token minted by `peer token` (not needed on a devnet)
//   tokenURL=...  an app-server URL returning a token (text, or JSON {"token"}),
//                 fetched again on every reconnect
//   room=...      the chat topic (default demo/chat)
//   peer=...      another peer's base URL (default: this page's peer)

import { connect, ErrorCode } from "./client.js";

const params = new URLSearchParams(location.search);
const room = params.get("room") || "demo/chat";
const pulse = "demo/pulse";
const peer = params.get("peer") || location.origin;
const $ = (id) => document.getElementById(id);

$("room").textContent = room;
$("peer").textContent = peer;

let token = params.get("token") || "";
const tokenURL = params.get("tokenURL");
if (tokenURL) {
  token = async () => {
    const res = await fetch(tokenURL, { credentials: "include" });
    if (!res.ok) throw new Error(`token: ${res.status} from ${tokenURL}`);
    const body = await res.text();
    try {
      return JSON.parse(body).token;
    } catch {
      return body.trim();
    }
  };
}

const client = connect(peer, { token });
window.immense = client; // for the console, and for browser tests

function setState(state) {
  $("state").textContent = state;
  $("state").dataset.state = state;
}
function showError(err) {
  $("error").textContent = err ? String(err.message || err) : "";
}
client.addEventListener("open", () => {
  setState("open");
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
client.addEventListener("error", (e) => {
  const err = e.detail.error;
  if (err.code === ErrorCode.MESSAGES_DROPPED) return; // the counter shows it
  showError(err);
});

// --- chat ---

const nameInput = $("name");
nameInput.value = localStorage.getItem("immense-demo-name") || `guest-${Math.floor(Math.random() * 1000)}`;
nameInput.addEventListener("change", () => localStorage.setItem("immense-demo-name", nameInput.value));

const list = $("messages");
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

client
  .subscribe(room, (msg) => {
    count(msg);
    let m;
    try {
      m = JSON.parse(msg.text);
    } catch {
      m = { name: "?", text: msg.text };
    }
    addMessage(String(m.name ?? "?"), String(m.text ?? ""), msg.time);
  })
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
