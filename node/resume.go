package node

import (
	"context"
	"errors"

	"github.com/immense-p2p/immense/overlay"
)

// Position is where a message stands in its topic's stream
// (overlay.Position): Message.Position, the SSE id, what to resume from.
type Position = overlay.Position

// ParsePosition reads a position as Position.String writes it, or an
// RFC 3339 time (resume with the messages published at or after it).
func ParsePosition(s string) (Position, error) { return overlay.ParsePosition(s) }

// SubscribeOption adjusts Subscribe.
type SubscribeOption func(*subscribeOptions)

type subscribeOptions struct {
	since  Position
	resume bool
}

// Since resumes a subscription after p: the topic's messages positioned
// after p that this node's history window holds come first, in position
// order (each publisher's in order), then the live ones, without
// duplicates (docs/architecture.md, History and resume). If p is older
// than the window, so that some messages after it are lost, the first
// value on the channel is a Message with Gap set and no data. A zero p
// asks for the whole window, which is then always reported as a gap.
func Since(p Position) SubscribeOption {
	return func(o *subscribeOptions) { o.since, o.resume = p, true }
}

// replay sends the window after since, a gap first if there is one, and
// returns the filter for the live messages that follow; false if ctx
// ended or the node closed first. The subscription was taken out before,
// so nothing falls between the replay and the live messages (Resume).
func (n *Node) replay(ctx context.Context, topic string, since Position, out chan<- *Message) (*overlay.Resume, bool) {
	msgs, ok, err := n.history(ctx, "", topic, since)
	if err != nil {
		return nil, false
	}
	if !ok {
		n.log.Debug("resume beyond the history window", "topic", topic, "since", since)
		msgs = append([]*Message{{Topic: topic, Gap: true}}, msgs...)
	}
	for _, m := range msgs {
		select {
		case out <- m:
		case <-ctx.Done():
			return nil, false
		}
	}
	return overlay.NewResume(since, msgs), true
}

// history returns topic's messages after since as overlay.History does,
// from the window, and, if the window does not reach back to since and
// the topic's history is durable, from the durable history before it
// (durablehistory.go). ok is false for a gap. A topic without a window
// has none to give: an error only if ctx ended or the node closed. client
// is who asks, for the budget of durable reads: a browser's token ("" for
// this node's own subscribers and its control API's).
func (n *Node) history(ctx context.Context, client, topic string, since Position) (msgs []*Message, ok bool, err error) {
	msgs, ok, err = n.overlay.History(ctx, topic, since)
	if err != nil {
		if errors.Is(err, overlay.ErrNoHistory) {
			err = nil
		}
		return msgs, ok, err
	}
	if !ok && !since.IsZero() && n.durable.keeps(topic) {
		if all, full := n.durable.fill(ctx, client, topic, since, msgs); full {
			return all, true, nil
		}
	}
	return msgs, ok, nil
}
