package node

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/immense-p2p/immense/internal/simtest"
	"github.com/immense-p2p/immense/overlay"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// simNet is a network of full nodes on a simulated network
// (internal/simtest), to be built inside synctest.Test: the nodes then run
// in virtual time. Node i listens on simtest.Addr(i) and keeps its data
// directory, so stop and start take it offline and back as a restarted
// process would be: same identity, shards and tracked keys. Everything is
// closed by t.Cleanup.
type simNet struct {
	t      *testing.T
	net    *simtest.Network
	adjust func(i int, c *Config)
	nodes  []*simNode
}

type simNode struct {
	i   int
	dir string
	id  peer.ID
	n   *Node // nil while offline
}

// newSimNet prepares n nodes and starts none. Given keys become the nodes'
// identities; without them each node makes its own on first start.
func newSimNet(t *testing.T, link simtest.Config, n int, keys []crypto.PrivKey, adjust func(i int, c *Config)) *simNet {
	t.Helper()
	s := &simNet{t: t, net: simtest.New(t, link), adjust: adjust}
	root := t.TempDir()
	for i := range n {
		nd := &simNode{i: i, dir: filepath.Join(root, fmt.Sprintf("node%02d", i))}
		if i < len(keys) {
			b, err := crypto.MarshalPrivateKey(keys[i])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(nd.dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(nd.dir, identityFile), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		s.nodes = append(s.nodes, nd)
	}
	t.Cleanup(func() {
		for _, nd := range s.nodes {
			s.stop(nd)
		}
	})
	return s
}

// simNetwork starts n nodes on 20 Mbit/s links, 10 ms one way. Node 0 is
// the bootstrap node; the others bootstrap from it.
func simNetwork(t *testing.T, n int, adjust func(i int, c *Config)) []*Node {
	t.Helper()
	s := newSimNet(t, simtest.Config{}, n, nil, adjust)
	s.start(s.nodes[0], nil)
	boot := s.bootstrapAddrs()
	nodes := []*Node{s.nodes[0].n}
	for _, nd := range s.nodes[1:] {
		s.start(nd, boot)
		nodes = append(nodes, nd.n)
	}
	return nodes
}

// newStateNet starts n nodes with seeded identities, so that placement,
// and so which nodes hold what, is the same on every run. Each node
// bootstraps from every node already up, so all are connected to all:
// every node is a storage candidate of every writer.
func newStateNet(t *testing.T, n int, adjust func(i int, c *Config)) *simNet {
	t.Helper()
	// With this seed, repair used to retry a departed peer the DHT still
	// listed forever (fixed by erasure's FailureBackoff).
	keys := simtest.Keys(t, rand.NewChaCha8([32]byte{'s', 't', 'a', 't', 'e', '4'}), n)
	// Fast links keep an 8 MiB Put (22 shards of every 1 MiB segment
	// leaving one uplink) well inside the request timeout. Bandwidth costs
	// nothing in virtual time; bytes cost CPU either way.
	s := newSimNet(t, simtest.Config{Bandwidth: 200 * simtest.Mbps}, n, keys, adjust)
	s.start(s.nodes[0], nil)
	for _, nd := range s.nodes[1:] {
		s.start(nd, s.bootstrapAddrs())
	}
	return s
}

// index returns the index of the node with peer id p, or -1.
func (s *simNet) index(p peer.ID) int {
	for _, nd := range s.nodes {
		if nd.id == p {
			return nd.i
		}
	}
	return -1
}

// bootstrapAddrs returns the addresses of every node online.
func (s *simNet) bootstrapAddrs() []string {
	var out []string
	for _, nd := range s.nodes {
		if nd.n != nil {
			for _, a := range nd.n.Addrs() {
				out = append(out, a.String())
			}
		}
	}
	return out
}

// start starts nd, a DHT server on a public address, with the given
// bootstrap addresses.
func (s *simNet) start(nd *simNode, bootstrap []string) {
	s.t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = nd.dir
	cfg.ListenAddrs = []string{simtest.Addr(nd.i)}
	cfg.Overlay.Mode = overlay.ModeServer
	cfg.Bootstrap = bootstrap
	cfg.NAT = NATConfig{} // every simulated node is public
	cfg.NoTrafficMeters = true
	cfg.Logger = slog.New(slog.NewTextHandler(s.t.Output(), &slog.HandlerOptions{Level: slog.LevelError})).With("node", nd.i)
	cfg.HostOptions = s.net.HostOptions()
	if s.adjust != nil {
		s.adjust(nd.i, &cfg)
	}
	n, err := New(context.Background(), cfg)
	if err != nil {
		s.t.Fatalf("start node %d: %v", nd.i, err)
	}
	if nd.id != "" && nd.id != n.ID() {
		s.t.Fatalf("node %d restarted as %s, was %s", nd.i, n.ID(), nd.id)
	}
	nd.n, nd.id = n, n.ID()
}

// stop closes nd if it runs.
func (s *simNet) stop(nd *simNode) {
	if nd.n != nil {
		nd.n.Close()
		nd.n = nil
	}
}
