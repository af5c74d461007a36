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
	// including this peer's own subscribers.
	Publish(ctx context.Context, topic string, data []byte) error
	// Subscribe delivers the messages of topic on the returned channel in
	// the order this peer receives them. The implementation closes the
	// channel when ctx ends (and must not block forever sending on it after
	// that), or earlier if the subscription is lost, for example because
	// the overlay shut down. Subscribe must not block for long: the bridge
	// calls it while a browser waits for its ACK.
	Subscribe(ctx context.Context, topic string) (<-chan Message, error)
}

// Message is a message of a topic, as delivered by a Bus to the bridge and
// by the bridge to browsers and Clients.
type Message struct {
	Topic string
	// ID identifies the message in the overlay (unique per publisher).
	ID string
	// Data is the payload. It may be binary.
	Data []byte
	// From is the peer ID of the overlay peer that published the message
	// (for a browser's publish, the peer the browser is connected to).
	From string
	// Time is the publisher's clock at publication. On the data channel it
	// travels with microsecond precision.
	Time time.Time
}
