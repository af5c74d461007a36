package overlay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/immense-p2p/immense/internal/simtest"
	"net"
	"testing"
	"testing/synctest"
	"time"

	ds "github.com/ipfs/go-datastore"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// openValidator accepts any record of its namespace: the tests are about
// what the store keeps, not about signatures (erasure's validators check
// those; a flooder signs its own records anyway).
type openValidator struct{}

func (openValidator) Validate(string, []byte) error        { return nil }
func (openValidator) Select(string, [][]byte) (int, error) { return 0, nil }

func testPeer(t *testing.T, i byte) peer.ID {
	t.Helper()
	return testPeerID(t, i)
}

// TestDHTStoreBudgets: the store refuses a record past each budget (the
// store's, a namespace's, a peer's) with ErrDHTBudget and counts it by
// reason; replacing a record and deleting one give its room back; this
// node's own records are never refused; unknown namespaces are refused.
func TestDHTStoreBudgets(t *testing.T) {
	ctx := context.Background()
	self, a, b := testPeer(t, 1), testPeer(t, 2), testPeer(t, 3)
	s := newDHTStore(self, DHTBudget{
		MaxBytes: 10_000, MaxRecords: 8, PeerMaxBytes: 4_000, PeerMaxRecords: 3,
		NamespaceMaxBytes: 6_000,
	}, []string{"x", "y"})
	put := func(from peer.ID, key string, size int) error {
		t.Helper()
		if from == self {
			return s.Put(context.WithValue(ctx, ownWrite{}, true), valueDsKey(key), make([]byte, size))
		}
		s.note(key, from)
		return s.Put(ctx, valueDsKey(key), make([]byte, size))
	}
	refused := func(reason string) float64 { return counterValue(t, s.refused.WithLabelValues(reason)) }

	for i := range 3 {
		if err := put(a, fmt.Sprintf("/x/a%d", i), 1000); err != nil {
			t.Fatalf("a's record %d: %v", i, err)
		}
	}
	if err := put(a, "/x/a3", 10); !errors.Is(err, ErrDHTBudget) {
		t.Fatalf("a's 4th record: %v, want ErrDHTBudget", err)
	}
	if refused(refusedPeer) != 1 {
		t.Fatalf("peer refusals %v, want 1", refused(refusedPeer))
	}
	// Replacing one of a's records costs only the difference.
	if err := put(a, "/x/a0", 1500); err != nil {
		t.Fatalf("a replaces a record: %v", err)
	}
	// Namespace x: a has 3.5 kB, b's 2 kB more would pass 6 kB.
	if err := put(b, "/x/b0", 1000); err != nil {
		t.Fatal(err)
	}
	if err := put(b, "/x/b1", 1500); !errors.Is(err, ErrDHTBudget) || refused(refusedNamespace) != 1 {
		t.Fatalf("b over namespace x: %v (namespace refusals %v)", err, refused(refusedNamespace))
	}
	// The other namespace still has room.
	if err := put(b, "/y/b1", 1500); err != nil {
		t.Fatalf("b in namespace y: %v", err)
	}
	if err := put(b, "/pk/b2", 10); !errors.Is(err, ErrDHTBudget) || refused(refusedNoNamspace) != 1 {
		t.Fatalf("namespace pk: %v", err)
	}
	// This node's own records pass every budget.
	for i := range 6 {
		if err := put(self, fmt.Sprintf("/x/self%d", i), 1000); err != nil {
			t.Fatalf("own record %d: %v", i, err)
		}
	}
	// The store is now past its record count: a third peer is refused.
	if err := put(testPeer(t, 4), "/y/c", 10); !errors.Is(err, ErrDHTBudget) || refused(refusedStore) != 1 {
		t.Fatalf("store full: %v", err)
	}
	// Deleting gives the room back.
	for i := range 6 {
		if err := s.Delete(ctx, valueDsKey(fmt.Sprintf("/x/self%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := put(testPeer(t, 4), "/y/c", 10); err != nil {
		t.Fatalf("after deletes: %v", err)
	}
	// Batches go through the same accounting.
	bt, _ := s.Batch(ctx)
	bt.Delete(ctx, valueDsKey("/x/a0"))
	if err := bt.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	bytes, records := s.usage().bytes, s.usage().records
	want := 0
	for _, k := range []string{"/x/a1", "/x/a2", "/x/b0", "/y/b1", "/y/c"} {
		v, err := s.Get(ctx, valueDsKey(k))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		want += len(valueDsKey(k).String()) + len(v)
	}
	if records != 5 || bytes != int64(want) {
		t.Fatalf("usage %d bytes in %d records, want %d in 5", bytes, records, want)
	}
	if _, err := s.Get(ctx, valueDsKey("/x/a0")); !errors.Is(err, ds.ErrNotFound) {
		t.Fatalf("deleted record: %v", err)
	}
}

// rawPutValue sends one PUT_VALUE to p as any peer can, with no DHT of
// its own, and reports whether p stored it (it echoes the record).
func rawPutValue(ctx context.Context, h host.Host, p peer.ID, key string, value []byte) error {
	return simtest.RawPutValue(ctx, h, p, DefaultConfig().ProtocolPrefix, key, value)
}

// TestDHTRecordFlood: a peer with no keys and no DHT of its own sends
// PUT_VALUEs of 60 KiB records under fresh keys as fast as it can, as in
// issue 11 (300 manifests in 1.7 s). The server stores what the peer's
// budget allows and refuses the rest, first by budget, then by rate,
// counting both; a record of kad-dht's default namespaces (pk) is refused;
// an honest peer's Put beside the flood stores and reads back.
func TestDHTRecordFlood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			size    = 60 << 10
			flood   = 300
			perPeer = 4 << 20
		)
		reg := prometheus.NewRegistry()
		s := newSimNet(t)
		adjust := func(c *Config) {
			c.Validators = map[string]record.Validator{"t": openValidator{}}
		}
		server := s.overlay(nil, func(c *Config) {
			adjust(c)
			c.Registerer = reg
			// A rate the flood outruns within the test: 300 puts of
			// 60 KiB take about 15 s on the simulated link.
			c.DHTBudget.PutRate, c.DHTBudget.PutBurst = 5, 100
		})
		honest := s.overlay(server, adjust)
		reader := s.overlay(server, adjust)
		waitJoined(t, 30*time.Second, honest, reader)
		attacker := s.host()
		ctx := context.Background()
		if err := attacker.Connect(ctx, peer.AddrInfo{ID: server.Host().ID(), Addrs: server.Host().Addrs()}); err != nil {
			t.Fatal(err)
		}

		stored := 0
		var lastErr error
		for i := range flood {
			err := rawPutValue(ctx, attacker, server.Host().ID(), fmt.Sprintf("/t/flood-%d", i), bytes.Repeat([]byte{byte(i)}, size))
			if err == nil {
				stored++
			} else {
				lastErr = err
			}
		}
		if max := perPeer / size; stored > max || stored < max-1 {
			t.Fatalf("server stored %d of the flood's records, want its budget's %d", stored, max)
		}
		if lastErr == nil {
			t.Fatal("no PUT_VALUE refused")
		}
		b, r := server.DHTStoreUsage()
		if b > perPeer || r != stored {
			t.Fatalf("server keeps %d bytes in %d records, want at most %d in %d", b, r, perPeer, stored)
		}
		refused := server.dhtStore.refused
		byPeer, byRate := counterValue(t, refused.WithLabelValues(refusedPeer)), counterValue(t, refused.WithLabelValues(refusedRate))
		if byPeer == 0 || byRate == 0 || int(byPeer+byRate) != flood-stored {
			t.Fatalf("refusals: %v by peer budget, %v by rate; want both, %d in all", byPeer, byRate, flood-stored)
		}
		t.Logf("flood of %d: %d stored (%d KiB), %v refused by the peer budget, %v by rate", flood, stored, b>>10, byPeer, byRate)
		if n := len(gathered(t, reg, "immense_overlay_dht_records_refused_total").GetMetric()); n != 2 {
			t.Fatalf("%d refusal metric series, want 2 (peer, rate)", n)
		}

		// kad-dht's default namespaces are gone.
		time.Sleep(time.Minute) // the attacker's bucket refills
		if err := rawPutValue(ctx, attacker, server.Host().ID(), "/pk/x", []byte("x")); err == nil {
			t.Fatal("a /pk record was stored")
		}

		// The honest peer's Put still stores, and a third peer reads it.
		if err := honest.DHT().PutValue(ctx, "/t/honest", []byte("hello")); err != nil {
			t.Fatalf("honest put: %v", err)
		}
		if got, err := reader.DHT().GetValue(ctx, "/t/honest"); err != nil || string(got) != "hello" {
			t.Fatalf("honest get: %q, %v", got, err)
		}
	})
}

// TestRoutingTableDiversity: twelve DHT servers on addresses of one /24
// (one machine with many identities, or one small hoster) join a node's
// overlay beside four honest servers spread over the internet. The
// node's routing table takes every honest server and only Table24 of the
// twelve, and counts the ones it kept out.
func TestRoutingTableDiversity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const sybils = 12
		reg := prometheus.NewRegistry()
		s := newSimNet(t)
		node := s.overlay(nil, func(c *Config) { c.Registerer = reg })
		var honest []*Overlay
		for range 4 {
			honest = append(honest, s.overlay(node, nil))
		}
		waitJoined(t, 30*time.Second, honest...)
		for i := range sybils {
			h := s.hostAt(net.IPv4(203, 0, 114, byte(10+i)))
			cfg := DefaultConfig()
			cfg.Mode = ModeServer
			cfg.Logger = node.log
			cfg.Bootstrap = []peer.AddrInfo{{ID: node.Host().ID(), Addrs: node.Host().Addrs()}}
			o, err := New(context.Background(), h, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { o.Close() })
		}
		time.Sleep(time.Minute) // joins, identify, a routing-table refresh

		inTable, sybilsIn := map[peer.ID]bool{}, 0
		for _, p := range node.DHT().RoutingTable().ListPeers() {
			inTable[p] = true
		}
		for _, o := range honest {
			if !inTable[o.Host().ID()] {
				t.Errorf("honest server %s not in the routing table", o.Host().ID())
			}
		}
		sybilsIn = len(inTable) - len(honest)
		if want := DefaultDiversity().Table24; sybilsIn > want || sybilsIn == 0 {
			t.Fatalf("%d of %d peers of one /24 in the routing table, want at most %d", sybilsIn, sybils, want)
		}
		if n := gathered(t, reg, "immense_overlay_routing_table_diversity_refused_total").GetMetric()[0].GetCounter().GetValue(); n == 0 {
			t.Fatal("no refusal counted")
		}
		t.Logf("routing table: %d honest, %d of %d from one /24", len(honest), sybilsIn, sybils)
	})
}

// gathered returns the metric family name from reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) *dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	t.Fatalf("metric %s not registered", name)
	return nil
}

// counterValue reads a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// hostAt starts a host on the next index at ip (port 8000).
func (s *simNet) hostAt(ip net.IP) host.Host {
	s.t.Helper()
	h := s.hosts.StartAt(s.n, ip, 8000)
	s.n++
	return h
}

// FuzzDHTStoreKeys: record keys as a peer sends them (any bytes) and
// provider keys go through the store's key parsing (namespace, owner)
// without a panic, and storing then deleting leaves nothing counted.
func FuzzDHTStoreKeys(f *testing.F) {
	f.Add([]byte("/immense-state/ns/obj"), 100, false)
	f.Add([]byte("/providers/x"), 0, true)
	f.Add([]byte("//"), 1, false)
	f.Add([]byte{0xff, '/', 0}, 5, true)
	f.Fuzz(func(t *testing.T, key []byte, size int, provider bool) {
		ctx := context.Background()
		self, from := testPeerID(t, 1), testPeerID(t, 2)
		s := newDHTStore(self, DefaultDHTBudget(), []string{"immense-state", "immense-handoff"})
		size = size & 0xffff
		var dk ds.Key
		if provider {
			dk = ds.NewKey("/providers/" + string(key) + "/" + string(from))
		} else {
			dk = valueDsKey(string(key))
			s.note(string(key), from)
		}
		_ = s.Put(ctx, dk, make([]byte, size))
		if err := s.Delete(ctx, dk); err != nil && !errors.Is(err, ds.ErrNotFound) {
			t.Fatal(err)
		}
		if u := s.usage(); u.bytes != 0 || u.records != 0 || len(s.peers) != 0 || len(s.nss) != 0 {
			t.Fatalf("after delete: %+v, %d peers, %d namespaces", u, len(s.peers), len(s.nss))
		}
	})
}

// TestDHTStoreAttribution: a stranger's request note left behind (its
// record failed validation, so it never reached the store) does not make
// this node's own write of the key count against the stranger's full
// budget; and a write no note accounts for is not taken for ours: it
// shares the unattributed budget, so it cannot slip past the caps.
func TestDHTStoreAttribution(t *testing.T) {
	ctx := context.Background()
	self, stranger := testPeer(t, 1), testPeer(t, 2)
	s := newDHTStore(self, DHTBudget{
		MaxBytes: 1 << 20, MaxRecords: 100, PeerMaxBytes: 2_000, PeerMaxRecords: 2,
		NamespaceMaxBytes: 1 << 20,
	}, []string{"x"})
	for i := range 2 {
		key := fmt.Sprintf("/x/s%d", i)
		s.note(key, stranger)
		if err := s.Put(ctx, valueDsKey(key), make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	// The stranger's budget is full; it sends a junk PUT of our key.
	s.note("/x/ours", stranger)
	if err := s.Put(context.WithValue(ctx, ownWrite{}, true), valueDsKey("/x/ours"), make([]byte, 100)); err != nil {
		t.Fatalf("our own write behind a stranger's note: %v", err)
	}
	// Writes with no note: charged together, and refused past one peer's budget.
	var err error
	for i := 0; i < 3 && err == nil; i++ {
		err = s.Put(ctx, valueDsKey(fmt.Sprintf("/x/u%d", i)), make([]byte, 100))
	}
	if !errors.Is(err, ErrDHTBudget) {
		t.Fatalf("a third unattributed write: %v, want ErrDHTBudget", err)
	}
}
