package overlay

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/immense-p2p/immense/internal/simtest"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// simNet starts hosts on a simulated network (internal/simtest: real QUIC
// over 20 Mbit/s links, 10 ms one way) for overlays in virtual time. Use it
// inside synctest.Test; everything is closed by t.Cleanup.
type simNet struct {
	t     *testing.T
	hosts *simtest.Hosts
	n     int
}

func newSimNet(t *testing.T) *simNet {
	return &simNet{t: t, hosts: simtest.NewHosts(t, simtest.New(t, simtest.Config{}))}
}

// host starts a host on the next address.
func (s *simNet) host() host.Host {
	s.t.Helper()
	h := s.hosts.Start(s.n)
	s.n++
	return h
}

// overlay starts a DHT server overlay on a new host, bootstrapping from
// boot (nil: none).
func (s *simNet) overlay(boot *Overlay, adjust func(*Config)) *Overlay {
	s.t.Helper()
	cfg := DefaultConfig()
	cfg.Mode = ModeServer
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if boot != nil {
		cfg.Bootstrap = []peer.AddrInfo{{ID: boot.Host().ID(), Addrs: boot.Host().Addrs()}}
	}
	if adjust != nil {
		adjust(&cfg)
	}
	o, err := New(context.Background(), s.host(), cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { o.Close() })
	return o
}

// waitJoined waits until every overlay has joined, or fails after bound.
func waitJoined(t *testing.T, bound time.Duration, ovs ...*Overlay) {
	t.Helper()
	deadline := time.After(bound)
	for i, o := range ovs {
		select {
		case <-o.Joined():
		case <-deadline:
			st := o.JoinState()
			t.Fatalf("overlay %d of %d not joined within %v: %q, next try in %v, %d peers connected, routing table %d, %+v",
				i, len(ovs), bound, st.Reason, time.Until(st.NextTry), len(o.Host().Network().Peers()), o.RoutingTableSize(), o.JoinStats())
		}
	}
}

// TestJoinMassArrival: 20 peers join at the same instant through a
// bootstrap node that admits 1 join a second (burst 2), in a network where
// two other DHT servers have already joined. The bootstrap node refuses
// most of them with a busy answer; every refused peer receives that answer,
// and joins through the servers it was referred to or comes back when
// told. All join within a few seconds of virtual time while the bootstrap
// node admits no more than its rate allows.
func TestJoinMassArrival(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			crowd = 20
			rate  = 1
			burst = 2
			bound = 30 * time.Second
		)
		s := newSimNet(t)
		boot := s.overlay(nil, func(c *Config) { c.JoinRate, c.JoinBurst = rate, burst })
		servers := []*Overlay{s.overlay(boot, nil), s.overlay(boot, nil)}
		waitJoined(t, bound, servers...)
		for boot.RoutingTableSize() < len(servers) {
			time.Sleep(100 * time.Millisecond) // identify, then the DHT adds them
		}
		before := boot.JoinStats()
		// The bucket refills while the servers settle; drain it so that
		// the crowd meets exactly the burst.
		time.Sleep(burst * time.Second / rate)

		peak := 0
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				peak = max(peak, len(boot.Host().Network().Peers()))
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
		start := time.Now()
		joiners := make([]*Overlay, crowd)
		for i := range joiners {
			joiners[i] = s.overlay(boot, nil)
		}
		waitJoined(t, bound, joiners...)
		took := time.Since(start)
		close(stop)
		<-sampled

		after := boot.JoinStats()
		admitted, busy := after.Admitted-before.Admitted, after.Busy-before.Busy
		var received, referred, servedBusy uint64
		for i, o := range joiners {
			st := o.JoinStats()
			received += st.BusyReceived
			referred += st.Referred
			if o.RoutingTableSize() == 0 {
				t.Errorf("joiner %d: empty routing table after joining", i)
			}
		}
		servedBusy = busy
		for _, o := range servers {
			servedBusy += o.JoinStats().Busy
		}
		t.Logf("%d peers joined in %v (virtual); bootstrap admitted %d, answered busy %d; %d joined through a referral; bootstrap peers connected: peak %d, now %d",
			crowd, took, admitted, busy, referred, peak, len(boot.Host().Network().Peers()))
		if busy == 0 {
			t.Error("the bootstrap node answered no join busy")
		}
		if referred == 0 {
			t.Error("no peer joined through a referral")
		}
		if received != servedBusy {
			t.Errorf("joiners received %d busy answers, servers sent %d: some refusals were lost", received, servedBusy)
		}
		if limit := uint64(burst + rate*took.Seconds() + 1); admitted > limit {
			t.Errorf("bootstrap admitted %d joins in %v, over its limit of %d", admitted, took, limit)
		}
	})
}

// TestJoinRetryAfter: with referrals turned off, a crowd of DHT clients
// (volunteers behind NAT, whom nobody dials) refused by the bootstrap node
// comes back when told, spread over the retry slots it was handed, and is
// admitted on (nearly always) the first return: no stampede of repeated
// refusals.
func TestJoinRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			crowd = 16
			rate  = 2
			burst = 2
		)
		s := newSimNet(t)
		boot := s.overlay(nil, func(c *Config) {
			c.JoinRate, c.JoinBurst = rate, burst
			c.JoinReferrals = 0 // the first admitted would be referred to
		})
		start := time.Now()
		joiners := make([]*Overlay, crowd)
		for i := range joiners {
			joiners[i] = s.overlay(boot, func(c *Config) { c.Mode = ModeClient })
		}
		// The last slot is (crowd-burst)/rate = 7 s out, plus up to a
		// quarter of it in jitter; a peer whose jitter lands it on a slot
		// already taken is refused once more and queued at the end.
		waitJoined(t, 20*time.Second, joiners...)
		took := time.Since(start)
		st := boot.JoinStats()
		var received uint64
		for _, o := range joiners {
			received += o.JoinStats().BusyReceived
		}
		t.Logf("%d peers joined in %v (virtual) through a bootstrap admitting %d/s (burst %d): %d admitted, %d busy answers",
			crowd, took, rate, burst, st.Admitted, st.Busy)
		if st.Admitted < crowd {
			t.Errorf("bootstrap admitted %d, want all %d", st.Admitted, crowd)
		}
		if st.Busy < crowd-burst || st.Busy > 2*(crowd-burst) {
			t.Errorf("bootstrap answered busy %d times, want between %d (each refused once) and %d", st.Busy, crowd-burst, 2*(crowd-burst))
		}
		if received != st.Busy {
			t.Errorf("joiners received %d busy answers, bootstrap sent %d", received, st.Busy)
		}
	})
}

// TestJoinBusyAnswer speaks the protocol by hand to a bootstrap node whose
// bucket is empty: the answer names a retry-after and the other DHT server
// (never the asker), and the bootstrap node closes the connection once the
// asker has read the answer, or after JoinTimeout if it never closes its
// side.
func TestJoinBusyAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSimNet(t)
		boot := s.overlay(nil, func(c *Config) { c.JoinRate, c.JoinBurst = 0.001, 1 })
		server := s.overlay(boot, nil)
		waitJoined(t, 10*time.Second, server) // spends the one token
		for boot.RoutingTableSize() == 0 {
			time.Sleep(100 * time.Millisecond)
		}
		ask := func(closeAfter bool) (joinMessage, host.Host) {
			h := s.host()
			if err := h.Connect(context.Background(), peer.AddrInfo{ID: boot.Host().ID(), Addrs: boot.Host().Addrs()}); err != nil {
				t.Fatal(err)
			}
			st, err := h.NewStream(context.Background(), boot.Host().ID(), boot.JoinProtocol())
			if err != nil {
				t.Fatal(err)
			}
			if err := writeJoinFrame(st, (&joinMessage{typ: joinRequest}).encode()); err != nil {
				t.Fatal(err)
			}
			body, err := readJoinFrame(st)
			if err != nil {
				t.Fatal(err)
			}
			m, err := decodeJoin(body)
			if err != nil {
				t.Fatal(err)
			}
			if closeAfter {
				st.Close()
			}
			return m, h
		}
		connected := func(h host.Host) bool {
			return h.Network().Connectedness(boot.Host().ID()) == network.Connected
		}

		m, h := ask(true)
		if m.typ != joinBusy || m.retryAfter < time.Second {
			t.Fatalf("answer %+v, want busy with a retry-after of at least 1 s", m)
		}
		if len(m.referrals) != 1 || m.referrals[0].ID != server.Host().ID() {
			t.Fatalf("referrals %v, want just the server %s", m.referrals, server.Host().ID())
		}
		time.Sleep(time.Second)
		if connected(h) {
			t.Error("still connected 1 s after reading a busy answer")
		}

		// An asker that never closes its side is cut off at the timeout.
		_, h = ask(false)
		time.Sleep(DefaultConfig().JoinTimeout / 2)
		if !connected(h) {
			t.Error("disconnected before the asker closed its side or the timeout")
		}
		time.Sleep(DefaultConfig().JoinTimeout)
		if connected(h) {
			t.Error("still connected after the join timeout")
		}

		// Garbage gets a reset, counts as nothing, and the server carries
		// on.
		h = s.host()
		st, err := h.NewStream(context.Background(), boot.Host().ID(), boot.JoinProtocol())
		if err == nil {
			st.Write([]byte{0, 3, 9, 9, 9})
			_, err = readJoinFrame(st)
		}
		if err == nil {
			t.Error("a malformed request got an answer")
		}
		if st := boot.JoinStats(); st.Busy != 2 || st.Admitted != 1 {
			t.Errorf("bootstrap stats %+v, want 1 admitted and 2 busy", st)
		}
	})
}

// TestJoinRefusedIsNotJoined: a node connected to a bootstrap node that
// refused it, with that node in its routing table (as the DHT can leave it,
// adding it once its check started before the busy answer is done), does
// not count itself joined: when its retry comes it asks again, and stays
// unjoined while the answer is busy. Then, admitted on a connection that
// outlived its avoiding the node, it joins at once (the DHT is made to look
// at its connected peers again) instead of a check interval later.
func TestJoinRefusedIsNotJoined(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSimNet(t)
		boot := s.overlay(nil, func(c *Config) {
			c.JoinRate, c.JoinBurst = 0.001, 1
			c.JoinReferrals = 0
			c.JoinRetryMax = 3 * time.Second
		})
		// A DHT client spends the one token: nobody's routing table gets
		// a peer but the bootstrap node, which can then only be joined
		// through.
		first := s.overlay(boot, func(c *Config) { c.Mode = ModeClient })
		waitJoined(t, 10*time.Second, first)
		o := s.overlay(boot, nil)
		for o.JoinState().NextTry.IsZero() { // refused, the round over
			time.Sleep(10 * time.Millisecond)
		}
		// The leftovers of the refusal: a connection (the bootstrap node
		// dials, so the node does not shun it) and a routing table entry.
		identified, err := o.Host().EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
		if err != nil {
			t.Fatal(err)
		}
		defer identified.Close()
		// connect has the bootstrap node dial the node, and returns once
		// the DHT has heard from identify (and left the node out).
		connect := func() {
			t.Helper()
			for len(identified.Out()) > 0 {
				<-identified.Out() // identify's reports of earlier connections
			}
			if err := boot.Host().Connect(context.Background(), peer.AddrInfo{ID: o.Host().ID(), Addrs: o.Host().Addrs()}); err != nil {
				t.Fatal(err)
			}
			for e := range identified.Out() {
				if e.(event.EvtPeerIdentificationCompleted).Peer == boot.Host().ID() {
					break
				}
			}
			synctest.Wait()
		}
		connect()
		// Then a check started before the busy answer adds it.
		if added, err := o.DHT().RoutingTable().TryAddPeer(boot.Host().ID(), true, false); !added || err != nil {
			t.Fatalf("adding the bootstrap node to the routing table: %v, %v", added, err)
		}
		// The retry comes within JoinRetryMax plus a quarter of it (at
		// least a second) of jitter.
		time.Sleep(5 * time.Second)
		if st := o.JoinState(); st.Joined {
			t.Fatalf("joined through a bootstrap node that refused it: %+v; node %+v, bootstrap %+v, routing table %v", st, o.JoinStats(), boot.JoinStats(), o.DHT().RoutingTable().ListPeers())
		}
		if n := o.JoinStats().BusyReceived; n < 2 {
			t.Fatalf("%d busy answers, want the node to have asked again", n)
		}
		if o.DHT().RoutingTable().Find(boot.Host().ID()) != "" {
			t.Error("the refusing bootstrap node is still in the routing table")
		}

		// The bootstrap node dials again while the node avoids it, so
		// the DHT leaves it out; then tokens are back, and the next retry
		// is admitted on that connection. The node joins at once: the DHT
		// is made to look at its connected peers again (without that,
		// the admitted node would wait with an empty routing table).
		connect()
		boot.admission.limiter.SetLimit(1000)
		waitJoined(t, 10*time.Second, o) // a retry (up to 4 s), the refresh, the next check
		if st := boot.JoinStats(); st.Admitted != 2 {
			t.Errorf("bootstrap stats %+v, want 2 admitted", st)
		}
	})
}

// TestJoinOlderBootstrap: a bootstrap node that does not speak the join
// protocol (an older version) still lets peers join.
func TestJoinOlderBootstrap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSimNet(t)
		boot := s.overlay(nil, nil)
		boot.Host().RemoveStreamHandler(boot.JoinProtocol())
		var logs syncBuffer
		peers := []*Overlay{s.overlay(boot, func(c *Config) {
			c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		})}
		waitJoined(t, 10*time.Second, peers...)
		if !strings.Contains(logs.String(), "peer does not speak the join protocol: taken as admitted") {
			t.Errorf("the peer did not join through the older bootstrap node's fallback; logs:\n%s", logs.String())
		}
	})
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestUsableAddr(t *testing.T) {
	for _, c := range []struct {
		addr string
		from scope
		want bool
	}{
		{"/ip4/1.2.3.4/tcp/4001", scopePublic, true},
		{"/ip4/1.2.3.4/udp/4001/quic-v1", scopeLoopback, true},
		{"/dns4/boot.example.org/tcp/4001", scopePublic, false}, // a name may resolve to the newcomer's LAN
		{"/dns4/10.0.0.1.nip.io/tcp/22", scopePublic, false},
		{"/dns/localtest.me/udp/4001/quic-v1", scopeLoopback, false},
		{"/ip4/192.168.1.2/tcp/4001", scopePublic, false},
		{"/ip4/192.168.1.2/tcp/4001", scopePrivate, true},
		{"/ip4/127.0.0.1/tcp/4001", scopePrivate, false},
		{"/ip4/127.0.0.1/tcp/4001", scopeLoopback, true},
		{"/ip4/0.0.0.0/tcp/4001", scopeLoopback, false},
		{"/ip4/1.2.3.4/tcp/4001/p2p/12D3KooWHHzSeKaY8xuZVzkLbKFfvNgPPeKhFBGrMbNzbm5akpqu/p2p-circuit", scopePublic, false},
		{"/ip4/192.0.2.1/tcp/4001", scopePrivate, false},        // documentation range: unroutable
		{"/ip6/64:ff9b::c0a8:102/tcp/4001", scopePublic, false}, // NAT64 of 192.168.1.2
		{"/ip6/2002:c0a8:102::1/tcp/4001", scopePublic, false},  // 6to4 of 192.168.1.2
		{"/ip6/::ffff:192.168.1.2/tcp/4001", scopePrivate, true},
		{"/ip4/169.254.1.2/tcp/4001", scopePrivate, false}, // another link, maybe
		{"/ip4/169.254.1.2/tcp/4001", scopeLinkLocal, true},
		{"/ip4/192.168.1.2/tcp/4001", scopeLinkLocal, true},
	} {
		a := multiaddr.StringCast(c.addr)
		if got := usableAddr(a, c.from); got != c.want {
			t.Errorf("usableAddr(%s, %d) = %v, want %v", c.addr, c.from, got, c.want)
		}
	}
	if got := addrScope(multiaddr.StringCast("/ip4/10.1.2.3/tcp/1")); got != scopePrivate {
		t.Errorf("10.1.2.3 scope %d", got)
	}
}
