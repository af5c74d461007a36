package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/immense-p2p/immense/overlay"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/immense-p2p/immense/internal/simtest"
)

// TestPresence: peers with subscribers of a presence topic see each other
// as members within the documented bound (3 announcement intervals), get
// join and leave events, and lose a member whose peer died within it.
func TestPresence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSimNet(t, simtest.Config{}, 3, nil, func(_ int, c *Config) {
			c.Presence = PresenceConfig{Topics: []string{"room/*"}, Interval: time.Second}
		})
		s.start(s.nodes[0], nil)
		boot := s.bootstrapAddrs()
		s.start(s.nodes[1], boot)
		s.start(s.nodes[2], boot)
		a, b, c := s.nodes[0].n, s.nodes[1].n, s.nodes[2].n
		ctx := t.Context()
		events, err := a.WatchPresence(ctx, "room/1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Presence("other"); err == nil {
			t.Error("presence of a topic without it")
		}
		bctx, bcancel := context.WithCancel(ctx)
		if _, err := b.Subscribe(bctx, "room/1"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Subscribe(ctx, "room/1"); err != nil {
			t.Fatal(err)
		}
		bound := 3 * time.Second
		time.Sleep(5 * time.Second) // meshes form, then within the bound
		members := []Member{{ID: b.ID().String(), Peer: b.ID().String()}, {ID: c.ID().String(), Peer: c.ID().String()}}
		slices.SortFunc(members, func(x, y Member) int { return strings.Compare(x.ID, y.ID) })
		want := fmt.Sprint(members)
		if got, _ := a.Presence("room/1"); fmt.Sprint(got) != want {
			t.Fatalf("a sees %v, want %s", got, want)
		}
		joined := map[string]bool{}
		for len(joined) < 2 {
			e := <-events
			if !e.Joined {
				t.Fatalf("unexpected %+v", e)
			}
			joined[e.Member.ID] = true
		}

		bcancel() // b's subscriber leaves: an announcement at once
		time.Sleep(bound)
		if e := <-events; e.Joined || e.Member.ID != b.ID().String() {
			t.Fatalf("after b left: %+v", e)
		}
		s.stop(s.nodes[2]) // c's peer dies: gone within the bound
		time.Sleep(bound + time.Second)
		if e := <-events; e.Joined || e.Member.ID != c.ID().String() {
			t.Fatalf("after c died: %+v", e)
		}
		if got, _ := a.Presence("room/1"); len(got) != 0 {
			t.Fatalf("a still sees %v", got)
		}
	})
}

// FuzzPresenceAnnouncement: announcements as a stranger sends them decode
// within the caps or are refused, without a panic.
func FuzzPresenceAnnouncement(f *testing.F) {
	f.Add([]byte(`{"members":["token:alice","12D3KooWx"]}`))
	f.Add([]byte(`{"members":[]}`))
	f.Add([]byte(`{"members":[""]}`))
	f.Add([]byte(`{"members":["a"],"x":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := decodeAnnouncement(b)
		if err != nil {
			return
		}
		if len(ids) > maxPresenceMembers {
			t.Fatalf("%d members accepted", len(ids))
		}
		for _, id := range ids {
			if id == "" || len(id) > maxMemberID {
				t.Fatalf("member id %q accepted", id)
			}
		}
	})
}

// TestPresenceHTTP: GET /v1/topics/{topic}/presence lists the members;
// for a topic without presence it answers 404, where it used to stream a
// topic named ".../presence" for ever. GET /v1/topics leaves out the
// presence topic.
func TestPresenceHTTP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nd := simNetwork(t, 1, func(_ int, c *Config) { c.Presence.Topics = []string{"room/*"} })[0]
		if _, err := nd.Subscribe(t.Context(), "room/1"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		h := nd.newAPI(HTTPOptions{Topics: true}).routes()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, controlReq(nd, "GET", "/v1/topics/room/1/presence", ""))
		want := fmt.Sprintf(`{"count":1,"members":[{"id":%q,"peer":%q}],"topic":"room/1"}`, nd.ID(), nd.ID())
		if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != want {
			t.Fatalf("%d %s, want %s", rec.Code, rec.Body, want)
		}

		// The topic list is the app's topics: the presence topic the node
		// joined for room/1 is its own, and left out.
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, controlReq(nd, "GET", "/v1/topics", ""))
		var list struct{ Topics []overlay.TopicInfo }
		if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || len(list.Topics) != 1 || list.Topics[0].Name != "room/1" {
			t.Errorf("GET /v1/topics: %d %s, want room/1 alone", rec.Code, rec.Body)
		}

		ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // ends the stream the old code opened
		defer cancel()
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, controlReq(nd, "GET", "/v1/topics/demo/chat/presence", "").WithContext(ctx))
		want = `{"error":"presence is not on for this topic: \"demo/chat\" (peer --presence names the topics with presence; a topic whose name ends in /presence cannot be streamed over HTTP)"}`
		if rec.Code != http.StatusNotFound || strings.TrimSpace(rec.Body.String()) != want {
			t.Errorf("presence of a topic without it: %d %s %s, want 404 %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body, want)
		}
	})
}

// TestPresenceViewBounded: announcements from ever new identities cannot
// grow a topic's view past maxPresencePeers peers or maxPresenceTotal
// members; peers already in the view keep their place and may update.
func TestPresenceViewBounded(t *testing.T) {
	var p presence
	topic := &presenceTopic{remote: map[peer.ID]remoteMembers{}, view: map[Member]struct{}{}}
	members := func(n int, tag string) []string {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("token:%s-%d", tag, i)
		}
		return ids
	}
	exp := time.Now().Add(time.Minute)
	per := maxPresenceTotal / 4
	for i := range 4 {
		if !p.setRemote(topic, peer.ID(fmt.Sprint("p", i)), members(per, fmt.Sprint(i)), exp) {
			t.Fatalf("announcement %d refused below the budget", i)
		}
	}
	if p.setRemote(topic, "stranger", members(1, "s"), exp) {
		t.Error("a stranger's member was added past maxPresenceTotal")
	}
	if !p.setRemote(topic, "p0", members(per-10, "0"), exp) || !p.setRemote(topic, "stranger", members(10, "s"), exp) {
		t.Error("updates within the budget refused")
	}
	if !p.setRemote(topic, "p1", nil, exp) || len(topic.remote) != 4 {
		t.Errorf("an empty announcement should remove its peer: %d peers", len(topic.remote))
	}
	if len(topic.view) != topic.remoteTotal || topic.remoteTotal != 3*per-10+10 {
		t.Errorf("view of %d members, total %d, want %d", len(topic.view), topic.remoteTotal, 3*per)
	}
	small := &presenceTopic{remote: map[peer.ID]remoteMembers{}, view: map[Member]struct{}{}}
	for i := range maxPresencePeers {
		p.setRemote(small, peer.ID(fmt.Sprint("q", i)), []string{"x"}, exp)
	}
	if p.setRemote(small, "one-more", []string{"x"}, exp) || len(small.remote) != maxPresencePeers {
		t.Errorf("view of %d peers, cap %d", len(small.remote), maxPresencePeers)
	}
}

// TestPresenceEvents: an announcement changes the view by its own
// difference from the peer's last one (duplicates counted once), and an
// expired one takes its members out, each with one event.
func TestPresenceEvents(t *testing.T) {
	var p presence
	topic := &presenceTopic{name: "room", remote: map[peer.ID]remoteMembers{}, view: map[Member]struct{}{}}
	ch := make(chan PresenceEvent, 16)
	topic.watchers = map[chan PresenceEvent]struct{}{ch: {}}
	names := map[string]string{peer.ID("a").String(): "a", peer.ID("b").String(): "b"}
	got := func() []string {
		var out []string
		for len(ch) > 0 {
			e := <-ch
			out = append(out, fmt.Sprintf("%v %s@%s", e.Joined, e.Member.ID, names[e.Member.Peer]))
		}
		slices.Sort(out)
		return out
	}
	now := time.Now()
	for _, step := range []struct {
		from peer.ID
		ids  []string
		want []string
	}{
		{"a", []string{"x", "y", "x"}, []string{"true x@a", "true y@a"}},
		{"b", []string{"x"}, []string{"true x@b"}},
		{"a", []string{"y", "z"}, []string{"false x@a", "true z@a"}},
		{"a", []string{"z", "y"}, nil}, // a renewal changes nothing
	} {
		if !p.setRemote(topic, step.from, step.ids, now.Add(time.Minute)) {
			t.Fatalf("%s %v refused", step.from, step.ids)
		}
		if g := got(); !slices.Equal(g, step.want) {
			t.Fatalf("%s announces %v: events %v, want %v", step.from, step.ids, g, step.want)
		}
	}
	p.setRemote(topic, "b", []string{"x"}, now) // b's expires first
	p.expire(topic, now.Add(time.Second))
	if g := got(); !slices.Equal(g, []string{"false x@b"}) || len(topic.view) != 2 || topic.remoteTotal != 2 {
		t.Fatalf("after b expired: events %v, view %v, total %d", g, topic.view, topic.remoteTotal)
	}
}

// TestBrowserCannotAnnouncePresence: a browser's publish to a presence
// topic is refused by its peer, whatever its token allows, so that it
// cannot replace its peer's member list on the other peers.
func TestBrowserCannotAnnouncePresence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSimNet(t, simtest.Config{}, 1, nil, func(_ int, c *Config) {
			c.Presence = PresenceConfig{Topics: []string{"room/*"}, Interval: time.Second}
		})
		s.start(s.nodes[0], nil)
		err := bus{s.nodes[0].n}.Publish(t.Context(), presencePrefix+"room/1", []byte(`{"members":["token:mallory"]}`), "", nil)
		if !errors.Is(err, overlay.ErrUnauthorized) {
			t.Fatalf("a browser's publish to the presence topic: %v, want ErrUnauthorized", err)
		}
	})
}

// BenchmarkPresenceAnnouncement: one peer's renewed announcement with one
// member changed, in a topic whose view holds `view` members over 1000
// peers. The cost is the announcement's own size whatever the view's
// (compare view=200 with view=20000 in one run).
func BenchmarkPresenceAnnouncement(b *testing.B) {
	for _, view := range []int{200, 20000} {
		b.Run(fmt.Sprint("view=", view), func(b *testing.B) {
			var p presence
			topic := &presenceTopic{name: "room", remote: map[peer.ID]remoteMembers{}, view: map[Member]struct{}{}}
			exp := time.Now().Add(time.Hour)
			const per = 20
			for i := range view / per {
				ids := make([]string, per)
				for j := range ids {
					ids[j] = fmt.Sprintf("token:%d-%d", i, j)
				}
				p.setRemote(topic, peer.ID(fmt.Sprint("p", i)), ids, exp)
			}
			a := []string{"token:a", "token:b", "token:c"}
			c := []string{"token:a", "token:b", "token:d"}
			b.ResetTimer()
			for i := range b.N {
				ids := a
				if i%2 == 1 {
					ids = c
				}
				p.expire(topic, time.Now())
				p.setRemote(topic, "me", slices.Clone(ids), exp)
			}
		})
	}
}
