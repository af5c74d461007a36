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
	// AutoNAT never vouches for loopback or private addresses, so on a
	// deployment narrower than the internet ModeAuto means ModeServer
	// (Deployment.DHTMode, which node applies).
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
	// (subscribed or published to). Default 4096: a pubsub topic costs a
	// few KiB (validator, mesh, score state), so the table stays in tens
	// of MiB. It also caps the topics each peer may have announced to us
	// at once (ratelimit.go), since an honest peer cannot subscribe to
	// more.
	MaxTopics int

	// MaxPublishTopics caps the topics joined only to publish (no local
	// subscriber). They are kept in a least-recently-used list: a publish
	// to a further topic leaves the least recently used one that holds no
	// backlog, so publishing to fresh names (which anyone with the control
	// API or a wildcard write token can do) never fills the table and
	// subscriptions always find room. Must be below MaxTopics. Default
	// 256: a peer publishes to a handful of topics it does not read, and a
	// topic left this way costs only a new join (and a discovery) if it is
	// used again.
	MaxPublishTopics int

	// Gossip spam budgets (ratelimit.go describes the three steps). A
	// rate of 0 turns that limiter off.
	//
	// PeerMessageRate and PeerMessageBurst bound the messages, duplicates
	// included, one connected peer may hand us per second; the excess is
	// dropped before validation. Defaults 2000/s and 4000: an honest
	// neighbour forwards each message of the topics we share once, and
	// 2000/s is several busy chat topics; one validation worker checks
	// about ten times that, so it takes many flooding neighbours to fill
	// it.
	PeerMessageRate  float64
	PeerMessageBurst int

	// TopicMessageRate and TopicMessageBurst bound the messages of one
	// topic, from all peers and duplicates included, that enter the shared
	// validation queue per second; the excess is dropped before
	// validation, so a flood on one topic leaves the others their share of
	// the validation worker. Defaults 5000/s and 10000: a topic of 400
	// messages a second reaching us from a full mesh (12 neighbours), a
	// quarter of the worker.
	TopicMessageRate  float64
	TopicMessageBurst int

	// PublisherMessageRate and PublisherMessageBurst bound the messages one
	// publisher may have delivered and forwarded per second. Over it, a
	// message the publisher sent us itself is rejected (its score drops,
	// and a few such graylist it); one relayed by another peer is ignored
	// without penalty. Defaults 1000/s and 2000: a peer publishes for all
	// the browsers it relays, so its rate is theirs together; under
	// PeerMessageRate, so that a flooding publisher meets this limit, and
	// its penalty, before the silent one.
	PublisherMessageRate  float64
	PublisherMessageBurst int

	// MaxRPCSubscriptions caps the subscriptions one RPC may announce; a
	// larger RPC is dropped whole. Default 4096, the default MaxTopics: a
	// peer announces all its subscriptions in one RPC when it connects,
	// and an honest one has at most that many.
	MaxRPCSubscriptions int

	// MaxRPCControl caps the control entries of one RPC (GRAFT and PRUNE,
	// IHAVE, IWANT and IDONTWANT with their message ids, PRUNE's peers); a
	// larger RPC is dropped whole. Default 20000: gossipsub itself sends
	// at most 5000 message ids per IHAVE round (MaxIHaveLength), and asks
	// for no more in IWANT; four times that leaves room for a heartbeat's
	// worth of several kinds together.
	MaxRPCControl int

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

	// DHTBudget bounds the records other peers can make this node keep
	// in its DHT store (dhtstore.go). Default DefaultDHTBudget().
	DHTBudget DHTBudget

	// Diversity bounds the DHT routing-table entries of one /24 and one
	// /16 (diversity.go). Default DefaultDiversity(); the zero value turns
	// the filter off.
	Diversity Diversity

	// Logger; default slog.Default(). The overlay logs with
	// component=overlay, and gossipsub's own lines with
	// component=overlay.gossipsub.
	Logger *slog.Logger

	// History keeps each subscribed topic's recent messages for resume
	// (history.go). Default DefaultHistory(); the zero value turns it
	// off.
	History HistoryConfig

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
		MaxPublishTopics:        256,
		PeerMessageRate:         2000,
		PeerMessageBurst:        4000,
		TopicMessageRate:        5000,
		TopicMessageBurst:       10000,
		PublisherMessageRate:    1000,
		PublisherMessageBurst:   2000,
		MaxRPCSubscriptions:     4096,
		MaxRPCControl:           20000,
		PublishDiscoveryTimeout: 2 * time.Second,
		MaxTopicMetrics:         256,
		DHTBudget:               DefaultDHTBudget(),
		Diversity:               DefaultDiversity(),
		History:                 DefaultHistory(),
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
	if c.MaxPublishTopics < 1 || c.MaxPublishTopics >= c.MaxTopics {
		errs = append(errs, fmt.Errorf("MaxPublishTopics must be in [1, MaxTopics (%d)), got %d", c.MaxTopics, c.MaxPublishTopics))
	}
	for _, r := range []struct {
		name  string
		rate  float64
		burst int
	}{
		{"PeerMessage", c.PeerMessageRate, c.PeerMessageBurst},
		{"TopicMessage", c.TopicMessageRate, c.TopicMessageBurst},
		{"PublisherMessage", c.PublisherMessageRate, c.PublisherMessageBurst},
	} {
		if r.rate < 0 || math.IsNaN(r.rate) || math.IsInf(r.rate, 0) {
			errs = append(errs, fmt.Errorf("%sRate must be a finite number >= 0, got %v", r.name, r.rate))
		}
		if r.rate > 0 && r.burst < 1 {
			errs = append(errs, fmt.Errorf("%sBurst must be >= 1 when %sRate is set, got %d", r.name, r.name, r.burst))
		}
	}
	if c.MaxRPCSubscriptions < 1 {
		errs = append(errs, fmt.Errorf("MaxRPCSubscriptions must be >= 1, got %d", c.MaxRPCSubscriptions))
	}
	if c.MaxRPCControl < 1 {
		errs = append(errs, fmt.Errorf("MaxRPCControl must be >= 1, got %d", c.MaxRPCControl))
	}
	if c.PublishDiscoveryTimeout < 0 {
		errs = append(errs, fmt.Errorf("PublishDiscoveryTimeout must be >= 0, got %v", c.PublishDiscoveryTimeout))
	}
	if c.MaxTopicMetrics < 0 {
		errs = append(errs, fmt.Errorf("MaxTopicMetrics must be >= 0, got %d", c.MaxTopicMetrics))
	}
	if err := c.DHTBudget.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Diversity.validate(); err != nil {
		errs = append(errs, err)
	}
	for ns := range c.Validators {
		if ns == "" || ns == providersNamespace || ns == "pk" || ns == "ipns" {
			errs = append(errs, fmt.Errorf("Validators: namespace %q is reserved", ns))
		}
	}
	errs = append(errs, c.Auth.validate()...)
	errs = append(errs, c.History.validate()...)
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
