package overlay

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"testing/synctest"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestSubscriptionQueue: a subscriber that does not read keeps the first
// SubscriptionQueue messages, in order, and loses the rest, counted in
// immense_overlay_messages_dropped_total; TryNext never blocks; Next ends
// with ErrClosed on Cancel and on the overlay's Close.
func TestSubscriptionQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const extra = 10
		o := newSimNet(t).overlay(nil, func(c *Config) { c.Registerer = prometheus.NewRegistry() })
		ctx := t.Context()
		sub, err := o.Subscribe("q")
		if err != nil {
			t.Fatal(err)
		}
		other, err := o.Subscribe("q")
		if err != nil {
			t.Fatal(err)
		}
		for i := range SubscriptionQueue + extra {
			if err := o.Publish(ctx, "q", []byte(strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait() // gossipsub has delivered everything it will
		for i := range SubscriptionQueue {
			m, ok := sub.TryNext()
			if !ok {
				t.Fatalf("TryNext: nothing after %d messages", i)
			}
			if string(m.Data) != strconv.Itoa(i) || m.Topic != "q" || m.From != o.Host().ID() {
				t.Fatalf("message %d: %q on %q from %s", i, m.Data, m.Topic, m.From)
			}
		}
		if m, ok := sub.TryNext(); ok {
			t.Fatalf("TryNext returned %q beyond the queue", m.Data)
		}
		var d dto.Metric
		if err := o.metrics.dropped.WithLabelValues("q").Write(&d); err != nil {
			t.Fatal(err)
		}
		// Both subscriptions lost the same messages, each counted.
		if got := d.GetCounter().GetValue(); got != 2*extra {
			t.Errorf("dropped counter %v, want %d", got, 2*extra)
		}

		// The queue has room again: the next message arrives through Next.
		if err := o.Publish(ctx, "q", []byte("late")); err != nil {
			t.Fatal(err)
		}
		if m, err := sub.Next(ctx); err != nil || string(m.Data) != "late" {
			t.Fatalf("Next = %v, %v; want \"late\"", m, err)
		}

		sub.Cancel()
		sub.Cancel() // idempotent
		if _, err := sub.Next(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("Next after Cancel: %v, want ErrClosed", err)
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		// Queued messages come first, even for a done context.
		if _, err := other.Next(cctx); err != nil {
			t.Fatalf("Next with messages queued and a done context: %v", err)
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := other.Next(ctx); err != nil {
				if !errors.Is(err, ErrClosed) {
					t.Fatalf("Next after Close: %v, want ErrClosed", err)
				}
				break
			}
		}
	})
}
