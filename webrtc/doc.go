// Package webrtc connects browsers to the overlay: a browser opens one
// WebRTC data channel to a peer, follows topics and publishes on them, and
// the peer relays between the data channel and the overlay's topics.
//
// The package depends on the overlay only through the Bus interface
// (Publish and Subscribe on topics), which the node implements; it holds
// one Bus subscription per topic however many browsers follow it, read
// directly by that topic's fan-out goroutine, and drops it when the last
// one leaves. docs/browser-protocol.md is the
// reference for client authors; this comment summarises it.
//
// # Signaling
//
// The browser creates an RTCPeerConnection and one data channel labelled
// "immense" (ordered, reliable: the defaults), gathers its ICE candidates,
// and POSTs to OfferPath (/v1/webrtc/offer):
//
//	{"sdp": "<offer SDP>", "token": "<JWT>"}
//
// ("type": "offer" may be included.) The peer answers 200 with
//
//	{"type": "answer", "sdp": "<answer SDP>"}
//
// once its own candidates are all gathered: there is no trickle ICE, so
// signaling is one request and there is no second endpoint to secure.
// Errors are JSON {"error": "..."}: 400 bad request or offer, 401 missing
// or refused token, 405 not POST, 413 body over MaxOfferSize, 503 server
// full (with Retry-After) or closing. A session whose data channel has not
// opened ConnectTimeout after the answer is dropped.
//
// The server does not use pion's PeerConnection: it builds each session
// from pion's parts (dclink.go) on the UDP sockets every session shares
// (udpmux.go): ICE as an ICE-lite endpoint (icelite.go: one host
// candidate, a=ice-lite, the browser's checks answered inside the DTLS
// connection's reads, no ICE agent) where the server has an address
// browsers reach directly, or pion's full ICE agent (controlled) when
// ICEServers are configured, so that NAT'd volunteers work; a DTLS
// server with one certificate for the whole server, checked by the browser
// against the answer's fingerprint while the server checks the browser's
// against its offer's, an SCTP association and the one data channel. The
// answer is written by hand (one m=application section, setup:passive,
// every candidate, a=end-of-candidates); the offer is read with pion's SDP
// parser and must have exactly that one section (parseOffer). No SRTP,
// RTP demultiplexing, interceptors or mDNS are started: an ICE-lite session
// costs seven goroutines (DTLS's reader, its read-context watcher and its
// handshake loop; SCTP's reader, writer and timers; the session's reader)
// and about 100 KiB of server memory (docs/performance.md); with the full
// ICE agent four goroutines and about 20 KiB more.
//
// A browser that cannot reach a peer's HTTP port (a volunteer behind NAT)
// POSTs the same body to another peer's SignalPath?peer=<peer ID>; that
// peer forwards it over SignalProtocol and returns the target's answer,
// signed with the target's libp2p key (AnswerSignedBytes), which the
// browser verifies against the peer ID (SignalRelay, signalrelay.go).
//
// # Tokens
//
// A token is a JWT (RFC 7519) signed with EdDSA (Ed25519: the app mints
// with its private key, MintEdDSA, and peers verify with the public key,
// Config.PublicKeys, so a volunteer can admit browsers but not mint) or
// HS256 (a secret shared by every peer, Mint and LoadSecret). Its claims:
// iat and exp (required, whole seconds, at most Config.MaxTokenTTL apart;
// exp ends the session), nbf, sub and jti (optional; a jti can be revoked),
// and "read" and "write": lists of topic patterns. A pattern is an exact
// topic name or a prefix followed by one trailing "*" ("chat/*", or "*"
// for every topic). Only the algorithms the peer has a key for are
// accepted (see Verifier.Verify), JSON names must be exact and unique,
// HMACs are compared in constant time, clocks may differ by ClockSkew, and
// tokens are capped at MaxTokenSize.
// Every subscribe and publish frame is checked against the token. A
// publish goes into the overlay with the token (Bus.Publish), so that every
// peer that receives it checks the browser's right to the topic again, not
// only this one (overlay publish authorization): a peer that relays a
// browser's message cannot stretch its token to another topic. A MESSAGE
// frame's from field is the sender the overlay verified: an app peer's ID,
// or "token:" and the subject of the browser that published it.
//
// # Frames
//
// Every data channel message is one binary frame (text messages are
// refused). Integers are big-endian; str8 is a uint8 length and that many
// bytes, str16 a uint16 length and bytes, bytes32 a uint32 length and
// bytes. Every frame starts with the version byte (FrameVersion, 1) and a
// type byte:
//
//	1 SUBSCRIBE    client->server  req u32, topic str8
//	2 UNSUBSCRIBE  client->server  req u32, topic str8
//	3 PUBLISH      client->server  req u32, topic str8, payload bytes32
//	4 MESSAGE      server->client  topic str8, id str16, from str16,
//	                               time i64 (µs since the Unix epoch, 0 = unknown),
//	                               payload bytes32
//	5 ACK          server->client  req u32
//	6 ERROR        server->client  req u32, code u16, topic str8 (may be empty),
//	                               reason str16 (UTF-8)
//	7 BATCH        server->client  count u16 (>= 1), then count times:
//	                               length u32, a frame of any type but BATCH
//
// A request ID correlates a request with its ACK or ERROR; a request with
// ID 0 gets no ACK (errors still come, with ID 0), and an ERROR with ID 0
// is unsolicited (see the Code constants: dropped messages, a lost
// subscription, an expired token). A frame must be consumed exactly: short,
// trailing or out-of-range bytes make it a bad frame. Topics are 1 to 128
// bytes of [A-Za-z0-9._:/-] (ValidateTopic). Frames are at most
// MaxFrameSize bytes, advertised to the browser as the SCTP
// max-message-size. A bad frame is answered with an ERROR frame; the
// session carries on.
//
// # Delivery and backpressure
//
// Messages of a topic reach a browser in the order the peer received them.
// The peer encodes each message once for all its browsers. A topic's
// fan-out rounds to its k data channel browsers are paced by load
// (pacing.go): at least k/FanoutPacketRate apart (10,000 packets a second
// by default), at most FanoutInterval (100 ms). A message that follows the
// last round sooner waits for the rest of that gap and goes out with
// whatever else arrived, as one BATCH, since every data channel message
// costs a packet per browser whatever its size; a topic whose rounds stay
// under the packet rate is never held (50 browsers of a 200 messages/s
// topic get every message at once). WebSocket browsers get every round at
// once. A browser
// that keeps up gets each round written to its channel at once. A browser that falls
// behind - its data channel holds more than MaxBufferedAmount bytes not yet
// acknowledged - gets a queue, bounded by QueueLength messages and
// QueueBytes bytes; when its channel drains, everything queued is sent as
// BATCH frames, so a slow browser costs fewer writes, not more. When the
// queue is full the SlowPolicy applies: DropOldest discards the oldest
// messages and later sends an ERROR of code CodeMessagesDropped saying how
// many; Disconnect closes the session. Either way, a channel that does not
// drain for StallTimeout closes the session. Nothing a browser does can
// make the peer block or buffer without bound, and every outcome is counted
// in the immense_webrtc_* metrics.
//
// # Clients
//
// client/immense.js is the browser library (served by DemoHandler at
// /client.js, with types at /immense.d.ts); it reconnects with exponential
// backoff and jitter and resubscribes by itself. Client is the Go
// equivalent for back-ends and load tests, without reconnection.
package webrtc
