package overlay

import (
	"context"
	"fmt"
	"sync"
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
	// Sender is who published the message with the right to the topic
	// (an app peer, or a browser by its token subject), or, on an open
	// topic or a peer that authorizes nothing, just From, unverified.
	Sender Sender
	// Published is the publisher's clock at publication.
	Published time.Time
	// Position is where the message stands in the topic's stream: a
	// subscriber resumes after it (position.go).
	Position Position
	Data     []byte
	// Gap is set on the marker, with no data, that a resumed subscription
	// delivers first when its resume point is older than the topic's
	// history window (package node, Since).
	Gap bool
}

// Subscription is a local subscription to a topic. Cancel it when done.
//
// Between gossipsub and the subscriber there is one bounded queue of
// SubscriptionQueue messages and one drop rule: when the queue is full, the
// arriving message is dropped and counted in
// immense_overlay_messages_dropped_total. A subscriber that falls behind
// loses messages; it never slows the node down.
//
// gossipsub fills the queue from its event loop, through the
// subscription's message filter, which queues the message and declines it,
// so gossipsub's own channel stays empty. That channel is read only through
// pubsub.Subscription.Next, which blocks (with a done context it picks at
// random between a waiting message and the error), and the browser fan-out
// must take whatever is waiting as one batch without blocking (TryNext).
//
// Next and TryNext may be called from several goroutines.
type Subscription struct {
	o     *Overlay
	topic string
	sub   *pubsub.Subscription

	// ready holds a signal while the queue may hold messages; done is
	// closed by Cancel.
	ready chan struct{}
	done  chan struct{}

	mu        sync.Mutex
	queue     msgQueue
	cancelled bool
}

// SubscriptionQueue is how many messages a subscription holds for a
// subscriber that has not taken them yet; beyond it they are dropped.
// gossipsub's own default is 32; 256 absorbs a burst of a busy topic while
// the subscriber is busy for a moment (a browser fan-out writing to
// hundreds of data channels), for a pointer per message.
const SubscriptionQueue = 256

// idleTopicTTL is how long a topic we only published to stays joined.
const idleTopicTTL = 5 * time.Minute

// join returns the joined topic, joining it if needed; forSubscribe says
// whether the caller is about to subscribe (else it publishes). o.mu must
// be held.
//
// Topics without a local subscriber sit in o.publishOnly, most recently
// used first. A topic is joined only if there is room: fewer than
// MaxTopics topics in all and, to publish, fewer than MaxPublishTopics
// without a subscriber; else the least recently used topic without a
// subscriber or a backlog is left to make room. Publishing therefore never
// takes the room subscriptions need.
func (o *Overlay) join(name string, forSubscribe bool) (*topicState, error) {
	if o.closed {
		return nil, ErrClosed
	}
	if ts, ok := o.topics[name]; ok {
		ts.lastUsed = time.Now()
		if ts.lru != nil {
			o.publishOnly.MoveToFront(ts.lru)
		}
		return ts, nil
	}
	for len(o.topics) >= o.cfg.MaxTopics || (!forSubscribe && o.publishOnly.Len() >= o.cfg.MaxPublishTopics) {
		if !o.evictPublishOnly() && !(len(o.topics) >= o.cfg.MaxTopics && o.evictLingering()) {
			o.metrics.topicsRefused.Inc()
			if len(o.topics) >= o.cfg.MaxTopics {
				return nil, fmt.Errorf("%w: %d topics joined, the configured maximum (MaxTopics), %d of them subscribed and the rest waiting for a subscriber to be found",
					ErrTooManyTopics, len(o.topics), len(o.topics)-o.publishOnly.Len())
			}
			return nil, fmt.Errorf("%w: %d topics published to without a subscriber all wait for one to be found (MaxPublishTopics %d)",
				ErrTooManyTopics, o.publishOnly.Len(), o.cfg.MaxPublishTopics)
		}
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
	ts := &topicState{name: name, topic: t, lastUsed: time.Now()}
	ts.lru = o.publishOnly.PushFront(ts)
	o.topics[name] = ts
	o.wireTopics.Store(wire, struct{}{})
	return ts, nil
}

// evictPublishOnly leaves the least recently used topic that has no local
// subscriber and no backlog, and reports whether there was one. o.mu must
// be held.
func (o *Overlay) evictPublishOnly() bool {
	for e := o.publishOnly.Back(); e != nil; e = e.Prev() {
		ts := e.Value.(*topicState)
		if ts.backlog == nil && o.leave(ts.name, ts) {
			o.metrics.topicsEvicted.Inc()
			return true
		}
	}
	return false
}

// subscribed and unsubscribed keep ts.subs and o.publishOnly in step. o.mu
// must be held.
func (o *Overlay) subscribed(ts *topicState) {
	ts.subs++
	if ts.lru != nil {
		o.publishOnly.Remove(ts.lru)
		ts.lru = nil
	}
}

func (o *Overlay) unsubscribed(ts *topicState) {
	ts.subs--
	ts.lastUsed = time.Now()
	if ts.subs == 0 && ts.lru == nil {
		ts.lru = o.publishOnly.PushFront(ts)
	}
}

// validator checks every message of topic name, ours and the network's:
// a well-formed envelope, a payload within MaxMessageSize, then the
// application's Validator. Rejected messages count against the sender's
// score.
func (o *Overlay) validator(name string) pubsub.ValidatorEx {
	return func(ctx context.Context, from peer.ID, msg *pubsub.Message) pubsub.ValidationResult {
		if res, ok := o.admitRate(name, from, msg); !ok {
			return res
		}
		env, err := decodeEnvelope(msg.Data)
		payload := env.payload
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
		return o.authorize(name, msg, env)
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
	ts, err := o.join(topic, true)
	if err != nil {
		return nil, err
	}
	s := &Subscription{o: o, topic: topic, ready: make(chan struct{}, 1), done: make(chan struct{})}
	// gossipsub's channel stays empty (see Subscription): one slot will do.
	sub, err := ts.topic.Subscribe(pubsub.WithBufferSize(1), pubsub.WithMessageFilter(s.offer))
	if err != nil {
		return nil, fmt.Errorf("subscribe %q: %w", topic, err)
	}
	s.sub = sub
	o.subscribed(ts)
	o.openHistory(ts)
	return s, nil
}

// offer queues m for the subscriber, or drops it if the queue is full. It
// runs on gossipsub's event loop, for every message of the topic, so it
// must never block; it returns false so that gossipsub does not deliver m
// a second time through its own channel.
func (s *Subscription) offer(m *pubsub.Message) bool {
	s.mu.Lock()
	queued, dropped := false, false
	switch {
	case s.cancelled:
	case s.queue.n >= SubscriptionQueue:
		dropped = true
	default:
		s.queue.push(m)
		queued = true
	}
	s.mu.Unlock()
	if queued {
		s.signal()
	}
	if dropped {
		s.o.metrics.dropped.WithLabelValues(s.o.metrics.label(s.topic)).Inc()
		s.o.log.Debug("message dropped: subscriber too slow", "topic", s.topic, "queued", SubscriptionQueue)
	}
	return false
}

// signal leaves a signal in s.ready unless one is pending.
func (s *Subscription) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// Topic returns the topic name.
func (s *Subscription) Topic() string { return s.topic }

// Next blocks until the next message, ctx ends (ctx.Err()) or the
// subscription or overlay is closed (ErrClosed). Messages already queued
// are returned first.
func (s *Subscription) Next(ctx context.Context) (*Message, error) {
	for {
		if m, ok := s.TryNext(); ok {
			return m, nil
		}
		select {
		case <-s.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.done:
			return nil, ErrClosed
		case <-s.o.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// TryNext returns the next queued message, or false at once if none is
// waiting.
func (s *Subscription) TryNext() (*Message, bool) {
	for {
		s.mu.Lock()
		if s.queue.n == 0 {
			s.mu.Unlock()
			return nil, false
		}
		m := s.queue.pop()
		more := s.queue.n > 0
		s.mu.Unlock()
		if more {
			s.signal() // for another goroutine waiting in Next
		}
		env, sender, err := s.o.accepted(s.topic, m)
		if err != nil {
			continue // the validator already refused it; cannot happen
		}
		seq, _ := seqOf(m.Seqno) // StrictSign: always 8 bytes
		s.o.metrics.received.WithLabelValues(s.o.metrics.label(s.topic)).Inc()
		return newMessage(s.topic, m.Message, m.GetFrom(), m.ReceivedFrom, seq, sender, env), true
	}
}

// Cancel ends the subscription; messages still queued are discarded. It
// is idempotent.
func (s *Subscription) Cancel() {
	s.o.mu.Lock()
	defer s.o.mu.Unlock()
	s.mu.Lock()
	if s.cancelled {
		s.mu.Unlock()
		return
	}
	s.cancelled = true
	s.queue = msgQueue{}
	s.mu.Unlock()
	close(s.done)
	s.sub.Cancel()
	if ts, ok := s.o.topics[s.topic]; ok {
		s.o.unsubscribed(ts)
	}
}

// msgQueue is a FIFO of messages that grows as needed up to
// SubscriptionQueue, so that an idle subscription costs nothing.
type msgQueue struct {
	buf  []*pubsub.Message
	head int
	n    int
}

func (q *msgQueue) push(m *pubsub.Message) {
	if q.n == len(q.buf) {
		grown := make([]*pubsub.Message, min(max(8, 2*len(q.buf)), SubscriptionQueue))
		for i := 0; i < q.n; i++ {
			grown[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = m
	q.n++
}

func (q *msgQueue) pop() *pubsub.Message {
	m := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return m
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
		now := time.Now()
		for _, ts := range o.topics {
			if o.lingerExpired(ts, now) {
				o.closeHistory(ts)
			}
		}
		for name, ts := range o.topics {
			if ts.subs == 0 && ts.backlog == nil && time.Since(ts.lastUsed) > idleTopicTTL {
				o.leave(name, ts)
			}
		}
		o.mu.Unlock()
	}
}

// leave closes topic name and reports whether it could. o.mu must be
// held.
func (o *Overlay) leave(name string, ts *topicState) bool {
	if err := ts.topic.Close(); err != nil {
		// A subscription just cancelled may still be registered in
		// gossipsub's event loop; the janitor tries again later.
		o.log.Debug("leave topic", "topic", name, "err", err)
		return false
	}
	_ = o.ps.UnregisterTopicValidator(wireTopic(name))
	if ts.lru != nil {
		o.publishOnly.Remove(ts.lru)
		ts.lru = nil
	}
	delete(o.topics, name)
	o.wireTopics.Delete(wireTopic(name))
	return true
}

func (o *Overlay) leaveAll() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for name, ts := range o.topics {
		o.leave(name, ts)
	}
}
