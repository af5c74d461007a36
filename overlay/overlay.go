package overlay

import (
	"container/list"
	"context"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/immense-p2p/immense/internal/ratelimit"
	"github.com/immense-p2p/immense/internal/slots"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
)

// Overlay is a host's membership in the Immense overlay: its DHT and its
// gossipsub router. It does not own the host; closing the overlay leaves the
// host open.
type Overlay struct {
	cfg  Config
	host host.Host
	dht  *dht.IpfsDHT
	// dhtStore bounds what others store in the DHT (dhtstore.go);
	// diversity, nil when off, bounds routing-table entries per network
	// (diversity.go).
	dhtStore  *dhtStore
	diversity *diversityFilter
	disc      *drouting.RoutingDiscovery
	ps        *pubsub.PubSub
	log       *slog.Logger
	metrics   *metrics
	spam      *spamGuard // ratelimit.go
	// subFilter bounds what peers announce (ratelimit.go); subNotifiee
	// forgets a peer's announcements when it disconnects.
	subFilter   *subscriptionFilter
	subNotifiee network.Notifiee
	scores      scoreBoard
	auth        *authorizer // publish authorization (authorize.go)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	joined chan struct{}
	// joinState is what bootstrapLoop last found (bootstrap.go).
	joinState atomic.Pointer[JoinState]

	mu     sync.Mutex
	topics map[string]*topicState
	// publishOnly lists the topics without a local subscriber, most
	// recently used first (topics.go).
	publishOnly *list.List
	// wireTopics holds the gossipsub names of the topics in o.topics, for
	// the RPC inspector, which must not take o.mu (ratelimit.go).
	wireTopics sync.Map
	closed     bool
	// Publish backlogs (publish.go).
	backlogBytes int
	discoveries  int

	// Join protocol (join.go).
	admission        *admission
	shed             shedLog
	avoided          avoidList
	shun             network.Notifiee
	joinAdmitted     atomic.Uint64
	joinBusy         atomic.Uint64
	joinBusyReceived atomic.Uint64
	joinReferred     atomic.Uint64

	// History (history.go, historysync.go): the windows, the per-peer
	// request rate and the slots of requests served at once.
	history   *historyStore
	histServe *ratelimit.Keyed[peer.ID]
	histSlots *slots.Keyed[peer.ID]
	histAsks  *slots.Keyed[peer.ID] // our fetches in flight, per peer
}

type topicState struct {
	name     string
	topic    *pubsub.Topic
	subs     int       // guarded by Overlay.mu
	lastUsed time.Time // guarded by Overlay.mu
	// lru is ts's element in Overlay.publishOnly while subs is 0;
	// guarded by Overlay.mu.
	lru *list.Element
	// backlog holds messages waiting for a subscriber to be found, while
	// a discovery runs (publish.go); guarded by Overlay.mu.
	backlog *backlog
	// peersSeen is when a subscriber was last known (Unix ns).
	peersSeen atomic.Int64
	// hist is the topic's history window and histSub the subscription
	// that fills it, counted in subs (historysync.go); guarded by
	// Overlay.mu.
	hist    *window
	histSub *pubsub.Subscription
}

// New joins h to the overlay. It returns once the DHT and gossipsub are
// running; joining the bootstrap peers continues in the background (see
// Joined).
func New(ctx context.Context, h host.Host, cfg Config) (*Overlay, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	score := DefaultScoreConfig()
	if cfg.Score != nil {
		score = *cfg.Score
	}
	octx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	o := &Overlay{
		cfg:         cfg,
		host:        h,
		log:         cfg.Logger.With("component", "overlay"),
		ctx:         octx,
		cancel:      cancel,
		joined:      make(chan struct{}),
		spam:        newSpamGuard(&cfg),
		topics:      make(map[string]*topicState),
		publishOnly: list.New(),
		auth:        newAuthorizer(cfg.Auth, h.ID()),
		admission: newAdmission(cfg.JoinRate, cfg.JoinBurst, cfg.JoinMaxPeers,
			cfg.BootstrapBackoffMin, cfg.JoinRetryMax),
		history:   newHistoryStore(cfg.History),
		histServe: ratelimit.NewKeyed[peer.ID](cfg.History.ServeRate, cfg.History.ServeBurst, maxRateBuckets, ratelimit.EvictOldest),
		histSlots: slots.New[peer.ID](maxHistoryServes, maxHistoryServesPerPeer),
		histAsks:  slots.New[peer.ID](math.MaxInt, maxHistoryAsksPerPeer),
	}
	// Spam strikes (ratelimit.go) lower a peer's score through its
	// application-specific part, on top of any the caller configured.
	appScore := score.Params.AppSpecificScore
	score.Params.AppSpecificScore = func(p peer.ID) float64 {
		v := o.spam.penalty(p, time.Now())
		if appScore != nil {
			v += appScore(p)
		}
		return v
	}
	// Topics join at run time (topics.go sets their parameters), but
	// pubsub needs the map to exist.
	score.Params.Topics = make(map[string]*pubsub.TopicScoreParams)
	o.cfg.Score = &score

	kad, err := o.startDHT()
	if err != nil {
		cancel()
		return nil, err
	}
	o.dht = kad
	o.disc = drouting.NewRoutingDiscovery(kad)

	// Before gossipsub: its RPC inspector counts into them from the first
	// RPC on.
	m, err := newMetrics(cfg.Registerer, cfg.MaxTopicMetrics, o)
	if err != nil {
		kad.Close()
		cancel()
		return nil, fmt.Errorf("register overlay metrics: %w", err)
	}
	o.metrics = m
	o.history.evicted = func(n int) { m.historyEvicted.Add(float64(n)) }
	o.spam.strikeCounter = m.spam.WithLabelValues(spamStrikes)
	o.subFilter = newSubscriptionFilter(o, cfg.MaxTopics)
	o.subNotifiee = o.subFilter.notifiee()
	h.Network().Notify(o.subNotifiee)

	ps, err := o.startGossipSub(octx, &score)
	if err != nil {
		kad.Close()
		h.Network().StopNotify(o.subNotifiee)
		cancel()
		return nil, fmt.Errorf("start gossipsub: %w", err)
	}
	o.ps = ps

	if err := o.registerDHTMetrics(cfg.Registerer); err != nil {
		h.Network().StopNotify(o.subNotifiee)
		kad.Close()
		cancel()
		return nil, fmt.Errorf("register DHT metrics: %w", err)
	}

	h.SetStreamHandler(o.JoinProtocol(), o.handleJoin)
	h.SetStreamHandler(o.HistoryProtocol(), o.handleHistory)
	o.shun = o.shunAvoided()
	h.Network().Notify(o.shun)
	o.wg.Add(2)
	go o.bootstrapLoop()
	go o.janitor()
	return o, nil
}

// startDHT starts the overlay's Kademlia DHT on its host: our protocol
// prefix, our record namespaces only, a bounded store and the routing
// table's diversity filter.
func (o *Overlay) startDHT() (*dht.IpfsDHT, error) {
	cfg, h := o.cfg, o.host
	dhtOpts := []dht.Option{
		dht.ProtocolPrefix(cfg.ProtocolPrefix),
		dht.Mode(dhtMode(cfg.Mode)),
		// Only the bootstrap loop dials bootstrap peers (bootstrap.go), and
		// always asks them to admit it (join.go). The DHT's own fallback,
		// which dials them when the routing table empties, would go round
		// a busy bootstrap node's refusal (and, with no peers given, reach
		// for the public IPFS nodes).
		dht.BootstrapPeersFunc(func() []peer.AddrInfo { return nil }),
		// Peers that answered a join busy are left alone until they said
		// to come back (join.go).
		dht.RoutingTableFilter(func(_ any, p peer.ID) bool { return !o.Avoiding(p) }),
		dht.QueryFilter(func(_ any, ai peer.AddrInfo) bool { return !o.Avoiding(ai.ID) }),
	}
	// Only our own record namespaces: kad-dht's defaults (pk, ipns) would
	// let anyone store records nothing here reads.
	validators := record.NamespacedValidator{}
	namespaces := make([]string, 0, len(cfg.Validators))
	for ns, v := range cfg.Validators {
		validators[ns] = v
		namespaces = append(namespaces, ns)
	}
	o.dhtStore = newDHTStore(h.ID(), cfg.DHTBudget, namespaces)
	dhtOpts = append(dhtOpts,
		dht.Validator(validators),
		dht.Datastore(o.dhtStore),
		dht.OnRequestHook(o.dhtStore.onRequest))
	if cfg.Diversity != (Diversity{}) {
		o.diversity = newDiversityFilter(h, cfg.Diversity)
		dhtOpts = append(dhtOpts, dht.RoutingTablePeerDiversityFilter(o.diversity))
	}
	kad, err := dht.New(h, dhtOpts...)
	if err != nil {
		return nil, fmt.Errorf("start DHT: %w", err)
	}
	return kad, nil
}

// startGossipSub starts gossipsub on the overlay's host, with strict
// signing, our scoring, the spam budgets (ratelimit.go) and discovery
// through the DHT.
func (o *Overlay) startGossipSub(ctx context.Context, score *ScoreConfig) (*pubsub.PubSub, error) {
	cfg, h := o.cfg, o.host
	gsParams := pubsub.DefaultGossipSubParams()
	if cfg.GossipSub != nil {
		gsParams = *cfg.GossipSub
	}
	return pubsub.NewGossipSub(ctx, h,
		pubsub.WithGossipSubParams(gsParams),
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		// The RPC limit leaves room for the envelope and protobuf framing
		// around a maximum-size payload; the payload limit itself is checked
		// exactly by our validator.
		pubsub.WithMaxMessageSize(cfg.MaxMessageSize+envelopeHeaderSize+64<<10),
		pubsub.WithPeerScore(&score.Params, &score.Thresholds),
		// After WithPeerScore, which it needs.
		pubsub.WithPeerScoreInspect(pubsub.PeerScoreInspectFn(o.scores.update), time.Second),
		// Spam budgets (ratelimit.go): only our topics' announcements are
		// kept, at most MaxRPCSubscriptions per RPC, and each RPC is
		// inspected before its messages enter the validation queue.
		pubsub.WithSubscriptionFilter(pubsub.WrapLimitSubscriptionFilter(o.subFilter, cfg.MaxRPCSubscriptions)),
		pubsub.WithAppSpecificRpcInspector(o.inspectRPC),
		pubsub.WithDiscovery(o.disc),
		// Deeper queues than pubsub's defaults (32): a peer that relays to
		// many browsers is often busy for a moment, and a full queue drops
		// messages that gossip would only partly recover, out of order.
		// The origin sends to every subscriber it knows, not only its mesh
		// (pubsub v0.17 defaults to mesh only): a message published before
		// the next heartbeat has grafted a new subscriber still reaches it.
		pubsub.WithFloodPublish(true),
		pubsub.WithPeerOutboundQueueSize(256),
		pubsub.WithValidateQueueSize(1024),
		// One validation worker: with several (pubsub's default is one per
		// CPU) messages from one publisher are verified in parallel and can
		// overtake each other, and subscribers (browsers above all) are
		// promised each publisher's messages in order. One worker still
		// verifies tens of thousands of signatures a second.
		pubsub.WithValidateWorkers(1),
		pubsub.WithLogger(cfg.Logger.With("component", "overlay.gossipsub")),
	)
}

func dhtMode(m Mode) dht.ModeOpt {
	switch m {
	case ModeServer:
		return dht.ModeServer
	case ModeClient:
		return dht.ModeClient
	}
	return dht.ModeAuto
}

// Host returns the libp2p host the overlay runs on.
func (o *Overlay) Host() host.Host { return o.host }

// DHT returns the overlay's Kademlia DHT. This node's own records go
// through PutValue and GetValue below, not the DHT's, so that the
// datastore's budgets know them for ours.
func (o *Overlay) DHT() *dht.IpfsDHT { return o.dht }

// PutValue stores a record in the DHT as this node's own: the copy kept
// in the local datastore is not charged to any peer's budget.
func (o *Overlay) PutValue(ctx context.Context, key string, value []byte, opts ...routing.Option) error {
	return o.dht.PutValue(context.WithValue(ctx, ownWrite{}, true), key, value, opts...)
}

// GetValue looks a record up in the DHT; a better record it finds
// replaces the local copy as this node's own write.
func (o *Overlay) GetValue(ctx context.Context, key string, opts ...routing.Option) ([]byte, error) {
	return o.dht.GetValue(context.WithValue(ctx, ownWrite{}, true), key, opts...)
}

// PubSub returns the gossipsub router, for callers that need what this
// package does not wrap (benchmarks compare against it).
func (o *Overlay) PubSub() *pubsub.PubSub { return o.ps }

// Joined is closed once the node is connected and has a peer in its
// routing table: a bootstrap peer, or a peer a busy one referred it to,
// has admitted it (immediately for a node with no bootstrap peers).
func (o *Overlay) Joined() <-chan struct{} { return o.joined }

// RoutingTableSize returns the number of peers in the DHT routing table.
func (o *Overlay) RoutingTableSize() int { return o.dht.RoutingTable().Size() }

// FindPeer looks id up in the DHT.
func (o *Overlay) FindPeer(ctx context.Context, id peer.ID) (peer.AddrInfo, error) {
	return o.dht.FindPeer(ctx, id)
}

// TopicInfo describes a joined topic.
type TopicInfo struct {
	Name        string `json:"name"`
	Subscribers int    `json:"subscribers"` // local subscriptions
	Peers       int    `json:"peers"`       // remote peers known to be subscribed
}

// Topics lists the topics this node has joined, sorted by name.
func (o *Overlay) Topics() []TopicInfo {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]TopicInfo, 0, len(o.topics))
	for name, ts := range o.topics {
		subs := ts.subs
		if ts.histSub != nil {
			subs-- // the window's own (historysync.go)
		}
		out = append(out, TopicInfo{Name: name, Subscribers: subs, Peers: len(ts.topic.ListPeers())})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Close leaves the overlay: it stops the background loops, the DHT and
// gossipsub. Open subscriptions end with ErrClosed. Close is idempotent.
func (o *Overlay) Close() error {
	var err error
	o.once.Do(func() {
		o.mu.Lock()
		o.closed = true
		o.mu.Unlock()
		o.host.RemoveStreamHandler(o.JoinProtocol())
		o.host.RemoveStreamHandler(o.HistoryProtocol())
		o.host.Network().StopNotify(o.shun)
		o.host.Network().StopNotify(o.subNotifiee)
		o.cancel()
		o.wg.Wait()
		err = o.dht.Close()
	})
	return err
}
