package webrtc

import (
	"context"
	"sync"
	"testing"
)

// presBus is a memBus with presence on every topic, counting each
// member's Present calls as the node does (a member is present while its
// count is above zero).
type presBus struct {
	*memBus
	mu    sync.Mutex
	count map[string]int
}

func (b *presBus) PresenceOn(string) bool { return true }

func (b *presBus) Present(topic, member string, joined bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case joined:
		b.count[member]++
	case b.count[member] > 0:
		b.count[member]--
	}
}

func (b *presBus) WatchPresence(ctx context.Context, topic string) (<-chan PresenceEvent, error) {
	ch := make(chan PresenceEvent)
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return ch, nil
}

func (b *presBus) members() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, c := range b.count {
		if c > 0 {
			n++
		}
	}
	return n
}

// TestPresenceLeaveWhileJoining: a session that closes after the bridge
// added it to a topic but before it was reported present (the subscribe
// and the close run on different goroutines) is not left behind as a
// member. This is that interleaving, run in order: the report used to
// come after the close's leave, which could not undo it.
func TestPresenceLeaveWhileJoining(t *testing.T) {
	bus := &presBus{memBus: newMemBus(), count: map[string]int{}}
	srv, err := New(bus, testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	b := srv.bridge
	stay := &session{srv: srv, id: 1}
	gone := &session{srv: srv, id: 2}

	for _, s := range []*session{stay, gone} {
		if err := b.join("room", s); err != nil {
			t.Fatal(err)
		}
	}
	b.present("room", stay)
	// gone closes between its join and its report.
	gone.mu.Lock()
	gone.closed = true
	gone.mu.Unlock()
	b.leave("room", gone)
	b.present("room", gone)
	if n := bus.members(); n != 1 {
		t.Fatalf("%d members after one session closed mid-subscribe, want 1 (%v)", n, bus.count)
	}
	b.present("room", stay) // a repeated report counts once
	b.leave("room", stay)
	if n := bus.members(); n != 0 {
		t.Fatalf("%d members after both left, want 0 (%v)", n, bus.count)
	}
}
