package overlay

import (
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestPublishDoesNotPinTopics is issue 11's finding 5: 4,100 publishes to
// fresh topic names used to fill MaxTopics, after which a normal publish
// failed and a subscribe was refused. Publish-only topics now live in an
// LRU of MaxPublishTopics: the flood only churns it (counted in
// immense_overlay_topics_evicted_total), and a subscribe and a publish
// beside it work.
func TestPublishDoesNotPinTopics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const flood = 4100
		o := newSimNet(t).overlay(nil, func(c *Config) { c.Registerer = prometheus.NewRegistry() })
		ctx := t.Context()
		for i := range flood {
			if err := o.Publish(ctx, fmt.Sprintf("fresh/%d", i), []byte("x")); err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
			time.Sleep(time.Millisecond) // within PublisherMessageRate
		}
		if n := len(o.Topics()); n > o.cfg.MaxPublishTopics {
			t.Errorf("%d topics joined after the flood, want at most MaxPublishTopics (%d)", n, o.cfg.MaxPublishTopics)
		}
		if got, want := counterValue(t, o.metrics.topicsEvicted), float64(flood-o.cfg.MaxPublishTopics); got < want {
			t.Errorf("topics_evicted_total %v, want >= %v", got, want)
		}
		sub, err := o.Subscribe("chat")
		if err != nil {
			t.Fatalf("subscribe after the flood: %v", err)
		}
		if err := o.Publish(ctx, "chat", []byte("hello")); err != nil {
			t.Fatalf("publish after the flood: %v", err)
		}
		m, err := sub.Next(ctx)
		if err != nil || string(m.Data) != "hello" {
			t.Fatalf("Next = %v, %v; want hello", m, err)
		}
	})
}

// TestTopicTableFull: the topic table refuses, with ErrTooManyTopics and
// immense_overlay_topics_refused_total, only what it cannot make room for:
// a publish while every publish-only topic still holds a backlog (they
// are never dropped), a subscribe or publish when subscriptions fill
// MaxTopics. Subscribing evicts publish-only topics; a cancelled
// subscription's topic becomes evictable.
func TestTopicTableFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newSimNet(t).overlay(nil, func(c *Config) {
			c.Registerer = prometheus.NewRegistry()
			c.MaxTopics, c.MaxPublishTopics = 6, 3
		})
		ctx := t.Context()
		// A lone node knows no subscriber: each publish waits in a backlog
		// for PublishDiscoveryTimeout.
		for i := range 3 {
			if err := o.Publish(ctx, fmt.Sprintf("wait/%d", i), []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		if err := o.Publish(ctx, "wait/3", []byte("x")); !errors.Is(err, ErrTooManyTopics) {
			t.Fatalf("publish with every publish-only topic backlogged: %v, want ErrTooManyTopics", err)
		}
		if got := counterValue(t, o.metrics.topicsRefused); got != 1 {
			t.Errorf("topics_refused_total %v, want 1", got)
		}
		time.Sleep(o.cfg.PublishDiscoveryTimeout + time.Second) // the backlogs drain
		if err := o.Publish(ctx, "wait/3", []byte("x")); err != nil {
			t.Fatalf("publish once the backlogs drained: %v", err)
		}
		time.Sleep(o.cfg.PublishDiscoveryTimeout + time.Second)

		// Subscriptions take the whole table, evicting publish-only topics.
		var subs []*Subscription
		for i := range 6 {
			s, err := o.Subscribe(fmt.Sprintf("sub/%d", i))
			if err != nil {
				t.Fatalf("subscribe %d: %v", i, err)
			}
			subs = append(subs, s)
		}
		if _, err := o.Subscribe("sub/6"); !errors.Is(err, ErrTooManyTopics) {
			t.Fatalf("subscribe beyond MaxTopics: %v, want ErrTooManyTopics", err)
		}
		if err := o.Publish(ctx, "other", []byte("x")); !errors.Is(err, ErrTooManyTopics) {
			t.Fatalf("publish with MaxTopics subscriptions: %v, want ErrTooManyTopics", err)
		}
		if err := o.Publish(ctx, "sub/0", []byte("x")); err != nil {
			t.Fatalf("publish to a subscribed topic: %v", err)
		}
		subs[5].Cancel()
		synctest.Wait() // gossipsub has processed the cancel
		if _, err := o.Subscribe("sub/6"); err != nil {
			t.Fatalf("subscribe after a cancel: %v", err)
		}
	})
}
