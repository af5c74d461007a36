package webrtc

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strconv"
	"testing"
)

// histBus is a memBus that keeps each topic's last window messages and
// resumes from them (Resumer); message IDs are its sequence numbers, in
// hex.
type histBus struct {
	*memBus
	window int
	hist   map[string][]Message // guarded by memBus.mu
	first  map[string]uint64    // the oldest sequence number held, per topic
	// clients are the clients of the resumes asked, in order.
	clients []string
}

func newHistBus(window int) *histBus {
	h := &histBus{memBus: newMemBus(), window: window, hist: map[string][]Message{}, first: map[string]uint64{}}
	h.published = func(m Message) {
		w := append(h.hist[m.Topic], m)
		if len(w) > h.window {
			w = w[1:]
		}
		h.hist[m.Topic] = w
		h.first[m.Topic], _ = strconv.ParseUint(w[0].ID, 16, 64)
	}
	return h
}

func (h *histBus) Resume(_ context.Context, client, topic, since string) ([]Message, bool, func(string) bool, error) {
	p, err := strconv.ParseUint(since, 16, 64)
	if err != nil {
		return nil, false, nil, errors.New("not a position")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients = append(h.clients, client)
	var out []Message
	replayed := map[string]bool{}
	for _, m := range h.hist[topic] {
		if id, _ := strconv.ParseUint(m.ID, 16, 64); id > p {
			out = append(out, m)
			replayed[m.ID] = true
		}
	}
	live := func(id string) bool {
		n, _ := strconv.ParseUint(id, 16, 64)
		return n > p && !replayed[id]
	}
	return out, p+1 >= h.first[topic], live, nil
}

// TestResumeSubscription: a client that subscribes from a position while
// messages keep being published gets every message after it exactly once,
// in order: the replay, then the live ones held meanwhile, then the rest.
// One that resumes from before the window is sent a gap error first.
func TestResumeSubscription(t *testing.T) {
	bus := newHistBus(100)
	cfg := testConfig(t)
	srv, err := New(bus, cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	e := &testEnv{t: t, bus: bus.memBus, srv: srv, url: hs.URL + OfferPath}
	ctx := testContext(t)
	tok := e.token([]string{"room", "old"}, nil)

	publish := func(topic string, from, to int) {
		for i := from; i < to; i++ {
			if err := bus.Publish(ctx, topic, []byte(strconv.Itoa(i)), "", nil); err != nil {
				t.Error(err)
			}
		}
	}
	expect := func(c *Client, from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			select {
			case m := <-c.Messages():
				if string(m.Data) != strconv.Itoa(i) {
					t.Fatalf("got %q, want %d", m.Data, i)
				}
			case <-ctx.Done():
				t.Fatalf("no message %d", i)
			}
		}
	}

	publish("room", 0, 10) // ids 1..a
	done := make(chan struct{})
	go func() { // publishing goes on while the client resumes
		defer close(done)
		publish("room", 10, 60)
	}()
	var gaps []error
	c := e.dial(ctx, tok, WithMessageBuffer(1000), WithErrorHandler(func(err error) { gaps = append(gaps, err) }))
	if err := c.SubscribeSince(ctx, "room", fmt.Sprintf("%x", 4)); err != nil { // after message 3
		t.Fatal(err)
	}
	<-done
	expect(c, 4, 60)
	publish("room", 60, 61)
	expect(c, 60, 61)
	select {
	case m := <-c.Messages():
		t.Fatalf("extra message %q", m.Data)
	default:
	}

	// 150 messages on "old", a window of 100: resuming after the 10th is a
	// gap, then the window.
	publish("old", 0, 150)
	var gapErr *ServerError
	g := e.dial(ctx, tok, WithMessageBuffer(1000), WithErrorHandler(func(err error) { errors.As(err, &gapErr) }))
	if err := g.SubscribeSince(ctx, "old", fmt.Sprintf("%x", 10)); err != nil {
		t.Fatal(err)
	}
	expect(g, 50, 150)
	if gapErr == nil || gapErr.Code != CodeGap || gapErr.Topic != "old" {
		t.Fatalf("no gap error before the window: %v", gapErr)
	}
	if len(gaps) != 0 {
		t.Errorf("a resume inside the window reported %v", gaps)
	}
	// Both resumes are asked for the token's budget key, which the Bus
	// budgets its reads by.
	bus.mu.Lock()
	clients := bus.clients
	bus.mu.Unlock()
	if len(clients) != 2 || clients[0] == "" || clients[0] != clients[1] {
		t.Errorf("resumes asked for clients %q, want the token's key twice", clients)
	}
}

// TestResumeLongerThanQueue: a replay longer than the session's queue is
// cut to its newest part that fits, with a gap error, under either slow
// client policy: never a disconnect (the client would resume from the same
// point again), never a silent drop.
func TestResumeLongerThanQueue(t *testing.T) {
	for _, policy := range []SlowPolicy{Disconnect, DropOldest} {
		t.Run(fmt.Sprint(policy), func(t *testing.T) {
			bus := newHistBus(100)
			cfg := testConfig(t)
			cfg.QueueLength, cfg.SlowPolicy = 20, policy
			srv, err := New(bus, cfg)
			if err != nil {
				t.Fatal(err)
			}
			hs := httptest.NewServer(srv)
			t.Cleanup(func() { hs.Close(); srv.Close() })
			e := &testEnv{t: t, bus: bus.memBus, srv: srv, url: hs.URL + OfferPath}
			ctx := testContext(t)
			for i := range 60 {
				if err := bus.Publish(ctx, "room", []byte(strconv.Itoa(i)), "", nil); err != nil {
					t.Fatal(err)
				}
			}
			var gapErr *ServerError
			c := e.dial(ctx, e.token([]string{"room"}, nil), WithMessageBuffer(1000), WithErrorHandler(func(err error) { errors.As(err, &gapErr) }))
			if err := c.SubscribeSince(ctx, "room", fmt.Sprintf("%x", 1)); err != nil { // after message 0
				t.Fatalf("subscribe: %v", err)
			}
			for i := 40; i < 60; i++ { // the newest 20
				if m := <-c.Messages(); string(m.Data) != strconv.Itoa(i) {
					t.Fatalf("got %q, want %d", m.Data, i)
				}
			}
			if gapErr == nil || gapErr.Code != CodeGap {
				t.Fatalf("no gap error for the cut replay: %v", gapErr)
			}
			if err := c.Err(); err != nil {
				t.Fatalf("session closed: %v", err)
			}
		})
	}
}
