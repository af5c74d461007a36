// Package overlay joins a libp2p host to the Immense overlay: a Kademlia DHT
// under our own protocol prefix (/immense/kad/1.0.0, never the public IPFS
// DHT) and gossipsub topics.
//
// # Joining
//
// A node is given zero or more bootstrap peers. The bootstrap loop dials them
// with exponential backoff and full jitter until at least one answers, then
// refreshes the routing table; it keeps watching and starts again whenever
// the node loses all of its connections, so a peer that starts before its
// bootstrap node, or survives a bootstrap restart, still joins.
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
package overlay
