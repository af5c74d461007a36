package simtest

import (
	"context"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
)

// TestHostsRestart: two hosts reach each other over the simulated link in
// virtual time, with the link's latency; host 1 stopped and started again
// is the same peer at the same address, and reachable again.
func TestHostsRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		keys := Keys(t, rand.NewChaCha8([32]byte{'s', 'i', 'm'}), 1)
		hs := NewHosts(t, New(t, Config{Latency: 25 * time.Millisecond}), keys...)
		a, b := hs.Start(0), hs.Start(1)
		if want, _ := peer.IDFromPrivateKey(keys[0]); a.ID() != want {
			t.Fatalf("host 0 is %s, want the given key's %s", a.ID(), want)
		}
		if hs.Start(1) != b {
			t.Fatal("starting a running host started another")
		}
		rtt := func() time.Duration {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := a.Connect(ctx, peer.AddrInfo{ID: hs.Host(1).ID(), Addrs: hs.Host(1).Addrs()}); err != nil {
				t.Fatal(err)
			}
			res := <-ping.Ping(ctx, a, hs.Host(1).ID())
			if res.Error != nil {
				t.Fatal(res.Error)
			}
			return res.RTT
		}
		if d := rtt(); d < 50*time.Millisecond || d > 60*time.Millisecond {
			t.Errorf("round trip %v on 25 ms links, want 50 ms and a little transmission time", d)
		}

		id := b.ID()
		hs.Stop(1)
		if hs.Host(1) != nil {
			t.Fatal("a stopped host is still listed")
		}
		hs.Stop(1) // stopping twice is harmless
		// Host 0 learns of the closed connection a latency later; virtual
		// time makes the wait exact.
		time.Sleep(time.Second)
		if a.Network().Connectedness(id) == network.Connected {
			t.Fatal("host 0 still connected to the stopped host")
		}
		b = hs.Start(1)
		if b.ID() != id || b.Addrs()[0].String() != Addr(1) {
			t.Fatalf("restarted as %s at %v, was %s at %s", b.ID(), b.Addrs(), id, Addr(1))
		}
		rtt()
	})
}

func TestAddr(t *testing.T) {
	if got, want := Addr(0), "/ip4/1.0.0.1/udp/8000/quic-v1"; got != want {
		t.Errorf("Addr(0) = %s, want %s", got, want)
	}
	if Addr(1) == Addr(0) || Addr(300) == Addr(44) {
		t.Error("two hosts share an address")
	}
}
