package erasure

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/immense-p2p/immense/internal/simtest"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/routing"
	"github.com/prometheus/client_golang/prometheus"
)

// memRecords is an in-memory stand-in for the DHT that, like a DHT server,
// runs the record validator on every put and refuses a record its Select
// does not prefer over the one it holds.
type memRecords struct {
	mu   sync.Mutex
	v    record.Validator
	vals map[string][]byte
}

func newMemRecords() *memRecords {
	return &memRecords{v: record.NamespacedValidator{RecordNamespace: ManifestValidator{}, HandoffNamespace: HintValidator{}},
		vals: map[string][]byte{}}
}

func (r *memRecords) PutValue(_ context.Context, key string, val []byte, _ ...routing.Option) error {
	if err := r.v.Validate(key, val); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.vals[key]; ok {
		if bytes.Equal(old, val) {
			return nil
		}
		i, err := r.v.Select(key, [][]byte{old, val})
		if err != nil {
			return err
		}
		if i != 1 {
			return fmt.Errorf("%w: a newer record is stored", ErrStaleManifest)
		}
	}
	r.vals[key] = bytes.Clone(val)
	return nil
}

func (r *memRecords) GetValue(_ context.Context, key string, _ ...routing.Option) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.vals[key]
	if !ok {
		return nil, routing.ErrNotFound
	}
	return bytes.Clone(v), nil
}

// testNet is a network of real libp2p hosts, each with a store and a
// service: simulated ones from newTestNet, inside a synctest bubble, or
// loopback ones in benchmarks.
type testNet struct {
	t       testing.TB
	records *memRecords
	nodes   []*testNode
	mu      sync.Mutex
	down    map[peer.ID]bool
}

type testNode struct {
	h     host.Host
	dir   string
	store *Store
	svc   *Service
}

// netPeers answers StoragePeers with every node not taken down.
type netPeers struct {
	n    *testNet
	self peer.ID
}

func (p netPeers) StoragePeers(context.Context, string) ([]PeerInfo, error) {
	p.n.mu.Lock()
	defer p.n.mu.Unlock()
	var out []PeerInfo
	for _, nd := range p.n.nodes {
		if nd.h.ID() != p.self && !p.n.down[nd.h.ID()] {
			out = append(out, PeerInfo{ID: nd.h.ID()})
		}
	}
	return out, nil
}

type netOpts struct {
	key    func(i int) *AppKey // nil: one shared app key
	config func(i int, c *Config, sc *StoreConfig)
}

// newTestNet builds n nodes on a simulated network (1 Gbit/s links, 5 ms
// one way); call it inside a synctest bubble.
func newTestNet(t *testing.T, n int, o netOpts) *testNet {
	t.Helper()
	net := simtest.New(t, simtest.Config{Bandwidth: 1000 * simtest.Mbps, Latency: 5 * time.Millisecond})
	hs := simtest.NewHosts(t, net)
	hosts := make([]host.Host, n)
	for i := range hosts {
		hosts[i] = hs.Start(i)
	}
	return buildTestNet(t, hosts, o)
}

// buildTestNet gives each host a store and a service.
func buildTestNet(t testing.TB, hosts []host.Host, o netOpts) *testNet {
	t.Helper()
	tn := &testNet{t: t, records: newMemRecords(), down: map[peer.ID]bool{}}
	shared, _ := GenerateAppKey()
	for i, h := range hosts {
		for _, o := range hosts {
			if o != h {
				h.Peerstore().AddAddrs(o.ID(), o.Addrs(), peerstore.PermanentAddrTTL)
			}
		}
		cfg := DevnetConfig()
		cfg.DisableRepair = true
		cfg.GCInterval = 0 // tests collect garbage explicitly
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", i)
		scfg := DefaultStoreConfig(filepath.Join(t.TempDir(), fmt.Sprintf("node%d", i)))
		scfg.Quota = 1 << 30
		scfg.Logger = cfg.Logger
		if o.config != nil {
			o.config(i, &cfg, &scfg)
		}
		store, err := OpenStore(scfg)
		if err != nil {
			t.Fatal(err)
		}
		key := shared
		if o.key != nil {
			key = o.key(i)
		}
		nd := &testNode{h: h, dir: scfg.Dir, store: store}
		nd.svc, err = New(cfg, Deps{Host: h, Key: key, Store: store, Records: tn.records,
			Peers: netPeers{n: tn, self: h.ID()}})
		if err != nil {
			t.Fatal(err)
		}
		tn.nodes = append(tn.nodes, nd)
	}
	t.Cleanup(func() {
		for _, nd := range tn.nodes {
			nd.svc.Close()
			nd.store.Close()
			nd.h.Close()
		}
	})
	return tn
}

// node returns the node whose host is p.
func (tn *testNet) node(p peer.ID) *testNode {
	for _, nd := range tn.nodes {
		if nd.h.ID() == p {
			return nd
		}
	}
	tn.t.Fatalf("no node %s", p)
	return nil
}

// takeDown stops a node for good: service and host closed, no longer a
// candidate.
func (tn *testNet) takeDown(p peer.ID) {
	tn.mu.Lock()
	tn.down[p] = true
	tn.mu.Unlock()
	nd := tn.node(p)
	nd.svc.Close()
	nd.h.Close()
}

func testValue(r *rand.Rand, n int, marker string) []byte {
	v := randBytes(r, n)
	for off := 0; off+len(marker) <= n; off += 4096 {
		copy(v[off:], marker)
	}
	return v
}

// grepDir reports whether any file under dir contains needle.
func grepDir(t *testing.T, dir string, needle []byte) bool {
	found := false
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, needle) {
			found = true
		}
		return nil
	})
	return found
}

func TestServicePutGetRoundTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 8, netOpts{})
		ctx := context.Background()
		r := rand.New(rand.NewPCG(1, 1))
		const marker = "PLAINTEXT-MARKER-7f3a"
		writer, reader := tn.nodes[0].svc, tn.nodes[5].svc
		for _, size := range []int{0, 1, 100, 4096, 1<<20 + 3, 3 << 20} {
			value := testValue(r, size, marker)
			res, err := writer.Put(ctx, fmt.Sprintf("obj-%d", size), value)
			if err != nil {
				t.Fatalf("put %d bytes: %v", size, err)
			}
			if res.K != 4 || res.K+res.M != 8 || len(res.Holders) != 8 || res.Version != 1 {
				t.Fatalf("put %d bytes: %+v", size, res)
			}
			seen := map[peer.ID]bool{}
			for _, p := range res.Holders {
				if seen[p] {
					t.Fatalf("holder %s twice", p)
				}
				seen[p] = true
			}
			// Another app peer with the same key reads it.
			got, err := reader.Get(ctx, fmt.Sprintf("obj-%d", size))
			if err != nil {
				t.Fatalf("get %d bytes: %v", size, err)
			}
			if !bytes.Equal(got, value) {
				t.Fatalf("get %d bytes: value differs", size)
			}
		}
		// A second put is a new version and replaces the value.
		res, err := writer.Put(ctx, "obj-1", []byte("v2"))
		if err != nil || res.Version != 2 {
			t.Fatalf("second put: %+v %v", res, err)
		}
		if got, err := reader.Get(ctx, "obj-1"); err != nil || string(got) != "v2" {
			t.Fatalf("get v2: %q %v", got, err)
		}
		if _, err := reader.Get(ctx, "never-written"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get missing: %v", err)
		}
		h, err := reader.Health(ctx, "obj-4096")
		if err != nil || h.Reachable != 8 || h.Needed != 4 || h.Repair != RepairNone {
			t.Fatalf("health: %+v %v", h, err)
		}
		// No holder's disk has the plaintext.
		for i, nd := range tn.nodes {
			if nd.store.Len() == 0 {
				t.Fatalf("node %d holds nothing", i)
			}
			if grepDir(t, nd.dir, []byte(marker)) {
				t.Fatalf("plaintext marker found in node %d's data dir", i)
			}
		}
	})
}

func TestServiceOtherAppKeyCannotRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		keys := make([]*AppKey, 3)
		for i := range keys {
			keys[i], _ = GenerateAppKey()
		}
		tn := newTestNet(t, 6, netOpts{key: func(i int) *AppKey { return keys[min(i, 2)] }})
		ctx := context.Background()
		if _, err := tn.nodes[0].svc.Put(ctx, "k", []byte("mine")); err != nil {
			t.Fatal(err)
		}
		// Same key name, other namespace: a different object, not found.
		if _, err := tn.nodes[1].svc.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("other namespace read: %v", err)
		}
	})
}

// sabotage replaces a host's shard protocol handler: corrupt flips a bit of
// every fetched shard, hang never answers.
func sabotage(nd *testNode, mode string) {
	nd.h.SetStreamHandler(ShardProtocol, func(st network.Stream) {
		body, err := readFrame(st, maxFrame)
		if err != nil {
			st.Reset()
			return
		}
		q, err := decodeRequest(body)
		if err != nil {
			st.Reset()
			return
		}
		if mode == "hang" {
			// Hold the stream until the client gives up and resets it.
			buf := make([]byte, 1)
			st.Read(buf)
			st.Reset()
			return
		}
		resp := &response{typ: q.typ}
		if q.typ == msgFetch {
			info, data, err := nd.store.Get(q.hash)
			if err != nil {
				resp.status = StatusNotFound
			} else {
				data = bytes.Clone(data)
				data[len(data)/2] ^= 0x40
				resp.ref, resp.data = info.Ref, data
			}
		}
		writeFrame(st, resp.encode())
		st.Close()
	})
}

func TestServiceCorruptAndHangingPeers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 10, netOpts{config: func(i int, c *Config, sc *StoreConfig) {
			c.MaxShards = 8 // k=4, m=4 on 8 of the 10 peers
		}})
		ctx := context.Background()
		value := testValue(rand.New(rand.NewPCG(2, 2)), 2<<20+5, "x")
		res, err := tn.nodes[0].svc.Put(ctx, "obj", value)
		if err != nil {
			t.Fatal(err)
		}
		// The reader holds no shard; the two holders it will ask first turn
		// bad: one corrupts every shard, one never answers.
		holder := map[peer.ID]bool{}
		for _, p := range res.Holders {
			holder[p] = true
		}
		var reader *testNode
		for _, nd := range tn.nodes[1:] {
			if !holder[nd.h.ID()] {
				reader = nd
				break
			}
		}
		m, err := reader.svc.Manifest(ctx, "obj")
		if err != nil {
			t.Fatal(err)
		}
		order := reader.svc.newFetchState(m, nil).current()
		corrupt, hang := tn.node(m.Placement[order[0]]), tn.node(m.Placement[order[1]])
		sabotage(corrupt, "corrupt")
		sabotage(hang, "hang")
		got, err := reader.svc.Get(ctx, "obj")
		if err != nil {
			t.Fatalf("get with a corrupt and a hanging holder: %v", err)
		}
		if !bytes.Equal(got, value) {
			t.Fatal("value differs")
		}
		reports := reader.svc.PeerReports()
		if reports[corrupt.h.ID()].Corrupt == 0 {
			t.Fatalf("corrupt peer not noted: %+v", reports)
		}
		if r := reports[hang.h.ID()]; r.Slow+r.Failures == 0 {
			t.Fatalf("hanging peer not noted: %+v", reports)
		}
		for p, r := range reports {
			if p != corrupt.h.ID() && p != hang.h.ID() && r != (PeerReport{}) {
				t.Fatalf("good peer %s blamed: %+v", p, r)
			}
		}
	})
}

func TestServiceQuotaRefusalPlacesElsewhere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const tiny = 2048
		tn := newTestNet(t, 10, netOpts{config: func(i int, c *Config, sc *StoreConfig) {
			if i >= 7 {
				sc.Quota = tiny
			}
			if i == 0 {
				c.MaxShards = 6 // 6 holders among 10 peers: spares to move to
			}
		}})
		ctx := context.Background()
		value := testValue(rand.New(rand.NewPCG(3, 3)), 64<<10, "q")
		full := map[peer.ID]bool{}
		for _, nd := range tn.nodes[7:] {
			full[nd.h.ID()] = true
		}
		// Ask a full peer directly: a clear quota error.
		c := NewClient(tn.nodes[0].h, time.Second)
		err := c.Store(ctx, tn.nodes[7].h.ID(), HashShard(value), ShardRef{}, value)
		if !errors.Is(err, ErrQuotaExceeded) || !strings.Contains(err.Error(), "quota exceeded") {
			t.Fatalf("store on a full peer: %v", err)
		}
		check := func(svc *Service, key string, wantHolders int) {
			t.Helper()
			res, err := svc.Put(ctx, key, value)
			if err != nil {
				t.Fatalf("put %s with 3 full peers: %v", key, err)
			}
			if len(res.Holders) != wantHolders {
				t.Fatalf("put %s: %d holders, want %d", key, len(res.Holders), wantHolders)
			}
			for _, p := range res.Holders {
				if full[p] {
					t.Fatalf("put %s: shard placed on full peer %s", key, p)
				}
			}
			if got, err := tn.nodes[3].svc.Get(ctx, key); err != nil || !bytes.Equal(got, value) {
				t.Fatalf("get %s: %v", key, err)
			}
		}
		// Spares available: refused shards move to other peers.
		check(tn.nodes[0].svc, "obj", 6)
		// Every peer was a holder: the writer plans again without the
		// full ones, with the 7 peers that have room.
		check(tn.nodes[1].svc, "obj2", 7)
		for _, nd := range tn.nodes[7:] {
			if nd.store.Used() > tiny || nd.store.Len() != 0 {
				t.Fatalf("full store holds %d shards, %d bytes", nd.store.Len(), nd.store.Used())
			}
		}
	})
}

func TestServiceManifestRejections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 4, netOpts{})
		ctx := context.Background()
		owner := tn.nodes[0].svc
		if _, err := owner.Put(ctx, "obj", []byte("one")); err != nil {
			t.Fatal(err)
		}
		m1, err := owner.Manifest(ctx, "obj")
		if err != nil {
			t.Fatal(err)
		}
		v1, _ := m1.Marshal()
		if _, err := owner.Put(ctx, "obj", []byte("two")); err != nil {
			t.Fatal(err)
		}
		key := m1.Key()
		// A lower version is refused.
		if err := tn.records.PutValue(ctx, key, v1); !errors.Is(err, ErrStaleManifest) {
			t.Fatalf("lower version: %v", err)
		}
		// A manifest signed by another key, under the owner's DHT key.
		intruder, _ := GenerateAppKey()
		forged := *m1
		forged.Version = 99
		fb, err := forged.Sign(intruder)
		if err != nil {
			t.Fatal(err)
		}
		if err := tn.records.PutValue(ctx, key, fb); !errors.Is(err, ErrInvalidManifest) {
			t.Fatalf("forged manifest: %v", err)
		}
		// Garbage and an unsigned record.
		if err := tn.records.PutValue(ctx, key, []byte("garbage")); !errors.Is(err, ErrInvalidManifest) {
			t.Fatalf("garbage: %v", err)
		}
		unsigned := bytes.Clone(v1)
		copy(unsigned[len(unsigned)-64:], make([]byte, 64))
		if err := tn.records.PutValue(ctx, key, unsigned); !errors.Is(err, ErrInvalidManifest) {
			t.Fatalf("unsigned: %v", err)
		}
		if got, err := tn.nodes[2].svc.Get(ctx, "obj"); err != nil || string(got) != "two" {
			t.Fatalf("after rejected writes: %q %v", got, err)
		}
	})
}

func TestServiceDeleteAndGC(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 6, netOpts{})
		ctx := context.Background()
		svc := tn.nodes[0].svc
		if _, err := svc.Put(ctx, "gone", []byte("to delete")); err != nil {
			t.Fatal(err)
		}
		if err := svc.Delete(ctx, "gone"); err != nil {
			t.Fatal(err)
		}
		if _, err := tn.nodes[1].svc.Get(ctx, "gone"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get after delete: %v", err)
		}
		if err := svc.Delete(ctx, "gone"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
		for i, nd := range tn.nodes {
			if nd.store.Len() != 0 {
				t.Fatalf("node %d still holds %d shards after delete", i, nd.store.Len())
			}
		}
		// Overwrite: version 1's shards become garbage once old enough.
		if _, err := svc.Put(ctx, "obj", bytes.Repeat([]byte("a"), 5000)); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Put(ctx, "obj", bytes.Repeat([]byte("b"), 5000)); err != nil {
			t.Fatal(err)
		}
		before := 0
		for _, nd := range tn.nodes {
			before += nd.store.Len()
		}
		for _, nd := range tn.nodes {
			if n, _, err := nd.svc.CollectGarbage(ctx); err != nil || n != 0 {
				t.Fatalf("young shards collected: %d %v", n, err)
			}
		}
		time.Sleep(DevnetConfig().GCMinAge + time.Second)
		removed := 0
		for _, nd := range tn.nodes {
			n, _, err := nd.svc.CollectGarbage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			removed += n
		}
		if removed != before/2 {
			t.Fatalf("gc removed %d of %d shards, want the old version's half", removed, before)
		}
		if got, err := tn.nodes[2].svc.Get(ctx, "obj"); err != nil || got[0] != 'b' {
			t.Fatalf("get after gc: %v", err)
		}
	})
}

func TestServiceRepair(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 12, netOpts{config: func(i int, c *Config, sc *StoreConfig) {
			c.DisableRepair = i != 0 // the writer repairs
			c.MaxShards = 6          // k=4, m=2: 6 holders, 6 spare peers
		}})
		ctx := context.Background()
		writer := tn.nodes[0]
		value := testValue(rand.New(rand.NewPCG(4, 4)), 1<<20+77, "r")
		res, err := writer.svc.Put(ctx, "obj", value)
		if err != nil {
			t.Fatal(err)
		}
		// Take down two holders (not the writer) for good.
		var downed []peer.ID
		for _, p := range res.Holders {
			if p != writer.h.ID() && len(downed) < 2 {
				tn.takeDown(p)
				downed = append(downed, p)
			}
		}
		h, err := writer.svc.Health(ctx, "obj")
		if err != nil || h.Reachable != 4 {
			t.Fatalf("health after losing 2: %+v %v", h, err)
		}
		// Let virtual time pass: the grace period expires, the scheduler
		// comes round, the writer regenerates the two shards elsewhere.
		time.Sleep(3 * DevnetConfig().Scheduler.Interval)
		synctest.Wait()
		h, err = writer.svc.Health(ctx, "obj")
		if err != nil || h.Reachable != 6 || h.Version <= res.Version {
			t.Fatalf("health after repair: %+v %v", h, err)
		}
		for _, hh := range h.Holders {
			for _, d := range downed {
				if hh.Peer == d {
					t.Fatal("a downed peer is still a holder")
				}
			}
		}
		for _, nd := range tn.nodes[1:] {
			if !tn.down[nd.h.ID()] {
				if got, err := nd.svc.Get(ctx, "obj"); err != nil || !bytes.Equal(got, value) {
					t.Fatalf("get after repair: %v", err)
				}
				break
			}
		}
	})
}

func TestServiceMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		regs := make([]*prometheus.Registry, 4)
		tn := newTestNet(t, 4, netOpts{config: func(i int, c *Config, sc *StoreConfig) {
			regs[i] = prometheus.NewRegistry()
			c.Registerer = regs[i]
		}})
		ctx := context.Background()
		if _, err := tn.nodes[0].svc.Put(ctx, "m", bytes.Repeat([]byte("m"), 10000)); err != nil {
			t.Fatal(err)
		}
		if _, err := tn.nodes[1].svc.Get(ctx, "m"); err != nil {
			t.Fatal(err)
		}
		value := func(reg *prometheus.Registry, name string) float64 {
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				if mf.GetName() == name {
					sum := 0.0
					for _, m := range mf.GetMetric() {
						sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
					}
					return sum
				}
			}
			t.Fatalf("metric %s not registered", name)
			return 0
		}
		var stored, served float64
		for i, reg := range regs {
			if value(reg, "immense_state_storage_quota_bytes") != 1<<30 {
				t.Fatalf("node %d: quota gauge wrong", i)
			}
			if value(reg, "immense_state_storage_used_bytes") != float64(tn.nodes[i].store.Used()) {
				t.Fatalf("node %d: used gauge wrong", i)
			}
			stored += value(reg, "immense_state_shards_stored_total")
			served += value(reg, "immense_state_shards_served_total")
		}
		// The writer stores its own shard locally, not through the protocol.
		if stored != 3 || served == 0 {
			t.Fatalf("shards stored %v served %v", stored, served)
		}
		if value(regs[0], "immense_state_puts_total") != 1 || value(regs[1], "immense_state_gets_total") != 1 {
			t.Fatal("put/get counters")
		}
		value(regs[0], "immense_state_repairs_total")
	})
}
