package node

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/multiformats/go-multiaddr"
)

// TestRelaySource: autorelay gets the peers known to serve relay v2, then
// the bootstrap peers, each once, never itself, never a peer that asked
// us to stay away, and at most as many as it asked for.
func TestRelaySource(t *testing.T) {
	h, err := libp2p.New(libp2p.NoListenAddrs)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	id := func() peer.ID {
		_, pub, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := peer.IDFromPublicKey(pub)
		return p
	}
	addr := multiaddr.StringCast("/ip4/127.0.0.1/tcp/4001")
	relay, plain, busy, boot := id(), id(), id(), id()
	for _, p := range []peer.ID{relay, plain, busy} {
		h.Peerstore().AddAddr(p, addr, peerstore.PermanentAddrTTL)
	}
	h.Peerstore().AddProtocols(relay, relayHop)
	h.Peerstore().AddProtocols(busy, relayHop)
	s := &relaySource{bootstrap: []peer.AddrInfo{
		{ID: relay, Addrs: []multiaddr.Multiaddr{addr}}, // also a known relay: once
		{ID: h.ID()},
		{ID: boot, Addrs: []multiaddr.Multiaddr{addr}},
	}}
	get := func(num int) []peer.ID {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var ids []peer.ID
		for ai := range s.candidates(ctx, num) {
			ids = append(ids, ai.ID)
		}
		return ids
	}
	if got := get(10); len(got) != 0 {
		t.Fatalf("before the host exists: %v", got)
	}
	var hh host.Host = h
	s.host.Store(&hh)
	got := get(10)
	if len(got) != 3 || got[2] != boot || !slices.Contains(got[:2], relay) || !slices.Contains(got[:2], busy) {
		t.Fatalf("candidates %v: want the relays %v and %v, then the bootstrap peer %v", got, relay, busy, boot)
	}
	avoid := func(p peer.ID) bool { return p == busy }
	s.avoid.Store(&avoid)
	if got := get(10); len(got) != 2 || slices.Contains(got, busy) {
		t.Fatalf("with %v busy: %v", busy, got)
	}
	if got := get(1); len(got) != 1 || got[0] != relay {
		t.Fatalf("one asked for: %v", got)
	}
}
