package node

import (
	"context"
	"errors"
	"fmt"
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

// TestPresenceHTTP: GET /v1/topics/{topic}/presence lists the members.
func TestPresenceHTTP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nd := simNetwork(t, 1, func(_ int, c *Config) { c.Presence.Topics = []string{"room/*"} })[0]
		if _, err := nd.Subscribe(t.Context(), "room/1"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		rec := httptest.NewRecorder()
		nd.newAPI(HTTPOptions{Topics: true}).routes().ServeHTTP(rec, controlReq(nd, "GET", "/v1/topics/room/1/presence", ""))
		want := fmt.Sprintf(`{"count":1,"members":[{"id":%q,"peer":%q}],"topic":"room/1"}`, nd.ID(), nd.ID())
		if rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != want {
			t.Fatalf("%d %s, want %s", rec.Code, rec.Body, want)
		}
	})
}

// TestPresenceViewBounded: announcements from ever new identities cannot
// grow a topic's view past maxPresencePeers peers or maxPresenceTotal
// members; peers already in the view keep their place and may update.
func TestPresenceViewBounded(t *testing.T) {
	topic := &presenceTopic{remote: map[peer.ID]remoteMembers{}}
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
		if !topic.setRemote(peer.ID(fmt.Sprint("p", i)), members(per, fmt.Sprint(i)), exp) {
			t.Fatalf("announcement %d refused below the budget", i)
		}
	}
	if topic.setRemote("stranger", members(1, "s"), exp) {
		t.Error("a stranger's member was added past maxPresenceTotal")
	}
	if !topic.setRemote("p0", members(per-10, "0"), exp) || !topic.setRemote("stranger", members(10, "s"), exp) {
		t.Error("updates within the budget refused")
	}
	if !topic.setRemote("p1", nil, exp) || len(topic.remote) != 4 {
		t.Errorf("an empty announcement should remove its peer: %d peers", len(topic.remote))
	}
	small := &presenceTopic{remote: map[peer.ID]remoteMembers{}}
	for i := range maxPresencePeers {
		small.setRemote(peer.ID(fmt.Sprint("q", i)), []string{"x"}, exp)
	}
	if small.setRemote("one-more", []string{"x"}, exp) || len(small.remote) != maxPresencePeers {
		t.Errorf("view of %d peers, cap %d", len(small.remote), maxPresencePeers)
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
