package webrtc

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// memBus is an in-memory Bus: every Publish is delivered, in order, to
// every current subscriber of the topic, as the overlay delivers to a
// peer's local subscribers.
type memBus struct {
	from string

	mu   sync.Mutex
	subs map[string]map[*memSub]struct{}
	seq  uint64

	subscribes atomic.Int64 // Subscribe calls, to check the bridge shares them
	publishErr error        // if set, Publish fails with it
}

type memSub struct {
	ctx context.Context
	mu  sync.Mutex // held while sending, so close cannot race a send
	ch  chan Message
	end bool
}

func newMemBus() *memBus {
	return &memBus{from: "12D3KooWmembus", subs: make(map[string]map[*memSub]struct{})}
}

func (b *memBus) Subscribe(ctx context.Context, topic string) (<-chan Message, error) {
	if err := ValidateTopic(topic); err != nil {
		return nil, err
	}
	b.subscribes.Add(1)
	s := &memSub{ctx: ctx, ch: make(chan Message, 64)}
	b.mu.Lock()
	if b.subs[topic] == nil {
		b.subs[topic] = make(map[*memSub]struct{})
	}
	b.subs[topic][s] = struct{}{}
	b.mu.Unlock()
	// Close the channel when ctx ends, as the Bus contract requires.
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		delete(b.subs[topic], s)
		if len(b.subs[topic]) == 0 {
			delete(b.subs, topic)
		}
		b.mu.Unlock()
		s.mu.Lock()
		s.end = true
		close(s.ch)
		s.mu.Unlock()
	})
	return s.ch, nil
}

func (b *memBus) Publish(ctx context.Context, topic string, data []byte) error {
	if b.publishErr != nil {
		return b.publishErr
	}
	b.mu.Lock()
	b.seq++
	m := Message{Topic: topic, ID: fmt.Sprintf("%x", b.seq), From: b.from, Time: time.Now(), Data: data}
	subs := make([]*memSub, 0, len(b.subs[topic]))
	for s := range b.subs[topic] {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	// Delivery happens outside b.mu so a slow subscriber cannot block
	// Subscribe; it keeps each subscriber's order because tests publish
	// from one goroutine per topic.
	for _, s := range subs {
		s.mu.Lock()
		if !s.end {
			select {
			case s.ch <- m:
			case <-s.ctx.Done():
			case <-ctx.Done():
			}
		}
		s.mu.Unlock()
	}
	return ctx.Err()
}

// subscribers returns the number of live subscriptions to topic.
func (b *memBus) subscribers(topic string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs[topic])
}
