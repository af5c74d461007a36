package simtest

import (
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
)

// Hosts are bare libp2p hosts on a network, host i on Addr(i), for tests
// that build their own services on a host (overlay, erasure). Stop takes
// host i offline and Start brings it back as a restarted process would
// be: same identity, same address. What still runs when the test ends is
// closed by tb.Cleanup.
type Hosts struct {
	tb  testing.TB
	net *Network

	mu    sync.Mutex
	keys  map[int]crypto.PrivKey // host i's identity, kept across restarts
	addrs map[int]string         // host i's address, if not Addr(i)
	up    map[int]host.Host      // the hosts running
}

// NewHosts starts no host yet. Host i < len(keys) has identity keys[i];
// any other gets a random one when first started.
func NewHosts(tb testing.TB, net *Network, keys ...crypto.PrivKey) *Hosts {
	hs := &Hosts{tb: tb, net: net, keys: map[int]crypto.PrivKey{}, addrs: map[int]string{}, up: map[int]host.Host{}}
	for i, k := range keys {
		hs.keys[i] = k
	}
	tb.Cleanup(func() {
		hs.mu.Lock()
		defer hs.mu.Unlock()
		for i, h := range hs.up {
			h.Close()
			delete(hs.up, i)
		}
	})
	return hs
}

// Start starts host i, or returns it if it runs. A host that was stopped
// comes back with its identity and address.
func (hs *Hosts) Start(i int) host.Host {
	hs.tb.Helper()
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if h, ok := hs.up[i]; ok {
		return h
	}
	key, ok := hs.keys[i]
	if !ok {
		key = Keys(hs.tb, rand.Reader, 1)[0]
		hs.keys[i] = key
	}
	addr, ok := hs.addrs[i]
	if !ok {
		addr = Addr(i)
	}
	opts := append(hs.net.HostOptions(),
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(addr),
		// Tests measure the protocols, not libp2p's limits.
		libp2p.ResourceManager(&network.NullResourceManager{}),
	)
	h, err := libp2p.New(opts...)
	if err != nil {
		hs.tb.Fatalf("start host %d: %v", i, err)
	}
	hs.up[i] = h
	return h
}

// StartAt starts host i on ip instead of IP(i), and keeps it there
// across restarts: for tests that put several hosts in one subnet (many
// identities on one machine or one hoster's network), or on one address
// with different ports.
func (hs *Hosts) StartAt(i int, ip net.IP, port int) host.Host {
	hs.tb.Helper()
	hs.mu.Lock()
	hs.addrs[i] = fmt.Sprintf("/ip4/%s/udp/%d/quic-v1", ip, port)
	hs.mu.Unlock()
	return hs.Start(i)
}

// Stop closes host i if it runs.
func (hs *Hosts) Stop(i int) {
	hs.mu.Lock()
	h, ok := hs.up[i]
	delete(hs.up, i)
	hs.mu.Unlock()
	if ok {
		h.Close()
	}
}

// Host returns host i, or nil while it is stopped.
func (hs *Hosts) Host(i int) host.Host {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return hs.up[i]
}

// Keys returns n Ed25519 keys read from r in turn. Seeded from a fixed
// reader they give the same peer IDs on every run, and so the same DHT
// distances and placements: a test that found a bad case keeps it.
func Keys(tb testing.TB, r io.Reader, n int) []crypto.PrivKey {
	tb.Helper()
	keys := make([]crypto.PrivKey, n)
	for i := range keys {
		k, _, err := crypto.GenerateEd25519Key(r)
		if err != nil {
			tb.Fatalf("generate key %d: %v", i, err)
		}
		keys[i] = k
	}
	return keys
}
