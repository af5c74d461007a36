package webrtc

import (
	"context"
	"time"
)

// Bus is what the bridge needs from the overlay: topic publish and
// subscribe. The node adapts its overlay to it; tests use an in-memory
// implementation. Keeping the interface here (rather than importing the
// overlay) lets this package be built and tested on its own.
type Bus interface {
	// Publish sends data to every subscriber of topic in the overlay,
	// including this peer's own subscribers, on behalf of the browser that
	// holds token. The token travels with the message so that every peer
	// that receives it checks the browser's right to the topic again
	// (overlay publish authorization), not only this one. token is ""
	// only with Config.InsecureNoAuth: the peer then publishes as itself.
	// proof is the browser's signature of the message when its token is
	// bound to its key (Claims.Key), checked by the session; nil otherwise.
	Publish(ctx context.Context, topic string, data []byte, token string, proof *Proof) error
	// Subscribe subscribes to topic; ctx bounds the call, not the
	// subscription, which lasts until its Close. Subscribe must not block
	// for long: the bridge calls it while a browser waits for its ACK.
	Subscribe(ctx context.Context, topic string) (Subscription, error)
}

// Resumer is a Bus that keeps each topic's recent history, so that a
// browser can subscribe from a position and get what it missed
// (resume.go). A Bus that is not a Resumer answers every resume with a
// gap.
type Resumer interface {
	// Resume returns the messages of topic after position since, in
	// order, and whether they are all of them (false: since is older than
	// the history, a gap). live then says, for each live message of the
	// topic by its ID, whether it is new to a subscriber resumed so (not
	// replayed, not at or before since); it is called from one goroutine
	// at a time. The bridge's subscription to topic exists before Resume
	// is called, so no message falls between the replay and the live
	// ones. An error means since is not a position. client is what the
	// browser's requests count against (its token's subject, or a hash
	// of the token; "" with InsecureNoAuth), for the Bus's own budgets.
	Resume(ctx context.Context, client, topic, since string) (replay []Message, recovered bool, live func(id string) bool, err error)
}

// Presencer is a Bus that tracks who follows a topic, for the topics
// with presence. The bridge reports each browser that follows such a
// topic, and forwards the topic's events to its browsers as PRESENCE
// frames.
type Presencer interface {
	// PresenceOn reports whether topic has presence.
	PresenceOn(topic string) bool
	// Present says that member (a browser: "token:<sub>", or
	// "session:<n>" without a token subject) follows topic, or no longer
	// does.
	Present(topic, member string, joined bool)
	// WatchPresence returns the topic's events, a join for each current
	// member first; the channel is closed once ctx ends.
	WatchPresence(ctx context.Context, topic string) (<-chan PresenceEvent, error)
}

// PresenceEvent is a member joining or leaving a topic.
type PresenceEvent struct {
	Topic, Member, Peer string
	Joined              bool
}

// Subscription delivers the messages of one topic, in the order this peer
// receives them, to the bridge's fan-out, which reads it directly. It is
// the one hand-off between the overlay and the browsers: the Bus queues
// messages as they arrive, in a bounded queue, and drops (and counts) what
// does not fit rather than wait for the fan-out.
type Subscription interface {
	// Next blocks until the next message, or until ctx ends (returning
	// ctx.Err()) or the subscription is lost (another error), for example
	// because the overlay shut down.
	Next(ctx context.Context) (Message, error)
	// TryNext returns the next message if one is waiting, without
	// blocking: the fan-out takes everything waiting as one batch.
	TryNext() (Message, bool)
	// Close ends the subscription.
	Close()
}

// Proof is a browser's signature of one publish with the key its token is
// bound to (Claims.Key), over the bytes internal/browsersig defines.
type Proof struct {
	// Time is the publication time the browser signed, whole milliseconds.
	Time time.Time
	// Sig is the Ed25519 signature.
	Sig []byte
}

// Message is a message of a topic, as delivered by a Bus to the bridge and
// by the bridge to browsers and Clients.
type Message struct {
	Topic string
	// ID identifies the message in the overlay: with a node's Bus it is
	// the message's stream position (publication time, sequence number and
	// publisher), which a browser resumes after.
	ID string
	// Data is the payload. It may be binary.
	Data []byte
	// From is the peer ID of the overlay peer that published the message
	// (for a browser's publish, the peer the browser is connected to). In
	// the Messages of a Client it is the MESSAGE frame's from field, which
	// is Sender when the peer set one.
	From string
	// Sender is who published it with the right to the topic, as the
	// overlay verified it: an app peer's ID, or "token:" and the token
	// subject of a browser. Empty means From, unverified. MESSAGE frames
	// carry it in their from field.
	Sender string
	// Time is the publisher's clock at publication. On the data channel it
	// travels with microsecond precision.
	Time time.Time
}
