package erasure

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/immense-p2p/immense/internal/simtest"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
)

// churnNet is a simulated network (internal/simtest) whose nodes can go
// offline and come back with the same identity, address and data
// directory, as a restarted process would.
type churnNet struct {
	t       *testing.T
	hosts   *simtest.Hosts
	records *memRecords
	key     *AppKey
	config  func(i int, c *Config)

	mu    sync.Mutex
	nodes []*churnNode
}

type churnNode struct {
	i     int
	id    peer.ID
	dir   string
	up    bool
	h     host.Host
	store *Store
	svc   *Service
}

func (c *churnNet) StoragePeersFor(self peer.ID) Peers { return churnPeers{c, self} }

type churnPeers struct {
	c    *churnNet
	self peer.ID
}

// StoragePeers returns the nodes that are up, as a DHT lookup would.
func (p churnPeers) StoragePeers(context.Context, string) ([]PeerInfo, error) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	var out []PeerInfo
	for _, nd := range p.c.nodes {
		if nd.up && nd.id != p.self {
			out = append(out, PeerInfo{ID: nd.id})
		}
	}
	return out, nil
}

func newChurnNet(t *testing.T, n int, config func(i int, c *Config)) *churnNet {
	c := &churnNet{t: t, records: newMemRecords(), config: config}
	// Seeded identities and app key: placement, and so which objects keep
	// enough holders online, is the same on every run.
	seeded := rand.NewChaCha8([32]byte{'c', 'h', 'u', 'r', 'n'})
	var seed, secret [32]byte
	seeded.Read(seed[:])
	seeded.Read(secret[:])
	c.key = newAppKey(seed[:], secret)
	keys := simtest.Keys(t, seeded, n)
	net := simtest.New(t, simtest.Config{Bandwidth: 1000 * simtest.Mbps, Latency: 5 * time.Millisecond})
	c.hosts = simtest.NewHosts(t, net, keys...)
	for i, k := range keys {
		id, _ := peer.IDFromPrivateKey(k)
		c.nodes = append(c.nodes, &churnNode{i: i, id: id,
			dir: filepath.Join(t.TempDir(), fmt.Sprintf("node%d", i))})
	}
	for _, nd := range c.nodes {
		c.start(nd)
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			c.stop(nd)
		}
	})
	return c
}

// start brings a node up: its host back with its identity and address,
// its store reopened from disk, a new service.
func (c *churnNet) start(nd *churnNode) {
	t := c.t
	h := c.hosts.Start(nd.i)
	for _, o := range c.nodes {
		if o != nd {
			h.Peerstore().AddAddr(o.id, ma.StringCast(simtest.Addr(o.i)), peerstore.PermanentAddrTTL)
		}
	}
	cfg := DevnetConfig()
	cfg.GCInterval = 0
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", nd.i)
	if c.config != nil {
		c.config(nd.i, &cfg)
	}
	scfg := DefaultStoreConfig(nd.dir)
	scfg.Logger = cfg.Logger
	store, err := OpenStore(scfg)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(cfg, Deps{Host: h, Key: c.key, Store: store, Records: c.records, Peers: c.StoragePeersFor(nd.id)})
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	nd.h, nd.store, nd.svc, nd.up = h, store, svc, true
	c.mu.Unlock()
}

// stop takes a node offline: service, store and host closed.
func (c *churnNet) stop(nd *churnNode) {
	c.mu.Lock()
	if !nd.up {
		c.mu.Unlock()
		return
	}
	nd.up = false
	c.mu.Unlock()
	nd.svc.Close()
	nd.store.Close()
	c.hosts.Stop(nd.i)
}

// TestChurnReadAndRepair is the erasure-level version of issue 3's churn
// scenario: 30 nodes, 50 objects of 1 B to 8 MiB; 60% of the nodes go
// offline and every object still reads back; they return, 6 others leave
// for good, and repair brings every object back to full redundancy.
func TestChurnReadAndRepair(t *testing.T) {
	if testing.Short() {
		t.Skip("moves ~200 MiB through simnet")
	}
	synctest.Test(t, func(t *testing.T) {
		const nodes, objects = 30, 50
		cn := newChurnNet(t, nodes, func(i int, c *Config) {
			// 20 of 30 peers per object: with 60% offline at least 2 and
			// almost surely 4 or more holders of each object stay online.
			c.MaxShards = 20
			c.DisableRepair = i != 0 // node 0 wrote the objects and repairs them
		})
		ctx := context.Background()
		writer := cn.nodes[0]
		r := rand.New(rand.NewPCG(30, 50))
		values := make([][]byte, objects)
		for i := range values {
			size := int(math.Round(math.Pow(8<<20, float64(i)/(objects-1))))
			values[i] = randBytes(r, size)
			if _, err := writer.svc.Put(ctx, fmt.Sprintf("obj-%d", i), values[i]); err != nil {
				t.Fatalf("put obj-%d (%d bytes): %v", i, size, err)
			}
		}
		// 60% of the nodes go offline, the writer excepted.
		perm := r.Perm(nodes - 1)
		var offline, online []*churnNode
		for j, p := range perm {
			if j < nodes*6/10 {
				offline = append(offline, cn.nodes[p+1])
			} else {
				online = append(online, cn.nodes[p+1])
			}
		}
		for _, nd := range offline {
			cn.stop(nd)
		}
		reader := online[0]
		for i, v := range values {
			got, err := reader.svc.Get(ctx, fmt.Sprintf("obj-%d", i))
			if err != nil {
				t.Fatalf("with 60%% offline, obj-%d: %v", i, err)
			}
			if !bytes.Equal(got, v) {
				t.Fatalf("with 60%% offline, obj-%d differs", i)
			}
		}
		// They come back; six of the others leave for good.
		for _, nd := range offline {
			cn.start(nd)
		}
		for _, nd := range online[1:7] {
			cn.stop(nd)
		}
		gone := map[peer.ID]bool{}
		for _, nd := range online[1:7] {
			gone[nd.id] = true
		}
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		repaired := 0
		for i := range values {
			h, err := writer.svc.Health(ctx, fmt.Sprintf("obj-%d", i))
			if err != nil {
				t.Fatalf("health obj-%d: %v", i, err)
			}
			if h.Reachable != h.Total {
				t.Fatalf("obj-%d not back to full redundancy: %d of %d reachable", i, h.Reachable, h.Total)
			}
			for _, hh := range h.Holders {
				if gone[hh.Peer] {
					t.Fatalf("obj-%d: shard %d still on a departed peer", i, hh.Index)
				}
			}
			if h.Version > 1 {
				repaired++
			}
		}
		if repaired == 0 {
			t.Fatal("no object was repaired")
		}
		t.Logf("%d of %d objects repaired", repaired, objects)
		for i, v := range values {
			if got, err := reader.svc.Get(ctx, fmt.Sprintf("obj-%d", i)); err != nil || !bytes.Equal(got, v) {
				t.Fatalf("after repair, obj-%d: %v", i, err)
			}
		}
	})
}
