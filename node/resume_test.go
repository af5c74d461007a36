package node

import (
	"context"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct{ typ, id, data string }

// readSSE runs GET /v1/topics/{topic} (with Last-Event-ID lastID, if
// set) on nd for d of virtual time and returns its events.
func readSSE(t *testing.T, nd *Node, topic, lastID string, d time.Duration) []sseEvent {
	t.Helper()
	a := nd.newAPI(HTTPOptions{Topics: true})
	ctx, cancel := context.WithCancel(t.Context())
	r := controlReq(nd, "GET", "/v1/topics/"+topic, "").WithContext(ctx)
	if lastID != "" {
		r.Header.Set("Last-Event-ID", lastID)
	}
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.routes().ServeHTTP(rec, r)
	}()
	time.Sleep(d)
	cancel()
	<-done
	if rec.Code != 200 {
		t.Fatalf("SSE: %d %s", rec.Code, rec.Body)
	}
	var out []sseEvent
	for _, block := range strings.Split(rec.Body.String(), "\n\n") {
		var e sseEvent
		for _, line := range strings.Split(block, "\n") {
			k, v, _ := strings.Cut(line, ": ")
			switch k {
			case "event":
				e.typ = v
			case "id":
				e.id = v
			case "data":
				e.data = v
			}
		}
		if e.typ != "" {
			out = append(out, e)
		}
	}
	return out
}

// dataRun checks that the events are messages with payloads from..to-1.
func dataRun(t *testing.T, es []sseEvent, from, to int) {
	t.Helper()
	if len(es) != to-from {
		t.Fatalf("%d events, want %d (%d..%d): %v", len(es), to-from, from, to-1, es)
	}
	for i, e := range es {
		if e.typ != "message" || e.data != strconv.Itoa(from+i) {
			t.Fatalf("event %d: %s %q, want message %d", i, e.typ, e.data, from+i)
		}
	}
}

// TestSSEResume: an SSE client that reconnects with Last-Event-ID, to the
// same peer or another, gets exactly the messages it missed, in order,
// then the live ones; one that was away longer than the window gets a gap
// event first. ?since= with a time works the same.
func TestSSEResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nodes := simNetwork(t, 3, func(_ int, c *Config) { c.Overlay.History.Default.Messages = 10 })
		pub, a, b := nodes[0], nodes[1], nodes[2]
		// b follows the topic too (another client there), so it keeps a
		// window.
		if _, err := b.Subscribe(t.Context(), "room"); err != nil {
			t.Fatal(err)
		}
		publishing := make(chan struct{})
		go func() {
			defer close(publishing)
			time.Sleep(5 * time.Second) // a's stream subscribes, meshes form
			for i := range 20 {
				if err := pub.Publish(context.Background(), "room", []byte(strconv.Itoa(i))); err != nil {
					t.Error(err)
				}
			}
		}()
		first := readSSE(t, a, "room", "", 10*time.Second)
		<-publishing
		dataRun(t, first, 0, 20)
		for i := 20; i < 25; i++ { // while the client is away
			if err := pub.Publish(t.Context(), "room", []byte(strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Second)

		// Back, to the other peer, from message 17: 18..24, no gap.
		dataRun(t, readSSE(t, b, "room", first[17].id, time.Second), 18, 25)
		// From message 7, older than the window of 10 (15..24): a gap,
		// then the window.
		es := readSSE(t, a, "room", first[7].id, time.Second)
		if len(es) == 0 || es[0].typ != "gap" {
			t.Fatalf("resume beyond the window: no gap event first: %v", es)
		}
		dataRun(t, es[1:], 15, 25)
		// A bad resume point is refused.
		rec := httptest.NewRecorder()
		r := controlReq(a, "GET", "/v1/topics/room?since=yesterday", "")
		a.newAPI(HTTPOptions{Topics: true}).routes().ServeHTTP(rec, r)
		if rec.Code != 400 {
			t.Errorf("?since=yesterday: %d, want 400", rec.Code)
		}
	})
}

// TestSubscribeSince: the Go API resumes from a position: the missed
// messages, then live ones, each once.
func TestSubscribeSince(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nodes := simNetwork(t, 2, nil)
		ctx := t.Context()
		first, err := nodes[1].Subscribe(ctx, "room")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		for i := range 10 {
			if err := nodes[0].Publish(ctx, "room", []byte(strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
		var m3 *Message
		for range 10 {
			m := <-first
			if string(m.Data) == "3" {
				m3 = m
			}
		}
		msgs, err := nodes[1].Subscribe(ctx, "room", Since(m3.Position))
		if err != nil {
			t.Fatal(err)
		}
		for i := 4; i < 10; i++ {
			if m := <-msgs; string(m.Data) != strconv.Itoa(i) || m.Gap {
				t.Fatalf("replayed %q (gap %v), want %d", m.Data, m.Gap, i)
			}
		}
		if err := nodes[0].Publish(ctx, "room", []byte("10")); err != nil {
			t.Fatal(err)
		}
		if m := <-msgs; string(m.Data) != "10" {
			t.Fatalf("live %q, want 10", m.Data)
		}
		time.Sleep(5 * time.Second)
		select {
		case m := <-msgs:
			t.Fatalf("extra message %q", m.Data)
		default:
		}
	})
}
