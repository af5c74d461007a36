// Tests of immense.js under Node (node --test). The frame codec is checked
// against testdata/frames.json, which the Go encoder writes, so both
// implementations agree byte for byte. The connection logic (reconnect,
// resubscribe, backoff, token refresh) runs against a scripted in-memory
// RTCPeerConnection and fetch: Node has no WebRTC, and real browsers are
// exercised by the node-level chromedp test.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  answerSignedBytes,
  connect,
  discoverPeers,
  peerPublicKey,
  signalURL,
  verifyRelayedAnswer,
  decodeFrame,
  encodeFrame,
  signedBytes,
  tokenBoundKey,
  recordSignedBytes,
  verifyRecord,
  ErrorCode,
  FrameError,
  offerURL,
  ServerError,
  SignalingError,
  validateTopic,
} from "./immense.js";

const golden = JSON.parse(readFileSync(new URL("../testdata/frames.json", import.meta.url), "utf8"));
const hex = (b) => Buffer.from(b).toString("hex");
const unhex = (s) => new Uint8Array(Buffer.from(s, "hex"));

// reencode encodes a decoded frame again, batches included.
function reencode(f) {
  if (f.type === "batch") return encodeFrame({ type: "batch", items: f.items.map(reencode) });
  return encodeFrame(f);
}

test("golden frames decode and re-encode identically", () => {
  assert.ok(golden.length >= 10);
  for (const { name, hex: h } of golden) {
    const f = decodeFrame(unhex(h));
    assert.equal(hex(reencode(f)), h, name);
  }
  const msg = decodeFrame(unhex(golden.find((g) => g.name === "message").hex));
  assert.deepEqual(
    { type: msg.type, topic: msg.topic, id: msg.id, from: msg.from, time: msg.time, payload: hex(msg.payload) },
    { type: "message", topic: "chat/lobby", id: "0a1b", from: "12D3KooWpeer", time: 1700000000123456, payload: hex(Buffer.from("hi \x00\xff", "latin1")) },
  );
  const err = decodeFrame(unhex(golden.find((g) => g.name === "error").hex));
  assert.equal(err.code, ErrorCode.FORBIDDEN);
  assert.equal(err.topic, "b");
  assert.equal(err.req, 9);
  const pub = decodeFrame(unhex(golden.find((g) => g.name === "publish").hex));
  assert.equal(new TextDecoder().decode(pub.payload), "héllo");
});

test("bad frames throw FrameError and nothing else", () => {
  const sub = unhex(golden.find((g) => g.name === "subscribe").hex);
  const cases = [
    new Uint8Array([]),
    new Uint8Array([1]),
    Uint8Array.from([2, ...sub.subarray(1)]),
    sub.subarray(0, sub.length - 1),
    Uint8Array.from([...sub, 0]),
    new Uint8Array([1, 99, 0, 0, 0, 0]),
    new Uint8Array([1, 1, 0, 0, 0, 1, 2, 42, 42]),
    new Uint8Array([1, 7, 0, 0]),
    new Uint8Array([1, 7, 0, 1, 0, 0, 0, 4, 1, 7, 0, 0]),
    new Uint8Array([1, 3, 0, 0, 0, 0, 1, 116, 255, 255, 255, 255]),
  ];
  for (const c of cases) assert.throws(() => decodeFrame(c), FrameError, hex(c));
  assert.throws(() => decodeFrame(new Uint8Array(100), 50), FrameError);
  // Random bytes: decoding either succeeds or throws FrameError.
  let seed = 1;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
  for (let i = 0; i < 20000; i++) {
    const b = Uint8Array.from({ length: rand() % 40 }, rand);
    if (i % 2 === 0 && b.length > 1) (b[0] = 1), (b[1] = 1 + (rand() % 18));
    try {
      const f = decodeFrame(b);
      assert.equal(hex(reencode(f)), hex(b));
    } catch (e) {
      assert.ok(e instanceof FrameError, `${hex(b)}: ${e}`);
    }
  }
});

test("topics and URLs", () => {
  validateTopic("a.b_c:d/e-f");
  for (const bad of ["", "a b", "*", "x".repeat(129), "é"]) assert.throws(() => validateTopic(bad), TypeError);
  assert.equal(offerURL("https://p.example"), "https://p.example/v1/webrtc/offer");
  assert.equal(offerURL("https://p.example/immense"), "https://p.example/immense/v1/webrtc/offer");
  assert.equal(offerURL("https://p.example/v1/webrtc/offer"), "https://p.example/v1/webrtc/offer");
});

// --- a scripted peer: fake RTCPeerConnection + fetch + server session ---

class FakeChannel {
  constructor(peer, label = "immense") {
    this.peer = peer;
    this.label = label;
    this.binaryType = "blob";
    this.bufferedAmount = 0;
    this.onopen = this.onmessage = this.onclose = null;
  }
  send(bytes) {
    this.peer.server.receive(this, decodeFrame(new Uint8Array(bytes)));
  }
  deliver(bytes) {
    queueMicrotask(() => this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) }));
  }
  close() {}
}

function fakeWebRTC(server) {
  return class FakePeerConnection extends EventTarget {
    constructor(config) {
      super();
      this.server = server;
      this.config = config;
      this.iceGatheringState = "new";
      this.connectionState = "new";
      this.sctp = { maxMessageSize: 65535 };
      server.peers.push(this);
    }
    createDataChannel(label) {
      assert.ok(label === "immense" || label === "immense-relay", label);
      this.dc = new FakeChannel(this, label);
      return this.dc;
    }
    async createOffer() {
      return { type: "offer", sdp: `v=0 fake-offer-${this.server.peers.length} m=application` };
    }
    async createAnswer() {
      return { type: "answer", sdp: `v=0 fake-answer-${this.server.peers.length} m=application` };
    }
    async setLocalDescription(d) {
      this.localDescription = d;
      this.iceGatheringState = "complete";
    }
    async setRemoteDescription(d) {
      this.remoteDescription = d;
      if (d.type === "offer") return; // a relay answering a child: the test opens its channel
      assert.equal(d.type, "answer");
      setTimeout(() => this.dc.onopen?.(), 0);
    }
    close() {
      if (this.closed) return;
      this.closed = true;
      this.connectionState = "closed";
      this.onconnectionstatechange?.();
    }
  };
}

class FakeServer {
  constructor() {
    this.peers = [];
    this.offers = [];
    this.frames = [];
    this.tokens = new Set(["good"]);
    this.forbidden = new Set();
    this.fetch = async (url, init) => {
      const body = JSON.parse(init.body);
      this.offers.push({ url, body });
      if (!this.tokens.has(body.token)) return jsonResponse(401, { error: "token required" });
      return jsonResponse(200, { type: "answer", sdp: "v=0 fake-answer" });
    };
  }
  get channel() {
    return this.peers.at(-1).dc;
  }
  receive(dc, f) {
    if (dc.label === "immense-relay") {
      (dc.sent ??= []).push(f); // a relay link: the test plays the other browser
      return;
    }
    this.frames.push(f);
    if (f.type === "subscribe" && this.forbidden.has(f.topic)) {
      dc.deliver(encodeFrame({ type: "error", req: f.req, code: ErrorCode.FORBIDDEN, topic: f.topic, reason: "no" }));
      return;
    }
    if (f.type === "relay-probe" && f.padding.length === 0) {
      // A probe's start: the nonce, or, from a peer that predates probes,
      // an ERROR it cannot correlate.
      const answer = () =>
        this.oldPeer
          ? dc.deliver(encodeFrame({ type: "error", req: 0, code: ErrorCode.BAD_FRAME, reason: "unknown frame type 19" }))
          : dc.deliver(encodeFrame({ type: "relay-probe", req: f.req, padding: PROBE_NONCE }));
      if (this.holdProbe) this.heldProbe = answer; // the test answers when it wants
      else answer();
      return;
    }
    dc.deliver(encodeFrame({ type: "ack", req: f.req }));
  }
  push(topic, text, dc = this.channel) {
    const m = encodeFrame({ type: "message", topic, id: "1", from: "peer", time: Date.now() * 1000, payload: new TextEncoder().encode(text) });
    dc.deliver(encodeFrame({ type: "batch", items: [m, m] }));
  }
  drop() {
    this.channel.onclose?.();
  }
}

function jsonResponse(status, body) {
  return { ok: status === 200, status, statusText: String(status), json: async () => body };
}

const once = (target, type) => new Promise((resolve) => target.addEventListener(type, (e) => resolve(e), { once: true }));

function fastReconnect() {
  return { initialDelay: 10, maxDelay: 40, factor: 2 };
}

test("subscribe, receive batches, publish, reconnect and resubscribe", async () => {
  const srv = new FakeServer();
  let tokenCalls = 0;
  const client = connect("https://peer.example", {
    token: async () => (tokenCalls++, "good"),
    fetch: srv.fetch,
    RTCPeerConnection: fakeWebRTC(srv),
    reconnect: fastReconnect(),
  });
  const got = [];
  const subscribed = client.subscribe("chat", (m) => got.push(m.text)); // before open: sent on open
  await client.ready;
  await subscribed;
  assert.equal(srv.offers[0].url, "https://peer.example/v1/webrtc/offer");
  assert.equal(srv.offers[0].body.token, "good");
  srv.push("chat", "one");
  await client.publish("chat", "hi");
  assert.deepEqual(got, ["one", "one"]);
  const pub = srv.frames.find((f) => f.type === "publish");
  assert.equal(new TextDecoder().decode(pub.payload), "hi");

  // The channel drops: the client reconnects with a fresh token and
  // resubscribes without being asked.
  const disc = once(client, "disconnect");
  srv.drop();
  const { detail } = await disc;
  assert.ok(detail.retryIn >= 5 && detail.retryIn <= 10, `first retry in ${detail.retryIn}ms`);
  assert.equal(client.state, "connecting");
  await once(client, "open");
  assert.equal(tokenCalls, 2);
  assert.equal(srv.peers.length, 2);
  assert.ok(srv.peers[0].closed, "old connection closed");
  const resub = srv.frames.filter((f) => f.type === "subscribe" && f.topic === "chat");
  assert.equal(resub.length, 2);
  srv.push("chat", "two");
  await client.publish("chat", "again");
  assert.deepEqual(got, ["one", "one", "two", "two"]);

  // Messages on the old channel are ignored once it is replaced.
  srv.push("chat", "stale", srv.peers[0].dc);
  await client.publish("chat", "sync");
  assert.equal(got.length, 4);

  await client.unsubscribe("chat");
  assert.ok(srv.frames.some((f) => f.type === "unsubscribe" && f.topic === "chat"));
  srv.push("chat", "after");
  await client.publish("chat", "sync");
  assert.equal(got.length, 4, "no delivery after unsubscribe");
  client.close();
  assert.equal(client.state, "closed");
  await assert.rejects(client.publish("chat", "x"), /closed/);
});

test("backoff grows to its maximum while the peer refuses", async () => {
  const srv = new FakeServer();
  srv.fetch = async () => jsonResponse(503, { error: "too many sessions" });
  const client = connect("https://peer.example", { token: "good", fetch: srv.fetch, RTCPeerConnection: fakeWebRTC(srv), reconnect: fastReconnect() });
  const delays = [];
  for (let i = 0; i < 5; i++) {
    const { detail } = await once(client, "disconnect");
    assert.ok(detail.error instanceof SignalingError && detail.error.status === 503);
    delays.push(detail.retryIn);
  }
  client.close();
  const bases = [10, 20, 40, 40, 40];
  delays.forEach((d, i) => assert.ok(d >= bases[i] / 2 && d <= bases[i], `retry ${i}: ${d}ms, base ${bases[i]}`));
});

test("a refused static token closes the client", async () => {
  const srv = new FakeServer();
  const client = connect("https://peer.example", { token: "bad", fetch: srv.fetch, RTCPeerConnection: fakeWebRTC(srv), reconnect: fastReconnect() });
  const { detail } = await once(client, "close");
  assert.ok(detail.error instanceof SignalingError && detail.error.status === 401);
  await assert.rejects(client.ready, SignalingError);
  assert.equal(srv.offers.length, 1, "no retry with a token known to be refused");
});

test("forbidden subscription rejects and removes the handler; publishes wait for a connection", async () => {
  const srv = new FakeServer();
  srv.forbidden.add("secret");
  const client = connect("https://peer.example", { token: "good", fetch: srv.fetch, RTCPeerConnection: fakeWebRTC(srv), reconnect: fastReconnect() });
  const queued = client.publish("chat", new Uint8Array([1, 2, 3])); // before open
  await client.ready;
  await queued;
  await assert.rejects(
    client.subscribe("secret", () => {}),
    (e) => e instanceof ServerError && e.code === ErrorCode.FORBIDDEN && e.topic === "secret",
  );
  srv.drop();
  await once(client, "open");
  assert.equal(srv.frames.filter((f) => f.type === "subscribe" && f.topic === "secret").length, 1, "a refused topic is not resubscribed");
  await assert.rejects(client.publish("chat", new Uint8Array(70000)), RangeError);
  client.close();
});

test("failover across peer URLs resumes after the last message, and reports a gap", async () => {
  const srv = new FakeServer();
  const client = connect(["https://a.example", "https://b.example/"], {
    token: "good",
    fetch: srv.fetch,
    RTCPeerConnection: fakeWebRTC(srv),
    reconnect: fastReconnect(),
  });
  const got = [];
  await client.subscribe("chat", (m) => got.push(m));
  assert.equal(srv.offers[0].url, "https://a.example/v1/webrtc/offer");
  assert.equal(srv.frames.find((f) => f.type === "subscribe").since, undefined, "a first subscribe is live only");
  const msg = (id, text) =>
    encodeFrame({ type: "message", topic: "chat", id, from: "token:alice", time: 1700000000123456, payload: new TextEncoder().encode(text) });
  // Positions out of order: the cursor is the highest one.
  srv.channel.deliver(encodeFrame({ type: "batch", items: [msg("1700000000000000002-7-12D3KooWp", "b"), msg("1700000000000000001-9-12D3KooWq", "a")] }));
  await client.publish("chat", "sync");
  assert.deepEqual(
    got.map((m) => [m.id, m.from, m.time.getTime(), m.text]),
    [
      ["1700000000000000002-7-12D3KooWp", "token:alice", 1700000000123, "b"],
      ["1700000000000000001-9-12D3KooWq", "token:alice", 1700000000123, "a"],
    ],
  );

  srv.drop();
  await once(client, "open");
  assert.equal(srv.offers[1].url, "https://b.example/v1/webrtc/offer", "reconnects to the next peer");
  assert.equal(client.url, "https://b.example/v1/webrtc/offer");
  const resub = srv.frames.filter((f) => f.type === "subscribe").at(-1);
  assert.equal(resub.since, "1700000000000000002-7-12D3KooWp");

  const gap = once(client, "gap");
  srv.channel.deliver(encodeFrame({ type: "error", code: ErrorCode.GAP, topic: "chat", reason: "lost" }));
  const { detail } = await gap;
  assert.deepEqual(detail, { topic: "chat", recovered: false });

  // An explicit starting point: a time goes as RFC 3339.
  await client.subscribe("news", () => {}, { since: new Date(Date.UTC(2026, 0, 2, 3, 4, 5)) });
  assert.equal(srv.frames.filter((f) => f.type === "subscribe").at(-1).since, "2026-01-02T03:04:05.000Z");
  client.close();
});

test("signed publish: the same signed bytes and signature as Go", async () => {
  const g = decodeFrame(unhex(golden.find((f) => f.name === "signed-publish").hex));
  assert.equal(g.type, "signed-publish");
  assert.equal(g.time, 1700000000123);
  // The golden frame was signed in Go with the Ed25519 key of the seed
  // 32 bytes of 9; Ed25519 is deterministic, so WebCrypto must agree.
  const pkcs8 = unhex("302e020100300506032b657004220420" + "09".repeat(32));
  const key = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
  const sig = new Uint8Array(await crypto.subtle.sign("Ed25519", key, signedBytes(g.topic, g.time, g.payload)));
  assert.equal(hex(sig), hex(g.sig));
});

test("tokenBoundKey reads a token's cnf key, and nothing else", () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const tok = (claims) => `${b64({ alg: "EdDSA" })}.${b64(claims)}.sig`;
  assert.equal(tokenBoundKey(tok({ cnf: { jwk: { kty: "OKP", crv: "Ed25519", x: "abc-_" } } })), "abc-_");
  assert.equal(tokenBoundKey(tok({ read: ["a"] })), "");
  assert.equal(tokenBoundKey("not.a-token"), "");
  assert.equal(tokenBoundKey(""), "");
});

// fakeWebSockets returns a WebSocket class whose instances behave as a
// peer's /v1/ws: "accept" (the token "good" gets ACK 0, then SUBSCRIBEs
// get ACKs), "unreachable" (closes before opening), or a close code sent
// after the token.
function fakeWebSockets(behavior) {
  const sockets = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = url;
      this.frames = [];
      sockets.push(this);
      setTimeout(() => {
        if (behavior === "unreachable") {
          this.onclose?.({ code: 1006, reason: "" });
          return;
        }
        this.onopen?.();
      }, 1);
    }
    send(b) {
      if (typeof b === "string") {
        if ((behavior === "accept" && b === "good") || behavior === "accept-any") this.deliver(encodeFrame({ type: "ack", req: 0 }));
        else setTimeout(() => this.onclose?.({ code: typeof behavior === "number" ? behavior : 4401, reason: "token refused" }), 1);
        return;
      }
      const f = decodeFrame(b);
      this.frames.push(f);
      this.deliver(encodeFrame({ type: "ack", req: f.req }));
    }
    deliver(bytes) {
      setTimeout(() => this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) }), 1);
    }
    close() {}
  }
  return { FakeWebSocket, sockets };
}

test("transport auto: a WebSocket when the peer is reachable, WebRTC when it is not", async () => {
  const { FakeWebSocket, sockets } = fakeWebSockets("accept");
  const srv = new FakeServer();
  const client = connect("https://peer.example", { token: "good", WebSocket: FakeWebSocket, fetch: srv.fetch, RTCPeerConnection: fakeWebRTC(srv) });
  const open = await once(client, "open");
  assert.equal(client.transport, "websocket");
  assert.deepEqual(open.detail, { transport: "websocket", url: "https://peer.example/v1/webrtc/offer", peer: null, signaling: "direct" });
  assert.equal(client.signaling, "direct");
  assert.equal(sockets[0].url, "wss://peer.example/v1/ws");
  await client.subscribe("chat", () => {});
  assert.equal(sockets[0].frames.at(-1).type, "subscribe");
  assert.equal(srv.offers.length, 0, "no WebRTC offer was made");
  client.close();

  const down = fakeWebSockets("unreachable");
  const srv2 = new FakeServer();
  const natted = connect("http://volunteer.example:8090", { token: "good", WebSocket: down.FakeWebSocket, fetch: srv2.fetch, RTCPeerConnection: fakeWebRTC(srv2) });
  await once(natted, "open");
  assert.equal(natted.transport, "webrtc");
  assert.equal(natted.signaling, "direct");
  assert.equal(down.sockets[0].url, "ws://volunteer.example:8090/v1/ws");
  assert.equal(srv2.offers.length, 1);
  natted.close();
});

test("transport websocket: a refused token closes a fixed-token client; a full peer is retried", async () => {
  const refused = fakeWebSockets(4401);
  const client = connect("https://peer.example", { token: "bad", transport: "websocket", WebSocket: refused.FakeWebSocket, reconnect: fastReconnect() });
  const { detail } = await once(client, "close");
  assert.ok(detail.error instanceof SignalingError && detail.error.status === 401, `closed with ${detail.error}`);
  assert.equal(refused.sockets.length, 1, "a refused fixed token is not retried");

  const full = fakeWebSockets(4503);
  const busy = connect(["https://a.example", "https://b.example"], { token: "good", transport: "websocket", WebSocket: full.FakeWebSocket, reconnect: fastReconnect() });
  const d = await once(busy, "disconnect");
  assert.equal(d.detail.error.status, 503);
  await once(busy, "disconnect");
  assert.deepEqual(full.sockets.slice(0, 2).map((s) => s.url), ["wss://a.example/v1/ws", "wss://b.example/v1/ws"], "fails over to the next peer");
  busy.close();
});

test("a publish made before the first connection is signed when the token is bound", async () => {
  const { FakeWebSocket, sockets } = fakeWebSockets("accept-any");
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const client = connect("https://peer.example", {
    transport: "websocket",
    WebSocket: FakeWebSocket,
    token: async ({ publicKey }) => `${b64({ alg: "EdDSA" })}.${b64({ cnf: { jwk: { kty: "OKP", crv: "Ed25519", x: publicKey } } })}.sig`,
  });
  await client.publish("chat", "early"); // before "open"
  const f = sockets[0].frames.at(-1);
  assert.equal(f.type, "signed-publish");
  assert.equal(f.sig.length, 64);
  client.close();
});

// A vector made by Go (webrtc.AnswerSignedBytes, signed with the libp2p
// key of seed 00 01 .. 1f): the JS client checks the same bytes.
const relayVector = {
  peer: "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB",
  key: "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8",
  sig: "FlZOnHR32fBfiIuw9gsrFJsnOxt3AvGJMwbJ4fftAaV07uF87umRjI3HPqiks7T98dCtUChvCdZyOSolujFDAw",
  signed: "696d6d656e73652f7369676e616c2d616e737765722f7631007e1ffcaf6d9eae23fbd83c8f17ac0cba50e740fe2305a7cff97c77ee014164d0763d3020616e73776572",
};

test("relayed answers: the same signed bytes, key and signature as Go", async () => {
  const { peer, key, sig, signed } = relayVector;
  assert.equal(hex(peerPublicKey(peer)), key);
  assert.equal(hex(await answerSignedBytes("v=0 offer", "v=0 answer")), signed);
  assert.equal(await verifyRelayedAnswer(peer, "v=0 offer", { sdp: "v=0 answer", peer, sig }), true);
  assert.equal(await verifyRelayedAnswer(peer, "v=0 other offer", { sdp: "v=0 answer", peer, sig }), false, "another offer");
  assert.equal(await verifyRelayedAnswer(peer, "v=0 offer", { sdp: "v=0 answer ", peer, sig }), false, "another answer");
  assert.equal(await verifyRelayedAnswer(peer, "v=0 offer", { sdp: "v=0 answer", peer: "12D3KooWother", sig }), false, "another peer named");
  assert.equal(await verifyRelayedAnswer(peer, "v=0 offer", { sdp: "v=0 answer", peer }), false, "unsigned");
  assert.throws(() => peerPublicKey("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"), /Ed25519/); // an RSA-style (SHA-256) ID
  assert.throws(() => peerPublicKey("12D3KooW0OIl"), /base58/);
  assert.equal(signalURL("https://p.example/x/v1/webrtc/offer", peer), `https://p.example/x/v1/webrtc/signal?peer=${peer}`);
});

const B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
function base58(bytes) {
  let n = BigInt("0x" + (hex(bytes) || "0"));
  let out = "";
  while (n > 0n) {
    out = B58[Number(n % 58n)] + out;
    n /= 58n;
  }
  for (const b of bytes) {
    if (b !== 0) break;
    out = "1" + out;
  }
  return out;
}

// relayServer is a FakeServer whose offers go through a forwarder's
// SIGNAL_PATH to a volunteer that signs its answers with key (or with
// forger's key, if given).
async function relayServer(forge = false) {
  const srv = new FakeServer();
  const kp = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const other = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", kp.publicKey));
  srv.peerID = base58(Uint8Array.from([0x00, 0x24, 0x08, 0x01, 0x12, 0x20, ...raw]));
  srv.fetch = async (url, init) => {
    const body = JSON.parse(init.body);
    srv.offers.push({ url, body });
    if (!srv.tokens.has(body.token)) return jsonResponse(401, { error: "token required" });
    const sdp = "v=0 fake-answer";
    const signer = forge ? other.privateKey : kp.privateKey;
    const sig = new Uint8Array(await crypto.subtle.sign("Ed25519", signer, await answerSignedBytes(body.sdp, sdp)));
    return jsonResponse(200, { type: "answer", sdp, peer: new URL(url).searchParams.get("peer"), sig: Buffer.from(sig).toString("base64url") });
  };
  return srv;
}

test("a {url, peer} target: WebRTC through relayed signaling, the answer verified, and said so", async () => {
  const srv = await relayServer();
  const ws = fakeWebSockets("accept");
  const target = { url: "https://public.example", peer: srv.peerID };
  const client = connect(target, { token: "good", WebSocket: ws.FakeWebSocket, fetch: srv.fetch, RTCPeerConnection: fakeWebRTC(srv) });
  const open = await once(client, "open");
  assert.deepEqual(open.detail, { transport: "webrtc", url: "https://public.example/v1/webrtc/offer", peer: srv.peerID, signaling: "relayed" });
  assert.equal(client.transport, "webrtc");
  assert.equal(client.signaling, "relayed");
  assert.equal(srv.offers[0].url, `https://public.example/v1/webrtc/signal?peer=${srv.peerID}`);
  assert.equal(ws.sockets.length, 0, "no WebSocket to a NAT'd volunteer");
  await client.subscribe("chat", () => {});
  client.close();

  assert.throws(() => connect(target, { transport: "websocket", WebSocket: ws.FakeWebSocket }), TypeError);
});

test("a relayed answer not signed by the peer asked for is refused", async () => {
  const srv = await relayServer(true);
  const client = connect({ url: "https://public.example", peer: srv.peerID }, { token: "good", fetch: srv.fetch, RTCPeerConnection: fakeWebRTC(srv), reconnect: fastReconnect() });
  const { detail } = await once(client, "disconnect");
  assert.match(detail.error.message, /not signed by peer/);
  assert.equal(client.state, "connecting");
  client.close();
});

test("discoverPeers lists the forwarder's peers as targets", async () => {
  const calls = [];
  const fetch = async (url) => {
    calls.push(url);
    return jsonResponse(200, { peers: [{ id: "12D3KooWa", reachability: "private" }, { id: "12D3KooWb", reachability: "public" }, { id: "12D3KooWc", reachability: "odd" }] });
  };
  const peers = await discoverPeers("https://public.example", { fetch });
  assert.deepEqual(calls, ["https://public.example/v1/webrtc/peers"]);
  assert.deepEqual(peers, [
    { url: "https://public.example/v1/webrtc/offer", peer: "12D3KooWa", reachability: "private" },
    { url: "https://public.example/v1/webrtc/offer", peer: "12D3KooWb", reachability: "public" },
    { url: "https://public.example/v1/webrtc/offer", peer: "12D3KooWc", reachability: "public" },
  ]);
  await assert.rejects(discoverPeers("https://public.example", { fetch: async () => jsonResponse(404, { error: "no" }) }), SignalingError);
});

// --- browser relays ---

// waitFor lets the client's promise chains (and WebCrypto, which works
// off the main thread) run until cond holds; the bound only ends a test
// that would hang.
async function waitFor(cond, what) {
  for (let i = 0; i < 10000; i++) {
    if (cond()) return;
    await new Promise((r) => (i < 100 ? setImmediate(r) : setTimeout(r, 1)));
  }
  assert.fail(`never: ${what}`);
}

const seqOf = (m) => Number(new DataView(m.data.buffer, m.data.byteOffset).getBigUint64(0));

// PROBE_NONCE is what the fake peer answers an upload probe's start with.
const PROBE_NONCE = new Uint8Array(16).fill(0xa5);

// relayPeer is a peer's relay key and the records it signs.
async function relayPeer() {
  const kp = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const key = new Uint8Array(await crypto.subtle.exportKey("raw", kp.publicKey));
  const record = async (seq, size = 8) => {
    const payload = new Uint8Array(size);
    new DataView(payload.buffer).setBigUint64(0, BigInt(seq));
    const f = { type: "record", topic: "news", seq, id: `1700000000000000000-${seq}-12D3KooWp`, from: "token:a", time: 1700000000123456, payload };
    f.sig = new Uint8Array(await crypto.subtle.sign("Ed25519", kp.privateKey, recordSignedBytes(f.topic, f.seq, f.id, f.from, f.time, f.payload)));
    return encodeFrame(f);
  };
  return { key, record };
}

test("relay frames: Go's golden vectors decode to the documented fields, and the Go record signature verifies", async () => {
  const g = (name) => decodeFrame(unhex(golden.find((f) => f.name === name).hex));
  assert.deepEqual(g("relay-ready"), { type: "relay-ready", req: 5, metered: true, upload: 1 << 20, maxChildren: 8 });
  assert.deepEqual(g("relay-ready-withdraw"), { type: "relay-ready", req: 6, metered: false, upload: 0, maxChildren: 0 });
  const inv = g("relay-invite");
  assert.deepEqual([inv.topic, inv.maxChildren, inv.uploadCap, inv.key.length], ["news", 4, 250000, 32]);
  const att = g("attach");
  assert.deepEqual([att.topic, att.link, att.after], ["news", 7, 41]);
  assert.equal(g("attach-peer").after, 2 ** 40);
  assert.deepEqual(g("signal-offer"), { type: "signal", link: 7, kind: "offer", topic: "news", data: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n" });
  assert.deepEqual(g("signal-close"), { type: "signal", link: 0xfffffffe, kind: "close", topic: "news", data: "" });
  assert.deepEqual(g("from"), { type: "from", req: 0, topic: "news", after: 41 });
  assert.deepEqual(g("head"), { type: "head", topic: "news", seq: 57 });
  const rep = g("report-forged");
  assert.deepEqual([rep.req, rep.topic, rep.link, rep.reason, hex(rep.evidence)], [3, "news", 7, "forged", "010e00"]);
  assert.equal(g("report-stalled").reason, "stalled");
  assert.deepEqual(g("hello"), { type: "hello", topic: "news", link: 7, after: 41 });
  assert.deepEqual(g("relay-probe"), { type: "relay-probe", req: 0, last: false, padding: new Uint8Array(3) });
  assert.deepEqual(g("relay-probe-last"), { type: "relay-probe", req: 8, last: true, padding: new Uint8Array(0) });
  assert.deepEqual(decodeFrame(encodeFrame({ type: "relay-probe", last: true, padding: new Uint8Array(16 << 10) })).padding.length, 16 << 10);
  assert.throws(() => encodeFrame({ type: "relay-probe", padding: new Uint8Array((16 << 10) + 1) }), RangeError);

  // The RECORD was signed in Go by the key the ATTACH carries.
  const rec = g("record");
  assert.deepEqual([rec.topic, rec.seq, rec.id, rec.from, rec.time, new TextDecoder().decode(rec.payload)], ["news", 42, "1700000000123456789-3-12D3KooWpeer", "token:alice", 1700000000123456, "héllo"]);
  assert.ok(await verifyRecord(att.key, rec));
  assert.ok(await verifyRecord(inv.key, g("batch-records").items[1]));
  // Any change to a signed field fails.
  for (const change of [{ seq: 43 }, { topic: "newz" }, { id: "x" }, { from: "token:bob" }, { time: 1 }, { payload: new Uint8Array([1]) }]) {
    assert.equal(await verifyRecord(att.key, { ...rec, ...change }), false, JSON.stringify(Object.keys(change)));
  }
  assert.equal(await verifyRecord(new Uint8Array(32), rec), false);

  // Bad relay frames are refused both ways.
  for (const b of ["010a00000001020000000000", "01130000000002" + "00000000", "011300000000000000400100", "010d000000000104" + "6e657773" + "0000", "010d000000070904" + "6e657773" + "0000", "011100000000046e657773000000070600000000"]) {
    assert.throws(() => decodeFrame(unhex(b)), FrameError, b);
  }
  assert.throws(() => encodeFrame({ type: "signal", topic: "news", link: 0, kind: "offer" }), RangeError);
  assert.throws(() => encodeFrame({ type: "attach", topic: "news", link: 1, key: new Uint8Array(31) }), RangeError);
  assert.throws(() => encodeFrame({ type: "report", topic: "news", link: 1, reason: "bored" }), RangeError);
  assert.throws(() => decodeFrame(unhex("011004" + "6e657773" + "0020000000000000")), FrameError, "a seq beyond 2^53");

  // Mutated relay vectors: each decodes to a frame that re-encodes (to
  // the same bytes, unless a string held invalid UTF-8, which JS strings
  // cannot keep), or throws FrameError; nothing else.
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
  const vectors = golden.map((v) => unhex(v.hex)).filter((b) => b[1] >= 10 || (b[1] === 7 && b[9] === 14)); // relay frames, batches of records
  let decoded = 0;
  for (let i = 0; i < 20000; i++) {
    let b = vectors[rand() % vectors.length].slice();
    switch (rand() % 3) {
      case 0:
        b[2 + (rand() % (b.length - 2))] = rand() & 0xff;
        break;
      case 1:
        b = b.subarray(0, rand() % b.length);
        break;
      case 2:
        b = Uint8Array.from([...b, rand() & 0xff]);
        break;
    }
    let f;
    try {
      f = decodeFrame(b);
    } catch (e) {
      assert.ok(e instanceof FrameError, `${hex(b)}: ${e}`);
      continue;
    }
    decoded++;
    const again = reencode(f);
    if (hex(again) !== hex(b)) assert.equal(hex(reencode(decodeFrame(again))), hex(again), hex(b));
  }
  assert.ok(decoded > 1000, `only ${decoded} mutated frames decoded`);
});

test("relay child: records verified, delivered once in order; a relay that drops, forges or stalls is reported and left", async () => {
  const srv = new FakeServer();
  const peer = await relayPeer();
  const client = connect("https://peer.example", { token: "good", fetch: srv.fetch, RTCPeerConnection: fakeWebRTC(srv) });
  const got = [];
  await client.subscribe("news", (m) => got.push(seqOf(m)));
  const control = srv.channel;
  const sent = (type) => srv.frames.filter((f) => f.type === type);

  // Attached to the peer itself: FROM says where it is.
  control.deliver(encodeFrame({ type: "attach", topic: "news", link: 0, after: 0, key: peer.key }));
  await waitFor(() => sent("from").length === 1, "FROM");
  assert.deepEqual(sent("from")[0], { type: "from", req: 0, topic: "news", after: 0 });
  // In order, once; a duplicate and a forged record from the peer are
  // dropped (nothing to report: the peer is trusted).
  const r = [];
  for (let i = 1; i <= 12; i++) r[i] = await peer.record(i);
  const forged3 = r[3].slice();
  forged3[forged3.length - 65] ^= 1;
  control.deliver(encodeFrame({ type: "batch", items: [r[1], r[2], r[2], forged3, r[3]] }));
  await waitFor(() => got.length === 3, "records 1-3");
  assert.deepEqual(got, [1, 2, 3]);
  assert.equal(client.relayStatus().topics[0].fedBy, "peer");

  // Moved to a relay: an offer through the peer, HELLO with the last seq
  // once the channel opens, then records from the relay.
  const link = async (id) => {
    control.deliver(encodeFrame({ type: "attach", topic: "news", link: id, after: 0, key: peer.key }));
    await waitFor(() => sent("signal").some((f) => f.link === id && f.kind === "offer"), `offer on link ${id}`);
    const pc = srv.peers.at(-1);
    assert.equal(pc.dc.label, "immense-relay");
    control.deliver(encodeFrame({ type: "signal", topic: "news", link: id, kind: "answer", data: "v=0 relay" }));
    await waitFor(() => pc.dc.sent?.length === 1, `HELLO on link ${id}`);
    assert.deepEqual(pc.dc.sent[0], { type: "hello", topic: "news", link: id, after: got.at(-1) });
    assert.equal(client.relayStatus().topics[0].fedBy, "relay");
    return pc;
  };
  const reported = (n) => waitFor(() => sent("report").length === n, `report ${n}`);
  let pc = await link(5);
  pc.dc.deliver(r[4]);
  await waitFor(() => got.length === 4, "record 4 from the relay");
  pc.dc.deliver(r[6]); // 5 dropped
  await reported(1);
  assert.deepEqual(sent("report")[0], { type: "report", req: 0, topic: "news", link: 5, reason: "dropped", evidence: new Uint8Array(0) });
  assert.ok(pc.closed, "the link to a reported relay is closed");
  assert.equal(client.relayStatus().topics[0].fedBy, "peer");

  // A forged record: reported with the record as evidence.
  pc = await link(6);
  const forged5 = r[5].slice();
  forged5[forged5.length - 65] ^= 1;
  pc.dc.deliver(forged5);
  await reported(2);
  assert.deepEqual([sent("report")[1].link, sent("report")[1].reason, hex(sent("report")[1].evidence)], [6, "forged", hex(forged5)]);

  // A relay whose first record jumps (its backlog does not reach back
  // to us) is refused, not accused.
  pc = await link(7);
  pc.dc.deliver(r[9]);
  await reported(3);
  assert.equal(sent("report")[2].reason, "refused");

  // A relay that stalls: behind the peer's HEAD, nothing for two
  // intervals in a row. One that moves is left alone.
  pc = await link(8);
  const head = (seq) => control.deliver(encodeFrame({ type: "head", topic: "news", seq }));
  head(7);
  pc.dc.deliver(r[5]);
  await waitFor(() => got.length === 5, "record 5");
  head(7); // behind, but it moved since the last HEAD
  pc.dc.deliver(r[6]);
  await waitFor(() => got.length === 6, "record 6");
  head(9);
  head(9); // behind and stuck: one interval
  await client.publish("news", "barrier");
  assert.equal(sent("report").length, 3, "one stuck interval is not a stall");
  head(9); // two
  await reported(4);
  assert.deepEqual([sent("report")[3].link, sent("report")[3].reason], [8, "stalled"]);

  // A link that closes: gone.
  pc = await link(9);
  pc.dc.onclose();
  await reported(5);
  assert.deepEqual([sent("report")[4].link, sent("report")[4].reason], [9, "gone"]);

  // Back on the peer, from where it is.
  control.deliver(encodeFrame({ type: "attach", topic: "news", link: 0, after: 0, key: peer.key }));
  await waitFor(() => sent("from").length === 2, "FROM");
  assert.equal(sent("from")[1].after, 6);
  control.deliver(encodeFrame({ type: "batch", items: [r[5], r[6], r[7], r[8]] }));
  await waitFor(() => got.length === 8, "records 7 and 8");
  assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7, 8]);
  client.close();
});

test("relay role: opt-in READY, answers offers, replays the backlog after HELLO, caps upload and drops a child that falls behind", async () => {
  // Without the option: no READY, and an INVITE is ignored.
  {
    const srv = new FakeServer();
    const client = connect("https://peer.example", { token: "good", fetch: srv.fetch, RTCPeerConnection: fakeWebRTC(srv) });
    await client.subscribe("news", () => {});
    srv.channel.deliver(encodeFrame({ type: "relay-invite", topic: "news", maxChildren: 4, uploadCap: 1000, key: new Uint8Array(32) }));
    srv.channel.deliver(encodeFrame({ type: "signal", topic: "news", link: 3, kind: "offer", data: "v=0 child" }));
    await waitFor(() => srv.frames.some((f) => f.type === "signal"), "refusal");
    assert.equal(srv.frames.find((f) => f.type === "signal").kind, "close");
    assert.equal(srv.frames.filter((f) => f.type === "relay-ready").length, 0);
    assert.equal(client.relayStatus().offered, false);
    client.close();
  }
  const srv = new FakeServer();
  const peer = await relayPeer();
  const client = connect("https://peer.example", {
    token: "good",
    fetch: srv.fetch,
    RTCPeerConnection: fakeWebRTC(srv),
    relay: { maxChildren: 2, upload: 300_000 },
  });
  const got = [];
  await client.subscribe("news", (m) => got.push(seqOf(m)));
  await waitFor(() => srv.frames.some((f) => f.type === "relay-ready"), "READY");
  const ready = srv.frames.find((f) => f.type === "relay-ready");
  assert.deepEqual([ready.maxChildren, ready.upload, ready.metered], [2, 300000, false]);
  // The upload probe went first: its start, answered with the nonce, then
  // 64 KiB in four chunks that begin with it, the last one marked.
  const probes = srv.frames.slice(0, srv.frames.indexOf(ready)).filter((f) => f.type === "relay-probe");
  assert.deepEqual(
    probes.map((f) => [f.last, f.padding.length, hex(f.padding.subarray(0, 16))]),
    [[false, 0, ""], ...[false, false, false, true].map((last) => [last, 16384, hex(PROBE_NONCE)])],
  );
  const control = srv.channel;
  // Invited with a cap of 100 kB/s (below the user's 300 kB/s).
  control.deliver(encodeFrame({ type: "relay-invite", topic: "news", maxChildren: 8, uploadCap: 100_000, key: peer.key }));
  control.deliver(encodeFrame({ type: "attach", topic: "news", link: 0, after: 0, key: peer.key }));
  const r = [];
  for (let i = 1; i <= 4; i++) r[i] = await peer.record(i);
  control.deliver(encodeFrame({ type: "batch", items: [r[1], r[2], r[3]] }));
  await waitFor(() => got.length === 3, "records 1-3");

  // A child offers: the relay answers, and after its HELLO (it has 1)
  // replays 2 and 3, then forwards live records.
  const child = async (id) => {
    control.deliver(encodeFrame({ type: "signal", topic: "news", link: id, kind: "offer", data: `v=0 child ${id}` }));
    await waitFor(() => srv.frames.some((f) => f.type === "signal" && f.link === id), `answer on link ${id}`);
    const answer = srv.frames.find((f) => f.type === "signal" && f.link === id);
    if (answer.kind !== "answer") return null;
    const pc = srv.peers.at(-1);
    const dc = new FakeChannel({ server: { receive: (_, f) => dc.frames.push(f) } }, "immense-relay");
    dc.frames = [];
    pc.ondatachannel({ channel: dc });
    return { pc, dc };
  };
  const a = await child(11);
  a.dc.onmessage({ data: encodeFrame({ type: "hello", topic: "news", link: 11, after: 1 }).buffer });
  await waitFor(() => a.dc.frames.length === 1, "backlog");
  assert.deepEqual(
    a.dc.frames[0].items.map((f) => f.seq),
    [2, 3],
  );
  control.deliver(r[4]);
  await waitFor(() => a.dc.frames.length === 2, "live record");
  assert.equal(a.dc.frames[1].seq, 4);
  assert.equal(client.relayStatus().topics[0].children, 1);

  // A second child fits; a third is refused (the user's 2).
  const b = await child(12);
  b.dc.onmessage({ data: encodeFrame({ type: "hello", topic: "news", link: 12, after: 4 }).buffer });
  assert.equal(await child(13), null);
  await waitFor(() => client.relayStatus().children === 2, "two children");

  // A child that falls behind (1 MiB queued) is closed.
  b.dc.bufferedAmount = 2 << 20;
  control.deliver(await peer.record(5));
  await waitFor(() => b.pc.closed, "the slow child closed");
  assert.equal(a.dc.frames.at(-1).seq, 5);

  // The upload cap: 100 kB/s with a burst of one second's worth, raised
  // to the largest record; records of 60 kB exhaust it within a few, and
  // the child is closed rather than fed beyond the cap.
  let n = 6;
  while (!a.pc.closed && n < 40) {
    control.deliver(await peer.record(n++, 60_000));
    await waitFor(() => got.length === n - 1, `record ${n - 1}`);
  }
  assert.ok(a.pc.closed, "the cap closed the child's link");
  const sentBytes = a.dc.frames.reduce((s, f) => s + reencode(f).length, 0);
  assert.ok(sentBytes <= 100_000 + 100_000 * 2, `forwarded ${sentBytes} bytes`);
  assert.ok(n - 6 >= 1, `closed after ${n - 6} large records`);

  // Withdrawn by the user: READY with 0 children.
  client.setRelay(null);
  await waitFor(() => srv.frames.filter((f) => f.type === "relay-ready").length === 2, "withdrawal");
  assert.equal(srv.frames.filter((f) => f.type === "relay-ready").at(-1).maxChildren, 0);
  client.close();
});

test("upload probe: a peer that predates probes ends it at once; the READY says what the page offers by then", async () => {
  // An old peer answers the start with an ERROR it cannot correlate: the
  // READY follows at once, not after the request timeout.
  {
    const srv = new FakeServer();
    srv.oldPeer = true;
    const errors = [];
    const client = connect("https://peer.example", {
      token: "good",
      fetch: srv.fetch,
      RTCPeerConnection: fakeWebRTC(srv),
      relay: { maxChildren: 2, upload: 300_000 },
      requestTimeout: 60_000,
    });
    client.addEventListener("error", (e) => errors.push(e.detail?.message ?? String(e.detail)));
    await waitFor(() => srv.frames.some((f) => f.type === "relay-ready"), "READY after the old peer's ERROR");
    assert.equal(srv.frames.filter((f) => f.type === "relay-probe").length, 1, "no chunks after a refused start");
    assert.equal(errors.length, 1, `one error event, got ${JSON.stringify(errors)}`);
    client.close();
  }
  // Withdrawn while the probe runs: the withdrawal goes at once, and no
  // offer follows it.
  {
    const srv = new FakeServer();
    const client = connect("https://peer.example", {
      token: "good",
      fetch: srv.fetch,
      RTCPeerConnection: fakeWebRTC(srv),
      relay: { maxChildren: 2, upload: 300_000 },
    });
    srv.holdProbe = true;
    await waitFor(() => srv.heldProbe, "probe start");
    client.setRelay(null);
    srv.heldProbe();
    await waitFor(() => srv.frames.filter((f) => f.type === "relay-probe").length === 5, "probe chunks");
    await client.subscribe("news", () => {}); // one more round trip: anything queued has gone out
    const readies = srv.frames.filter((f) => f.type === "relay-ready");
    assert.deepEqual(
      readies.map((f) => f.maxChildren),
      [0],
      "only the withdrawal",
    );
    client.close();
  }
});

test("relay child without Ed25519 in WebCrypto: records from the peer taken, relays left as refused (not accused)", async () => {
  const srv = new FakeServer();
  const peer = await relayPeer();
  const subtle = crypto.subtle;
  const importKey = subtle.importKey;
  subtle.importKey = async (format, key, alg, ...rest) => {
    if (alg?.name === "Ed25519") throw new DOMException("Ed25519 is not supported", "NotSupportedError");
    return importKey.call(subtle, format, key, alg, ...rest);
  };
  try {
    const client = connect("https://peer.example", { token: "good", fetch: srv.fetch, RTCPeerConnection: fakeWebRTC(srv) });
    const got = [];
    await client.subscribe("news", (m) => got.push(seqOf(m)));
    const control = srv.channel;
    control.deliver(encodeFrame({ type: "attach", topic: "news", link: 0, after: 0, key: peer.key }));
    control.deliver(encodeFrame({ type: "batch", items: [await peer.record(1), await peer.record(2)] }));
    await waitFor(() => got.length === 2, "records from the peer");
    control.deliver(encodeFrame({ type: "attach", topic: "news", link: 4, after: 0, key: peer.key }));
    await waitFor(() => srv.frames.some((f) => f.type === "signal" && f.kind === "offer"), "offer");
    const pc = srv.peers.at(-1);
    control.deliver(encodeFrame({ type: "signal", topic: "news", link: 4, kind: "answer", data: "v=0 relay" }));
    await waitFor(() => pc.dc.sent?.length === 1, "HELLO");
    pc.dc.deliver(await peer.record(3));
    await waitFor(() => srv.frames.some((f) => f.type === "report"), "report");
    const rep = srv.frames.find((f) => f.type === "report");
    assert.deepEqual([rep.link, rep.reason, rep.evidence.length], [4, "refused", 0]);
    assert.deepEqual(got, [1, 2]);
    client.close();
  } finally {
    subtle.importKey = importKey;
  }
});
