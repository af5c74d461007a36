package node

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/overlay"
	"github.com/libp2p/go-libp2p/core/peer"
	dto "github.com/prometheus/client_model/go"
)

// durableNet starts n app peers with state, windows of 10 messages and
// durable history for the topic "room".
func durableNet(t *testing.T, n int) *simNet {
	t.Helper()
	keyFile := seededAppKey(t, "durable")
	net := newStateNet(t, n, func(i int, c *Config) {
		c.AppKeyFile = keyFile
		sc := erasure.DevnetConfig()
		sc.DataShards, sc.MinParity, sc.MaxShards = 2, 1, 3
		sc.GCInterval = 0
		sc.Scheduler.Seed = uint64(i + 1)
		c.State = &sc
		c.Overlay.History.Default.Messages = 10
		c.DurableHistory = DurableHistoryConfig{Topics: []string{"room"}, FlushInterval: time.Second}
	})
	for _, nd := range net.nodes {
		<-nd.n.Joined()
	}
	time.Sleep(10 * time.Second)
	return net
}

// receive reads want messages from ch within a minute of virtual time.
func receive(t *testing.T, ch <-chan *Message, want int) []*Message {
	t.Helper()
	var out []*Message
	timeout := time.After(time.Minute)
	for range want {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatalf("subscription ended after %d messages", len(out))
			}
			out = append(out, m)
		case <-timeout:
			t.Fatalf("%d messages within a minute, want %d: %v", len(out), want, payloads(out))
		}
	}
	return out
}

func payloads(msgs []*Message) []string {
	var out []string
	for _, m := range msgs {
		if m.Gap {
			out = append(out, "gap")
		} else {
			out = append(out, string(m.Data))
		}
	}
	return out
}

// expectRun checks that msgs are the messages with payloads from..to-1,
// in order, none a gap.
func expectRun(t *testing.T, msgs []*Message, from, to int) {
	t.Helper()
	if len(msgs) != to-from {
		t.Fatalf("%d messages, want %d", len(msgs), to-from)
	}
	for i, m := range msgs {
		if m.Gap || string(m.Data) != strconv.Itoa(from+i) {
			t.Logf("got %v", payloads(msgs))
			t.Fatalf("message %d: %q (gap %v), want %d", i, m.Data, m.Gap, from+i)
		}
	}
}

// TestDurableHistoryResume: a subscriber that resumes, at another peer,
// from a position older than the window of 10 gets exactly the messages
// it missed from the durable history, in order, each once, then the live
// ones; on a topic without durable history the same resume is a gap.
func TestDurableHistoryResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := durableNet(t, 4)
		pub, a, b := net.nodes[0].n, net.nodes[1].n, net.nodes[2].n
		ctx := t.Context()
		room, err := a.Subscribe(ctx, "room")
		if err != nil {
			t.Fatal(err)
		}
		plain, err := a.Subscribe(ctx, "plain")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		for i := range 30 {
			for _, topic := range []string{"room", "plain"} {
				if err := pub.Publish(ctx, topic, []byte(strconv.Itoa(i))); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(300 * time.Millisecond)
		}
		t.Log("published")
		seen := receive(t, room, 30)
		expectRun(t, seen, 0, 30)
		seenPlain := receive(t, plain, 30)
		time.Sleep(15 * time.Second) // a stores its segments

		resumed, err := b.Subscribe(ctx, "room", Since(seen[5].Position))
		if err != nil {
			t.Fatal(err)
		}
		t.Log("resuming")
		expectRun(t, receive(t, resumed, 24), 6, 30)
		if err := pub.Publish(ctx, "room", []byte("30")); err != nil {
			t.Fatal(err)
		}
		expectRun(t, receive(t, resumed, 1), 30, 31)
		var m dto.Metric
		if err := b.durable.resumes.WithLabelValues("recovered").Write(&m); err != nil || m.GetCounter().GetValue() != 1 {
			t.Errorf("recovered resumes counted: %v (%v)", m.GetCounter().GetValue(), err)
		}

		// A browser's token reads durable history one resume at a time:
		// while one of its resumes reads, the next waits (here past
		// fillWait, so it is a gap), and another token's is served.
		release, ok := b.durable.fills.Take("sub:a")
		if !ok {
			t.Fatal("no fill slot free")
		}
		since := seen[5].Position.String()
		if _, ok, _, err := (bus{b}).Resume(ctx, "sub:a", "room", since); err != nil || ok {
			t.Errorf("a second resume of one token at once: recovered %v (%v), want a gap", ok, err)
		}
		if err := b.durable.resumes.WithLabelValues("busy").Write(&m); err != nil || m.GetCounter().GetValue() != 1 {
			t.Errorf("busy resumes counted: %v (%v)", m.GetCounter().GetValue(), err)
		}
		if msgs, ok, _, err := (bus{b}).Resume(ctx, "sub:b", "room", since); err != nil || !ok || len(msgs) != 25 {
			t.Errorf("another token's resume: %d messages, recovered %v (%v), want 25", len(msgs), ok, err)
		}
		release()

		gapped, err := b.Subscribe(ctx, "plain", Since(seenPlain[5].Position))
		if err != nil {
			t.Fatal(err)
		}
		if m := <-gapped; !m.Gap {
			t.Fatalf("resume of plain beyond its window: %q, want a gap", m.Data)
		}
		expectRun(t, receive(t, gapped, 10), 20, 30)

		time.Sleep(5 * time.Second)
		select {
		case m := <-resumed:
			t.Fatalf("extra message %q", m.Data)
		default:
		}
	})
}

// FuzzDurableRecords: segments and indexes read from the state decode
// strictly or not at all.
func FuzzDurableRecords(f *testing.F) {
	const pid = "12D3KooWKvEHChTM62eyN3xrqU3QgVSmjFgcrTt9AwrauWbtSHNz"
	f.Add([]byte(`{"v":1,"topic":"room","writer":"` + pid + `","n":3,"prev":{"t":1,"s":0},"last":{"t":2,"s":7,"p":"` + pid + `"},"msgs":["AAEC"]}`))
	f.Add([]byte(`{"v":1,"topic":"room","segs":[{"writer":"` + pid + `","n":0,"prev":{"t":1,"s":0},"last":{"t":5,"s":1},"count":2}]}`))
	f.Add([]byte(`{"v":1,"topic":"room","prev":{"t":9},"last":{"t":1}}`))
	f.Add([]byte(`{"v":2,"topic":"room"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, prev, last, err := decodeSegment(b, "room"); err == nil {
			if len(s.Msgs) > segmentMessages || last.Compare(prev) < 0 || s.Topic != "room" {
				t.Fatalf("segment accepted: %d messages, stretch (%v, %v]", len(s.Msgs), prev, last)
			}
		}
		if x, err := decodeIndex(b, "room"); err == nil {
			if len(x.Segs) > maxIndexEntries || x.Topic != "room" {
				t.Fatalf("index accepted: %d entries of %q", len(x.Segs), x.Topic)
			}
		}
	})
}

// TestDurableCovered: stretches join from the resume point upwards, over
// any writer's, and stop at the first hole.
func TestDurableCovered(t *testing.T) {
	at := func(s int64) overlay.Position { return overlay.Position{Time: time.Unix(s, 0)} }
	for _, c := range []struct {
		name      string
		stretches []stretch
		since     int64
		want      int64
	}{
		{"none", nil, 5, 5},
		{"chain", []stretch{{at(1), at(4)}, {at(4), at(9)}}, 2, 9},
		{"two writers overlap", []stretch{{at(6), at(12)}, {at(0), at(7)}}, 3, 12},
		{"hole", []stretch{{at(0), at(4)}, {at(5), at(9)}}, 1, 4},
		{"starts after since", []stretch{{at(3), at(9)}}, 1, 1},
	} {
		if got := covered(c.stretches, at(c.since)); got.Compare(at(c.want)) != 0 {
			t.Errorf("%s: covered to %v, want %v", c.name, got.Time.Unix(), c.want)
		}
	}
}

// TestDurableHistoryConfig: bad settings are refused, naming the field.
func TestDurableHistoryConfig(t *testing.T) {
	for _, c := range []DurableHistoryConfig{
		{Topics: []string{"a*b"}},
		{Retention: -time.Second},
		{Retention: 365 * 24 * time.Hour},
		{Messages: maxDurableMessages + 1},
		{FlushInterval: -1},
	} {
		if errs := c.validate(); len(errs) == 0 || !strings.Contains(errs[0].Error(), "DurableHistory.") {
			t.Errorf("%+v: %v", c, errs)
		}
	}
	if errs := (DurableHistoryConfig{Topics: []string{"chat/*"}}).validate(); len(errs) != 0 {
		t.Errorf("valid config refused: %v", errs)
	}
	if err := erasure.ValidateKey(segmentKey("chat/room 1", "12D3KooWKvEHChTM62eyN3xrqU3QgVSmjFgcrTt9AwrauWbtSHNz", 1<<63)); err != nil {
		t.Errorf("segment key: %v", err)
	}
}

// publishRun publishes payloads from..to-1 on topic, 300 ms apart.
func publishRun(t *testing.T, pub *Node, topic string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := pub.Publish(t.Context(), topic, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// TestDurableHistoryRestart: two writers of a topic, one of which
// restarts in the middle, keep separate segments, the restarted one
// numbering on after its own; a resume from before both runs gets every
// message once, in order.
func TestDurableHistoryRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := durableNet(t, 4)
		pub, a, b, c := net.nodes[0], net.nodes[1], net.nodes[2], net.nodes[3]
		subA, err := a.n.Subscribe(t.Context(), "room")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.n.Subscribe(t.Context(), "room"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		publishRun(t, pub.n, "room", 0, 30)
		seen := receive(t, subA, 30)
		time.Sleep(durableIndexCheck + 10*time.Second) // a racing index write may have dropped the other's entries
		before := ownSegments(t, c.n, a.id)

		net.stop(a)
		net.start(a, net.bootstrapAddrs())
		<-a.n.Joined()
		if _, err := a.n.Subscribe(t.Context(), "room"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		publishRun(t, pub.n, "room", 30, 60)
		time.Sleep(durableIndexCheck + 10*time.Second) // b puts back its entries a's first index write dropped
		after := ownSegments(t, c.n, a.id)
		if len(before) == 0 || len(after) <= len(before) || slices.Max(after) <= slices.Max(before) {
			t.Fatalf("a's segments: %v before its restart, %v after", before, after)
		}
		if len(ownSegments(t, c.n, b.id)) == 0 {
			t.Fatal("b's segments are not in the index")
		}

		resumed, err := c.n.Subscribe(t.Context(), "room", Since(seen[5].Position))
		if err != nil {
			t.Fatal(err)
		}
		expectRun(t, receive(t, resumed, 54), 6, 60)
	})
}

// ownSegments returns the numbers of writer's segments of "room" in the
// index, read on nd.
func ownSegments(t *testing.T, nd *Node, writer peer.ID) []uint64 {
	t.Helper()
	b, err := nd.Get(t.Context(), indexKey("room"))
	if err != nil {
		t.Fatalf("read the index: %v", err)
	}
	x, err := decodeIndex(b, "room")
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, s := range x.Segs {
		if s.Writer == writer.String() {
			out = append(out, s.N)
		}
	}
	return out
}

// TestDurableRecordVerified: a message read from durable history is
// checked as one fetched from a peer: intact it passes, with its payload
// changed, or under another topic, it is refused.
func TestDurableRecordVerified(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nodes := simNetwork(t, 2, nil)
		sub, err := nodes[1].Subscribe(t.Context(), "room")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		if err := nodes[0].Publish(t.Context(), "room", []byte("hello")); err != nil {
			t.Fatal(err)
		}
		receive(t, sub, 1)
		ov := nodes[1].Overlay()
		recs, _, ok := ov.HistoryRecords("room", overlay.Position{}, 10)
		if !ok || len(recs) != 1 {
			t.Fatalf("window: %d records, ok %v", len(recs), ok)
		}
		raw := recs[0].Raw
		if m, err := ov.VerifyHistoryRecord("room", raw); err != nil || string(m.Data) != "hello" || m.Position != recs[0].Position {
			t.Fatalf("intact record: %v %v", m, err)
		}
		i := strings.Index(string(raw), "hello")
		bad := slices.Clone(raw)
		bad[i] ^= 1
		if _, err := ov.VerifyHistoryRecord("room", bad); err == nil {
			t.Error("record with a changed payload accepted")
		}
		if _, err := ov.VerifyHistoryRecord("other", raw); err == nil {
			t.Error("record of another topic accepted")
		}
	})
}
