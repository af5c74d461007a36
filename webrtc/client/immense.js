// Immense browser client: real-time topics over a WebRTC data channel to an
// Immense peer. Dependency-free ES module; see immense.d.ts for the types
// and docs/browser-protocol.md for the wire protocol.
//
//   import { connect } from "/client.js";
//   const client = connect(["https://peer1.example", "https://peer2.example"], { token });
//   await client.subscribe("chat", (msg) => console.log(msg.text));
//   await client.publish("chat", "hello");
//
// A client that reconnects (to the same peer or, after a failure, to the
// next URL of its list) resumes each topic after the last message it
// delivered: the peer replays what it missed from the topic's history,
// once each, then goes on live. A "gap" event says when the history no
// longer reached back that far.
//
// A peer may have another browser feed a topic to this one (a relay):
// every such message is signed by the peer and verified here, so relays
// can delay or drop but not forge. With the relay option, which a page
// sets only once its user agreed, this browser may feed others too
// (docs/browser-protocol.md, section 8).

/** Version byte of every frame; the server refuses any other. */
export const FRAME_VERSION = 1;

/** Longest topic name, in bytes. */
export const MAX_TOPIC_LENGTH = 128;

/** Path of the signaling endpoint on a peer. */
export const OFFER_PATH = "/v1/webrtc/offer";

/** Path of the WebSocket endpoint on a peer. */
export const WEBSOCKET_PATH = "/v1/ws";

/** Path on a peer that forwards an offer to another peer (relayed signaling): POST with ?peer=<peer ID>. */
export const SIGNAL_PATH = "/v1/webrtc/signal";

/** Path on a peer that lists the peers it forwards offers to. */
export const SIGNAL_PEERS_PATH = "/v1/webrtc/peers";

// Close codes of the WebSocket handshake (docs/browser-protocol.md), as
// the HTTP statuses of the offer endpoint.
const WS_CLOSE_STATUS = { 4400: 400, 4401: 401, 4503: 503 };

const DATA_CHANNEL_LABEL = "immense";

// Servers send frames of at most their MaxFrameSize (256 KiB at most).
const MAX_INCOMING_FRAME = 1 << 20;

// Longest resume position a SUBSCRIBE carries.
const MAX_SINCE = 256;

// Frame types (second byte of a frame).
const T_SUBSCRIBE = 1;
const T_UNSUBSCRIBE = 2;
const T_PUBLISH = 3;
const T_MESSAGE = 4;
const T_ACK = 5;
const T_ERROR = 6;
const T_BATCH = 7;
const T_SIGNED_PUBLISH = 8;
const T_PRESENCE = 9;
// Relay frames (docs/browser-protocol.md, section 8).
const T_RELAY_READY = 10;
const T_RELAY_INVITE = 11;
const T_ATTACH = 12;
const T_SIGNAL = 13;
const T_RECORD = 14;
const T_FROM = 15;
const T_HEAD = 16;
const T_REPORT = 17;
const T_HELLO = 18;
const T_RELAY_PROBE = 19;

const TYPE_NAMES = [
  "",
  "subscribe",
  "unsubscribe",
  "publish",
  "message",
  "ack",
  "error",
  "batch",
  "signed-publish",
  "presence",
  "relay-ready",
  "relay-invite",
  "attach",
  "signal",
  "record",
  "from",
  "head",
  "report",
  "hello",
  "relay-probe",
];

/** Kinds of a SIGNAL frame, by their wire value. */
const SIGNAL_KINDS = ["", "offer", "answer", "candidate", "close"];

/** Why a child left its relay (REPORT frame), by their wire value. */
const REPORT_REASONS = ["", "gone", "stalled", "dropped", "forged", "refused"];

/** Size of a peer's relay key (raw Ed25519). */
const KEY_SIZE = 32;

/** Largest SIGNAL data (an SDP): 16 KiB. */
const MAX_SIGNAL_DATA = 16 << 10;

/** Padding of one RELAY-PROBE frame (maxProbeChunk in Go); an upload probe is PROBE_CHUNKS of them, 64 KiB, the most a peer takes. */
const MAX_PROBE_CHUNK = 16 << 10;
const PROBE_CHUNKS = 4;
/** The nonce a peer answers a probe's start with, which begins each chunk (probeNonceSize in Go). */
const PROBE_NONCE_SIZE = 16;

/** Size of an Ed25519 signature. */
const SIG_SIZE = 64;

/** Codes of ERROR frames, as sent by the server. */
export const ErrorCode = Object.freeze({
  BAD_FRAME: 1,
  UNSUPPORTED_VERSION: 2,
  FRAME_TOO_LARGE: 3,
  INVALID_TOPIC: 4,
  FORBIDDEN: 5,
  TOO_MANY_SUBSCRIPTIONS: 6,
  RATE_LIMITED: 7,
  PUBLISH_FAILED: 8,
  UNEXPECTED_FRAME: 9,
  SUBSCRIPTION_LOST: 10,
  TOKEN_EXPIRED: 11,
  MESSAGES_DROPPED: 12,
  INTERNAL: 13,
  GAP: 14,
  RELAY_REFUSED: 15,
});

const CODE_NAMES = Object.fromEntries(
  Object.entries(ErrorCode).map(([k, v]) => [v, k.toLowerCase().replaceAll("_", "-")]),
);

/** An ERROR frame from the server. */
export class ServerError extends Error {
  /**
   * @param {number} code
   * @param {string} topic
   * @param {string} reason
   */
  constructor(code, topic, reason) {
    const name = CODE_NAMES[code] ?? `code-${code}`;
    super(topic ? `${name} (topic "${topic}"): ${reason}` : `${name}: ${reason}`);
    this.name = "ServerError";
    this.code = code;
    this.codeName = name;
    this.topic = topic;
    this.reason = reason;
  }
}

/** A WebSocket to the peer could not be opened at all (not refused): with transport "auto" the client tries WebRTC. */
export class WebSocketUnreachable extends Error {
  constructor(message) {
    super(message);
    this.name = "WebSocketUnreachable";
  }
}

/** The signaling endpoint refused the offer (401: token; 503: server full). */
export class SignalingError extends Error {
  /**
   * @param {number} status
   * @param {string} message
   */
  constructor(status, message) {
    super(`offer refused: ${status}: ${message}`);
    this.name = "SignalingError";
    this.status = status;
  }
}

const TOPIC_RE = /^[A-Za-z0-9._:/-]+$/;

/**
 * Throws a TypeError unless topic is 1..128 characters of [A-Za-z0-9._:/-].
 * @param {string} topic
 */
export function validateTopic(topic) {
  if (typeof topic !== "string" || topic.length === 0 || topic.length > MAX_TOPIC_LENGTH || !TOPIC_RE.test(topic)) {
    throw new TypeError(`invalid topic ${JSON.stringify(topic)}: 1 to ${MAX_TOPIC_LENGTH} characters of [A-Za-z0-9._:/-]`);
  }
}

const utf8 = new TextEncoder();
const utf8dec = new TextDecoder();

/**
 * Encodes a frame. Exported for tests and tools; applications use Client.
 * @param {Frame} f
 * @returns {Uint8Array}
 */
export function encodeFrame(f) {
  const type = TYPE_NAMES.indexOf(f.type);
  if (type < 1) throw new TypeError(`unknown frame type ${f.type}`);
  const hasTopic =
    type === T_SUBSCRIBE ||
    type === T_UNSUBSCRIBE ||
    type === T_PUBLISH ||
    type === T_SIGNED_PUBLISH ||
    type === T_MESSAGE ||
    type === T_PRESENCE ||
    (type > T_RELAY_READY && type !== T_RELAY_PROBE);
  if (hasTopic || (type === T_ERROR && f.topic)) validateTopic(f.topic);
  const topic = f.topic ? utf8.encode(f.topic) : new Uint8Array(0);
  const payload = f.payload ?? new Uint8Array(0);
  const id = utf8.encode(f.id ?? "");
  const from = utf8.encode(f.from ?? "");
  const reason = utf8.encode(f.reason ?? "").subarray(0, 0xffff);
  const since = utf8.encode(type === T_SUBSCRIBE ? (f.since ?? "") : "");
  if (since.length > MAX_SINCE) throw new RangeError(`resume position of ${since.length} bytes`);
  const data = utf8.encode(type === T_SIGNAL ? (f.data ?? "") : "");
  const evidence = type === T_REPORT ? (f.evidence ?? new Uint8Array(0)) : new Uint8Array(0);
  const padding = type === T_RELAY_PROBE ? (f.padding ?? new Uint8Array(0)) : new Uint8Array(0);
  checkRelayFields(type, f, id, from, data, padding);
  let size = 2;
  switch (type) {
    case T_SUBSCRIBE:
    case T_UNSUBSCRIBE:
      size += 4 + 1 + topic.length + (since.length ? 2 + since.length : 0);
      break;
    case T_PUBLISH:
      size += 4 + 1 + topic.length + 4 + payload.length;
      break;
    case T_SIGNED_PUBLISH:
      if (!f.sig || f.sig.length !== SIG_SIZE) throw new RangeError(`signature of ${f.sig?.length ?? 0} bytes, want ${SIG_SIZE}`);
      size += 4 + 1 + topic.length + 8 + SIG_SIZE + 4 + payload.length;
      break;
    case T_MESSAGE:
      if (id.length > 0xffff || from.length > 0xffff) throw new RangeError("message id or publisher too long");
      size += 1 + topic.length + 2 + id.length + 2 + from.length + 8 + 4 + payload.length;
      break;
    case T_PRESENCE:
      size += 1 + topic.length + 1 + 2 + id.length + 2 + from.length;
      break;
    case T_ACK:
      size += 4;
      break;
    case T_ERROR:
      size += 4 + 2 + 1 + topic.length + 2 + reason.length;
      break;
    case T_BATCH: {
      const items = f.items ?? [];
      if (items.length === 0 || items.length > 0xffff) throw new RangeError(`batch of ${items.length} frames`);
      size += 2;
      for (const it of items) size += 4 + it.length;
      break;
    }
    case T_RELAY_READY:
      size += 4 + 1 + 4 + 1;
      break;
    case T_RELAY_INVITE:
      size += 1 + topic.length + 1 + 4 + KEY_SIZE;
      break;
    case T_ATTACH:
      size += 1 + topic.length + 4 + 8 + KEY_SIZE;
      break;
    case T_SIGNAL:
      size += 4 + 1 + 1 + topic.length + 2 + data.length;
      break;
    case T_RECORD:
      size += 1 + topic.length + 8 + 2 + id.length + 2 + from.length + 8 + 4 + payload.length + SIG_SIZE;
      break;
    case T_FROM:
      size += 4 + 1 + topic.length + 8;
      break;
    case T_HEAD:
      size += 1 + topic.length + 8;
      break;
    case T_REPORT:
      size += 4 + 1 + topic.length + 4 + 1 + 4 + evidence.length;
      break;
    case T_HELLO:
      size += 1 + topic.length + 4 + 8;
      break;
    case T_RELAY_PROBE:
      size += 4 + 1 + 4 + padding.length;
      break;
  }
  const out = new Uint8Array(size);
  const w = new Writer(out);
  w.u8(FRAME_VERSION);
  w.u8(type);
  switch (type) {
    case T_SUBSCRIBE:
    case T_UNSUBSCRIBE:
      w.u32(f.req ?? 0);
      w.str8(topic);
      if (since.length) w.str16(since);
      break;
    case T_PUBLISH:
      w.u32(f.req ?? 0);
      w.str8(topic);
      w.bytes32(payload);
      break;
    case T_SIGNED_PUBLISH:
      w.u32(f.req ?? 0);
      w.str8(topic);
      w.i64(f.time ?? 0);
      w.raw(f.sig);
      w.bytes32(payload);
      break;
    case T_MESSAGE:
      w.str8(topic);
      w.str16(id);
      w.str16(from);
      w.i64(f.time ?? 0);
      w.bytes32(payload);
      break;
    case T_PRESENCE:
      w.str8(topic);
      w.u8(f.joined ? 1 : 0);
      w.str16(id);
      w.str16(from);
      break;
    case T_ACK:
      w.u32(f.req ?? 0);
      break;
    case T_ERROR:
      w.u32(f.req ?? 0);
      w.u16(f.code ?? 0);
      w.str8(topic);
      w.str16(reason);
      break;
    case T_BATCH:
      w.u16(f.items.length);
      for (const it of f.items) {
        if (it.length < 2 || it[1] === T_BATCH) throw new TypeError("batch item is not a frame");
        w.bytes32(it);
      }
      break;
    case T_RELAY_READY:
      w.u32(f.req ?? 0);
      w.u8(f.metered ? 1 : 0);
      w.u32(f.upload ?? 0);
      w.u8(f.maxChildren ?? 0);
      break;
    case T_RELAY_INVITE:
      w.str8(topic);
      w.u8(f.maxChildren ?? 0);
      w.u32(f.uploadCap ?? 0);
      w.raw(f.key);
      break;
    case T_ATTACH:
      w.str8(topic);
      w.u32(f.link ?? 0);
      w.u64(f.after ?? 0);
      w.raw(f.key);
      break;
    case T_SIGNAL:
      w.u32(f.link);
      w.u8(SIGNAL_KINDS.indexOf(f.kind));
      w.str8(topic);
      w.str16(data);
      break;
    case T_RECORD:
      w.str8(topic);
      w.u64(f.seq);
      w.str16(id);
      w.str16(from);
      w.i64(f.time ?? 0);
      w.bytes32(payload);
      w.raw(f.sig);
      break;
    case T_FROM:
      w.u32(f.req ?? 0);
      w.str8(topic);
      w.u64(f.after ?? 0);
      break;
    case T_HEAD:
      w.str8(topic);
      w.u64(f.seq ?? 0);
      break;
    case T_REPORT:
      w.u32(f.req ?? 0);
      w.str8(topic);
      w.u32(f.link ?? 0);
      w.u8(REPORT_REASONS.indexOf(f.reason));
      w.bytes32(evidence);
      break;
    case T_HELLO:
      w.str8(topic);
      w.u32(f.link ?? 0);
      w.u64(f.after ?? 0);
      break;
    case T_RELAY_PROBE:
      w.u32(f.req ?? 0);
      w.u8(f.last ? 1 : 0);
      w.bytes32(padding);
      break;
  }
  return out;
}

// checkRelayFields throws unless a relay frame's fields fit their wire
// types (the other frames' are checked in encodeFrame).
function checkRelayFields(type, f, id, from, data, padding) {
  const u8 = (v) => v === undefined || (Number.isInteger(v) && v >= 0 && v <= 0xff);
  const u32 = (v) => v === undefined || (Number.isInteger(v) && v >= 0 && v <= 0xffffffff);
  const u64 = (v) => v === undefined || (Number.isSafeInteger(v) && v >= 0);
  const ok = (cond, what) => {
    if (!cond) throw new RangeError(`${TYPE_NAMES[type]} frame: bad ${what}`);
  };
  switch (type) {
    case T_RELAY_READY:
      ok(u8(f.maxChildren) && u32(f.upload), "maxChildren or upload");
      break;
    case T_RELAY_PROBE:
      ok(padding instanceof Uint8Array && padding.length <= MAX_PROBE_CHUNK, "padding (at most 16 KiB)");
      break;
    case T_RELAY_INVITE:
    case T_ATTACH:
      ok(f.key instanceof Uint8Array && f.key.length === KEY_SIZE, "key (32 bytes)");
      ok(u8(f.maxChildren) && u32(f.uploadCap) && u32(f.link) && u64(f.after), "number");
      break;
    case T_SIGNAL:
      ok(SIGNAL_KINDS.indexOf(f.kind) > 0, "kind");
      ok(Number.isInteger(f.link) && f.link > 0 && f.link <= 0xffffffff, "link");
      ok(data.length <= MAX_SIGNAL_DATA, "data (at most 16 KiB)");
      break;
    case T_RECORD:
      ok(f.sig instanceof Uint8Array && f.sig.length === SIG_SIZE, "signature");
      ok(Number.isSafeInteger(f.seq) && f.seq >= 0, "seq");
      ok(id.length <= 0xffff && from.length <= 0xffff, "id or publisher");
      break;
    case T_FROM:
    case T_HELLO:
      ok(u32(f.link) && u64(f.after), "link or after");
      break;
    case T_HEAD:
      ok(u64(f.seq), "seq");
      break;
    case T_REPORT:
      ok(REPORT_REASONS.indexOf(f.reason) > 0, "reason");
      ok(u32(f.link), "link");
      break;
  }
}

/**
 * Decodes one frame of at most maxSize bytes; throws a FrameError on bad
 * input. Payloads are views into bytes, not copies.
 * @param {Uint8Array} bytes
 * @param {number} [maxSize]
 */
export function decodeFrame(bytes, maxSize = 1 << 20) {
  return decode(bytes, maxSize, true);
}

/** A frame that does not decode. */
export class FrameError extends Error {
  constructor(message) {
    super(message);
    this.name = "FrameError";
  }
}

function decode(bytes, maxSize, allowBatch) {
  if (bytes.length > maxSize) throw new FrameError(`frame of ${bytes.length} bytes, at most ${maxSize}`);
  if (bytes.length < 2) throw new FrameError(`frame of ${bytes.length} bytes, shorter than a header`);
  if (bytes[0] !== FRAME_VERSION) throw new FrameError(`frame version ${bytes[0]}, this client speaks ${FRAME_VERSION}`);
  const type = bytes[1];
  const r = new Reader(bytes, 2);
  /** @type {any} */
  const f = { type: TYPE_NAMES[type] };
  switch (type) {
    case T_SUBSCRIBE:
    case T_UNSUBSCRIBE:
      f.req = r.u32();
      f.topic = r.str8();
      if (type === T_SUBSCRIBE && r.off < bytes.length) {
        f.since = r.str16();
        if (!f.since || f.since.length > MAX_SINCE) throw new FrameError("bad resume position");
      }
      break;
    case T_PUBLISH:
      f.req = r.u32();
      f.topic = r.str8();
      f.payload = r.bytes32();
      break;
    case T_SIGNED_PUBLISH:
      f.req = r.u32();
      f.topic = r.str8();
      f.time = r.i64();
      f.sig = r.take(SIG_SIZE);
      f.payload = r.bytes32();
      break;
    case T_MESSAGE:
      f.topic = r.str8();
      f.id = r.str16();
      f.from = r.str16();
      f.time = r.i64();
      f.payload = r.bytes32();
      break;
    case T_PRESENCE: {
      f.topic = r.str8();
      const j = r.u8();
      if (j > 1) throw new FrameError(`presence flag ${j}`);
      f.joined = j === 1;
      f.id = r.str16();
      f.from = r.str16();
      break;
    }
    case T_ACK:
      f.req = r.u32();
      break;
    case T_ERROR:
      f.req = r.u32();
      f.code = r.u16();
      f.topic = r.str8();
      f.reason = r.str16();
      break;
    case T_BATCH: {
      if (!allowBatch) throw new FrameError("batch inside a batch");
      const n = r.u16();
      if (n === 0) throw new FrameError("empty batch");
      f.items = [];
      for (let i = 0; i < n; i++) f.items.push(decode(r.bytes32(), maxSize, false));
      break;
    }
    case T_RELAY_READY: {
      f.req = r.u32();
      const flags = r.u8();
      if (flags > 1) throw new FrameError(`relay flags ${flags}`);
      f.metered = flags === 1;
      f.upload = r.u32();
      f.maxChildren = r.u8();
      break;
    }
    case T_RELAY_INVITE:
      f.topic = r.str8();
      f.maxChildren = r.u8();
      f.uploadCap = r.u32();
      f.key = r.take(KEY_SIZE);
      break;
    case T_ATTACH:
      f.topic = r.str8();
      f.link = r.u32();
      f.after = r.u64();
      f.key = r.take(KEY_SIZE);
      break;
    case T_SIGNAL: {
      f.link = r.u32();
      const kind = r.u8();
      f.topic = r.str8();
      f.data = r.str16();
      if (!SIGNAL_KINDS[kind] || f.link === 0 || utf8.encode(f.data).length > MAX_SIGNAL_DATA) {
        throw new FrameError(`signal kind ${kind}, link ${f.link}`);
      }
      f.kind = SIGNAL_KINDS[kind];
      break;
    }
    case T_RECORD:
      f.topic = r.str8();
      f.seq = r.u64();
      f.id = r.str16();
      f.from = r.str16();
      f.time = r.i64();
      f.payload = r.bytes32();
      f.sig = r.take(SIG_SIZE);
      break;
    case T_FROM:
      f.req = r.u32();
      f.topic = r.str8();
      f.after = r.u64();
      break;
    case T_HEAD:
      f.topic = r.str8();
      f.seq = r.u64();
      break;
    case T_REPORT: {
      f.req = r.u32();
      f.topic = r.str8();
      f.link = r.u32();
      const reason = r.u8();
      f.evidence = r.bytes32();
      if (!REPORT_REASONS[reason]) throw new FrameError(`report reason ${reason}`);
      f.reason = REPORT_REASONS[reason];
      break;
    }
    case T_HELLO:
      f.topic = r.str8();
      f.link = r.u32();
      f.after = r.u64();
      break;
    case T_RELAY_PROBE: {
      f.req = r.u32();
      const flags = r.u8();
      if (flags > 1) throw new FrameError(`probe flags ${flags}`);
      f.last = flags === 1;
      f.padding = r.bytes32();
      if (f.padding.length > MAX_PROBE_CHUNK) throw new FrameError(`probe of ${f.padding.length} bytes`);
      break;
    }
    default:
      throw new FrameError(`unknown frame type ${type}`);
  }
  if (r.off !== bytes.length) throw new FrameError(`${f.type} frame: ${bytes.length - r.off} trailing bytes`);
  if (type !== T_ACK && type !== T_BATCH && type !== T_RELAY_READY && type !== T_RELAY_PROBE && (type !== T_ERROR || f.topic !== "")) {
    if (!TOPIC_RE.test(f.topic) || f.topic.length > MAX_TOPIC_LENGTH) throw new FrameError(`invalid topic ${JSON.stringify(f.topic)}`);
  }
  return f;
}

class Writer {
  /** @param {Uint8Array} buf */
  constructor(buf) {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.off = 0;
  }
  u8(v) {
    this.view.setUint8(this.off, v);
    this.off += 1;
  }
  u16(v) {
    this.view.setUint16(this.off, v);
    this.off += 2;
  }
  u32(v) {
    this.view.setUint32(this.off, v >>> 0);
    this.off += 4;
  }
  i64(v) {
    this.view.setBigInt64(this.off, BigInt(Math.trunc(v)));
    this.off += 8;
  }
  u64(v) {
    this.view.setBigUint64(this.off, BigInt(v));
    this.off += 8;
  }
  raw(b) {
    this.buf.set(b, this.off);
    this.off += b.length;
  }
  str8(b) {
    this.u8(b.length);
    this.raw(b);
  }
  str16(b) {
    this.u16(b.length);
    this.raw(b);
  }
  bytes32(b) {
    this.u32(b.length);
    this.raw(b);
  }
}

class Reader {
  /**
   * @param {Uint8Array} buf
   * @param {number} off
   */
  constructor(buf, off) {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.off = off;
  }
  need(n) {
    if (this.off + n > this.buf.length) throw new FrameError(`truncated frame: need ${n} bytes at offset ${this.off}`);
  }
  u8() {
    this.need(1);
    return this.view.getUint8(this.off++);
  }
  u16() {
    this.need(2);
    const v = this.view.getUint16(this.off);
    this.off += 2;
    return v;
  }
  u32() {
    this.need(4);
    const v = this.view.getUint32(this.off);
    this.off += 4;
    return v;
  }
  i64() {
    this.need(8);
    const v = Number(this.view.getBigInt64(this.off));
    this.off += 8;
    return v;
  }
  // A u64 as a Number: sequence numbers count messages of one topic, far
  // below 2^53; a larger one is refused rather than rounded.
  u64() {
    this.need(8);
    const v = this.view.getBigUint64(this.off);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FrameError(`sequence number ${v} beyond 2^53`);
    this.off += 8;
    return Number(v);
  }
  take(n) {
    this.need(n);
    const v = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return v;
  }
  str8() {
    return utf8dec.decode(this.take(this.u8()));
  }
  str16() {
    return utf8dec.decode(this.take(this.u16()));
  }
  bytes32() {
    return this.take(this.u32());
  }
}

/**
 * Compares two message ids as stream positions ("<unix ns>-<sequence>-
 * <publisher>", docs/browser-protocol.md): by time, then publisher, then
 * sequence. Returns -1, 0 or 1.
 * @param {string} a
 * @param {string} b
 */
export function comparePositions(a, b) {
  const p = parsePosition(a);
  const q = parsePosition(b);
  if (!p || !q) return a < b ? -1 : a > b ? 1 : 0;
  for (const [x, y] of [
    [p.ns, q.ns],
    [p.pub, q.pub],
    [p.seq, q.seq],
  ]) {
    if (x < y) return -1;
    if (x > y) return 1;
  }
  return 0;
}

function parsePosition(s) {
  const m = /^(\d+)-(\d+)-(.*)$/.exec(s);
  return m ? { ns: BigInt(m[1]), seq: BigInt(m[2]), pub: m[3] } : null;
}

/** A message of a subscribed topic. */
export class Message {
  constructor(topic, id, from, timeMicros, data) {
    /** @type {string} */ this.topic = topic;
    /** Its stream position, which a subscription resumes after. @type {string} */ this.id = id;
    /** Sender as the peer verified it: an app peer's ID, or "token:" and a browser's token subject (unverified peer ID on open topics). @type {string} */ this.from = from;
    /** Publisher's clock, microseconds since the Unix epoch (0 if unknown). @type {number} */ this.timeMicros = timeMicros;
    /** @type {Uint8Array} */ this.data = data;
  }
  /** Publication time, or null if unknown. */
  get time() {
    return this.timeMicros ? new Date(this.timeMicros / 1000) : null;
  }
  /** The payload decoded as UTF-8. */
  get text() {
    return utf8dec.decode(this.data);
  }
}

/**
 * Resolves the signaling URL: a URL ending in /v1/webrtc/offer is used as
 * is; anything else is taken as the peer's base URL.
 * @param {string | URL} url
 */
export function offerURL(url) {
  const u = new URL(url, globalThis.location?.href);
  if (u.pathname.endsWith(OFFER_PATH)) return u.href;
  if (!u.pathname.endsWith("/")) u.pathname += "/";
  return new URL(OFFER_PATH.slice(1), u).href;
}

/**
 * The relayed signaling URL, on the peer whose offer URL is given, for an
 * offer to peer: SIGNAL_PATH?peer=<peer ID>.
 * @param {string} offer
 * @param {string} peer
 */
export function signalURL(offer, peer) {
  const u = new URL(offer);
  u.pathname = u.pathname.slice(0, u.pathname.length - OFFER_PATH.length) + SIGNAL_PATH;
  u.search = "?peer=" + encodeURIComponent(peer);
  return u.href;
}

/**
 * Asks the peer at url which peers it forwards offers to (relayed
 * signaling), and returns them as targets for connect():
 * {url, peer, reachability}, where reachability is "private" for a peer
 * behind NAT (only WebRTC reaches it) or "public".
 * @param {string | URL} url the forwarding peer's base URL or offer URL
 * @param {{fetch?: typeof fetch}} [options]
 */
export async function discoverPeers(url, options = {}) {
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const offer = offerURL(url);
  const list = new URL(offer);
  list.pathname = list.pathname.slice(0, list.pathname.length - OFFER_PATH.length) + SIGNAL_PEERS_PATH;
  const res = await doFetch(list.href, { method: "GET" });
  if (!res.ok) throw new SignalingError(res.status, (await res.json().catch(() => ({}))).error ?? res.statusText);
  const body = await res.json();
  return (body.peers ?? []).map((p) => ({ url: offer, peer: String(p.id), reachability: p.reachability === "private" ? "private" : "public" }));
}

/**
 * The WebSocket URL of the peer whose offer URL is given: ws:// or wss://
 * and WEBSOCKET_PATH in place of OFFER_PATH.
 * @param {string} offer
 */
export function webSocketURL(offer) {
  const u = new URL(offer);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  u.pathname = u.pathname.slice(0, u.pathname.length - OFFER_PATH.length) + WEBSOCKET_PATH;
  return u.href;
}

const DEFAULTS = {
  token: "",
  transport: "auto",
  iceServers: [],
  requestTimeout: 10_000,
  connectTimeout: 15_000,
  gatherTimeout: 5_000,
  maxQueuedPublishes: 256,
  reconnect: { initialDelay: 500, maxDelay: 30_000, factor: 2 },
};

/**
 * Connects to an Immense peer and returns the client at once; it connects
 * in the background and reconnects by itself. Listen for "open" or await
 * client.ready.
 * @param {string | URL} url the peer's base URL or its offer URL
 * @param {ConnectOptions} [options]
 */
export function connect(url, options = {}) {
  return new Client(url, options);
}

/**
 * The targets to try in turn: a URL (a peer reached directly), or
 * {url, peer} (the peer whose ID is peer, reached through relayed
 * signaling on the peer at url).
 * @param {string | URL | Target | Array<string | URL | Target>} urls
 * @returns {{url: string, peer: string | null}[]}
 */
function targets(urls) {
  const list = (Array.isArray(urls) ? urls : [urls]).map((u) => {
    if (u && typeof u === "object" && !(u instanceof URL)) {
      if (typeof u.peer !== "string" || u.peer === "") throw new TypeError("a target object needs url and peer (a peer ID)");
      return { url: offerURL(u.url), peer: u.peer };
    }
    return { url: offerURL(u), peer: null };
  });
  if (list.length === 0) throw new TypeError("no peer URL");
  return list;
}

/**
 * A connection to a peer. Events: "open", "disconnect" (detail: {error,
 * retryIn}), "close" (detail: {error}), "error" (detail: {error}) for
 * errors not tied to a call, such as dropped messages; "relay" (detail:
 * relayStatus()) when how a topic is fed or what the client relays
 * changes, "relayreport" (detail: {topic, link, reason}) when it leaves a
 * relay and reports it.
 */
export class Client extends EventTarget {
  constructor(url, options = {}) {
    super();
    this._targets = targets(url);
    /** The peers' offer URLs, tried in turn (for a relayed target, the forwarding peer's). */
    this.urls = this._targets.map((t) => t.url);
    /** The offer URL of the peer in use (or being tried). */
    this.url = this.urls[0];
    /** The ID of the peer in use when it is reached through relayed signaling, else null. */
    this.peer = this._targets[0].peer;
    /** How the session was negotiated: "direct" (the peer's own endpoint) or "relayed" (through the peer at url); null until open. */
    this.signaling = null;
    this._urlIndex = 0;
    /** Per topic, the position of the last message delivered, to resume after. */
    this._cursors = new Map();
    /** Per topic with presence, its members by "id peer". */
    this._members = new Map();
    this.options = { ...DEFAULTS, ...options, reconnect: { ...DEFAULTS.reconnect, ...(options.reconnect ?? {}) } };
    this._fetch = this.options.fetch ?? globalThis.fetch.bind(globalThis);
    this._RTCPeerConnection = this.options.RTCPeerConnection ?? globalThis.RTCPeerConnection;
    this._WebSocket = this.options.WebSocket ?? globalThis.WebSocket;
    const mode = this.options.transport;
    if (!["auto", "websocket", "webrtc"].includes(mode)) throw new TypeError(`transport ${JSON.stringify(mode)}: want "auto", "websocket" or "webrtc"`);
    if (mode !== "websocket" && !this._RTCPeerConnection && (mode === "webrtc" || !this._WebSocket)) {
      throw new Error("WebRTC is not available here (no RTCPeerConnection)");
    }
    if (mode === "websocket" && !this._WebSocket) throw new Error("WebSockets are not available here");
    if (mode === "websocket" && this._targets.some((t) => t.peer)) {
      throw new TypeError('a {url, peer} target is reached through relayed signaling, which needs WebRTC: use transport "auto" or "webrtc"');
    }
    /**
     * How the client is connected: "websocket" or "webrtc" (null until the
     * first connection opens). With transport "auto" it is a WebSocket
     * when the peer can be reached directly, WebRTC otherwise.
     * @type {"websocket" | "webrtc" | null}
     */
    this.transport = null;
    /** Where frames go: the data channel or the WebSocket. */
    this._chan = null;
    this._ws = null;
    /** @type {"connecting" | "open" | "closed"} */
    this.state = "connecting";
    /** @type {Map<string, Set<Function>>} */
    this._handlers = new Map();
    /** Deferreds of subscribe() calls waiting for the server's first ACK. */
    this._ready = new Map();
    /** Requests sent and not yet answered, by request ID. */
    this._pending = new Map();
    /** Publishes made while disconnected: {bytes, req}. */
    this._outbox = [];
    this._nextReq = 1;
    this._attempt = 0;
    this._gen = 0;
    this._pc = null;
    this._dc = null;
    this._retryTimer = null;
    this._maxFrame = 65535;
    /** The browser key a bound token names (options.keyPair, or one made here), and whether the current token is bound to it. */
    this._keyPair = browserKeyPair(this.options.keyPair);
    this._keyPair.catch(() => {}); // no Ed25519 here: bound tokens cannot be used, bearer tokens still can
    this._bound = false;
    /** Browser relays: the topics fed through them, and what this client relays. */
    this._relays = new Relays(this);
    this.ready = new Promise((resolve, reject) => {
      this._resolveReady = resolve;
      this._rejectReady = reject;
    });
    this.ready.catch(() => {}); // an unobserved failure is reported by "close"
    // A page that goes away closes its channel, so that the peer sees the
    // browser leave (presence) at once rather than when ICE times out.
    // A page kept in the back/forward cache hangs up too, and calls again
    // (resuming) if it is shown again.
    this._onPageHide = (e) => {
      if (!e.persisted) return this.close();
      this._onDisconnect(this._gen, new Error("page hidden"));
      clearTimeout(this._retryTimer);
      this._hidden = true;
    };
    this._onPageShow = (e) => {
      if (e.persisted && this._hidden && this.state === "connecting") {
        this._hidden = false;
        this._connect();
      }
    };
    globalThis.addEventListener?.("pagehide", this._onPageHide);
    globalThis.addEventListener?.("pageshow", this._onPageShow);
    this._connect();
  }

  /**
   * Calls handler with every message of topic. Resolves when the server
   * has confirmed the subscription (after a reconnect, if it happens
   * while disconnected); rejects with a ServerError if refused, in which
   * case the handler is removed.
   *
   * options.since starts the subscription from history: a message id (the
   * topic's messages after it that the peer's history holds come first,
   * then the live ones), or a Date (those published since). A "gap"
   * event says when the history does not reach back that far.
   * @param {string} topic
   * @param {(msg: Message) => void} handler
   * @param {{since?: string | Date}} [options]
   */
  subscribe(topic, handler, options = {}) {
    validateTopic(topic);
    if (typeof handler !== "function") throw new TypeError("handler must be a function");
    if (this.state === "closed") return Promise.reject(new Error("client closed"));
    let set = this._handlers.get(topic);
    if (set) {
      set.add(handler);
      return this._ready.get(topic)?.promise ?? Promise.resolve();
    }
    if (options.since instanceof Date) this._cursors.set(topic, options.since.toISOString());
    else if (options.since) this._cursors.set(topic, String(options.since));
    set = new Set([handler]);
    this._handlers.set(topic, set);
    const d = deferred();
    this._ready.set(topic, d);
    if (this.state === "open") this._sendSubscribe(topic);
    return d.promise;
  }

  /**
   * Removes handler from topic (every handler if omitted); the server
   * stops sending the topic once no handler is left.
   * @param {string} topic
   * @param {Function} [handler]
   */
  unsubscribe(topic, handler) {
    const set = this._handlers.get(topic);
    if (!set) return Promise.resolve();
    if (handler) set.delete(handler);
    if (handler && set.size > 0) return Promise.resolve();
    this._handlers.delete(topic);
    this._cursors.delete(topic);
    this._members.delete(topic);
    this._relays.drop(topic);
    this._ready.get(topic)?.reject(new Error("unsubscribed"));
    this._ready.delete(topic);
    if (this.state !== "open") return Promise.resolve(); // nothing to undo on the server
    return this._request({ type: "unsubscribe", topic }).catch(() => {});
  }

  /**
   * Publishes data (a string is sent as UTF-8) on topic. Resolves when the
   * peer has handed the message to the overlay. While disconnected,
   * publishes wait (up to maxQueuedPublishes) for the next connection.
   * @param {string} topic
   * @param {string | Uint8Array | ArrayBuffer | ArrayBufferView} data
   */
  publish(topic, data) {
    validateTopic(topic);
    if (this.state === "closed") return Promise.reject(new Error("client closed"));
    const payload = toBytes(data);
    // Before the first connection the token, and so whether publishes
    // must be signed, is not known yet: wait for it.
    if (this.transport === null) return this.ready.then(() => this.publish(topic, data));
    if (!this._bound) return this._request({ type: "publish", topic, payload });
    // A token bound to our key: sign, so that no peer can reuse the token.
    return this._keyPair.then(async (kp) => {
      const time = Date.now();
      const sig = new Uint8Array(await crypto.subtle.sign("Ed25519", kp.privateKey, signedBytes(topic, time, payload)));
      return this._request({ type: "signed-publish", topic, payload, time, sig });
    });
  }

  /**
   * The public half of the browser key, base64url (raw Ed25519), for the
   * app server to bind tokens to (a token's "cnf" claim). Rejects where
   * WebCrypto has no Ed25519.
   * @returns {Promise<string>}
   */
  async publicKey() {
    const kp = await this._keyPair;
    return base64url(new Uint8Array(await crypto.subtle.exportKey("raw", kp.publicKey)));
  }

  /**
   * The members of topic, for a topic with presence (the peer sends them
   * once subscribed, and each join and leave as a "presence" event).
   * @param {string} topic
   * @returns {{id: string, peer: string}[]}
   */
  members(topic) {
    return [...(this._members.get(topic)?.values() ?? [])];
  }

  /**
   * How the client's topics are fed and what it relays: per topic,
   * fedBy "peer" (the peer's own connection), "attaching" (a link to a
   * relay is opening) or "relay" (another browser feeds it), the last
   * sequence number, and the children it feeds. A "relay" event carries
   * the same after every change.
   * @returns {RelayStatus}
   */
  relayStatus() {
    return this._relays.status();
  }

  /**
   * Offers (or, with null, withdraws) this browser as a relay: the
   * relay option given later, for example once the user agreed. A
   * withdrawal closes the links to the children; the peer moves them.
   * @param {RelayOptions | null} relay
   */
  setRelay(relay) {
    const offered = !!this.options.relay;
    this.options.relay = relay ?? undefined;
    if (!relay) this._relays.withdraw();
    // A withdrawal only undoes an offer (a peer without relays refuses both).
    if (this.state === "open" && (relay || offered)) this._sendRelayReady(!relay);
  }

  /** Closes the connection for good; pending calls reject. */
  close() {
    this._shutdown(null);
  }

  // --- connection management ---

  /** Gets the token (asking options.token, with our public key, if it is a function) and notes whether it is bound to our key. */
  async _token() {
    let token = this.options.token;
    if (typeof token === "function") {
      const publicKey = await this.publicKey().catch(() => undefined);
      token = await token({ publicKey });
    }
    const bound = tokenBoundKey(token);
    if (bound && bound !== (await this.publicKey().catch(() => undefined))) {
      throw new Error("the token is bound to another browser key (cnf); mint it for client.publicKey()");
    }
    this._bound = !!bound;
    return token;
  }

  async _connect() {
    const gen = ++this._gen;
    const stale = () => gen !== this._gen || this.state === "closed";
    let pc;
    try {
      const token = await this._token();
      if (stale()) return;
      const mode = this.options.transport;
      const relayedPeer = this.peer;
      if (relayedPeer && mode === "websocket") {
        throw new Error(`peer ${relayedPeer} is reached through relayed signaling, which needs WebRTC (transport is "websocket")`);
      }
      // A peer reached through another (a NAT'd volunteer) has no
      // reachable HTTP port: WebRTC only.
      if (!relayedPeer && mode !== "webrtc" && this._WebSocket) {
        try {
          await this._connectWebSocket(gen, token);
          return;
        } catch (err) {
          if (stale()) return;
          // A peer that answered (a refused token, a full peer) would say
          // the same over WebRTC; one that cannot be reached directly (a
          // NAT'd volunteer) may be reachable through WebRTC.
          if (mode === "websocket" || !this._RTCPeerConnection || !(err instanceof WebSocketUnreachable)) throw err;
        }
      }
      pc = new this._RTCPeerConnection({ iceServers: this.options.iceServers });
      this._pc = pc;
      const dc = pc.createDataChannel(DATA_CHANNEL_LABEL); // ordered, reliable
      dc.binaryType = "arraybuffer";
      this._dc = dc;
      dc.onopen = () => {
        if (stale()) return;
        this._chan = dc;
        this.transport = "webrtc";
        this.signaling = relayedPeer ? "relayed" : "direct";
        this._onOpen(gen);
      };
      dc.onmessage = (ev) => !stale() && this._onMessage(ev.data);
      dc.onclose = () => !stale() && this._onDisconnect(gen, new Error("data channel closed"));
      pc.onconnectionstatechange = () => {
        if (!stale() && pc.connectionState === "failed") this._onDisconnect(gen, new Error("connection failed"));
      };
      await pc.setLocalDescription(await pc.createOffer());
      await gatheringComplete(pc, this.options.gatherTimeout, this.options.iceServers.length === 0);
      if (stale()) return;
      const offerSDP = pc.localDescription.sdp;
      const res = await this._fetch(relayedPeer ? signalURL(this.url, relayedPeer) : this.url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sdp: offerSDP, token: token || undefined }),
      });
      if (!res.ok) {
        const body = await res.json().catch(() => ({}));
        throw new SignalingError(res.status, body.error ?? res.statusText);
      }
      const answer = await res.json();
      if (stale()) return;
      // A relayed answer must be signed by the peer asked for, over our
      // offer: the forwarding peer can neither answer in its place nor
      // swap the DTLS fingerprint.
      if (relayedPeer && !(await verifyRelayedAnswer(relayedPeer, offerSDP, answer))) {
        throw new Error(`the relayed answer is not signed by peer ${relayedPeer}`);
      }
      if (stale()) return;
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
      this._connectTimer = setTimeout(() => {
        if (!stale() && this.state !== "open") this._onDisconnect(gen, new Error("data channel did not open"));
      }, this.options.connectTimeout);
    } catch (err) {
      if (stale()) return;
      // A fixed token the server refused will be refused again.
      if (err instanceof SignalingError && err.status === 401 && typeof this.options.token !== "function") {
        this._shutdown(err);
        return;
      }
      this._onDisconnect(gen, err);
    }
  }

  /**
   * Connects over a WebSocket: the token as the first (text) message, then
   * the peer's ACK 0 opens the session. Resolves once open; rejects with a
   * SignalingError if the peer refused (close codes 4400, 4401, 4503), or a
   * WebSocketUnreachable if it could not be reached at all.
   */
  _connectWebSocket(gen, token) {
    return new Promise((resolve, reject) => {
      const ws = new this._WebSocket(webSocketURL(this.url));
      ws.binaryType = "arraybuffer";
      this._ws = ws;
      let reached = false; // the HTTP upgrade succeeded
      let opened = false; // the peer admitted the session
      const fail = (err) => {
        clearTimeout(timer);
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        try {
          ws.close();
        } catch {
          // closing a failed socket may throw; it is going anyway
        }
        if (this._ws === ws) this._ws = null;
        reject(err);
      };
      const timer = setTimeout(() => {
        if (!opened) fail(reached ? new Error("the peer did not admit the WebSocket in time") : new WebSocketUnreachable("WebSocket did not open in time"));
      }, this.options.connectTimeout);
      ws.onopen = () => {
        reached = true;
        ws.send(token || "");
      };
      ws.onerror = () => {}; // a close event follows, with what is known
      ws.onclose = (ev) => {
        if (!opened) {
          const status = WS_CLOSE_STATUS[ev.code];
          if (status) fail(new SignalingError(status, ev.reason || `WebSocket closed with ${ev.code}`));
          else if (!reached) fail(new WebSocketUnreachable(`WebSocket to ${webSocketURL(this.url)} failed (${ev.code})`));
          else fail(new Error(`WebSocket closed during the handshake: ${ev.code} ${ev.reason}`));
          return;
        }
        if (gen === this._gen) this._onDisconnect(gen, new Error(`WebSocket closed: ${ev.code} ${ev.reason}`.trim()));
      };
      ws.onmessage = (ev) => {
        if (opened) {
          if (gen === this._gen) this._onMessage(ev.data);
          return;
        }
        let f;
        try {
          f = decodeFrame(new Uint8Array(ev.data), MAX_INCOMING_FRAME);
        } catch (err) {
          fail(err);
          return;
        }
        if (f.type !== "ack" || f.req !== 0) {
          fail(new Error(`WebSocket handshake: a ${f.type} frame before the peer's ACK`));
          return;
        }
        opened = true;
        clearTimeout(timer);
        if (gen !== this._gen) return;
        this._chan = ws;
        this.transport = "websocket";
        resolve();
        this._onOpen(gen);
      };
    });
  }

  _onOpen(gen) {
    clearTimeout(this._connectTimer);
    this.state = "open";
    this._attempt = 0;
    const max = this.transport === "webrtc" ? this._pc?.sctp?.maxMessageSize : undefined;
    this._maxFrame = max && Number.isFinite(max) ? Math.min(max, 1 << 20) : 65535;
    for (const topic of this._handlers.keys()) this._sendSubscribe(topic);
    this._probed = false; // a new session: the peer measures it afresh
    if (this.options.relay) this._sendRelayReady(false);
    const outbox = this._outbox;
    this._outbox = [];
    for (const item of outbox) this._transmit(item);
    this._resolveReady();
    if (this.transport === "websocket") this.signaling = "direct";
    this.dispatchEvent(new CustomEvent("open", { detail: { transport: this.transport, url: this.url, peer: this.peer, signaling: this.signaling } }));
  }

  _onDisconnect(gen, error) {
    if (gen !== this._gen || this.state === "closed") return;
    this._gen++; // late events of this connection are now stale
    clearTimeout(this._connectTimer);
    this._members.clear(); // the next peer sends them again
    this._teardown();
    this.state = "connecting";
    // Requests in flight may or may not have reached the server; they
    // fail, and the caller decides. Subscriptions are redone on reconnect.
    for (const [req, p] of this._pending) {
      this._pending.delete(req);
      p.reject(new Error(`connection lost before the server answered: ${error.message}`));
    }
    // Fail over: the next attempt goes to the next peer of the list.
    this._urlIndex = (this._urlIndex + 1) % this.urls.length;
    this.url = this.urls[this._urlIndex];
    this.peer = this._targets[this._urlIndex].peer;
    const { initialDelay, maxDelay, factor } = this.options.reconnect;
    // A full round of the list before backing off further.
    const round = Math.floor(this._attempt++ / this.urls.length);
    const base = Math.min(maxDelay, initialDelay * factor ** round);
    // Half fixed, half random: spreads the reconnects of many browsers
    // after a peer restart, while never retrying immediately.
    const retryIn = Math.round(base / 2 + Math.random() * (base / 2));
    this.dispatchEvent(new CustomEvent("disconnect", { detail: { error, retryIn } }));
    this._retryTimer = setTimeout(() => this._connect(), retryIn);
  }

  _teardown() {
    this._relays.reset();
    const dc = this._dc;
    const pc = this._pc;
    const ws = this._ws;
    this._dc = null;
    this._pc = null;
    this._ws = null;
    this._chan = null;
    if (dc) dc.onopen = dc.onmessage = dc.onclose = null;
    if (pc) pc.onconnectionstatechange = null;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      pc?.close();
      ws?.close(1000);
    } catch {
      // closing a broken connection may throw; it is going anyway
    }
  }

  _shutdown(error) {
    if (this.state === "closed") return;
    this.state = "closed";
    globalThis.removeEventListener?.("pagehide", this._onPageHide);
    globalThis.removeEventListener?.("pageshow", this._onPageShow);
    this._gen++;
    clearTimeout(this._retryTimer);
    clearTimeout(this._connectTimer);
    this._teardown();
    const reason = error ?? new Error("client closed");
    for (const p of this._pending.values()) p.reject(reason);
    this._pending.clear();
    for (const item of this._outbox) item.reject(reason);
    this._outbox = [];
    for (const d of this._ready.values()) d.reject(reason);
    this._ready.clear();
    this._rejectReady(reason);
    this.dispatchEvent(new CustomEvent("close", { detail: { error } }));
  }

  // --- requests ---

  _sendSubscribe(topic) {
    const req = this._takeReq();
    this._pending.set(req, {
      resolve: () => {
        this._ready.get(topic)?.resolve();
        this._ready.delete(topic);
      },
      reject: (err) => {
        if (err instanceof ServerError) {
          // Refused (forbidden, invalid, too many): drop the handlers too.
          this._handlers.delete(topic);
          const d = this._ready.get(topic);
          this._ready.delete(topic);
          if (d) d.reject(err);
          else this._emitError(err);
        }
        // A lost connection is retried by the resubscribe on reconnect.
      },
    });
    // Resume after the last message delivered, if any (or options.since).
    this._send(encodeFrame({ type: "subscribe", req, topic, since: this._cursors.get(topic) }));
  }

  _request(frame) {
    return new Promise((resolve, reject) => {
      const item = { frame, resolve, reject };
      if (this.state === "open") {
        this._transmit(item);
      } else if (this._outbox.length >= this.options.maxQueuedPublishes) {
        reject(new Error("not connected, and too many calls are waiting"));
      } else {
        this._outbox.push(item);
      }
    });
  }

  _transmit(item) {
    const req = this._takeReq();
    let bytes;
    try {
      bytes = encodeFrame({ ...item.frame, req });
    } catch (err) {
      item.reject(err);
      return;
    }
    if (bytes.length > this._maxFrame) {
      item.reject(new RangeError(`frame of ${bytes.length} bytes, the peer accepts ${this._maxFrame}`));
      return;
    }
    const timer = setTimeout(() => {
      if (this._pending.delete(req)) item.reject(new Error(`${item.frame.type} timed out`));
    }, this.options.requestTimeout);
    this._pending.set(req, {
      resolve: (value) => {
        clearTimeout(timer);
        item.resolve(value);
      },
      reject: (err) => {
        clearTimeout(timer);
        item.reject(err);
      },
    });
    this._send(bytes);
  }

  /** Tells the peer this browser may relay (RELAY-READY), or no longer (withdraw: 0 children). */
  _sendRelayReady(withdraw) {
    const offer = relayOffer(this.options.relay);
    const f = withdraw || !offer ? { type: "relay-ready", maxChildren: 0, upload: 0 } : { type: "relay-ready", ...offer };
    const ready = () => this._request(f).catch((err) => this._emitError(err));
    if (f.maxChildren > 0 && !f.metered && !this._probed) {
      this._probed = true;
      // The READY goes after the probe whatever its outcome: a peer that
      // predates probes needs none; one that failed to measure does not
      // invite, and the READY still says the user agreed. It says what
      // the page offers by then: setRelay may have changed or withdrawn
      // the offer meanwhile (a withdrawal went out at once).
      const gen = this._gen;
      this._probe()
        .catch((err) => {
          // A peer without relays refuses the READY too, which reports it.
          if (!(err instanceof ServerError && err.code === ErrorCode.RELAY_REFUSED)) this._emitError(err);
        })
        .then(() => {
          if (this._gen === gen && this.state === "open" && this.options.relay) this._sendRelayReady(false);
        });
      return;
    }
    ready();
  }

  /**
   * The upload probe, once per connection: a RELAY-PROBE asking for it,
   * which the peer answers with a nonce; then PROBE_CHUNKS chunks of
   * padding that begin with the nonce, back to back, the last one
   * acknowledged. The peer measures this browser's upload by how fast they
   * arrive after its nonce, and invites no browser it has not measured.
   */
  async _probe() {
    if (MAX_PROBE_CHUNK + 11 > this._maxFrame) throw new RangeError(`the peer takes frames of ${this._maxFrame} bytes, too small for an upload probe`);
    const start = this._request({ type: "relay-probe" });
    start.catch(() => {}); // when aborted, its own timeout ends it later, unheard
    const reply = await Promise.race([start, new Promise((_, reject) => (this._abortProbe = reject))]).finally(
      () => (this._abortProbe = null),
    );
    if (!(reply?.padding instanceof Uint8Array) || reply.padding.length !== PROBE_NONCE_SIZE) {
      throw new FrameError("the peer answered the upload probe without a nonce");
    }
    const padding = new Uint8Array(MAX_PROBE_CHUNK);
    padding.set(reply.padding);
    for (let i = 0; i < PROBE_CHUNKS - 1; i++) this._send(encodeFrame({ type: "relay-probe", padding }));
    await this._request({ type: "relay-probe", last: true, padding });
  }

  _takeReq() {
    const req = this._nextReq;
    this._nextReq = this._nextReq >= 0xffffffff ? 1 : this._nextReq + 1; // 0 means "no ACK"
    return req;
  }

  _send(bytes) {
    try {
      this._chan.send(bytes);
    } catch (err) {
      // The channel is failing; its close event triggers the reconnect.
      this._emitError(err);
    }
  }

  // --- incoming frames ---

  _onMessage(data) {
    if (typeof data === "string") {
      this._emitError(new FrameError("text message from the server"));
      return;
    }
    let f;
    try {
      f = decodeFrame(new Uint8Array(data), MAX_INCOMING_FRAME);
    } catch (err) {
      this._emitError(err);
      return;
    }
    if (f.type === "batch") for (const item of f.items) this._handle(item);
    else this._handle(f);
  }

  _handle(f) {
    switch (f.type) {
      case "message":
        this._deliver(f);
        return;
      case "relay-invite":
      case "attach":
      case "signal":
      case "record":
      case "head":
        this._relays.onFrame(f);
        return;
      case "presence": {
        if (!this._handlers.has(f.topic)) return;
        let m = this._members.get(f.topic);
        if (!m) this._members.set(f.topic, (m = new Map()));
        const member = { id: f.id, peer: f.from };
        const key = `${f.id} ${f.from}`;
        if (f.joined === m.has(key)) return; // nothing changes
        if (f.joined) m.set(key, member);
        else m.delete(key);
        this.dispatchEvent(new CustomEvent("presence", { detail: { topic: f.topic, member, joined: f.joined, count: m.size } }));
        return;
      }
      case "ack": {
        const p = this._pending.get(f.req);
        this._pending.delete(f.req);
        p?.resolve();
        return;
      }
      case "relay-probe": {
        // The peer's nonce, answering the start of an upload probe.
        const p = this._pending.get(f.req);
        this._pending.delete(f.req);
        p?.resolve(f);
        return;
      }
      case "error": {
        const err = new ServerError(f.code, f.topic, f.reason);
        const p = f.req ? this._pending.get(f.req) : undefined;
        if (p) {
          this._pending.delete(f.req);
          p.reject(err);
          return;
        }
        if (!f.req && f.code === ErrorCode.BAD_FRAME && this._abortProbe) {
          // A peer that predates probes cannot read the start's request
          // ID: this is its answer, and the probe ends now, not at the
          // request timeout.
          this._abortProbe(err);
          return;
        }
        if (f.code === ErrorCode.SUBSCRIPTION_LOST && this._handlers.has(f.topic) && this.state === "open") {
          this._sendSubscribe(f.topic);
        }
        if (f.code === ErrorCode.GAP) {
          this.dispatchEvent(new CustomEvent("gap", { detail: { topic: f.topic, recovered: false } }));
          return;
        }
        // TOKEN_EXPIRED: the server closes the channel next, and the
        // reconnect asks options.token for a fresh token.
        this._emitError(err);
        return;
      }
      default:
        this._emitError(new FrameError(`unexpected ${f.type} frame from the server`));
    }
  }

  /** Hands a MESSAGE, or a RECORD the relay code accepted, to the topic's handlers. */
  _deliver(f) {
    const set = this._handlers.get(f.topic);
    if (!set) return; // unsubscribed; already on its way
    const msg = new Message(f.topic, f.id, f.from, f.time, f.payload);
    const cursor = this._cursors.get(f.topic);
    if (f.id && (!cursor || !parsePosition(cursor) || comparePositions(f.id, cursor) > 0)) this._cursors.set(f.topic, f.id);
    for (const h of [...set]) {
      try {
        h(msg);
      } catch (err) {
        this._emitError(err);
      }
    }
  }

  _emitError(error) {
    this.dispatchEvent(new CustomEvent("error", { detail: { error } }));
  }
}

// --- browser relays (docs/browser-protocol.md, section 8) ---
//
// Every client can be fed a topic by another browser (a child); a client
// whose app and user opted in (options.relay) can feed others (a relay).
// The peer signs every message of a relayed topic as a RECORD with a
// per-topic sequence number; a child verifies each one (WebCrypto
// Ed25519) against the peer's relay key from ATTACH or RELAY-INVITE, so
// a relay can drop or stall but never forge, alter or reorder undetected.
// This is a port of the Go client's webrtc/relayclient.go.

/** Label of the data channel between two browsers. */
const RELAY_LABEL = "immense-relay";
/** Records a relay keeps per topic to resume a child from an earlier position (clientBacklog in Go). */
const RELAY_BACKLOG = 1024;
/** How long after the last host candidate an offer or answer goes, when only host candidates can come (gatheringComplete). */
const HOST_SETTLE = 25;
/** How long a link to a relay may take to open before the child reports it refused (linkTimeout in Go); also how long a relay waits for a child's HELLO. */
const LINK_TIMEOUT = 10_000;
/** HEAD intervals in a row a child behind the peer's HEAD gets nothing before it reports its relay stalled: more than one, so that an SCTP retransmission timeout on a loaded link is not taken for a stall (stallHeads in Go). */
const STALL_HEADS = 2;
/** How far (bytes queued, not yet sent) a child may fall behind before its relay closes its link (maxChildBuffered in Go). */
const MAX_CHILD_BUFFERED = 1 << 20;
/** Upload a relay offers, bytes/s, when the app gives none: 256 KiB/s, a small share of a home uplink. */
const DEFAULT_RELAY_UPLOAD = 256 << 10;
/** Children a relay feeds per topic when the app gives no number (the peer caps it too: Relay.MaxChildren, default 8). */
const DEFAULT_RELAY_CHILDREN = 4;
/** Largest BATCH of backlog records a relay sends a child at once. */
const RELAY_BATCH = 64 << 10;

const RECORD_CONTEXT = utf8.encode("immense/relay-record/v1\0");

/**
 * The bytes a peer signs for a RECORD (recordSigned in Go):
 * "immense/relay-record/v1" 0x00 topic 0x00 seq (u64) len(id) (u16) id
 * len(from) (u16) from time (i64 µs) payload.
 * @param {string} topic
 * @param {number} seq
 * @param {string} id
 * @param {string} from
 * @param {number} time microseconds since the Unix epoch
 * @param {Uint8Array} payload
 */
export function recordSignedBytes(topic, seq, id, from, time, payload) {
  const t = utf8.encode(topic);
  const i = utf8.encode(id);
  const f = utf8.encode(from);
  const out = new Uint8Array(RECORD_CONTEXT.length + t.length + 1 + 8 + 2 + i.length + 2 + f.length + 8 + payload.length);
  const w = new Writer(out);
  w.raw(RECORD_CONTEXT);
  w.raw(t);
  w.u8(0);
  w.u64(seq);
  w.str16(i);
  w.str16(f);
  w.i64(time);
  w.raw(payload);
  return out;
}

/**
 * Whether a decoded RECORD frame is signed by key, the peer's relay key
 * (32 raw bytes, or a CryptoKey imported for Ed25519 "verify").
 * @param {Uint8Array | CryptoKey} key
 * @param {Frame} record
 * @returns {Promise<boolean>}
 */
export async function verifyRecord(key, record) {
  if (record?.type !== "record" || !(record.sig instanceof Uint8Array)) return false;
  try {
    const k = key instanceof Uint8Array ? await crypto.subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"]) : key;
    const signed = recordSignedBytes(record.topic, record.seq, record.id, record.from, record.time, record.payload);
    return await crypto.subtle.verify("Ed25519", k, record.sig, signed);
  } catch {
    return false;
  }
}

/** A token bucket: rate bytes/s, at most burst at once (golang.org/x/time/rate's AllowN). */
class TokenBucket {
  constructor(rate, burst) {
    this.rate = rate;
    this.burst = burst;
    this.tokens = burst;
    this.at = performance.now();
  }
  take(n) {
    if (n > this.burst) this.burst = n;
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.rate);
    this.at = now;
    if (n > this.tokens) return false;
    this.tokens -= n;
    return true;
  }
}

/** What the page offers to relay: options.relay normalised. */
function relayOffer(opts) {
  if (!opts) return null;
  const conn = globalThis.navigator?.connection;
  return {
    maxChildren: Math.max(0, Math.min(255, Math.trunc(opts.maxChildren ?? DEFAULT_RELAY_CHILDREN))),
    upload: Math.max(0, Math.min(0xffffffff, Math.trunc(opts.upload ?? DEFAULT_RELAY_UPLOAD))),
    // Never relay on a link the browser says is metered.
    metered: !!opts.metered || conn?.type === "cellular" || conn?.saveData === true,
  };
}

/** A client's relay state: one entry per topic fed through the relay protocol. */
class Relays {
  /** @param {Client} client */
  constructor(client) {
    this.c = client;
    /** @type {Map<string, any>} */
    this.topics = new Map();
    /** Bytes forwarded to children. */
    this.forwarded = 0;
    /** Tests only: "forge" alters each forwarded payload, "stall" forwards nothing. */
    this.misbehave = null;
    this._statusQueued = false;
  }

  topic(name) {
    let t = this.topics.get(name);
    if (!t) {
      t = {
        name,
        dead: false,
        keyHex: "",
        key: null, // the peer's relay key, raw
        cryptoKey: null, // its WebCrypto import, a promise
        last: 0, // last sequence accepted (0: none yet)
        prevHead: 0, // the last HEAD
        lastAtHead: 0, // last when it came
        stuck: 0, // HEAD intervals without progress while behind
        feed: null, // our relay's link; null: the peer
        relaying: false,
        maxChildren: 0,
        bucket: null, // the upload cap
        backlog: [], // {seq, bytes}, oldest first
        children: new Map(), // link id -> {pc, dc, ready, timer}
        queue: Promise.resolve(),
      };
      this.topics.set(name, t);
    }
    return t;
  }

  /** Runs fn after everything queued for t: records are verified (asynchronously) and applied in arrival order. */
  run(t, fn) {
    t.queue = t.queue
      .then(() => (t.dead ? undefined : fn()))
      .catch((err) => this.c._emitError(err));
    return t.queue;
  }

  /** A relay frame from the peer. */
  onFrame(f) {
    const t = this.topic(f.topic);
    this.run(t, () => this.onPeerFrame(t, f));
  }

  async onPeerFrame(t, f) {
    switch (f.type) {
      case "relay-invite": {
        const offer = relayOffer(this.c.options.relay);
        if (!offer) return; // never asked for
        this.setKey(t, f.key);
        t.relaying = true;
        t.maxChildren = Math.min(f.maxChildren, offer.maxChildren);
        const rate = Math.min(f.uploadCap, offer.upload);
        // A second's worth of burst, raised by take() to a larger record,
        // which could never pass otherwise.
        t.bucket = new TokenBucket(rate, rate);
        this.changed();
        return;
      }
      case "attach":
        this.setKey(t, f.key);
        t.last = Math.max(t.last, f.after);
        t.prevHead = 0;
        this.dropFeed(t);
        if (f.link === 0) {
          this.c._send(encodeFrame({ type: "from", req: 0, topic: t.name, after: t.last }));
        } else {
          t.feed = { id: f.link, pc: null, dc: null, open: false, got: false, timer: null };
          this.openLink(t, t.feed);
        }
        this.changed();
        return;
      case "signal":
        this.onSignal(t, f);
        return;
      case "record":
        await this.accept(t, f, null);
        return;
      case "head":
        // Stalled: behind the previous HEAD and nothing came since. A
        // relay that is slow but moving is left alone.
        if (!t.feed || !t.feed.open) {
          t.prevHead = 0; // not judged before the link is open
          return;
        }
        if (t.prevHead > 0 && t.last < t.prevHead && t.last === t.lastAtHead) {
          if (++t.stuck >= STALL_HEADS) {
            this.reportFeed(t, "stalled");
            t.stuck = 0;
          }
        } else {
          t.stuck = 0;
        }
        t.prevHead = f.seq;
        t.lastAtHead = t.last;
        return;
    }
  }

  setKey(t, key) {
    const h = hexOf(key);
    if (h === t.keyHex) return;
    t.keyHex = h;
    t.key = key.slice();
    t.cryptoKey = crypto.subtle.importKey("raw", t.key, { name: "Ed25519" }, false, ["verify"]);
    t.cryptoKey.catch(() => {}); // no Ed25519 here: see verify
  }

  /**
   * Whether record f is the peer's. A browser whose WebCrypto lacks
   * Ed25519 cannot tell: it takes records from the peer's own connection
   * (which it trusts with every message anyway) and none from a relay.
   */
  async verify(t, f, link) {
    if (!t.cryptoKey || f.topic !== t.name) return false;
    let key;
    try {
      key = await t.cryptoKey;
    } catch {
      return link === null;
    }
    return verifyRecord(key, f);
  }

  /**
   * Checks a record from the peer (link null) or our relay and, if it is
   * the next one, delivers and forwards it.
   */
  async accept(t, f, link) {
    if (link && t.feed !== link) return; // from a link we left
    const ok = await this.verify(t, f, link);
    if (t.dead || (link && t.feed !== link)) return;
    if (!ok) {
      if (!link) return;
      // Without Ed25519 nothing a relay sends can be checked: leave it
      // without accusing it.
      const noEd25519 = !t.cryptoKey || (await t.cryptoKey.then(() => false, () => true));
      if (t.feed === link) this.reportFeed(t, noEd25519 ? "refused" : "forged", noEd25519 ? undefined : encodeFrame(f));
      return;
    }
    const seq = f.seq;
    if (t.last !== 0 && seq <= t.last) return; // already had it
    if (t.last !== 0 && seq > t.last + 1 && link) {
      // A jump on a link's first record is a relay whose backlog does
      // not reach back to us (it relays since recently), not a drop.
      this.reportFeed(t, link.got ? "dropped" : "refused");
      return;
    }
    if (link && !link.got) {
      link.got = true;
      this.changed();
    }
    t.last = seq;
    // Children first: a page slow to handle its messages must not hold up
    // the browsers this one feeds.
    if (t.relaying) {
      const bytes = encodeFrame(f); // canonical: the bytes the peer sent
      t.backlog.push({ seq, bytes });
      if (t.backlog.length > 2 * RELAY_BACKLOG) t.backlog = t.backlog.slice(-RELAY_BACKLOG);
      this.forward(t, bytes);
    }
    this.c._deliver(f);
  }

  /** Sends one record to every ready child, within the upload cap. */
  forward(t, bytes) {
    const b = this.tamper(bytes);
    if (!b) return;
    for (const [id, ch] of t.children) {
      if (!ch.ready) continue;
      if (!t.bucket.take(b.length) || ch.dc.bufferedAmount > MAX_CHILD_BUFFERED) {
        // Over the cap, or a child that does not keep up: close its link
        // rather than exceed; it reports us and is moved.
        t.children.delete(id);
        closeQuietly(ch.pc);
        this.changed();
        continue;
      }
      try {
        ch.dc.send(b);
        this.forwarded += b.length;
      } catch {
        // a closing channel: its close event removes the child
      }
    }
  }

  /** What a misbehaving relay (tests) makes of a record it forwards: null to drop it. */
  tamper(bytes) {
    if (this.misbehave === "stall") return null;
    if (this.misbehave === "forge") {
      const b = bytes.slice();
      b[b.length - SIG_SIZE - 1] ^= 0xff; // the payload's last byte
      return b;
    }
    return bytes;
  }

  /** Reports our relay to the peer and leaves it; the peer answers with an ATTACH. */
  reportFeed(t, reason, evidence) {
    if (!t.feed) return;
    this.c._send(encodeFrame({ type: "report", req: 0, topic: t.name, link: t.feed.id, reason, evidence }));
    this.c.dispatchEvent(new CustomEvent("relayreport", { detail: { topic: t.name, link: t.feed.id, reason } }));
    this.dropFeed(t);
    this.changed();
  }

  dropFeed(t) {
    const l = t.feed;
    t.feed = null;
    if (!l) return;
    clearTimeout(l.timer);
    closeQuietly(l.pc);
  }

  /** Connects to the relay of link l (as the offerer, no trickle) and sends HELLO once the channel opens. */
  async openLink(t, l) {
    const fail = () => this.run(t, () => t.feed === l && this.reportFeed(t, "refused"));
    try {
      const pc = new this.c._RTCPeerConnection({ iceServers: this.c.options.iceServers });
      l.pc = pc;
      if (t.feed !== l) return closeQuietly(pc);
      const dc = pc.createDataChannel(RELAY_LABEL); // ordered, reliable
      dc.binaryType = "arraybuffer";
      l.dc = dc;
      l.timer = setTimeout(() => !l.open && fail(), LINK_TIMEOUT);
      dc.onopen = () =>
        this.run(t, () => {
          if (t.feed !== l) return;
          dc.send(encodeFrame({ type: "hello", topic: t.name, link: l.id, after: t.last }));
          l.open = true;
          clearTimeout(l.timer);
          this.changed();
        });
      dc.onmessage = (ev) => this.run(t, () => this.onLinkMessage(t, l, ev.data));
      dc.onclose = () => this.linkLost(t, l);
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === "failed" || pc.connectionState === "closed") this.linkLost(t, l);
      };
      await pc.setLocalDescription(await pc.createOffer());
      await gatheringComplete(pc, this.c.options.gatherTimeout, this.c.options.iceServers.length === 0);
      if (t.feed !== l || t.dead) return;
      this.c._send(encodeFrame({ type: "signal", topic: t.name, link: l.id, kind: "offer", data: pc.localDescription.sdp }));
    } catch {
      fail();
    }
  }

  linkLost(t, l) {
    this.run(t, () => t.feed === l && this.reportFeed(t, "gone"));
  }

  /** A frame from our relay: only RECORDs (or BATCHes of them) are valid. */
  async onLinkMessage(t, l, data) {
    if (t.feed !== l) return;
    let f;
    try {
      if (typeof data === "string") throw new FrameError("text on a relay link");
      f = decodeFrame(new Uint8Array(data), MAX_INCOMING_FRAME);
    } catch {
      this.reportFeed(t, "forged");
      return;
    }
    for (const item of f.type === "batch" ? f.items : [f]) {
      if (item.type !== "record") {
        this.reportFeed(t, "forged");
        return;
      }
      await this.accept(t, item, l);
      if (t.feed !== l) return; // reported
    }
  }

  /** An answer for our feed, or an offer from a would-be child. */
  onSignal(t, f) {
    switch (f.kind) {
      case "answer": {
        const l = t.feed;
        if (l && l.id === f.link && l.pc) {
          l.pc.setRemoteDescription({ type: "answer", sdp: f.data }).catch(() => this.run(t, () => t.feed === l && this.reportFeed(t, "refused")));
        }
        return;
      }
      case "close":
        if (t.feed && t.feed.id === f.link) this.reportFeed(t, "refused");
        return;
      case "offer":
        if (!t.relaying || t.children.size >= t.maxChildren) {
          this.c._send(encodeFrame({ type: "signal", topic: t.name, link: f.link, kind: "close" }));
          return;
        }
        this.answerLink(t, f.link, f.data);
        return;
    }
    // "candidate": descriptions carry every candidate (no trickle).
  }

  /** Accepts a child's offer on link id. */
  async answerLink(t, id, offer) {
    const refuse = () => !t.dead && this.c._send(encodeFrame({ type: "signal", topic: t.name, link: id, kind: "close" }));
    let pc;
    try {
      pc = new this.c._RTCPeerConnection({ iceServers: this.c.options.iceServers });
      const ch = { pc, dc: null, ready: false, timer: null };
      pc.ondatachannel = (ev) => {
        const dc = ev.channel;
        if (dc.label !== RELAY_LABEL) return closeQuietly(dc);
        dc.binaryType = "arraybuffer";
        dc.onmessage = (m) => this.run(t, () => this.onHello(t, id, ch, dc, m.data));
        dc.onclose = () => this.childLost(t, id, ch);
      };
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === "failed" || pc.connectionState === "closed") this.childLost(t, id, ch);
      };
      await pc.setRemoteDescription({ type: "offer", sdp: offer });
      await pc.setLocalDescription(await pc.createAnswer());
      await gatheringComplete(pc, this.c.options.gatherTimeout, this.c.options.iceServers.length === 0);
      if (t.dead || !t.relaying || t.children.size >= t.maxChildren) {
        closeQuietly(pc);
        refuse();
        return;
      }
      t.children.set(id, ch);
      // A child that never says HELLO does not hold a slot.
      ch.timer = setTimeout(() => this.run(t, () => !ch.ready && this.dropChild(t, id, ch)), LINK_TIMEOUT);
      this.c._send(encodeFrame({ type: "signal", topic: t.name, link: id, kind: "answer", data: pc.localDescription.sdp }));
    } catch {
      closeQuietly(pc);
      refuse();
    }
  }

  /** A child's first frame, HELLO: send it the records after the position it names, then live ones. Any other frame closes the link. */
  onHello(t, id, ch, dc, data) {
    let f = null;
    try {
      if (typeof data !== "string") f = decodeFrame(new Uint8Array(data), MAX_INCOMING_FRAME);
    } catch {
      // f stays null: the link is closed below
    }
    if (t.children.get(id) !== ch || ch.ready || f?.type !== "hello" || f.topic !== t.name || f.link !== id) {
      this.dropChild(t, id, ch);
      return;
    }
    clearTimeout(ch.timer);
    ch.dc = dc;
    ch.ready = true;
    let items = [];
    let size = 0;
    // The replay counts against the upload cap too: one that would exceed
    // it closes the link, and the child is moved to the peer, whose budget
    // it is.
    let over = false;
    const flush = () => {
      if (items.length === 0 || over) return;
      const b = items.length === 1 ? items[0] : encodeFrame({ type: "batch", items });
      items = [];
      size = 0;
      if (!t.bucket.take(b.length)) {
        over = true;
        return;
      }
      dc.send(b);
      this.forwarded += b.length;
    };
    for (const rec of t.backlog) {
      const b = rec.seq > f.after ? this.tamper(rec.bytes) : null;
      if (!b) continue;
      if (size + b.length + 4 > RELAY_BATCH) flush();
      items.push(b);
      size += b.length + 4;
    }
    flush();
    if (over) this.dropChild(t, id, ch);
    this.changed();
  }

  dropChild(t, id, ch) {
    if (t.children.get(id) === ch) {
      t.children.delete(id);
      this.changed();
    }
    clearTimeout(ch.timer);
    closeQuietly(ch.pc);
  }

  childLost(t, id, ch) {
    if (t.children.get(id) === ch) this.dropChild(t, id, ch);
  }

  /** Stops relaying every topic (the user withdrew): the children's links close and the peer moves them. */
  withdraw() {
    for (const t of this.topics.values()) {
      t.relaying = false;
      for (const [id, ch] of t.children) this.dropChild(t, id, ch);
    }
    this.changed();
  }

  /** Forgets topic: its links close. */
  drop(name) {
    const t = this.topics.get(name);
    if (!t) return;
    this.topics.delete(name);
    this.kill(t);
    this.changed();
  }

  /** Forgets every topic (the session to the peer ended: the next one starts plain, and the peer attaches it again). */
  reset() {
    if (this.topics.size === 0) return;
    for (const t of this.topics.values()) this.kill(t);
    this.topics.clear();
    this.changed();
  }

  kill(t) {
    t.dead = true;
    this.dropFeed(t);
    for (const ch of t.children.values()) {
      clearTimeout(ch.timer);
      closeQuietly(ch.pc);
    }
    t.children.clear();
  }

  status() {
    const topics = [...this.topics.values()].map((t) => ({
      topic: t.name,
      fedBy: t.feed ? (t.feed.open ? "relay" : "attaching") : "peer",
      link: t.feed?.id ?? 0,
      seq: t.last,
      relaying: t.relaying,
      children: [...t.children.values()].filter((ch) => ch.ready).length,
    }));
    return {
      offered: !!relayOffer(this.c.options.relay),
      topics,
      children: topics.reduce((n, t) => n + t.children, 0),
      forwardedBytes: this.forwarded,
    };
  }

  /** Dispatches one "relay" event per task, however many changes it made. */
  changed() {
    if (this._statusQueued) return;
    this._statusQueued = true;
    queueMicrotask(() => {
      this._statusQueued = false;
      this.c.dispatchEvent(new CustomEvent("relay", { detail: this.status() }));
    });
  }
}

function hexOf(b) {
  return Array.from(b, (v) => v.toString(16).padStart(2, "0")).join("");
}

function closeQuietly(x) {
  try {
    x?.close();
  } catch {
    // closing a failed connection may throw; it is going anyway
  }
}

const SIGNED_CONTEXT = utf8.encode("immense/browser-publish/v1\0");

/** The bytes a browser signs to publish payload on topic at time (ms); internal/browsersig in Go. */
export function signedBytes(topic, time, payload) {
  const t = utf8.encode(topic);
  const out = new Uint8Array(SIGNED_CONTEXT.length + t.length + 1 + 8 + payload.length);
  out.set(SIGNED_CONTEXT, 0);
  out.set(t, SIGNED_CONTEXT.length);
  const off = SIGNED_CONTEXT.length + t.length + 1;
  new DataView(out.buffer).setBigInt64(off, BigInt(Math.trunc(time)));
  out.set(payload, off + 8);
  return out;
}

/** The key pair given, or a new non-extractable Ed25519 one. */
async function browserKeyPair(given) {
  if (given) return given;
  return crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
}

/** The base64url public key a token is bound to (its cnf.jwk.x), or "" for a bearer token. Only reads: the peer verifies. */
export function tokenBoundKey(token) {
  if (typeof token !== "string") return "";
  const parts = token.split(".");
  if (parts.length !== 3) return "";
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(utf8dec.decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))));
    return claims?.cnf?.jwk?.x ?? "";
  } catch {
    return "";
  }
}

const ANSWER_CONTEXT = utf8.encode("immense/signal-answer/v1\0");

/** The bytes a peer signs for a relayed answer (AnswerSignedBytes in Go): the context, SHA-256 of the offer, the answer. */
export async function answerSignedBytes(offerSDP, answerSDP) {
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", utf8.encode(offerSDP)));
  const a = utf8.encode(answerSDP);
  const out = new Uint8Array(ANSWER_CONTEXT.length + h.length + a.length);
  out.set(ANSWER_CONTEXT, 0);
  out.set(h, ANSWER_CONTEXT.length);
  out.set(a, ANSWER_CONTEXT.length + h.length);
  return out;
}

/** Whether answer ({sdp, peer, sig}) is signed by peerID's Ed25519 key over offerSDP and the answer. */
export async function verifyRelayedAnswer(peerID, offerSDP, answer) {
  if (answer?.peer !== peerID || typeof answer.sdp !== "string" || typeof answer.sig !== "string") return false;
  try {
    const key = await crypto.subtle.importKey("raw", peerPublicKey(peerID), { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify("Ed25519", key, fromBase64url(answer.sig), await answerSignedBytes(offerSDP, answer.sdp));
  } catch {
    return false;
  }
}

// An Ed25519 peer ID is base58btc of an identity multihash (0x00, length
// 36) of the protobuf public key: field 1 key type 1 (Ed25519), field 2
// the 32 key bytes.
const ED25519_PEER_PREFIX = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
const BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/** The raw Ed25519 public key in a peer ID ("12D3KooW..."); throws for other kinds of ID. */
export function peerPublicKey(peerID) {
  const b = base58Decode(peerID);
  if (b.length !== ED25519_PEER_PREFIX.length + 32 || ED25519_PEER_PREFIX.some((v, i) => b[i] !== v)) {
    throw new Error(`peer ID ${peerID} does not hold an Ed25519 key`);
  }
  return b.subarray(ED25519_PEER_PREFIX.length);
}

function base58Decode(s) {
  if (typeof s !== "string" || s.length === 0 || s.length > 128) throw new Error("bad base58");
  let n = 0n;
  for (const c of s) {
    const v = BASE58.indexOf(c);
    if (v < 0) throw new Error("bad base58");
    n = n * 58n + BigInt(v);
  }
  const bytes = [];
  while (n > 0n) {
    bytes.unshift(Number(n & 0xffn));
    n >>= 8n;
  }
  for (const c of s) {
    if (c !== "1") break;
    bytes.unshift(0);
  }
  return Uint8Array.from(bytes);
}

function fromBase64url(s) {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {}); // callers may drop it; a refusal is then an "error" event
  return { promise, resolve, reject };
}

function toBytes(data) {
  if (typeof data === "string") return utf8.encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError("data must be a string, Uint8Array, ArrayBuffer or ArrayBufferView");
}

/**
 * Resolves once pc's ICE gathering is complete, or after timeout (offering
 * what was gathered: host candidates come first). With hostOnly (no STUN or
 * TURN server configured, so only host candidates can come, and they come
 * together) it resolves HOST_SETTLE after the last candidate instead:
 * Chromium reports the host candidates within about 10 ms and completes
 * gathering about 110 ms later, which was three quarters of its time to
 * connect (BenchmarkBrowserConnect).
 */
function gatheringComplete(pc, timeout, hostOnly = false) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, timeout);
    let settle = null;
    function check() {
      if (pc.iceGatheringState === "complete") done();
    }
    function candidate(e) {
      clearTimeout(settle);
      if (!e.candidate) done();
      else settle = setTimeout(done, HOST_SETTLE);
    }
    function done() {
      clearTimeout(timer);
      clearTimeout(settle);
      pc.removeEventListener("icegatheringstatechange", check);
      pc.removeEventListener("icecandidate", candidate);
      resolve();
    }
    pc.addEventListener("icegatheringstatechange", check);
    if (hostOnly) pc.addEventListener("icecandidate", candidate);
  });
}
