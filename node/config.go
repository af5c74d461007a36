package node

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/internal/connlimit"
	"github.com/immense-p2p/immense/overlay"
	"github.com/immense-p2p/immense/webrtc"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
)

// Limits protect the machine a node runs on. They feed libp2p's resource
// manager (hard limits: excess connections and streams are refused) and
// connection manager (soft limits: above HighWater the least useful
// connections are trimmed down to LowWater).
type Limits struct {
	// MaxMemory is the memory libp2p may reserve for connections, streams
	// and buffers, in bytes.
	MaxMemory int64 `json:"max_memory_bytes"`
	// MaxFD is the number of file descriptors libp2p may use for sockets.
	MaxFD int `json:"max_fd"`
	// MaxConns is the hard cap on open connections, inbound and outbound.
	MaxConns int `json:"max_conns"`
	// MaxInboundConns is the hard cap on inbound connections.
	MaxInboundConns int `json:"max_inbound_conns"`
	// MaxStreams is the hard cap on open streams across all connections.
	MaxStreams int `json:"max_streams"`
	// ConnLowWater and ConnHighWater drive the connection manager.
	ConnLowWater  int `json:"conn_low_water"`
	ConnHighWater int `json:"conn_high_water"`
	// ConnGracePeriod protects new connections from trimming.
	ConnGracePeriod time.Duration `json:"conn_grace_period_ns"`
}

// NATConfig controls reachability detection, hole punching and relays.
type NATConfig struct {
	// Enabled turns on AutoNAT (v1 service and v2 client), hole punching
	// (DCUtR) and autorelay. Off only on simulated networks.
	Enabled bool `json:"enabled"`
	// PortMap asks the home router for a port mapping (UPnP, NAT-PMP).
	PortMap bool `json:"port_map"`
	// RelayService offers circuit relay v2 to NAT'd peers once AutoNAT says
	// this node is publicly reachable (always, with ForcePublic).
	RelayService bool `json:"relay_service"`
	// MaxRelayedConns caps the relay reservations this node grants.
	MaxRelayedConns int `json:"max_relayed_conns"`
	// ForcePublic skips AutoNAT and declares the node publicly reachable:
	// for bootstrap nodes, which are by definition.
	ForcePublic bool `json:"force_public"`
}

// Config configures a Node. Start from one of the presets (DefaultConfig,
// BootstrapConfig, VolunteerConfig); cmd/peer's flags map onto its fields.
type Config struct {
	// DataDir holds the node's identity (identity.key, mode 0600). Required:
	// without it the node would get a new peer ID on every start.
	DataDir string

	// ListenAddrs are libp2p multiaddrs to listen on.
	ListenAddrs []string

	// Bootstrap peers, as multiaddrs ending in /p2p/<peer id>.
	Bootstrap []string

	// Mode of the DHT (see overlay.Mode).
	Mode overlay.Mode

	Limits Limits

	NAT NATConfig

	// MaxUpload and MaxDownload cap the node's traffic, all protocols
	// together, in bytes per second; 0 means no cap.
	MaxUpload, MaxDownload int64

	// JoinRate and JoinBurst bound how many newcomers a second this node
	// admits when they join the overlay through it (a token bucket; see
	// overlay.Config.JoinRate). Newcomers over the limit, or arriving
	// while more than Limits.ConnHighWater peers are connected, get a busy
	// answer: when to come back, and other peers to join through. JoinRate
	// 0 admits everyone.
	JoinRate  float64
	JoinBurst int

	// State, if set, runs erasure-coded storage: this node stores shards for
	// others (up to StorageQuota) and reads and writes its app's namespace.
	// Bootstrap nodes run without it.
	State *erasure.Config
	// AppKeyFile is the app key (made by `peer keygen`) that gives access
	// to the application's namespace. Empty: a key of the node's own,
	// generated in DataDir/app.key on first start.
	AppKeyFile string
	// StorageQuota is the most shard bytes this node keeps for others.
	StorageQuota int64
	// Zone labels the node's failure domain (a region, a data centre, a
	// home ISP); shards of one object are spread over zones.
	Zone string

	// Browsers, if set, runs the WebRTC bridge for browsers: signaling at
	// POST /v1/webrtc/offer, the demo page at / and the client library at
	// /client.js.
	Browsers *webrtc.Config

	// MaxMessageSize is the largest topic message, in bytes.
	MaxMessageSize int

	// Logger; default slog.Default().
	Logger *slog.Logger

	// Registry receives all metrics (libp2p's and ours); nil creates one,
	// reachable through Node.Registry.
	Registry *prometheus.Registry

	// NoTrafficMeters turns off libp2p's bandwidth meters (traffic totals
	// and rates in /v1/status and /metrics). They run one process-wide
	// goroutine that cannot live inside a testing/synctest bubble, so
	// simulations turn them off.
	NoTrafficMeters bool

	// HostOptions are appended to the libp2p options the node builds. Tests
	// and the simulator use them to run on a simulated network.
	HostOptions []libp2p.Option

	// Overlay, if set, may adjust the overlay configuration after the node
	// has filled it in (timers for the simulator, a message Validator).
	Overlay func(*overlay.Config)
}

// DefaultConfig is the preset for a peer run by an operator on a server or a
// well-connected machine: DHT mode decided by reachability, listening on
// port 4001 over TCP and QUIC, with limits sized for a small server
// (1 GiB for libp2p, 1000 connections).
func DefaultConfig() Config {
	return Config{
		ListenAddrs: []string{
			"/ip4/0.0.0.0/tcp/4001",
			"/ip4/0.0.0.0/udp/4001/quic-v1",
			"/ip6/::/tcp/4001",
			"/ip6/::/udp/4001/quic-v1",
		},
		Mode: overlay.ModeAuto,
		Limits: Limits{
			MaxMemory:       1 << 30,
			MaxFD:           4096,
			MaxConns:        1000,
			MaxInboundConns: 800,
			MaxStreams:      8192,
			// 200-400 connections keep the DHT routing table (20 per bucket)
			// and a few gossipsub meshes (8-12 each) well fed.
			ConnLowWater:    200,
			ConnHighWater:   connlimit.ServerHighWater,
			ConnGracePeriod: time.Minute,
		},
		NAT: NATConfig{
			Enabled:         true,
			PortMap:         true,
			RelayService:    true,
			MaxRelayedConns: 64,
		},
		MaxMessageSize: overlay.DefaultConfig().MaxMessageSize,
		// Newcomers reach an ordinary peer when a busy bootstrap node
		// refers them to it: 10 a second, 20 at once.
		JoinRate:     10,
		JoinBurst:    20,
		State:        ptr(erasure.DefaultConfig()),
		StorageQuota: 10 << 30,
	}
}

func ptr[T any](v T) *T { return &v }

// BootstrapConfig is the preset for a bootstrap node: always a DHT server,
// with more room for connections because every newcomer dials it first.
func BootstrapConfig() Config {
	c := DefaultConfig()
	c.Mode = overlay.ModeServer
	c.Limits.MaxMemory = 2 << 30
	c.Limits.MaxFD = 8192
	c.Limits.MaxConns = 4000
	c.Limits.MaxInboundConns = 3800
	c.Limits.MaxStreams = 16384
	// A bootstrap node only needs to hand out routing-table entries; it
	// trims aggressively so newcomers always find a free slot.
	c.Limits.ConnLowWater = 500
	c.Limits.ConnHighWater = 1500
	c.Limits.ConnGracePeriod = 20 * time.Second
	c.NAT.PortMap = false // a server has no home router
	c.NAT.ForcePublic = true
	c.NAT.MaxRelayedConns = 128
	// Each admitted newcomer fills its routing table through the
	// bootstrap node (a refresh is a dozen or so FIND_NODE requests),
	// gets its reachability probed and often reserves a relay slot: 20
	// newcomers a second keep that to a few hundred requests a second.
	// The rest are told when to come back and referred to peers already
	// in the overlay, so a mass return spreads over the whole network.
	c.JoinRate = 20
	c.JoinBurst = 40
	c.State = nil // bootstrap nodes only route
	return c
}

// VolunteerConfig is the preset for a volunteer's own machine: gentle
// limits, so that a laptop on a home connection stays usable (256 MiB,
// 150 connections, trimming above 96, 1 MiB/s up and 4 MiB/s down: a
// fraction of a typical home line, whose uplink is the scarce side).
func VolunteerConfig() Config {
	c := DefaultConfig()
	c.Limits = Limits{
		MaxMemory:       256 << 20,
		MaxFD:           512,
		MaxConns:        150,
		MaxInboundConns: 100,
		MaxStreams:      1024,
		ConnLowWater:    48,
		ConnHighWater:   connlimit.VolunteerHighWater,
		ConnGracePeriod: 30 * time.Second,
	}
	c.NAT.MaxRelayedConns = 16
	c.JoinRate = 2
	c.JoinBurst = 5
	c.MaxUpload = 1 << 20
	c.MaxDownload = 4 << 20
	c.StorageQuota = 2 << 30
	return c
}

func (c *Config) validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("DataDir is required (it holds the node's identity)"))
	}
	if len(c.ListenAddrs) == 0 {
		errs = append(errs, errors.New("ListenAddrs: at least one address is required"))
	}
	for _, a := range c.ListenAddrs {
		if _, err := multiaddr.NewMultiaddr(a); err != nil {
			errs = append(errs, fmt.Errorf("ListenAddrs: %q: %w", a, err))
		}
	}
	if _, err := ParseBootstrap(c.Bootstrap); err != nil {
		errs = append(errs, err)
	}
	l := c.Limits
	if l.MaxMemory < 32<<20 {
		errs = append(errs, fmt.Errorf("Limits.MaxMemory must be at least 32 MiB, got %d", l.MaxMemory))
	}
	if l.MaxFD < 16 {
		errs = append(errs, fmt.Errorf("Limits.MaxFD must be at least 16, got %d", l.MaxFD))
	}
	if l.MaxConns < 1 || l.MaxInboundConns < 1 || l.MaxInboundConns > l.MaxConns {
		errs = append(errs, fmt.Errorf("Limits: need 1 <= MaxInboundConns (%d) <= MaxConns (%d)", l.MaxInboundConns, l.MaxConns))
	}
	if l.MaxStreams < 1 {
		errs = append(errs, fmt.Errorf("Limits.MaxStreams must be >= 1, got %d", l.MaxStreams))
	}
	if l.ConnLowWater < 0 || l.ConnHighWater <= l.ConnLowWater || l.ConnHighWater > l.MaxConns {
		errs = append(errs, fmt.Errorf("Limits: need 0 <= ConnLowWater (%d) < ConnHighWater (%d) <= MaxConns (%d)", l.ConnLowWater, l.ConnHighWater, l.MaxConns))
	}
	if l.ConnGracePeriod < 0 {
		errs = append(errs, fmt.Errorf("Limits.ConnGracePeriod must be >= 0, got %v", l.ConnGracePeriod))
	}
	if c.State != nil && c.StorageQuota < 0 {
		errs = append(errs, fmt.Errorf("StorageQuota must be >= 0, got %d", c.StorageQuota))
	}
	if strings.ContainsAny(c.Zone, " \t\n") || len(c.Zone) > 64 {
		errs = append(errs, fmt.Errorf("Zone %q: at most 64 bytes, no spaces", c.Zone))
	}
	if c.NAT.MaxRelayedConns < 0 {
		errs = append(errs, fmt.Errorf("NAT.MaxRelayedConns must be >= 0, got %d", c.NAT.MaxRelayedConns))
	}
	if c.MaxUpload < 0 || (c.MaxUpload > 0 && c.MaxUpload < 16<<10) {
		errs = append(errs, fmt.Errorf("MaxUpload must be 0 (no cap) or at least 16 KiB/s, got %d", c.MaxUpload))
	}
	if c.MaxDownload < 0 || (c.MaxDownload > 0 && c.MaxDownload < 16<<10) {
		errs = append(errs, fmt.Errorf("MaxDownload must be 0 (no cap) or at least 16 KiB/s, got %d", c.MaxDownload))
	}
	if c.MaxMessageSize < 1 || c.MaxMessageSize > 64<<20 {
		errs = append(errs, fmt.Errorf("MaxMessageSize must be in [1, 64 MiB], got %d", c.MaxMessageSize))
	}
	if c.JoinRate < 0 || math.IsNaN(c.JoinRate) || math.IsInf(c.JoinRate, 0) || (c.JoinRate > 0 && c.JoinBurst < 1) {
		errs = append(errs, fmt.Errorf("JoinRate (%v) must be 0 (no limit) or positive with JoinBurst (%d) >= 1", c.JoinRate, c.JoinBurst))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("node config: %w", err)
	}
	return nil
}

// ParseBootstrap parses bootstrap multiaddrs, each ending in /p2p/<peer id>.
// Several addresses of the same peer are merged.
func ParseBootstrap(addrs []string) ([]peer.AddrInfo, error) {
	var mas []multiaddr.Multiaddr
	for _, s := range addrs {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		ma, err := multiaddr.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("bootstrap address %q: %w", s, err)
		}
		if _, err := peer.AddrInfoFromP2pAddr(ma); err != nil {
			return nil, fmt.Errorf("bootstrap address %q must end in /p2p/<peer id>: %w", s, err)
		}
		mas = append(mas, ma)
	}
	infos, err := peer.AddrInfosFromP2pAddrs(mas...)
	if err != nil {
		return nil, fmt.Errorf("bootstrap addresses: %w", err)
	}
	return infos, nil
}
