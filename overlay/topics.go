package overlay

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Message is a message delivered on a topic.
type Message struct {
	Topic string
	// ID is unique per message (publisher and sequence number, hex).
	ID string
	// From is the publisher, whose signature has been verified.
	From peer.ID
	// ReceivedFrom is the neighbour that forwarded it to us (our own ID for
	// local publishes).
	ReceivedFrom peer.ID
	// Published is the publisher's clock at publication.
	Published time.Time
	Data      []byte
}

// Subscription is a local subscription to a topic. Cancel it when done.
type Subscription struct {
	o     *Overlay
	topic string
	sub   *pubsub.Subscription
	once  bool
}

// idleTopicTTL is how long a topic we only published to stays joined.
const idleTopicTTL = 5 * time.Minute

// join returns the joined topic, joining it if needed. o.mu must be held.
func (o *Overlay) join(name string) (*topicState, error) {
	if o.closed {
		return nil, ErrClosed
	}
	if ts, ok := o.topics[name]; ok {
		ts.lastUsed = time.Now()
		return ts, nil
	}
	if len(o.topics) >= o.cfg.MaxTopics {
		return nil, fmt.Errorf("overlay: already in %d topics, the configured maximum", len(o.topics))
	}
	wire := wireTopic(name)
	// Inline: our checks are cheap and must not block, so they run on the
	// validation worker instead of a goroutine per message.
	if err := o.ps.RegisterTopicValidator(wire, o.validator(name), pubsub.WithValidatorInline(true)); err != nil {
		return nil, fmt.Errorf("register validator for %q: %w", name, err)
	}
	t, err := o.ps.Join(wire)
	if err != nil {
		_ = o.ps.UnregisterTopicValidator(wire)
		return nil, fmt.Errorf("join topic %q: %w", name, err)
	}
	params := o.cfg.Score.TopicParams
	if err := t.SetScoreParams(&params); err != nil {
		_ = t.Close()
		_ = o.ps.UnregisterTopicValidator(wire)
		return nil, fmt.Errorf("topic %q score params: %w", name, err)
	}
	ts := &topicState{topic: t, lastUsed: time.Now()}
	o.topics[name] = ts
	return ts, nil
}

// validator checks every message of topic name, ours and the network's:
// a well-formed envelope, a payload within MaxMessageSize, then the
// application's Validator. Rejected messages count against the sender's
// score.
func (o *Overlay) validator(name string) pubsub.ValidatorEx {
	return func(ctx context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		_, payload, err := decodeEnvelope(msg.Data)
		if err == nil && len(payload) > o.cfg.MaxMessageSize {
			err = fmt.Errorf("%w: %d bytes", ErrMessageTooLarge, len(payload))
		}
		if err == nil && len(payload) == 0 {
			err = ErrEmptyMessage
		}
		if err == nil && o.cfg.Validator != nil {
			err = o.cfg.Validator(ctx, name, msg.GetFrom(), payload)
		}
		if err != nil {
			o.metrics.rejected.WithLabelValues(o.metrics.label(name)).Inc()
			o.log.Debug("message rejected", "topic", name, "from", msg.GetFrom(), "via", from, "err", err)
			return pubsub.ValidationReject
		}
		return pubsub.ValidationAccept
	}
}

// Subscribe subscribes to topic. Messages published after the subscription
// has propagated (one gossipsub heartbeat, about a second) are delivered,
// including this node's own.
func (o *Overlay) Subscribe(topic string) (*Subscription, error) {
	if err := ValidateTopic(topic); err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	ts, err := o.join(topic)
	if err != nil {
		return nil, err
	}
	sub, err := ts.topic.Subscribe(pubsub.WithBufferSize(256))
	if err != nil {
		return nil, fmt.Errorf("subscribe %q: %w", topic, err)
	}
	ts.subs++
	return &Subscription{o: o, topic: topic, sub: sub}, nil
}

// Topic returns the topic name.
func (s *Subscription) Topic() string { return s.topic }

// Next blocks until the next message, ctx ends (ctx.Err()) or the
// subscription or overlay is closed (ErrClosed).
func (s *Subscription) Next(ctx context.Context) (*Message, error) {
	for {
		m, err := s.sub.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, ErrClosed
		}
		published, payload, err := decodeEnvelope(m.Data)
		if err != nil {
			continue // the validator already refused it; cannot happen
		}
		s.o.metrics.received.WithLabelValues(s.o.metrics.label(s.topic)).Inc()
		return &Message{
			Topic:        s.topic,
			ID:           hex.EncodeToString([]byte(m.ID)),
			From:         m.GetFrom(),
			ReceivedFrom: m.ReceivedFrom,
			Published:    published,
			Data:         payload,
		}, nil
	}
}

// Cancel ends the subscription. It is idempotent.
func (s *Subscription) Cancel() {
	s.o.mu.Lock()
	defer s.o.mu.Unlock()
	if s.once {
		return
	}
	s.once = true
	s.sub.Cancel()
	if ts, ok := s.o.topics[s.topic]; ok {
		ts.subs--
		ts.lastUsed = time.Now()
	}
}

// janitor leaves topics this node only published to and has not used for
// idleTopicTTL, so that publishing to many topics does not pin them all.
func (o *Overlay) janitor() {
	defer o.wg.Done()
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-o.ctx.Done():
			o.leaveAll()
			return
		case <-tick.C:
		}
		o.mu.Lock()
		for name, ts := range o.topics {
			if ts.subs == 0 && ts.backlog == nil && time.Since(ts.lastUsed) > idleTopicTTL {
				o.leave(name, ts)
			}
		}
		o.mu.Unlock()
	}
}

// leave closes topic name. o.mu must be held.
func (o *Overlay) leave(name string, ts *topicState) {
	if err := ts.topic.Close(); err != nil {
		o.log.Debug("leave topic", "topic", name, "err", err)
		return
	}
	_ = o.ps.UnregisterTopicValidator(wireTopic(name))
	delete(o.topics, name)
}

func (o *Overlay) leaveAll() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for name, ts := range o.topics {
		o.leave(name, ts)
	}
}
