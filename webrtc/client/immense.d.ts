// Types of the Immense browser client (immense.js).

/** Version byte of every frame. */
export declare const FRAME_VERSION: 1;
/** Longest topic name, in bytes. */
export declare const MAX_TOPIC_LENGTH: 128;
/** Path of the signaling endpoint on a peer. */
export declare const OFFER_PATH: "/v1/webrtc/offer";

/** Codes of ERROR frames sent by the server. */
export declare const ErrorCode: Readonly<{
  BAD_FRAME: 1;
  UNSUPPORTED_VERSION: 2;
  FRAME_TOO_LARGE: 3;
  INVALID_TOPIC: 4;
  FORBIDDEN: 5;
  TOO_MANY_SUBSCRIPTIONS: 6;
  RATE_LIMITED: 7;
  PUBLISH_FAILED: 8;
  UNEXPECTED_FRAME: 9;
  SUBSCRIPTION_LOST: 10;
  TOKEN_EXPIRED: 11;
  MESSAGES_DROPPED: 12;
  INTERNAL: 13;
  /** A resumed subscription lost messages: its position is older than the peer's history. */
  GAP: 14;
  /** Relays are off on this peer, or a relay frame named a link or topic the session is no end of. */
  RELAY_REFUSED: 15;
}>;
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** An ERROR frame from the server. */
export declare class ServerError extends Error {
  readonly name: "ServerError";
  readonly code: number;
  /** The code's name, e.g. "forbidden". */
  readonly codeName: string;
  /** The topic concerned, or "". */
  readonly topic: string;
  readonly reason: string;
}

/** The peer refused the offer: 401 for the token, 503 when full. */
export declare class SignalingError extends Error {
  readonly name: "SignalingError";
  readonly status: number;
}

/** A frame that does not decode. */
export declare class FrameError extends Error {
  readonly name: "FrameError";
}

/** A message of a subscribed topic. */
export declare class Message {
  readonly topic: string;
  /** Identifies the message: its stream position "<unix ns>-<sequence>-<publishing peer>", which a subscription resumes after. */
  readonly id: string;
  /** Sender as the peer verified it: an app peer's ID, or "token:" and a browser's token subject (the publishing peer's ID, unverified, on open topics). */
  readonly from: string;
  /** Publisher's clock, microseconds since the Unix epoch; 0 if unknown. */
  readonly timeMicros: number;
  /** The payload. */
  readonly data: Uint8Array;
  /** Publication time, or null if unknown. */
  readonly time: Date | null;
  /** The payload decoded as UTF-8. */
  readonly text: string;
}

export type MessageHandler = (msg: Message) => void;

/** A token, or a function returning one; a function is called on every
 * (re)connect, so it can fetch a fresh token from the app server, and is
 * given the browser's public key (base64url Ed25519, undefined where
 * WebCrypto lacks Ed25519) so that the server can bind the token to it
 * (its "cnf" claim): the client then signs every publish, and no peer that
 * relays or receives its messages can publish with the token. */
export type TokenSource = string | ((key: { publicKey?: string }) => string | Promise<string>);

export interface ReconnectOptions {
  /** Delay before the first retry, in ms (default 500). */
  initialDelay?: number;
  /** Longest delay between retries, in ms (default 30000). */
  maxDelay?: number;
  /** Growth of the delay per failed attempt (default 2). */
  factor?: number;
}

export interface ConnectOptions {
  /** How to reach the peer: "auto" (default) tries a WebSocket first and
   * falls back to WebRTC when the peer cannot be reached directly (a NAT'd
   * volunteer); "websocket" or "webrtc" use only that. A {url, peer} target
   * is always reached over WebRTC, with relayed signaling ("websocket"
   * refuses it). Client.transport and Client.signaling say which is in use. */
  transport?: "auto" | "websocket" | "webrtc";
  /** Replaces globalThis.WebSocket (tests, non-browser runtimes). */
  WebSocket?: typeof WebSocket;
  /** Token proving what the browser may read and write; omit on a devnet. */
  token?: TokenSource;
  /** STUN/TURN servers for the browser's side of the connection. */
  iceServers?: RTCIceServer[];
  /** How long a publish or unsubscribe waits for the server, in ms (default 10000). */
  requestTimeout?: number;
  /** How long the data channel may take to open after the answer, in ms (default 15000). */
  connectTimeout?: number;
  /** Longest wait for ICE gathering before offering what was found, in ms (default 5000). */
  gatherTimeout?: number;
  /** Publishes kept while disconnected (default 256); more are refused. */
  maxQueuedPublishes?: number;
  reconnect?: ReconnectOptions;
  /** The browser key bound tokens name (default: a new non-extractable
   * Ed25519 key per client). Keep one in IndexedDB to reuse a bound token
   * across page loads. */
  keyPair?: CryptoKeyPair;
  /** Replaces globalThis.fetch (tests, custom headers). */
  fetch?: typeof fetch;
  /** Replaces globalThis.RTCPeerConnection (tests, non-browser runtimes). */
  RTCPeerConnection?: typeof RTCPeerConnection;
  /** Offers this browser as a relay: it may feed topics it follows to
   * other browsers of the same peer over browser-to-browser data channels.
   * Absent (the default): never. Set it only once the user agreed on this
   * page (it spends their upload); the peer's app must allow relays too.
   * client.setRelay() gives or withdraws it later. */
  relay?: RelayOptions | null;
}

/** What a user lets the client spend relaying (docs/browser-protocol.md, section 8). */
export interface RelayOptions {
  /** Most children per topic, 0..255 (default 4); the peer caps it too (default 8). */
  maxChildren?: number;
  /** Upload the client may spend forwarding, bytes/s (default 262144); the peer caps it too (default 1 MiB/s), and the client never forwards faster than the smaller. */
  upload?: number;
  /** The link is metered: the peer never invites the client. Also set when
   * navigator.connection says "cellular" or saveData. */
  metered?: boolean;
}

/** How one topic is fed, and whom the client feeds with it. */
export interface RelayTopicStatus {
  topic: string;
  /** "peer": by the peer's own connection; "attaching": a link to a relay
   * is opening; "relay": by another browser. */
  fedBy: "peer" | "attaching" | "relay";
  /** The link to the relay (0: the peer). */
  link: number;
  /** The peer's sequence number of the last record delivered (0: none yet). */
  seq: number;
  /** Whether the peer invited this client to relay the topic. */
  relaying: boolean;
  /** Children fed now. */
  children: number;
}

/** client.relayStatus(), and the detail of "relay" events. */
export interface RelayStatus {
  /** Whether the client offers to relay (options.relay). */
  offered: boolean;
  /** The topics fed through the relay protocol (others are fed by the peer as plain messages). */
  topics: RelayTopicStatus[];
  /** Children fed now, over all topics. */
  children: number;
  /** Bytes forwarded to children so far. */
  forwardedBytes: number;
}

export interface RelayReportDetail {
  topic: string;
  link: number;
  /** Why the client left its relay and reported it to the peer. */
  reason: "gone" | "stalled" | "dropped" | "forged" | "refused";
}

export interface OpenDetail {
  /** The transport this connection uses. */
  transport: "websocket" | "webrtc";
  /** The offer URL of the peer connected to (for relayed signaling, of the forwarding peer). */
  url: string;
  /** The peer ID of a peer reached through relayed signaling, else null. */
  peer: string | null;
  /** "direct" (the peer's own endpoint) or "relayed" (through the peer at url). */
  signaling: "direct" | "relayed";
}

/** A peer reached through relayed signaling: the forwarding peer's URL and the target's peer ID. */
export interface Target {
  url: string | URL;
  peer: string;
}

/** A peer listed by discoverPeers. */
export interface DiscoveredPeer {
  /** The forwarding peer's offer URL. */
  url: string;
  peer: string;
  /** "private": behind NAT, only WebRTC reaches it; "public". */
  reachability: "private" | "public";
}

export interface DisconnectDetail {
  error: Error;
  /** Milliseconds until the next attempt. */
  retryIn: number;
}

export interface GapDetail {
  topic: string;
  /** Always false: the resumed subscription lost messages. */
  recovered: false;
}

export interface SubscribeOptions {
  /** Start from history: after this message id, or at this time. */
  since?: string | Date;
}

/** A member of a topic with presence: a browser ("token:<sub>", or "session:<n>" without a subject) or a peer (its id), and the peer it is on. */
export interface Member {
  id: string;
  peer: string;
}

export interface PresenceDetail {
  topic: string;
  member: Member;
  joined: boolean;
  /** Members after the change. */
  count: number;
}

export interface ClientEventMap {
  open: CustomEvent<OpenDetail>;
  /** A member joined or left a subscribed topic with presence (the current members come as joins after subscribing). */
  presence: CustomEvent<PresenceDetail>;
  /** A resume (after a reconnect, or from options.since) reached further back than the peer's history. */
  gap: CustomEvent<GapDetail>;
  /** How the client is fed or what it relays changed. */
  relay: CustomEvent<RelayStatus>;
  /** The client left a relay that closed, stalled, dropped, forged or refused, and told the peer (which moves it). */
  relayreport: CustomEvent<RelayReportDetail>;
  disconnect: CustomEvent<DisconnectDetail>;
  close: CustomEvent<{ error: Error | null }>;
  error: CustomEvent<{ error: Error }>;
}

/** A connection to a peer that reconnects by itself until closed: to the
 * next peer of its list after a failure, resuming each topic after the
 * last message it delivered. */
export declare class Client extends EventTarget {
  constructor(url: string | URL | Target | Array<string | URL | Target>, options?: ConnectOptions);
  /** The resolved offer URLs, tried in turn. */
  readonly urls: string[];
  /** The offer URL in use (or being tried). */
  readonly url: string;
  readonly state: "connecting" | "open" | "closed";
  /** Resolves on the first successful connection; rejects if the client closes first. */
  readonly ready: Promise<void>;
  /** Calls handler with every message of topic (from history first, with options.since); resolves once the server confirmed. */
  subscribe(topic: string, handler: MessageHandler, options?: SubscribeOptions): Promise<void>;
  /** The members of a subscribed topic with presence, as last reported by the peer. */
  members(topic: string): Member[];
  /** Removes handler (all handlers if omitted) from topic. */
  unsubscribe(topic: string, handler?: MessageHandler): Promise<void>;
  /** Publishes data (strings as UTF-8); resolves when the peer accepted it. */
  publish(topic: string, data: string | Uint8Array | ArrayBuffer | ArrayBufferView): Promise<void>;
  /** The browser key's public half, base64url (raw Ed25519), for the app
   * server to bind tokens to. */
  publicKey(): Promise<string>;
  /** How the client is connected: "websocket" or "webrtc"; null before the first connection opens. */
  readonly transport: "websocket" | "webrtc" | null;
  /** The peer ID of the peer in use when reached through relayed signaling, else null. */
  readonly peer: string | null;
  /** How the session was negotiated: "direct" or "relayed"; null before the first connection opens. */
  readonly signaling: "direct" | "relayed" | null;
  /** How each topic is fed (by the peer or another browser) and whom the client feeds. */
  relayStatus(): RelayStatus;
  /** Offers (options), or withdraws (null), this browser as a relay; ask the user first. */
  setRelay(relay: RelayOptions | null): void;
  /** Closes for good; pending calls reject. */
  close(): void;
  addEventListener<K extends keyof ClientEventMap>(
    type: K,
    listener: (ev: ClientEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof ClientEventMap>(
    type: K,
    listener: (ev: ClientEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

/** Connects to a peer (its base URL or offer URL), or to the first of a list that answers, and returns the client at once. */
export declare function connect(url: string | URL | Target | Array<string | URL | Target>, options?: ConnectOptions): Client;

/** Compares two message ids as stream positions: -1, 0 or 1. */
export declare function comparePositions(a: string, b: string): -1 | 0 | 1;

/** Throws a TypeError unless topic is 1..128 characters of [A-Za-z0-9._:/-]. */
export declare function validateTopic(topic: string): void;

/** Resolves a peer URL to its offer URL. */
export declare function offerURL(url: string | URL): string;

/** The relayed signaling URL on the peer of an offer URL, for an offer to peer. */
export declare function signalURL(offer: string, peer: string): string;

/** The peers the peer at url forwards offers to, as targets for connect(). */
export declare function discoverPeers(url: string | URL, options?: { fetch?: typeof fetch }): Promise<DiscoveredPeer[]>;

/** Whether a relayed answer {sdp, peer, sig} is signed by the key in peerID over offerSDP and the answer. */
export declare function verifyRelayedAnswer(peerID: string, offerSDP: string, answer: { sdp: string; peer: string; sig: string }): Promise<boolean>;

/** The raw Ed25519 public key in a peer ID; throws for other kinds. */
export declare function peerPublicKey(peerID: string): Uint8Array;

/** The bytes a peer signs for a relayed answer. */
export declare function answerSignedBytes(offerSDP: string, answerSDP: string): Promise<Uint8Array>;

/** A decoded frame (see docs/browser-protocol.md). */
export interface Frame {
  type:
    | "subscribe"
    | "unsubscribe"
    | "publish"
    | "message"
    | "ack"
    | "error"
    | "batch"
    | "signed-publish"
    | "presence"
    | "relay-ready"
    | "relay-invite"
    | "attach"
    | "signal"
    | "record"
    | "from"
    | "head"
    | "report"
    | "hello"
    | "relay-probe";
  /** Presence: a join (else a leave); id is the member, from its peer. */
  joined?: boolean;
  req?: number;
  topic?: string;
  /** Subscribe: the position (or RFC 3339 time) to resume after. */
  since?: string;
  payload?: Uint8Array;
  id?: string;
  from?: string;
  /** Microseconds since the Unix epoch (signed-publish: milliseconds). */
  time?: number;
  /** signed-publish: the Ed25519 signature of signedBytes(topic, time, payload). */
  sig?: Uint8Array;
  code?: number;
  reason?: string;
  /** Encoding: the encoded inner frames; decoding: the decoded ones. */
  items?: Uint8Array[] | Frame[];
  /** relay-ready: the link is metered. */
  metered?: boolean;
  /** relay-ready: upload offered, bytes/s. */
  upload?: number;
  /** relay-ready, relay-invite: children. */
  maxChildren?: number;
  /** relay-invite: the upload the peer asks for at most, bytes/s. */
  uploadCap?: number;
  /** relay-invite, attach: the peer's relay key (raw Ed25519, 32 bytes). */
  key?: Uint8Array;
  /** attach, signal, report, hello: the link (attach: 0 is the peer itself). */
  link?: number;
  /** record, head: the peer's sequence number for the topic. */
  seq?: number;
  /** attach (the wire's "from"), from, hello: the sequence number the member has. */
  after?: number;
  /** signal */
  kind?: "offer" | "answer" | "candidate" | "close";
  /** signal: an SDP. */
  data?: string;
  /** report: the RECORD frame a forged report is about. */
  evidence?: Uint8Array;
  /** relay-probe: the probe's last chunk. */
  last?: boolean;
  /** relay-probe: padding, at most 16 KiB. */
  padding?: Uint8Array;
}

/** The bytes a peer signs for a RECORD. */
export declare function recordSignedBytes(topic: string, seq: number, id: string, from: string, time: number, payload: Uint8Array): Uint8Array;
/** Whether a decoded RECORD is signed by key, the peer's relay key (raw, or imported for Ed25519 verify). */
export declare function verifyRecord(key: Uint8Array | CryptoKey, record: Frame): Promise<boolean>;

/** Encodes a frame. */
export declare function encodeFrame(frame: Frame): Uint8Array;
/** Decodes one frame; throws FrameError on bad input. */
export declare function decodeFrame(bytes: Uint8Array, maxSize?: number): Frame;

/** The bytes a browser signs to publish payload on topic at time (ms since the epoch). */
export declare function signedBytes(topic: string, time: number, payload: Uint8Array): Uint8Array;
/** The base64url key a token is bound to (cnf.jwk.x), or "" for a bearer token. */
export declare function tokenBoundKey(token: string): string;

/** The WebSocket URL of a peer, from its offer URL. */
export declare function webSocketURL(offer: string): string;
/** A WebSocket to the peer could not be opened at all; "auto" then tries WebRTC. */
export declare class WebSocketUnreachable extends Error {}
