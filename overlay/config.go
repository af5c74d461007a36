package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// Mode says whether the node answers DHT queries.
type Mode int

const (
	// ModeAuto answers DHT queries only once AutoNAT says the node is
	// publicly reachable. The right default for volunteers, who are
	// mostly behind NAT: a DHT server nobody can dial slows every lookup.
	ModeAuto Mode = iota
	// ModeServer always answers DHT queries: bootstrap nodes and peers
	// known to be reachable (servers, devnets on loopback).
	ModeServer
	// ModeClient never answers DHT queries.
	ModeClient
)

func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeServer:
		return "server"
	case ModeClient:
		return "client"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode parses "auto", "server" or "client".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "auto", "":
		return ModeAuto, nil
	case "server":
		return ModeServer, nil
	case "client":
		return ModeClient, nil
	}
	return 0, fmt.Errorf("unknown DHT mode %q (want auto, server or client)", s)
}

// Validator inspects a message before it is delivered locally or forwarded.
// Returning an error rejects the message, and the peer that sent it is
// penalised by peer scoring. It must be fast and must not block: it runs on
// gossipsub's validation pipeline.
type Validator func(ctx context.Context, topic string, from peer.ID, data []byte) error

// Config configures an Overlay. The zero value is not valid; start from
// DefaultConfig.
type Config struct {
	// ProtocolPrefix namespaces the DHT protocol. Default "/immense": the
	// DHT speaks /immense/kad/1.0.0 and never meets the public IPFS DHT.
	ProtocolPrefix protocol.ID

	// Mode of the DHT. Default ModeAuto.
	Mode Mode

	// Bootstrap peers to dial on start and whenever the node is left with no
	// connection at all.
	Bootstrap []peer.AddrInfo

	// BootstrapBackoffMin and BootstrapBackoffMax bound the exponential
	// backoff (with full jitter) between bootstrap rounds that reached nobody.
	// Defaults 1 s and 1 min: quick to join a bootstrap node that comes up a
	// moment later, and at most one dial per minute per peer when the
	// bootstrap is gone for long, so a million restarting peers cannot
	// hammer it in step.
	BootstrapBackoffMin time.Duration
	BootstrapBackoffMax time.Duration

	// BootstrapCheckInterval is how often a joined node checks that it still
	// has connections. Default 10 s.
	BootstrapCheckInterval time.Duration

	// DialTimeout bounds one dial to a bootstrap peer. Default 10 s.
	DialTimeout time.Duration

	// JoinRate and JoinBurst bound how many newcomers per second this node
	// admits through the join protocol (join.go), as a token bucket. A
	// newcomer over the limit gets a busy answer: when to ask again, and
	// referrals to other DHT servers it can join through instead, after
	// which this node closes its connection. JoinRate 0 admits everyone.
	// Defaults 10/s and 20, for a peer that other peers are referred to;
	// bootstrap nodes, which every newcomer asks first, set their own
	// (node.BootstrapConfig).
	JoinRate  float64
	JoinBurst int

	// JoinMaxPeers refuses joins while more peers than this are connected
	// (the newcomer included): past the connection manager's high-water
	// mark an admitted peer would only push another one out. 0, the
	// default, sets no cap; package node sets its high-water mark.
	JoinMaxPeers int

	// JoinReferrals is how many other peers a busy answer names, at most
	// 8. Default 8: enough that a newcomer finds a live one, small enough
	// that the answer stays under 2 KiB.
	JoinReferrals int

	// JoinTimeout bounds one join exchange, on both sides. Default 10 s.
	JoinTimeout time.Duration

	// JoinRetryMax is the longest retry-after this node hands out, and the
	// longest it waits when a busy peer asks for more. Default 5 min: a
	// bootstrap node admitting 20 joins a second spreads 6000 refused
	// newcomers over that time; further ones are refused again then.
	// Retry-afters are never below BootstrapBackoffMin.
	JoinRetryMax time.Duration

	// MaxMessageSize is the largest payload accepted on publish and on
	// receipt. Default 1 MiB: large state belongs in erasure-coded storage,
	// not in every relay's memory.
	MaxMessageSize int

	// MaxTopics caps the number of topics this node has joined at once
	// (subscribed or published to). Default 4096.
	MaxTopics int

	// PublishDiscoveryTimeout is how long messages to a topic this node
	// only publishes to, and knows no subscriber of yet, wait in a backlog
	// for discovery to find one before they are sent anyway. Publish itself
	// never waits (publish.go). 0 sends them at once. Default 2 s.
	PublishDiscoveryTimeout time.Duration

	// Validator, if set, is called for every message of every topic.
	Validator Validator

	// Auth says who may publish to which topic (authorize.go). Off unless
	// a key is set: then every topic but Auth.OpenTopics needs an app
	// peer's certificate or a browser's token.
	Auth Authorization

	// GossipSub parameters; nil means pubsub.DefaultGossipSubParams(). The
	// simulator shortens the heartbeat here to compress time.
	GossipSub *pubsub.GossipSubParams

	// Score configures peer scoring; nil means DefaultScoreConfig().
	Score *ScoreConfig

	// Validators are extra DHT record validators keyed by namespace (the
	// first path component of a record key, e.g. "immense-state").
	Validators map[string]record.Validator

	// Logger; default slog.Default(). The overlay logs with
	// component=overlay, and gossipsub's own lines with
	// component=overlay.gossipsub.
	Logger *slog.Logger

	// Registerer receives the overlay's metrics; nil disables them.
	Registerer prometheus.Registerer

	// MaxTopicMetrics caps how many distinct topics get their own metric
	// labels; the rest are counted under topic="other" so a flood of topic
	// names cannot blow up the metrics. Default 256.
	MaxTopicMetrics int
}

// DefaultConfig returns a Config with the defaults documented on each field.
func DefaultConfig() Config {
	return Config{
		ProtocolPrefix:          "/immense",
		Mode:                    ModeAuto,
		BootstrapBackoffMin:     time.Second,
		BootstrapBackoffMax:     time.Minute,
		BootstrapCheckInterval:  10 * time.Second,
		DialTimeout:             10 * time.Second,
		JoinRate:                10,
		JoinBurst:               20,
		JoinReferrals:           maxReferrals,
		JoinTimeout:             10 * time.Second,
		JoinRetryMax:            5 * time.Minute,
		MaxMessageSize:          1 << 20,
		MaxTopics:               4096,
		PublishDiscoveryTimeout: 2 * time.Second,
		MaxTopicMetrics:         256,
		Auth: Authorization{
			CertificateTTL: 24 * time.Hour,
			MaxClockSkew:   time.Minute,
			MessageMaxAge:  2 * time.Minute,
		},
	}
}

// Validate reports what is wrong with c, every field at once, as New
// would; package node calls it to check a whole node configuration before
// it starts anything.
func (c Config) Validate() error { return c.validate() }

func (c *Config) validate() error {
	var errs []error
	if c.ProtocolPrefix == "" || c.ProtocolPrefix[0] != '/' {
		errs = append(errs, fmt.Errorf("ProtocolPrefix %q must start with /", c.ProtocolPrefix))
	}
	if c.ProtocolPrefix == "/ipfs" {
		errs = append(errs, errors.New("ProtocolPrefix must not be /ipfs: Immense never joins the public IPFS DHT"))
	}
	if c.Mode < ModeAuto || c.Mode > ModeClient {
		errs = append(errs, fmt.Errorf("Mode %d unknown", c.Mode))
	}
	if c.BootstrapBackoffMin <= 0 || c.BootstrapBackoffMax < c.BootstrapBackoffMin {
		errs = append(errs, fmt.Errorf("BootstrapBackoffMin (%v) must be > 0 and <= BootstrapBackoffMax (%v)", c.BootstrapBackoffMin, c.BootstrapBackoffMax))
	}
	if c.BootstrapCheckInterval <= 0 {
		errs = append(errs, fmt.Errorf("BootstrapCheckInterval must be > 0, got %v", c.BootstrapCheckInterval))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("DialTimeout must be > 0, got %v", c.DialTimeout))
	}
	if c.JoinRate < 0 || math.IsNaN(c.JoinRate) || math.IsInf(c.JoinRate, 0) {
		errs = append(errs, fmt.Errorf("JoinRate must be a finite number >= 0, got %v", c.JoinRate))
	}
	if c.JoinRate > 0 && c.JoinBurst < 1 {
		errs = append(errs, fmt.Errorf("JoinBurst must be >= 1 when JoinRate is set, got %d", c.JoinBurst))
	}
	if c.JoinMaxPeers < 0 {
		errs = append(errs, fmt.Errorf("JoinMaxPeers must be >= 0, got %d", c.JoinMaxPeers))
	}
	if c.JoinReferrals < 0 || c.JoinReferrals > maxReferrals {
		errs = append(errs, fmt.Errorf("JoinReferrals must be in [0, %d], got %d", maxReferrals, c.JoinReferrals))
	}
	if c.JoinTimeout <= 0 {
		errs = append(errs, fmt.Errorf("JoinTimeout must be > 0, got %v", c.JoinTimeout))
	}
	if c.JoinRetryMax < c.BootstrapBackoffMin || c.JoinRetryMax > maxRetryHint {
		errs = append(errs, fmt.Errorf("JoinRetryMax must be in [BootstrapBackoffMin (%v), %v], got %v", c.BootstrapBackoffMin, maxRetryHint, c.JoinRetryMax))
	}
	if c.MaxMessageSize < 1 || c.MaxMessageSize > 64<<20 {
		errs = append(errs, fmt.Errorf("MaxMessageSize must be in [1, 64 MiB], got %d", c.MaxMessageSize))
	}
	if c.MaxTopics < 1 {
		errs = append(errs, fmt.Errorf("MaxTopics must be >= 1, got %d", c.MaxTopics))
	}
	if c.PublishDiscoveryTimeout < 0 {
		errs = append(errs, fmt.Errorf("PublishDiscoveryTimeout must be >= 0, got %v", c.PublishDiscoveryTimeout))
	}
	if c.MaxTopicMetrics < 0 {
		errs = append(errs, fmt.Errorf("MaxTopicMetrics must be >= 0, got %d", c.MaxTopicMetrics))
	}
	errs = append(errs, c.Auth.validate()...)
	for _, ai := range c.Bootstrap {
		if err := ai.ID.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("bootstrap peer: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("overlay config: %w", err)
	}
	return nil
}
