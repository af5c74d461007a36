package webrtc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// memBus is an in-memory Bus: every Publish is delivered, in order, to
// every current subscriber of the topic, as the overlay delivers to a
// peer's local subscribers. Unlike the overlay it never drops a message:
// Publish waits for room, so tests and benchmarks can count deliveries.
type memBus struct {
	from string

	mu   sync.Mutex
	subs map[string]map[*memSub]struct{}
	seq  uint64
	// tokens are the tokens publishes carried, in order, and proofs
	// their browser signatures (nil for unsigned).
	tokens []string
	proofs []*Proof

	subscribes atomic.Int64 // Subscribe calls, to check the bridge shares them
	publishErr error        // if set, Publish fails with it
	// published, if set, sees each message as it is published, under mu
	// (histBus keeps history with it).
	published func(Message)
}

type memSub struct {
	b     *memBus
	topic string
	ch    chan Message
	done  chan struct{} // closed by Close, which ends a Publish waiting to send
	once  sync.Once
	lost  chan struct{} // closed by memBus.lose
}

func newMemBus() *memBus {
	return &memBus{from: "12D3KooWmembus", subs: make(map[string]map[*memSub]struct{})}
}

func (b *memBus) Subscribe(ctx context.Context, topic string) (Subscription, error) {
	if err := ValidateTopic(topic); err != nil {
		return nil, err
	}
	b.subscribes.Add(1)
	s := &memSub{b: b, topic: topic, ch: make(chan Message, 64), done: make(chan struct{}), lost: make(chan struct{})}
	b.mu.Lock()
	if b.subs[topic] == nil {
		b.subs[topic] = make(map[*memSub]struct{})
	}
	b.subs[topic][s] = struct{}{}
	b.mu.Unlock()
	return s, nil
}

func (s *memSub) Next(ctx context.Context) (Message, error) {
	select {
	case m := <-s.ch:
		return m, nil
	case <-ctx.Done():
		return Message{}, ctx.Err()
	case <-s.done:
		return Message{}, ErrClosed
	case <-s.lost:
		return Message{}, errLost
	}
}

func (s *memSub) TryNext() (Message, bool) {
	select {
	case m := <-s.ch:
		return m, true
	default:
		return Message{}, false
	}
}

func (s *memSub) Close() {
	b := s.b
	b.mu.Lock()
	delete(b.subs[s.topic], s)
	if len(b.subs[s.topic]) == 0 {
		delete(b.subs, s.topic)
	}
	b.mu.Unlock()
	s.once.Do(func() { close(s.done) })
}

func (b *memBus) Publish(ctx context.Context, topic string, data []byte, token string, proof *Proof) error {
	if b.publishErr != nil {
		return b.publishErr
	}
	b.mu.Lock()
	b.seq++
	b.tokens = append(b.tokens, token)
	b.proofs = append(b.proofs, proof)
	m := Message{Topic: topic, ID: fmt.Sprintf("%x", b.seq), From: b.from, Time: time.Now(), Data: data}
	if token != "" {
		m.Sender = "token:browser"
	}
	if b.published != nil {
		b.published(m)
	}
	subs := make([]*memSub, 0, len(b.subs[topic]))
	for s := range b.subs[topic] {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	// Delivery happens outside b.mu so a slow subscriber cannot block
	// Subscribe; it keeps each subscriber's order because tests publish
	// from one goroutine per topic.
	for _, s := range subs {
		select {
		case s.ch <- m:
		case <-s.done:
		case <-ctx.Done():
		}
	}
	return ctx.Err()
}

var errLost = errors.New("membus: subscription lost")

// lose ends every subscription to topic as the overlay would if it shut
// down under the bridge: their Next fails.
func (b *memBus) lose(topic string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs[topic] {
		close(s.lost)
		delete(b.subs[topic], s)
	}
	delete(b.subs, topic)
}

// subscribers returns the number of live subscriptions to topic.
func (b *memBus) subscribers(topic string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs[topic])
}
