package erasure

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/immense-p2p/immense/internal/simtest"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
)

// TestShardServerReservesBeforeReading: a shard server holds at most
// MaxConcurrent request frames. Peers that announce large frames and then
// trickle (or stall) take the slots; the next request is answered busy at
// once, without its body being read, and a stream that never sends its
// header is dropped after headerTimeout. Before, every frame was read in
// full before the slot was taken: 48 streams of 7 MiB grew the heap by
// 400 MiB with MaxConcurrent 16.
func TestShardServerReservesBeforeReading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := simtest.New(t, simtest.Config{})
		hs := simtest.NewHosts(t, net)
		client, server := hs.Start(0), hs.Start(1)
		client.Peerstore().AddAddrs(server.ID(), server.Addrs(), peerstore.PermanentAddrTTL)
		store, err := OpenStore(StoreConfig{Dir: t.TempDir(), Quota: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := NewShardServer(server, store, ServerConfig{RequestTimeout: time.Minute, MaxConcurrent: 2, Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		ctx := context.Background()

		// A store request announcing 7 MiB, of which only the type arrives.
		stall := func() network.Stream { return stallRequest(t, ctx, client, server.ID(), msgStore, 7<<20) }
		a, b := stall(), stall()
		defer a.Reset()
		defer b.Reset()
		time.Sleep(time.Second) // virtual: both arrive and hold a slot, reading their bodies

		c := stall()
		c.CloseWrite() // the body never comes: only a busy answer can end this
		resp, err := readAnswer(c)
		if err != nil || resp.status != StatusBusy {
			t.Fatalf("third request: %+v, %v; want StatusBusy", resp, err)
		}

		// A stream that sends nothing is reset after headerTimeout.
		silent, err := client.NewStream(ctx, server.ID(), ShardProtocol)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := silent.Read(make([]byte, 1)); err == nil {
			t.Fatal("a silent stream got an answer")
		}
		if d := time.Since(start); d > headerTimeout+time.Second {
			t.Errorf("silent stream dropped after %v, want about %v", d, headerTimeout)
		}
	})
}

// TestShardServerSlotsPerPeer: one peer holds at most MaxPerPeer of the
// MaxConcurrent slots, so stalled requests of one peer leave others
// served; a small body that never comes loses its slot after about
// headerTimeout, not RequestTimeout; and a slot is held until the answer
// is written, so answers a peer does not read (8 MiB fetches) pin at most
// MaxConcurrent frames: others are answered busy meanwhile, and served
// once those streams go. Before, a slot was freed as soon as the shard
// was read from disk, and one peer could pin one answer per stream it
// opened (142 MiB of heap for 17 unread 8 MiB answers with
// MaxConcurrent 1), or take all 16 slots with 6-byte headers for 60 s.
func TestShardServerSlotsPerPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := simtest.New(t, simtest.Config{})
		hs := simtest.NewHosts(t, net)
		attacker, server, honest := hs.Start(0), hs.Start(1), hs.Start(2)
		for _, h := range []interface{ Peerstore() peerstore.Peerstore }{attacker, honest} {
			h.Peerstore().AddAddrs(server.ID(), server.Addrs(), peerstore.PermanentAddrTTL)
		}
		store, err := OpenStore(StoreConfig{Dir: t.TempDir(), Quota: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		big := make([]byte, 8<<20)
		rand.Read(big)
		h := HashShard(big)
		if err := store.Put(h, ShardRef{}, big); err != nil {
			t.Fatal(err)
		}
		srv, err := NewShardServer(server, store, ServerConfig{RequestTimeout: time.Minute, MaxConcurrent: 3, MaxPerPeer: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		ctx := context.Background()
		open := func(typ byte, frame uint32) network.Stream {
			t.Helper()
			return stallRequest(t, ctx, attacker, server.ID(), typ, frame)
		}
		fetch := func() error {
			_, err := NewClient(honest, 30*time.Second).Fetch(ctx, server.ID(), h)
			return err
		}

		// Two stalled stores take the attacker's two slots; its third
		// request is answered busy unread, and an honest fetch is served.
		a, b := open(msgStore, 7<<20), open(msgStore, 7<<20)
		time.Sleep(time.Second)
		if r, err := readAnswer(open(msgStore, 7<<20)); err != nil || r.status != StatusBusy {
			t.Fatalf("the attacker's third request: %+v, %v; want StatusBusy", r, err)
		}
		if err := fetch(); err != nil {
			t.Fatalf("honest fetch while one peer stalls: %v", err)
		}
		a.Reset()
		b.Reset()

		// A 100-byte body that never comes: dropped within headerTimeout
		// and a little.
		start := time.Now()
		if _, err := readAnswer(open(msgFetch, 100)); err == nil {
			t.Fatal("a request whose body never came got an answer")
		}
		if d := time.Since(start); d > headerTimeout+2*time.Second {
			t.Errorf("a stalled 100-byte body held its slot %v, want about %v", d, headerTimeout)
		}

		// Unread answers keep their slots: two fetches of 8 MiB the
		// attacker never reads, a third slot for the honest peer's
		// stalled store, and then an honest fetch is busy.
		var unread []network.Stream
		for range 2 {
			st, err := attacker.NewStream(ctx, server.ID(), ShardProtocol)
			if err != nil {
				t.Fatal(err)
			}
			if err := writeFrame(st, (&request{typ: msgFetch, hash: h}).encode()); err != nil {
				t.Fatal(err)
			}
			unread = append(unread, st)
		}
		stalled := stallRequest(t, ctx, honest, server.ID(), msgStore, 7<<20)
		time.Sleep(5 * time.Second) // the answers are written as far as the peer's window
		if err := fetch(); !errors.Is(err, ErrBusy) {
			t.Fatalf("fetch while every slot holds an answer or a request: %v, want busy", err)
		}
		for _, st := range unread {
			st.Reset()
		}
		stalled.Reset()
		time.Sleep(time.Second)
		if err := fetch(); err != nil {
			t.Fatalf("fetch once the unread answers are gone: %v", err)
		}
	})
}

// TestShardServerSlotsPerAddr: the peers on one machine hold at most
// MaxPerAddr slots together, whatever their number of identities: on one
// public IPv4 address the next identity is answered busy while a peer on
// another address is served. Peers on one private address (the
// operator's LAN) are held to MaxPerPeer each only, and all relayed
// connections count as one machine, whichever relay they come through.
// Before, each identity had MaxPerPeer of its own, so a few identities on
// one machine took every slot for 60 s.
func TestShardServerSlotsPerAddr(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := simtest.New(t, simtest.Config{})
		hs := simtest.NewHosts(t, net)
		server, honest := hs.Start(0), hs.Start(1)
		sybils := []host.Host{hs.StartAt(10, net4(7, 7, 7, 7), 8010), hs.StartAt(11, net4(7, 7, 7, 7), 8011), hs.StartAt(12, net4(7, 7, 7, 7), 8012)}
		lan := []host.Host{hs.StartAt(20, net4(10, 0, 0, 7), 8020), hs.StartAt(21, net4(10, 0, 0, 7), 8021)}
		for _, h := range append(append([]host.Host{honest}, sybils...), lan...) {
			h.Peerstore().AddAddrs(server.ID(), server.Addrs(), peerstore.PermanentAddrTTL)
		}
		store, err := OpenStore(StoreConfig{Dir: t.TempDir(), Quota: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		shard := []byte("a shard")
		if err := store.Put(HashShard(shard), ShardRef{}, shard); err != nil {
			t.Fatal(err)
		}
		srv, err := NewShardServer(server, store, ServerConfig{RequestTimeout: time.Minute, MaxConcurrent: 12, MaxPerPeer: 2, MaxPerAddr: 3})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		ctx := context.Background()
		var held []network.Stream
		defer func() {
			for _, st := range held {
				st.Reset()
			}
		}()
		// hold has h take n more slots with requests whose body never
		// comes; busy checks that h's next request is answered busy. ctx
		// allows relayed connections, which no client of ours opens a
		// stream on.
		hold := func(ctx context.Context, h host.Host, n int) {
			t.Helper()
			before, _ := srv.slots.InUse(slotKey{})
			for range n {
				held = append(held, stallRequest(t, ctx, h, server.ID(), msgStore, 7<<20))
			}
			time.Sleep(time.Second) // virtual: the server takes their slots
			if now, _ := srv.slots.InUse(slotKey{}); now != before+n {
				t.Fatalf("%d slots in use after %s's %d requests, want %d", now, h.ID(), n, before+n)
			}
		}
		busy := func(ctx context.Context, who string, h host.Host) {
			t.Helper()
			if r, err := readAnswer(stallRequest(t, ctx, h, server.ID(), msgStore, 7<<20)); err != nil || r.status != StatusBusy {
				t.Fatalf("%s: %+v, %v; want StatusBusy", who, r, err)
			}
		}
		served := func(who string) {
			t.Helper()
			if _, err := NewClient(honest, 30*time.Second).Fetch(ctx, server.ID(), HashShard(shard)); err != nil {
				t.Fatalf("fetch from another address %s: %v", who, err)
			}
		}

		// Three identities on 7.7.7.7: the first takes its 2, the second
		// the machine's third, and then both the second and the third
		// identity are busy, with 9 slots free.
		hold(ctx, sybils[0], 2)
		hold(ctx, sybils[1], 1)
		busy(ctx, "a second identity past its machine's share", sybils[1])
		busy(ctx, "a third identity on a full machine", sybils[2])
		served("while one machine holds its share")

		// Two identities on one private address take 2 each, 4 in all.
		hold(ctx, lan[0], 2)
		hold(ctx, lan[1], 2)
		busy(ctx, "a LAN peer past its own share", lan[0])

		// Two identities on two other addresses, relayed by two relays:
		// one machine's share between them.
		var relayed []host.Host
		for i := range 2 {
			rh := hs.Start(30 + i)
			r, err := relayv2.New(rh)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			relayInfo := peer.AddrInfo{ID: rh.ID(), Addrs: rh.Addrs()}
			if err := server.Connect(ctx, relayInfo); err != nil {
				t.Fatal(err)
			}
			if _, err := client.Reserve(ctx, server, relayInfo); err != nil {
				t.Fatal(err)
			}
			h := hs.Start(40 + i)
			circuit := rh.Addrs()[0].Encapsulate(ma.StringCast("/p2p/" + rh.ID().String() + "/p2p-circuit"))
			if err := h.Connect(ctx, peer.AddrInfo{ID: server.ID(), Addrs: []ma.Multiaddr{circuit}}); err != nil {
				t.Fatal(err)
			}
			relayed = append(relayed, h)
		}
		limited := network.WithAllowLimitedConn(ctx, "a stranger's choice")
		hold(limited, relayed[0], 2)
		hold(limited, relayed[1], 1)
		for _, st := range held[len(held)-3:] {
			if !st.Conn().Stat().Limited {
				t.Fatalf("a stream from %s not relayed", st.Conn().RemoteMultiaddr())
			}
		}
		busy(limited, "a relayed identity past the relayed share", relayed[1])
		served("while every kind of machine holds its share (10 of 12 slots)")
	})
}

// TestAddrKey: the machine a request counts against is its connection's
// IPv4 address or IPv6 /56, the same for every relayed connection, and
// none for loopback, private and link-local addresses; MaxPerAddr defaults
// to MaxPerPeer.
func TestAddrKey(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"/ip4/7.7.7.7/udp/8010/quic-v1", "7.7.7.7/32"},
		{"/ip4/7.7.7.7/tcp/4001", "7.7.7.7/32"},
		{"/ip6/2001:db8:1:2ff::1/udp/4001/quic-v1", "2001:db8:1:200::/56"},
		{"/ip4/127.0.0.1/udp/4001/quic-v1", ""},
		{"/ip6/::1/tcp/4001", ""},
		{"/ip4/192.168.1.5/tcp/4001", ""},
		{"/ip6/fe80::1/tcp/4001", ""},
		{"/ip4/5.6.7.8/udp/4001/quic-v1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit", relayedAddr},
		{"/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit", relayedAddr},
	} {
		if got := addrKey(ma.StringCast(tc.addr)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.addr, got, tc.want)
		}
	}
	c := ServerConfig{RequestTimeout: time.Second, MaxConcurrent: 6, MaxPerPeer: 3}
	if err := c.validate(); err != nil || c.MaxPerAddr != 3 {
		t.Errorf("MaxPerAddr 0: %d, %v; want MaxPerPeer (3)", c.MaxPerAddr, err)
	}
	c.MaxPerAddr = -1
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "MaxPerAddr") {
		t.Errorf("MaxPerAddr -1: %v, want an error naming it", err)
	}
}

// stallRequest opens a shard stream from h to p and sends only the first
// bytes of a request of type typ in a frame of frame bytes: enough for the
// server to take a slot (or answer busy) and wait for a body that never
// comes.
func stallRequest(t *testing.T, ctx context.Context, h host.Host, p peer.ID, typ byte, frame uint32) network.Stream {
	t.Helper()
	st, err := h.NewStream(ctx, p, ShardProtocol)
	if err != nil {
		t.Fatal(err)
	}
	var head [6]byte
	binary.BigEndian.PutUint32(head[:4], frame)
	head[4], head[5] = wireVersion, typ
	if _, err := st.Write(head[:]); err != nil {
		t.Fatal(err)
	}
	return st
}

// readAnswer reads a server's answer to a request stallRequest opened.
func readAnswer(st network.Stream) (*response, error) {
	body, err := readFrame(st, maxFrame)
	if err != nil {
		return nil, err
	}
	return decodeResponse(body, msgStore)
}

// TestConcurrentGetsOneReader: a reader fetching a dozen objects at once
// from the same holders, more requests to each than they give one peer
// (MaxPerPeer 2 here), reads them all: a busy answer is sent again after a
// short backoff instead of costing the reader that holder. Before the
// retry, with a per-peer share of 4, half of such reads failed with too few
// shards.
func TestConcurrentGetsOneReader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 8, netOpts{config: func(_ int, c *Config, _ *StoreConfig) { c.Server.MaxPerPeer = 2 }})
		ctx := context.Background()
		writer, reader := tn.nodes[0], tn.nodes[1]
		r := mrand.New(mrand.NewPCG(12, 12))
		values := make([][]byte, 12)
		for i := range values {
			values[i] = testValue(r, 4<<20, "c")
			if _, err := writer.svc.Put(ctx, fmt.Sprintf("obj-%d", i), values[i]); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		for i := range values {
			wg.Go(func() {
				got, err := reader.svc.Get(ctx, fmt.Sprintf("obj-%d", i))
				if err != nil || !bytes.Equal(got, values[i]) {
					t.Errorf("get obj-%d among 12 at once: %v", i, err)
				}
			})
		}
		wg.Wait()
	})
}
