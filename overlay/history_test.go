package overlay

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/immense-p2p/immense/internal/browsersig"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
)

func TestPositionText(t *testing.T) {
	pub := testPeerID(t, 1)
	p := Position{Publisher: pub, Seq: 1<<63 + 5, Time: time.Unix(1700000000, 123)}
	q, err := ParsePosition(p.String())
	if err != nil || q.Compare(p) != 0 || q.Publisher != pub {
		t.Fatalf("round trip of %s: %v, %v", p, q, err)
	}
	ts, err := ParsePosition("2026-01-02T03:04:05Z")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	// A time stands just before every message published at it.
	if ts.Compare(Position{Publisher: pub, Time: at}) >= 0 || !ts.Time.Equal(at.Add(-1)) {
		t.Fatalf("time position %v is not just before %v", ts, at)
	}
	for _, bad := range []string{"", "x", "1-2", "-1-2-", "1-x-", "1-2-notapeer", string(make([]byte, 200))} {
		if _, err := ParsePosition(bad); err == nil {
			t.Errorf("ParsePosition(%q) accepted", bad)
		}
	}
}

// entryAt is a window entry of n payload bytes by pub at time at.
func entryAt(pub peer.ID, seq uint64, at time.Time, n int) histEntry {
	m := &pb.Message{From: []byte(pub), Data: make([]byte, n), Seqno: make([]byte, 8)}
	return histEntry{pos: Position{Publisher: pub, Seq: seq, Time: at}, msg: m, size: entrySize(m)}
}

// TestHistoryWindow: a window keeps the newest Messages messages within
// Bytes and TTL, in position order whatever order they came in, without
// duplicates, and its floor rises past what it drops.
func TestHistoryWindow(t *testing.T) {
	cfg := DefaultHistory()
	cfg.Default = HistoryLimits{Messages: 5, Bytes: 1 << 20, TTL: time.Minute}
	s := newHistoryStore(cfg)
	t0 := time.Unix(1000, 0)
	w, created := s.open("room", t0)
	if !created {
		t.Fatal("window not created")
	}
	a, b := testPeerID(t, 1), testPeerID(t, 2)
	// Out of order, two publishers, one duplicate.
	for _, i := range []int{3, 1, 2, 0, 4, 2} {
		pub := a
		if i%2 == 1 {
			pub = b
		}
		s.add(w, entryAt(pub, uint64(i), t0.Add(time.Duration(i+1)*time.Second), 10), t0.Add(10*time.Second))
	}
	got, floor := s.since(w, Position{}, 100, t0.Add(10*time.Second))
	if len(got) != 5 || floor.Compare(w.floor) != 0 {
		t.Fatalf("%d messages, floor %v", len(got), floor)
	}
	for i, e := range got {
		if e.pos.Seq != uint64(i) {
			t.Fatalf("message %d has seq %d: not in position order", i, e.pos.Seq)
		}
	}
	// Two more: the two oldest go, the floor is the newest dropped.
	s.add(w, entryAt(a, 6, t0.Add(7*time.Second), 10), t0.Add(10*time.Second))
	s.add(w, entryAt(a, 5, t0.Add(6*time.Second), 10), t0.Add(10*time.Second))
	got, _ = s.since(w, Position{}, 100, t0.Add(10*time.Second))
	if len(got) != 5 || got[0].pos.Seq != 2 || w.floor.Seq != 1 {
		t.Fatalf("after eviction: %d messages from seq %d, floor seq %d", len(got), got[0].pos.Seq, w.floor.Seq)
	}
	// Resume from a held message: exactly what follows, recovered.
	got, floor = s.since(w, got[1].pos, 100, t0.Add(10*time.Second))
	if len(got) != 3 || floor.Compare(Position{}) == 0 || got[0].pos.Seq != 4 {
		t.Fatalf("since seq 3: %d messages", len(got))
	}
	// A message at or below the floor is not taken back.
	if s.add(w, entryAt(a, 0, t0.Add(time.Second), 10), t0.Add(10*time.Second)) {
		t.Fatal("a dropped message came back")
	}
	// TTL: a minute later everything is gone.
	got, _ = s.since(w, Position{}, 100, t0.Add(2*time.Minute))
	if len(got) != 0 || s.size() != 0 {
		t.Fatalf("after the TTL: %d messages, %d bytes", len(got), s.size())
	}
	s.close("room")
	if _, created := s.open("room", t0); !created {
		t.Fatal("closed window still open")
	}
}

// TestHistoryBudget: a flood of fresh topics stays within MaxTopics
// windows and MaxBytes bytes, however many messages each gets.
func TestHistoryBudget(t *testing.T) {
	cfg := DefaultHistory()
	cfg.MaxTopics = 50
	cfg.MaxBytes = 64 << 10
	s := newHistoryStore(cfg)
	now := time.Unix(1000, 0)
	pub := testPeerID(t, 1)
	opened := 0
	for i := range 1000 {
		w, _ := s.open("t"+strconv.Itoa(i), now)
		if w == nil {
			continue
		}
		opened++
		for j := range 20 {
			s.add(w, entryAt(pub, uint64(j), now.Add(time.Duration(j)), 1000), now)
		}
		if s.size() > cfg.MaxBytes {
			t.Fatalf("topic %d: %d bytes held, budget %d", i, s.size(), cfg.MaxBytes)
		}
	}
	if opened != cfg.MaxTopics {
		t.Fatalf("%d windows opened, MaxTopics %d", opened, cfg.MaxTopics)
	}
}

// historyNet is three overlays on a simulated network, all subscribed to
// a topic.
type historyNet struct {
	s   *simNet
	os  []*Overlay
	reg []*prometheus.Registry
}

func (n *historyNet) start(i int, boot *Overlay, adjust func(*Config)) *Overlay {
	cfg := DefaultConfig()
	cfg.Mode = ModeServer
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Registerer = prometheus.NewRegistry()
	if boot != nil {
		cfg.Bootstrap = []peer.AddrInfo{{ID: boot.Host().ID(), Addrs: boot.Host().Addrs()}}
	}
	if adjust != nil {
		adjust(&cfg)
	}
	o, err := New(context.Background(), n.s.hosts.Start(i), cfg)
	if err != nil {
		n.s.t.Fatal(err)
	}
	n.s.t.Cleanup(func() { o.Close() })
	return o
}

func newHistoryNet(t *testing.T, peers int, adjust func(*Config)) *historyNet {
	n := &historyNet{s: newSimNet(t)}
	n.os = append(n.os, n.start(0, nil, adjust))
	for i := 1; i < peers; i++ {
		n.os = append(n.os, n.start(i, n.os[0], adjust))
	}
	waitJoined(t, 30*time.Second, n.os...)
	return n
}

func publishN(t *testing.T, o *Overlay, topic string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := o.Publish(t.Context(), topic, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
}

// checkRun checks that msgs are the payloads from..to-1, in order.
func checkRun(t *testing.T, msgs []*Message, from, to int) {
	t.Helper()
	if len(msgs) != to-from {
		t.Fatalf("%d messages, want %d (%d..%d)", len(msgs), to-from, from, to-1)
	}
	for i, m := range msgs {
		if string(m.Data) != strconv.Itoa(from+i) {
			t.Fatalf("message %d is %q, want %d", i, m.Data, from+i)
		}
	}
}

// TestHistoryRestartRecovers: a peer restarted (same identity and
// address, its memory gone) subscribes again and recovers the topic's
// window from the others over /immense/history/1.0.0: a subscriber that
// resumes from any message of the window through it gets exactly what
// followed, in order.
func TestHistoryRestartRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newHistoryNet(t, 3, nil)
		for _, o := range n.os {
			if _, err := o.Subscribe("room"); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Second) // subscriptions and meshes form
		publishN(t, n.os[0], "room", 0, 30)
		time.Sleep(5 * time.Second)
		before, ok, err := n.os[2].History(t.Context(), "room", Position{})
		if err != nil {
			t.Fatal(err)
		}
		checkRun(t, before, 0, 30)
		if ok {
			t.Error("a window starting at its subscription claims to reach back to the beginning of time")
		}

		n.os[2].Close()
		n.s.hosts.Stop(2)
		o := n.start(2, n.os[0], nil)
		waitJoined(t, 30*time.Second, o)
		if _, err := o.Subscribe("room"); err != nil {
			t.Fatal(err)
		}
		msgs, ok, err := o.History(t.Context(), "room", before[9].Position)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Fatal("resume inside the recovered window reported a gap")
		}
		checkRun(t, msgs, 10, 30)
		if msgs[0].Position.Compare(before[10].Position) != 0 || msgs[0].ID != before[10].ID {
			t.Fatalf("recovered message has position %v, want %v", msgs[0].Position, before[10].Position)
		}
		// And live messages keep coming into the window.
		publishN(t, n.os[1], "room", 30, 35)
		time.Sleep(5 * time.Second)
		msgs, _, _ = o.History(t.Context(), "room", before[29].Position)
		checkRun(t, msgs, 30, 35)
	})
}

// TestHistoryGap: a resume point older than the window is reported as a
// gap, with the window it still has; one inside is not.
func TestHistoryGap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newHistoryNet(t, 2, func(c *Config) { c.History.Default.Messages = 10 })
		sub, err := n.os[1].Subscribe("room")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.os[0].Subscribe("room"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		publishN(t, n.os[0], "room", 0, 30)
		time.Sleep(5 * time.Second)
		var live []*Message
		for m, ok := sub.TryNext(); ok; m, ok = sub.TryNext() {
			live = append(live, m)
		}
		checkRun(t, live, 0, 30)
		msgs, ok, err := n.os[1].History(t.Context(), "room", live[3].Position)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			t.Fatal("resume 26 messages back in a window of 10 did not report a gap")
		}
		checkRun(t, msgs, 20, 30)
		msgs, ok, _ = n.os[1].History(t.Context(), "room", live[24].Position)
		if !ok {
			t.Fatal("resume inside the window reported a gap")
		}
		checkRun(t, msgs, 25, 30)
	})
}

// TestResumeNoDuplicates: a subscriber that subscribes, replays and then
// reads live, with messages published all along, gets every message after
// its resume point once.
func TestResumeNoDuplicates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newHistoryNet(t, 2, nil)
		first, err := n.os[1].Subscribe("room")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.os[0].Subscribe("room"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		publishN(t, n.os[0], "room", 0, 20)
		time.Sleep(5 * time.Second)
		m5 := (*Message)(nil)
		for m, ok := first.TryNext(); ok; m, ok = first.TryNext() {
			if string(m.Data) == "5" {
				m5 = m
			}
		}
		if m5 == nil {
			t.Fatal("message 5 not delivered")
		}
		// Publishing goes on while the subscriber comes back.
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 20; i < 60; i++ {
				_ = n.os[0].Publish(context.Background(), "room", []byte(strconv.Itoa(i)))
				time.Sleep(10 * time.Millisecond)
			}
		}()
		time.Sleep(150 * time.Millisecond)
		sub, err := n.os[1].Subscribe("room")
		if err != nil {
			t.Fatal(err)
		}
		replay, ok, err := n.os[1].History(t.Context(), "room", m5.Position)
		if err != nil || !ok {
			t.Fatalf("History: %v, recovered %v", err, ok)
		}
		r := NewResume(m5.Position, replay)
		got := append([]*Message(nil), replay...)
		<-done
		time.Sleep(5 * time.Second)
		for m, ok := sub.TryNext(); ok; m, ok = sub.TryNext() {
			if r.Live(m) {
				got = append(got, m)
			}
		}
		checkRun(t, got, 6, 60)
	})
}

// TestHistoryRequestFlood: a peer asking for history far over its rate is
// refused beyond its burst, and nothing it asks makes us keep anything.
func TestHistoryRequestFlood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newHistoryNet(t, 2, nil)
		if _, err := n.os[0].Subscribe("room"); err != nil {
			t.Fatal(err)
		}
		if _, err := n.os[1].Subscribe("room"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		publishN(t, n.os[0], "room", 0, 10)
		time.Sleep(time.Second)
		server, asker := n.os[0], n.os[1]
		bytesBefore := server.history.size()
		okBefore := counterValue(t, server.metrics.historyServes.WithLabelValues("ok"))
		lim := server.cfg.History.Default
		served := 0
		for range 100 {
			if es, _, err := asker.fetchFrom(t.Context(), server.Host().ID(), "room", lim); err == nil {
				if len(es) != 10 {
					t.Fatalf("served %d messages, want 10", len(es))
				}
				served++
			}
		}
		if served > server.cfg.History.ServeBurst+1 {
			t.Fatalf("%d of 100 requests served, burst %d", served, server.cfg.History.ServeBurst)
		}
		if got := counterValue(t, server.metrics.historyServes.WithLabelValues("rate")); got < float64(100-served) {
			t.Errorf("rate refusals counted %v, want %d", got, 100-served)
		}
		if got := counterValue(t, server.metrics.historyServes.WithLabelValues("ok")) - okBefore; got != float64(served) {
			t.Errorf("served counted %v, want %d", got, served)
		}
		if server.history.size() != bytesBefore {
			t.Errorf("history grew from %d to %d bytes by requests", bytesBefore, server.history.size())
		}
		// A topic the asker does not subscribe to is refused.
		if _, err := asker.Subscribe("other"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute) // the asker's bucket refills
		if _, _, err := server.fetchFrom(t.Context(), asker.Host().ID(), "other", lim); err == nil {
			t.Error("history of a topic served to a peer not subscribed to it")
		}
	})
}

// TestHistorySilentStreams: a peer that opens history streams and sends
// nothing (or is subscribed to nothing) holds no serving slot: a
// subscriber's fetch is served meanwhile. And one peer holds at most
// maxHistoryServesPerPeer slots. Before, maxHistoryServes silent streams
// from one peer took every slot for FetchTimeout, and subscribers got no
// history.
func TestHistorySilentStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newHistoryNet(t, 3, nil)
		server, attacker, legit := n.os[0], n.os[1], n.os[2]
		for _, o := range []*Overlay{server, legit} {
			if _, err := o.Subscribe("room"); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Second)
		publishN(t, server, "room", 0, 10)
		time.Sleep(time.Second)
		for range maxHistoryServes {
			st, err := attacker.Host().NewStream(t.Context(), server.Host().ID(), server.HistoryProtocol())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Reset()
			st.Write([]byte{0}) // the stream opens on the server; then silence
		}
		time.Sleep(100 * time.Millisecond)
		if es, _, err := legit.fetchFrom(t.Context(), server.Host().ID(), "room", server.cfg.History.Default); err != nil || len(es) != 10 {
			t.Fatalf("a subscriber's fetch beside %d silent streams: %d messages, %v; want 10", maxHistoryServes, len(es), err)
		}
		if got := counterValue(t, server.metrics.historyServes.WithLabelValues("busy")); got != 0 {
			t.Errorf("%v busy refusals, want none", got)
		}

		// Per peer: beside a peer's maxHistoryServesPerPeer answers in
		// progress, its next request is refused busy.
		var releases []func()
		for range maxHistoryServesPerPeer {
			r, ok := server.histSlots.Take(legit.Host().ID())
			if !ok {
				t.Fatal("a peer's first slots refused")
			}
			releases = append(releases, r)
		}
		if _, _, err := legit.fetchFrom(t.Context(), server.Host().ID(), "room", server.cfg.History.Default); err == nil {
			t.Error("a peer served beyond maxHistoryServesPerPeer answers at once")
		}
		if got := counterValue(t, server.metrics.historyServes.WithLabelValues("busy")); got != 1 {
			t.Errorf("%v busy refusals, want 1", got)
		}
		for _, r := range releases {
			r()
		}
	})
}

// FuzzHistoryDecode: requests, answer headers and messages as a stranger
// sends them decode without a panic; what decodes re-encodes to itself.
func FuzzHistoryDecode(f *testing.F) {
	pub := testPeerID(f, 1)
	f.Add(historyReq{topic: "room", since: Position{Publisher: pub, Seq: 7, Time: time.Unix(5, 0)}, max: 100}.encode())
	f.Add(historyHead{floor: Position{Publisher: pub, Seq: 7, Time: time.Unix(5, 0)}, count: 3}.encode())
	f.Add([]byte{1, 1, 0})
	f.Add([]byte{1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		if q, err := decodeHistoryReq(b); err == nil {
			if string(q.encode()) != string(b) {
				t.Fatalf("request %x re-encodes to %x", b, q.encode())
			}
		}
		if h, err := decodeHistoryHead(b); err == nil {
			if string(h.encode()) != string(b) {
				t.Fatalf("header %x re-encodes to %x", b, h.encode())
			}
		}
		if _, _, err := decodeHistoryMessage(b, "immense/room"); err == nil {
			t.Fatalf("unsigned bytes %x accepted as a message", b)
		}
	})
}

// TestHistoryManyTopicsAtOnce: a node that restarts and subscribes to six
// topics at once recovers the history of every one from the one peer that
// has it, though that peer serves one peer at most maxHistoryServesPerPeer
// answers at once: the requester keeps to maxHistoryAsksPerPeer fetches
// in flight per peer and the rest wait. (With a per-peer share of 2 and
// no such limit, four of the six came back empty.)
func TestHistoryManyTopicsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const topics = 6
		n := newHistoryNet(t, 2, nil)
		name := func(i int) string { return "room" + strconv.Itoa(i) }
		for i := range topics {
			for _, o := range n.os {
				if _, err := o.Subscribe(name(i)); err != nil {
					t.Fatal(err)
				}
			}
		}
		time.Sleep(5 * time.Second)
		for i := range topics {
			publishN(t, n.os[0], name(i), 0, 20)
		}
		time.Sleep(5 * time.Second)
		n.os[1].Close()
		n.s.hosts.Stop(1)
		o := n.start(1, n.os[0], nil)
		waitJoined(t, 30*time.Second, o)
		var wg sync.WaitGroup
		for i := range topics {
			wg.Go(func() {
				if _, err := o.Subscribe(name(i)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		for i := range topics {
			msgs, _, err := o.History(t.Context(), name(i), Position{})
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != 20 {
				t.Errorf("%s: %d messages recovered, want 20", name(i), len(msgs))
			}
		}
	})
}

// TestHistoryBrowserCopies: a history server that wraps one browser-signed
// message (a bound token's) in messages of its own, under fresh gossipsub
// identities, gets one copy into the window, not one per wrapper: the
// browser's signature says it is one message, as the live path's replay
// check does. Before, each copy was kept, served on, and replayed to
// resuming browsers as another message from the same user.
func TestHistoryBrowserCopies(t *testing.T) {
	_, appKey, _ := ed25519.GenerateKey(rand.Reader)
	cfg := DefaultConfig()
	cfg.Auth.PublicKeys = []ed25519.PublicKey{appKey.Public().(ed25519.PublicKey)}
	cfg.Auth.VerifyToken = chatVerifier
	self := testPeerID(t, 9)
	o := &Overlay{cfg: cfg, auth: newAuthorizer(cfg.Auth, self), history: newHistoryStore(cfg.History)}
	o.ctx = t.Context()
	now := time.Now()
	pub := now.Add(-time.Minute).Truncate(time.Millisecond)
	sig := browsersig.Sign(browserKey, "chat/lobby", pub, []byte("from bob"))
	env := encodeEnvelope(pub, credBoundToken, append(sig, "bound-token"...), []byte("from bob"))
	w, _ := o.history.open("chat/lobby", now.Add(-time.Hour))
	added := 0
	for i := range 3 {
		e, err := o.checkFetched("chat/lobby", wireTopic("chat/lobby"), wrapAsFreshPeer(t, "chat/lobby", env, uint64(i+1)), now)
		if err != nil {
			t.Fatalf("copy %d refused: %v", i, err)
		}
		if o.history.add(w, e, now) {
			added++
		}
	}
	if es, _ := o.history.since(w, Position{}, 100, now); added != 1 || len(es) != 1 {
		t.Fatalf("%d copies added, window holds %d; want the one message", added, len(es))
	}
	// Once the message leaves the window, its signature goes too.
	o.history.mu.Lock()
	o.history.dropOldest(w, 1)
	left := len(w.browserSigs)
	o.history.mu.Unlock()
	if left != 0 {
		t.Errorf("%d browser signatures left in an empty window", left)
	}
}

// wrapAsFreshPeer signs data as a gossipsub message of topic from a new
// identity.
func wrapAsFreshPeer(t *testing.T, topic string, data []byte, seq uint64) []byte {
	t.Helper()
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(priv)
	w := wireTopic(topic)
	m := &pb.Message{From: []byte(id), Data: data, Seqno: binary.BigEndian.AppendUint64(nil, seq), Topic: &w}
	b, _ := proto.Marshal(m)
	if m.Signature, err = priv.Sign(append([]byte("libp2p-pubsub:"), b...)); err != nil {
		t.Fatal(err)
	}
	out, _ := proto.Marshal(m)
	return out
}
