package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/internal/connlimit"
	"github.com/immense-p2p/immense/overlay"
	"github.com/immense-p2p/immense/webrtc"
	"github.com/libp2p/go-libp2p"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
)

// Limits protect the machine a node runs on. They feed libp2p's resource
// manager (hard limits: excess connections and streams are refused) and
// connection manager (soft limits: above HighWater the least useful
// connections are trimmed down to LowWater), and cap the connections of
// the HTTP API (HTTPMaxConns, HTTPMaxConnsPerIP, HTTPMaxConnsPerNet).
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
	// ConnGracePeriod protects new connections from trimming. In JSON it
	// is conn_grace_period, a duration string ("20s"): see MarshalJSON.
	ConnGracePeriod time.Duration `json:"-"`
	// MaxConnsPerIP caps the connections open with one IPv4 address (one
	// /56 for IPv6); loopback is not limited. It bounds what one machine
	// with many identities takes of MaxInboundConns, and so how much of
	// the routing table and of gossip meshes it can reach for.
	MaxConnsPerIP int `json:"max_conns_per_ip"`

	// HTTPMaxConns caps the connections the HTTP API (Node.StartHTTP)
	// holds open at once, whatever they do: browsers' WebSockets and the
	// SSE streams, which last, keep-alive connections and requests still
	// arriving. Each takes a file descriptor and a goroutine; over the cap
	// a new connection is answered 503 and closed. It bounds them
	// together, so that no mix of them runs the process out of
	// descriptors: 4096 leaves room for a full browser budget
	// (webrtc.Config.MaxSessions) and SSE budget (HTTPOptions.MaxStreams)
	// at once. Loopback clients have as many again of their own (the
	// operator's CLI and probes, a reverse proxy on the machine), so that
	// remote ones filling the cap never lock them out.
	HTTPMaxConns int `json:"http_max_conns"`
	// HTTPMaxConnsPerIP caps those of one IPv4 address (one IPv6 /56, as
	// MaxConnsPerIP), so that one client cannot take them all; loopback
	// is not limited (a reverse proxy on the machine, devnets, load
	// generators). 128 is the tabs of a household or small office behind
	// one NAT, each with a stream and a few keep-alive connections; a
	// reverse proxy on another machine needs more.
	HTTPMaxConnsPerIP int `json:"http_max_conns_per_ip"`
	// HTTPMaxConnsPerNet caps those of one network, an IPv4 /24 or IPv6
	// /48 (netprefix.Of's groups; private addresses are capped per
	// address only), so that one operator's block, a /48 with its 256
	// /56s say, cannot take them all either: 4 × HTTPMaxConnsPerIP, a few
	// households or offices of one provider's block. At least
	// HTTPMaxConnsPerIP; a reverse proxy at a public address on another
	// machine needs more.
	HTTPMaxConnsPerNet int `json:"http_max_conns_per_net"`
}

// limitsJSON is Limits as JSON: durations as strings for people reading
// /v1/status.
type limitsJSON struct {
	limitsFields
	ConnGracePeriod string `json:"conn_grace_period"`
}

type limitsFields Limits // without Limits' methods

// MarshalJSON writes l with its durations as strings ("20s").
func (l Limits) MarshalJSON() ([]byte, error) {
	return json.Marshal(limitsJSON{limitsFields(l), l.ConnGracePeriod.String()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (l *Limits) UnmarshalJSON(b []byte) error {
	var j limitsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*l = Limits(j.limitsFields)
	if j.ConnGracePeriod != "" {
		d, err := time.ParseDuration(j.ConnGracePeriod)
		if err != nil {
			return fmt.Errorf("conn_grace_period: %w", err)
		}
		l.ConnGracePeriod = d
	}
	return nil
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
// BootstrapConfig, VolunteerConfig, DevnetConfig); cmd/peer's and
// cmd/bootstrap's flags map onto its fields one to one.
//
// Each part the node wires together has its own package's Config, nested
// whole: Overlay, State and Browsers. Nothing is copied between them by
// hand, so a field has one place only. Overlay is a value because every
// node runs an overlay. State and Browsers are pointers because they are
// optional: nil turns the part off, so a node without it carries no
// settings that look live. Presets make fresh ones, so configs from two
// preset calls never share them; a Config copied by assignment does.
type Config struct {
	// DataDir holds the node's identity (identity.key, mode 0600). Required:
	// without it the node would get a new peer ID on every start.
	DataDir string

	// ListenAddrs are libp2p multiaddrs to listen on.
	ListenAddrs []string

	// Bootstrap peers, as multiaddrs ending in /p2p/<peer id>. The node
	// parses them into Overlay.Bootstrap.
	Bootstrap []string

	// DialPrivate lets the node dial the private addresses (LAN: RFC 1918,
	// ULA, carrier-grade NAT; not link-local ones, such as a cloud's
	// metadata service, which only a link-local listen or bootstrap address
	// allows) other peers give it even when none of its ListenAddrs and
	// Bootstrap addresses is private. Without
	// it the node dials, besides the internet, only the scopes its own
	// listen and bootstrap addresses are in (overlay.DialGate): a devnet on
	// loopback dials loopback, a LAN deployment its LAN, a peer on the
	// internet (or listening on 0.0.0.0 at home) neither, so that no
	// stranger can have it probe its owner's network. For a deployment
	// whose peers meet on a LAN but whose bootstrap nodes are named by DNS
	// (containers) or on the internet.
	DialPrivate bool

	Limits Limits

	NAT NATConfig

	// MaxUpload and MaxDownload cap the node's traffic, all protocols
	// together, in bytes per second; 0 means no cap.
	MaxUpload, MaxDownload int64

	// Overlay configures DHT mode, gossipsub, message size and joins (see
	// overlay.Config; JoinRate and JoinBurst bound how many newcomers a
	// second this node admits when they join through it). The node fills
	// in what it wires itself, and validate refuses them if set:
	// Overlay.Bootstrap (from Bootstrap), Overlay.JoinMaxPeers
	// (Limits.ConnHighWater: past the connection manager's high-water
	// mark an admitted newcomer would only push another peer out) and the
	// DHT record validators of erasure's namespaces. A nil Logger or
	// Registerer becomes the node's. Overlay.Mode auto runs as server on a
	// deployment narrower than the internet (some listen or bootstrap
	// address on loopback or a LAN, none public:
	// overlay.Deployment.DHTMode).
	Overlay overlay.Config

	// State, if set, runs erasure-coded storage: this node stores shards for
	// others (up to StorageQuota) and reads and writes its app's namespace.
	// State.Zone labels the node's failure domain (a region, a data centre,
	// a home ISP); shards of one object are spread over zones, and the
	// node announces it to others in its identify agent version. Bootstrap
	// nodes run without State.
	State *erasure.Config
	// AppKeyFile is the app key (made by `peer keygen`) that gives access
	// to the application's namespace. Empty: a key of the node's own,
	// generated in DataDir/app.key on first start.
	AppKeyFile string
	// AppPubFiles are app public key files (peer keygen's app.key.pub):
	// the node checks, at every topic but Overlay.Auth.OpenTopics, that
	// messages were published by an app peer or a browser with a token
	// for the topic, and admits browsers with EdDSA tokens, without
	// holding the app key. For volunteers (node/appauth.go).
	AppPubFiles []string
	// StorageQuota is the most shard bytes this node keeps for others.
	StorageQuota int64

	// Browsers, if set, runs the WebRTC bridge for browsers: signaling at
	// POST /v1/webrtc/offer, the demo page at / and the client library at
	// /client.js.
	Browsers *webrtc.Config

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

	// Presence turns on who-is-here for some topics (presence.go).
	Presence PresenceConfig

	// DurableHistory keeps the history of some topics in the
	// erasure-coded state, beyond the in-memory window
	// (durablehistory.go). Only a node with State and AppKeyFile writes
	// and reads it.
	DurableHistory DurableHistoryConfig
}

// DefaultConfig is the preset for a peer run by an operator on a server or a
// well-connected machine: DHT mode decided by reachability (or by the
// deployment, on loopback or a LAN), listening on port 4001 over TCP and
// QUIC, with limits sized for a small server (1 GiB for libp2p, 1000
// connections), and storage. It serves no browsers unless Browsers is set
// (cmd/peer sets it).
func DefaultConfig() Config {
	c := Config{
		ListenAddrs: []string{
			"/ip4/0.0.0.0/tcp/4001",
			"/ip4/0.0.0.0/udp/4001/quic-v1",
			"/ip6/::/tcp/4001",
			"/ip6/::/udp/4001/quic-v1",
		},
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
			// libp2p's default, and enough for the peers of one
			// household or small office, each with one connection;
			// a machine with many identities gets no more.
			MaxConnsPerIP:      8,
			HTTPMaxConns:       4096,
			HTTPMaxConnsPerIP:  128,
			HTTPMaxConnsPerNet: 4 * 128,
		},
		NAT: NATConfig{
			Enabled:         true,
			PortMap:         true,
			RelayService:    true,
			MaxRelayedConns: 64,
		},
		// DHT mode auto, 1 MiB messages: see overlay.DefaultConfig.
		Overlay:      overlay.DefaultConfig(),
		State:        ptr(erasure.DefaultConfig()),
		StorageQuota: 10 << 30,
	}
	// Newcomers reach an ordinary peer when a busy bootstrap node
	// refers them to it: 10 a second, 20 at once.
	c.Overlay.JoinRate = 10
	c.Overlay.JoinBurst = 20
	return c
}

func ptr[T any](v T) *T { return &v }

// BootstrapConfig is the preset for a bootstrap node: always a DHT server,
// with more room for connections because every newcomer dials it first.
func BootstrapConfig() Config {
	c := DefaultConfig()
	c.Overlay.Mode = overlay.ModeServer
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
	// Every newcomer of a campus or carrier-grade NAT joins through a
	// bootstrap node first, all from one address (TestNATSharedAddress);
	// the join rate and the routing-table diversity filter, not this,
	// bound what they get.
	c.Limits.MaxConnsPerIP = 32
	c.NAT.PortMap = false // a server has no home router
	c.NAT.ForcePublic = true
	c.NAT.MaxRelayedConns = 128
	// Each admitted newcomer fills its routing table through the
	// bootstrap node (a refresh is a dozen or so FIND_NODE requests),
	// gets its reachability probed and often reserves a relay slot: 20
	// newcomers a second keep that to a few hundred requests a second.
	// The rest are told when to come back and referred to peers already
	// in the overlay, so a mass return spreads over the whole network.
	c.Overlay.JoinRate = 20
	c.Overlay.JoinBurst = 40
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
		MaxConnsPerIP:   8, // as DefaultConfig
		// A home peer's HTTP port is mostly its owner's: browsers
		// elsewhere reach a volunteer through relayed signaling and
		// then UDP. A quarter of a server's.
		HTTPMaxConns:       1024,
		HTTPMaxConnsPerIP:  128,     // as DefaultConfig
		HTTPMaxConnsPerNet: 4 * 128, // as DefaultConfig
	}
	c.NAT.MaxRelayedConns = 16
	c.Overlay.JoinRate = 2
	c.Overlay.JoinBurst = 5
	c.MaxUpload = 1 << 20
	c.MaxDownload = 4 << 20
	c.StorageQuota = 2 << 30
	return c
}

// DevnetConfig is the preset for a peer of a local network on one machine
// (StartDevnet, peer --devnet): the DefaultConfig peer on loopback, a DHT
// server, with storage timers compressed to seconds and browsers admitted
// without a token.
func DevnetConfig() Config {
	c := DefaultConfig()
	c.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	c.NAT.PortMap = false // nothing to map on loopback
	// Loopback is reachable by every node of the devnet: no need to wait
	// for AutoNAT before answering DHT queries.
	c.Overlay.Mode = overlay.ModeServer
	// Browsers need no token on a devnet (the HTTP API is on loopback).
	// ICE uses every interface: a desktop browser hides its loopback
	// candidates, so loopback-only would leave it nothing to pair with.
	c.Browsers = ptr(webrtc.DevnetConfig())
	c.State = ptr(erasure.DevnetConfig())
	c.StorageQuota = 1 << 30
	// The devnet's peers share one app key, so they authorize every topic
	// (appauth.go) except the demo's, which are open, unauthenticated:
	// anyone who reaches the overlay may publish there.
	c.Overlay.Auth.OpenTopics = []string{"demo/*"}
	return c
}

// validate checks the whole configuration, the nested parts' own rules
// included, so that a bad one fails before the node creates anything. Each
// error names its field.
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
	if l.MaxConnsPerIP < 1 {
		errs = append(errs, fmt.Errorf("Limits.MaxConnsPerIP must be >= 1, got %d", l.MaxConnsPerIP))
	}
	if l.HTTPMaxConns < 1 {
		errs = append(errs, fmt.Errorf("Limits.HTTPMaxConns must be >= 1, got %d", l.HTTPMaxConns))
	}
	if l.HTTPMaxConnsPerIP < 1 {
		errs = append(errs, fmt.Errorf("Limits.HTTPMaxConnsPerIP must be >= 1, got %d", l.HTTPMaxConnsPerIP))
	}
	if l.HTTPMaxConnsPerNet < l.HTTPMaxConnsPerIP {
		errs = append(errs, fmt.Errorf("Limits.HTTPMaxConnsPerNet must be >= HTTPMaxConnsPerIP (%d), got %d", l.HTTPMaxConnsPerIP, l.HTTPMaxConnsPerNet))
	}
	if l.ConnGracePeriod < 0 {
		errs = append(errs, fmt.Errorf("Limits.ConnGracePeriod must be >= 0, got %v", l.ConnGracePeriod))
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
	o := c.Overlay
	if len(o.Bootstrap) > 0 {
		errs = append(errs, errors.New("Overlay.Bootstrap is filled in by the node: set Bootstrap"))
	}
	if o.JoinMaxPeers != 0 {
		errs = append(errs, errors.New("Overlay.JoinMaxPeers is filled in by the node from Limits.ConnHighWater: leave it 0"))
	}
	for _, ns := range []string{erasure.RecordNamespace, erasure.HandoffNamespace, erasure.DelegationNamespace, erasure.RepairNamespace} {
		if _, ok := o.Validators[ns]; ok {
			errs = append(errs, fmt.Errorf("Overlay.Validators: namespace %q is the node's own", ns))
		}
	}
	if err := o.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("Overlay: %w", err))
	}
	if s := c.State; s != nil {
		if c.StorageQuota < 0 {
			errs = append(errs, fmt.Errorf("StorageQuota must be >= 0, got %d", c.StorageQuota))
		}
		if err := s.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("State: %w", err))
		}
	}
	if c.Browsers != nil {
		if err := c.Browsers.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("Browsers: %w", err))
		}
	}
	errs = append(errs, c.Presence.validate()...)
	errs = append(errs, c.DurableHistory.validate()...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("node config: %w", err)
	}
	return nil
}

// overlayConfig is Overlay with what the node wires itself filled in.
func (c *Config) overlayConfig(bootstrap []peer.AddrInfo, log *slog.Logger) overlay.Config {
	o := c.Overlay
	o.Bootstrap = bootstrap
	o.JoinMaxPeers = c.Limits.ConnHighWater
	o.Validators = maps.Clone(o.Validators)
	if o.Validators == nil {
		o.Validators = map[string]record.Validator{}
	}
	// Every node keeps DHT records for others, storage or not, so every
	// node checks erasure's.
	o.Validators[erasure.RecordNamespace] = erasure.ManifestValidator{}
	o.Validators[erasure.HandoffNamespace] = erasure.HintValidator{}
	o.Validators[erasure.DelegationNamespace] = erasure.DelegationValidator{}
	o.Validators[erasure.RepairNamespace] = erasure.RepairHintValidator{}
	if o.Logger == nil {
		o.Logger = log
	}
	if o.Registerer == nil {
		o.Registerer = c.Registry
	}
	return o
}

// zone is the failure-domain label the node announces: State.Zone, none
// without storage (a node that stores nothing is never a holder).
func (c *Config) zone() string {
	if c.State == nil {
		return ""
	}
	return c.State.Zone
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
