package simtest

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/x/simlibp2p"
	"github.com/marcopolo/simnet"
)

// Mbps is one megabit a second, the unit links are usually given in.
const Mbps = simlibp2p.OneMbps

// The link most tests run on: a home line (go-libp2p-pubsub's tests use the
// same bandwidth), with a latency that keeps round trips visible.
const (
	DefaultBandwidth = 20 * Mbps
	DefaultLatency   = 10 * time.Millisecond
)

// Config describes the simulated links. The zero value is a network of
// DefaultBandwidth links with DefaultLatency.
type Config struct {
	// Bandwidth of every host's uplink and of its downlink, in bits a
	// second.
	Bandwidth int
	// Latency is the one-way delay of every packet.
	Latency time.Duration
	// LatencyFunc, if set, gives each packet its own one-way delay
	// instead of Latency (sim/live: from the regions of its two ends).
	LatencyFunc func(*simnet.Packet) time.Duration
	// Logger receives simnet's own log (a packet it cannot route means a
	// set-up bug); nil: slog.Default().
	Logger *slog.Logger
}

// Network is a running simulated network.
type Network struct {
	sn   *simnet.Simnet
	link simnet.NodeBiDiLinkSettings
	once sync.Once
}

// New starts a network for a test and closes it when the test ends (after
// everything registered with tb.Cleanup later, so hosts and nodes first).
// Call it inside synctest.Test for virtual time: simnet's goroutines then
// belong to the bubble.
func New(tb testing.TB, cfg Config) *Network {
	tb.Helper()
	n := Start(cfg)
	tb.Cleanup(n.Close)
	return n
}

// Start starts a network that the caller closes: for sim/live, which runs
// outside tests too.
func Start(cfg Config) *Network {
	bw := cfg.Bandwidth
	if bw == 0 {
		bw = DefaultBandwidth
	}
	latency := cfg.LatencyFunc
	if latency == nil {
		d := cfg.Latency
		if d == 0 {
			d = DefaultLatency
		}
		latency = simnet.StaticLatency(d)
	}
	n := &Network{
		sn: &simnet.Simnet{LatencyFunc: latency, Logger: cfg.Logger},
		link: simnet.NodeBiDiLinkSettings{
			Downlink: simnet.LinkSettings{BitsPerSecond: bw},
			Uplink:   simnet.LinkSettings{BitsPerSecond: bw},
		},
	}
	n.sn.Start()
	return n
}

// Close stops the network; the hosts on it can no longer send. Closing
// twice is harmless.
func (n *Network) Close() { n.once.Do(n.sn.Close) }

// IP is host i's address: public, so that libp2p dials it and the DHT
// keeps it, and each host in a /16 of its own (for the first 20,000 or
// so; beyond, each in a /24 of its own), as peers spread over the
// internet are: the DHT's routing-table diversity filter limits the
// entries of one /24 and one /16, and would trim a network of hosts
// side by side. Tests that want hosts in one subnet give them addresses
// of their own.
func IP(i int) net.IP {
	n := len(publicOctets)
	return net.IPv4(publicOctets[(i/256)%n], byte(i%256), byte(i/(256*n)%256), 1)
}

// publicOctets are first octets of public IPv4 space outside the blocks
// kad-dht groups as one /8 (the legacy class A allocations) and outside
// private, shared and reserved ranges.
var publicOctets = func() []byte {
	skip := map[int]bool{10: true, 12: true, 17: true, 19: true, 38: true, 48: true, 53: true, 56: true, 73: true}
	var out []byte
	for o := 1; o < 100; o++ {
		if !skip[o] {
			out = append(out, byte(o))
		}
	}
	return out
}()

// Addr is the multiaddr host i listens on.
func Addr(i int) string { return fmt.Sprintf("/ip4/%s/udp/8000/quic-v1", IP(i)) }

// HostOptions put a host on the network. Give them to every host (or
// node.Config.HostOptions) with Addr(i) as its only listen address; each
// call makes a new set, since a host's QUIC transport is its own.
func (n *Network) HostOptions() []libp2p.Option {
	return []libp2p.Option{
		simlibp2p.QUICSimnet(n.sn, n.link),
		// Identify's address discovery stalls synctest (see simlibp2p),
		// and a public address has nothing to discover.
		libp2p.DisableIdentifyAddressDiscovery(),
		// libp2p stops dialling UDP once fewer than 5 of its last 100 UDP
		// dials succeeded ("black hole"). Under churn most dials to
		// departed peers (DHT entries, shard holders) fail, and on this
		// QUIC-only network the detector would then cut a host off from
		// everyone; real nodes fall back to TCP, which it leaves alone.
		libp2p.UDPBlackHoleSuccessCounter(nil),
		libp2p.IPv6BlackHoleSuccessCounter(nil),
	}
}
