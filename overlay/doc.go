// Package overlay joins a libp2p host to the Immense overlay: a Kademlia DHT
// under our own protocol prefix (/immense/kad/1.0.0, never the public IPFS
// DHT) and gossipsub topics.
//
// # Joining
//
// A node is given zero or more bootstrap peers. The bootstrap loop asks them,
// two at a time in random order, to admit it (the join protocol below) until
// one does, then refreshes the routing table; it keeps watching and starts
// again whenever the node loses all of its connections or its routing table
// empties, so a peer that starts before its bootstrap node, or survives a
// bootstrap restart, still joins. Between rounds that reached nobody it backs
// off exponentially with full jitter. Only this loop dials bootstrap peers:
// the DHT's own fallback to them is off, since it would not ask.
//
// # Join protocol /immense/join/1.0.0
//
// A mass return (every peer restarting at once after an outage) must not
// take the bootstrap nodes down. Every node serves this protocol; a node
// admits at most Config.JoinRate newcomers a second (a token bucket of
// Config.JoinBurst), and none while more than Config.JoinMaxPeers peers are
// connected. Past that it answers busy: when to come back, and other DHT
// servers to join through instead.
//
// One request and one answer per stream. A frame is
//
//	length u16 BE | body (length bytes, at most 4096)
//
// and every body starts with version u8 = 1 and a type u8:
//
//	1 request:  nothing more
//	2 ok:       nothing more
//	3 busy:     retry-after u32 BE (milliseconds, at most 1 h) | count u8 (<= 8)
//	            count * (len u8 | peer id | addr count u8 (1..4) | addr count * (len u8 | multiaddr bytes))
//
// Parsing is strict: no trailing bytes, no peer twice, valid peer IDs and
// multiaddrs. The newcomer writes the request and keeps its side open until
// it has read the answer, then closes the stream. Both sides give the
// exchange Config.JoinTimeout. After a busy answer the server waits for the
// newcomer's close (or the timeout) and then closes its connection to it, so
// a refused newcomer holds nothing on the server.
//
// Retry-after: refusals are handed successive slots of a virtual queue that
// drains at JoinRate (admission.go), from BootstrapBackoffMin up to
// Config.JoinRetryMax, so a crowd refused at one instant comes back at the
// pace the bucket refills. The newcomer waits the hint plus a random time of
// up to a quarter of it (or of BootstrapBackoffMin, if longer), so that
// neighbouring slots do not return in step, and meanwhile leaves that peer
// alone:
// the DHT neither queries it nor adds it to the routing table, and a
// connection to it is closed at once.
//
// Referrals are up to Config.JoinReferrals routing-table peers, connected
// ones first, in random order, with at most 4 addresses each: direct ones
// (no relay circuit) at least as widely reachable as the address the
// newcomer came from (a newcomer from the internet gets only public
// addresses). The newcomer applies the same rule to what it receives, skips
// itself and the bootstrap peers, and asks referrals one at a time until one
// admits it; it does not follow a referral's own referrals. A peer that does
// not speak the protocol (an older version) counts as admitting.
//
// # Dials on a stranger's word
//
// Any peer can hand a node addresses to dial: its provider records, which
// topic discovery dials, the peers its DHT answers list, what it announces
// through identify. A node built with a DialGate (node does) dials an
// address narrower than the internet (loopback, link-local, private,
// unroutable) only if one of its own listen or bootstrap addresses is in
// that scope, or private ones with node.Config.DialPrivate: a devnet on
// 127.0.0.1 dials loopback, a LAN deployment its LAN (not link-local
// addresses such as a cloud's metadata service, 169.254.169.254), a peer
// on the internet neither, so that nobody can make it probe its owner's
// network (127.0.0.1:22, the home router's 192.168.1.1:80). An IPv6
// address that leads to an IPv4 one (IPv4-mapped, NAT64, 6to4, Teredo)
// has that address's scope; carrier-grade NAT (100.64.0.0/10) is private;
// a localhost name is loopback. Listening on 0.0.0.0 says nothing of where
// a node is and counts for no scope, and no bootstrap address makes a node
// dial unroutable addresses. Inbound connections are never refused.
//
// # DHT mode
//
// Only DHT servers enter routing tables. In ModeAuto a node serves once
// AutoNAT says it is publicly reachable, so a volunteer behind NAT, which
// nobody can dial, stays a client. AutoNAT never vouches for loopback or
// private addresses, though, so on a deployment narrower than the internet
// (Deployment: the same scopes of listen and bootstrap addresses as the
// DialGate's, with none public) auto means server from the start: a
// devnet on 127.0.0.1 or a LAN lab on 10.x would otherwise be a set of
// clients that never find each other.
//
// # Topics
//
// Topic names are 1 to 128 bytes of [A-Za-z0-9._:/-] (see [ValidateTopic]).
// On the wire the gossipsub topic is "immense/" + name, which keeps our
// traffic apart from any other application that shares the hosts. Subscribers
// of a topic find each other through DHT rendezvous: each subscriber provides
// the CID of the topic's gossipsub name and looks up the other providers
// (go-libp2p-pubsub's discovery over go-libp2p's routing discovery).
//
// Every message is signed by its publisher and verified by every receiver
// (StrictSign); messages larger than Config.MaxMessageSize are refused on
// publish and dropped on receipt; an optional Config.Validator sees every
// message before it is delivered or forwarded. Peer scoring is on, with the
// parameters documented in scoring.go.
//
// # Publish authorization
//
// With Config.Auth given the app's topic key (private or public), every
// topic except Auth.OpenTopics takes only messages whose envelope
// (envelope.go) carries a credential: a certificate of the app's topic key
// for the publishing peer, or the token of a browser whose publish that
// peer relays, checked again by every receiver against the topic. Anything
// else is rejected (the forwarder loses score) and counted. Delivered
// messages carry their verified Sender. authorize.go has the details and
// what an attacker can still do.
//
// # History protocol /immense/history/1.0.0
//
// Every subscribed topic keeps a window of its recent messages, in
// position order (position.go, history.go). A peer that subscribes to a
// topic asks up to HistoryConfig.FetchPeers of its subscribers for their
// window. One request and one answer per stream; frames are
//
//	length u32 BE | body
//
// position: time i64 BE (Unix ns, 0 for none) | sequence u64 BE | publisher len u8 | publisher id bytes
//
//	request (at most 512 bytes): version u8 = 1 | type u8 = 1 | topic len u8 | topic | since position | count u16 (1..1000)
//	answer header (at most 512): version u8 = 1 | type u8 = 2 | floor position | count u16 (<= 1000)
//	then count frames: one gossipsub message each (protobuf, as gossipsub sends it, signed by its publisher)
//
// The answer holds the server's messages after since, the newest count if
// there are more, at most 8 MiB, in position order; floor says the server
// holds every message after it (the requester takes the highest floor of
// those that answered). The requester checks each message as gossipsub and
// the validator would have on receipt, its publisher's right to the topic
// as of its publication time, strictly increasing positions after floor,
// and gives the exchange HistoryConfig.FetchTimeout. The server answers
// only a peer that gossipsub knows as a subscriber of the topic (it
// receives those messages by gossip anyway), at most
// HistoryConfig.ServeRate requests a second per peer and 8 at once, and
// resets the stream for anything else: a malformed request, a topic it
// keeps no window of.
package overlay
