package node

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/immense-p2p/immense/overlay"
	"github.com/immense-p2p/immense/webrtc"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"
)

// Message is a message received on a topic.
type Message = overlay.Message

// Node is one member of the overlay.
type Node struct {
	cfg      Config
	log      *slog.Logger // the node's own lines: component=node
	plog     *slog.Logger // for the parts, which add their own component
	host     host.Host
	overlay  *overlay.Overlay
	registry *prometheus.Registry

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
	started time.Time

	browsers     *webrtc.Server      // nil without Config.Browsers
	relay        *webrtc.SignalRelay // relayed signaling (signal.go); nil without Config.Browsers
	topicKeys    []ed25519.PublicKey // the app's topic keys (appauth.go), which also verify browser tokens
	state        *state              // nil without Config.State
	bw           *metrics.BandwidthCounter
	reachability atomic.Value    // network.Reachability
	apiToken     string          // the control API's bearer token (apiauth.go)
	presence     *presence       // nil without Config.Presence.Topics
	durable      *durableHistory // nil without Config.DurableHistory.Topics, State or AppKeyFile

	// httpConnsRefused counts the HTTP connections StartHTTP's servers
	// refused over Limits.HTTPMaxConns, HTTPMaxConnsPerIP and
	// HTTPMaxConnsPerNet, by reason.
	httpConnsRefused *prometheus.CounterVec
}

// New starts a node: it loads or creates the identity in cfg.DataDir, starts
// the libp2p host and joins the overlay. Joining the bootstrap peers goes on
// in the background; see Joined.
func New(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	priv, created, err := loadOrCreateIdentity(filepath.Join(cfg.DataDir, identityFile))
	if err != nil {
		return nil, err
	}
	apiToken, err := loadOrCreateAPIToken(filepath.Join(cfg.DataDir, apiTokenFile))
	if err != nil {
		return nil, err
	}
	bootstrap, _ := ParseBootstrap(cfg.Bootstrap) // validated above
	auth, topicKeys, err := cfg.topicAuth()
	if err != nil {
		return nil, err
	}
	cfg.Overlay.Auth = auth

	relays := &relaySource{bootstrap: bootstrap}
	var bw *metrics.BandwidthCounter
	if !cfg.NoTrafficMeters {
		bw = metrics.NewBandwidthCounter()
	}
	where := deployment(&cfg, bootstrap)
	configuredMode := cfg.Overlay.Mode
	cfg.Overlay.Mode = where.DHTMode(configuredMode)
	gate := overlay.NewDialGate(where, cfg.DialPrivate)
	h, err := newHost(&cfg, priv, bw, relays.candidates, gate)
	if err != nil {
		return nil, err
	}
	if err := cfg.Registry.Register(gate); err != nil {
		h.Close()
		return nil, fmt.Errorf("register dial gate metrics: %w", err)
	}
	relays.host.Store(&h)
	plog := cfg.Logger.With("peer", h.ID().String())
	log := plog.With("component", "node")
	if created {
		log.Info("created new identity", "file", filepath.Join(cfg.DataDir, identityFile))
	}
	if cfg.Overlay.Mode != configuredMode {
		// AutoNAT never vouches for a loopback or private address: in
		// auto mode the node would stay a DHT client that no peer keeps
		// in its routing table (overlay.Deployment.DHTMode).
		log.Info("DHT server from the start: auto mode on a deployment narrower than the internet, where AutoNAT cannot confirm reachability",
			"deployment", where.String(), "configured_mode", configuredMode.String())
	}

	ov, err := overlay.New(ctx, h, cfg.overlayConfig(bootstrap, plog))
	if err != nil {
		h.Close()
		return nil, err
	}
	avoid := ov.Avoiding
	relays.avoid.Store(&avoid)
	nctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n := &Node{
		cfg:       cfg,
		log:       log,
		plog:      plog,
		host:      h,
		overlay:   ov,
		registry:  cfg.Registry,
		ctx:       nctx,
		cancel:    cancel,
		started:   time.Now(),
		apiToken:  apiToken,
		topicKeys: topicKeys,
	}
	n.bw = bw
	n.reachability.Store(network.ReachabilityUnknown)
	if err := n.watchReachability(); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.registerMetrics(); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.startState(); err != nil {
		n.Close()
		return nil, err
	}
	n.startDurableHistory()
	if len(cfg.Presence.Topics) > 0 {
		n.presence = newPresence(n, cfg.Presence) // before the browsers, which report to it
	}
	if err := n.startBrowsers(); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.startSignalRelay(); err != nil {
		n.Close()
		return nil, err
	}
	log.Info("node started", "addrs", n.Addrs(), "mode", cfg.Overlay.Mode.String(), "deployment", where.String(), "dials", gate.String())
	return n, nil
}

// watchReachability follows AutoNAT's verdict for /v1/status and logs it.
func (n *Node) watchReachability() error {
	sub, err := n.host.EventBus().Subscribe(new(event.EvtLocalReachabilityChanged))
	if err != nil {
		return fmt.Errorf("subscribe to reachability events: %w", err)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer sub.Close()
		for {
			select {
			case <-n.ctx.Done():
				return
			case e, ok := <-sub.Out():
				if !ok {
					return
				}
				r := e.(event.EvtLocalReachabilityChanged).Reachability
				n.reachability.Store(r)
				n.log.Info("reachability changed", "reachability", reachabilityName(r))
			}
		}
	}()
	return nil
}

func reachabilityName(r network.Reachability) string {
	switch r {
	case network.ReachabilityPublic:
		return "public"
	case network.ReachabilityPrivate:
		return "private"
	}
	return "unknown"
}

// registerMetrics adds the node's own gauges and counters.
func (n *Node) registerMetrics() error {
	bwTotal := func(dir string) func() float64 {
		return func() float64 {
			if n.bw == nil {
				return 0
			}
			t := n.bw.GetBandwidthTotals()
			if dir == "in" {
				return float64(t.TotalIn)
			}
			return float64(t.TotalOut)
		}
	}
	n.httpConnsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "immense", Subsystem: "http", Name: "conns_refused_total",
		Help: "HTTP connections refused at once (503) because the server held Limits.HTTPMaxConns from other machines (reason total) or from loopback (loopback), the client's address HTTPMaxConnsPerIP (per_ip) or its network HTTPMaxConnsPerNet (per_net)."},
		[]string{"reason"})
	for _, c := range []prometheus.Collector{
		n.httpConnsRefused,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "immense", Subsystem: "node", Name: "bytes_received_total",
			Help: "Bytes received on libp2p streams."}, bwTotal("in")),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "immense", Subsystem: "node", Name: "bytes_sent_total",
			Help: "Bytes sent on libp2p streams."}, bwTotal("out")),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "immense", Subsystem: "node", Name: "upload_cap_bytes_per_second",
			Help: "Configured upload cap (0: none)."}, func() float64 { return float64(n.cfg.MaxUpload) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "immense", Subsystem: "node", Name: "download_cap_bytes_per_second",
			Help: "Configured download cap (0: none)."}, func() float64 { return float64(n.cfg.MaxDownload) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "immense", Subsystem: "node", Name: "relayed_connections",
			Help: "Open connections that go through a relay."}, func() float64 {
			k := 0
			for _, c := range n.host.Network().Conns() {
				if c.Stat().Limited {
					k++
				}
			}
			return float64(k)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "immense", Subsystem: "node", Name: "public_reachability",
			Help: "1 if AutoNAT says this node is publicly reachable, 0 otherwise."}, func() float64 {
			if n.reachability.Load() == network.ReachabilityPublic {
				return 1
			}
			return 0
		}),
	} {
		if err := n.registry.Register(c); err != nil {
			return fmt.Errorf("register node metrics: %w", err)
		}
	}
	return nil
}

// ID returns the node's peer ID.
func (n *Node) ID() peer.ID { return n.host.ID() }

// Host returns the libp2p host.
func (n *Node) Host() host.Host { return n.host }

// Overlay returns the node's overlay membership.
func (n *Node) Overlay() *overlay.Overlay { return n.overlay }

// Registry returns the registry holding the node's metrics.
func (n *Node) Registry() *prometheus.Registry { return n.registry }

// Joined is closed once the node has joined the overlay: a bootstrap peer,
// or a peer a busy one referred it to, admitted it (see overlay.Joined).
func (n *Node) Joined() <-chan struct{} { return n.overlay.Joined() }

// Done is closed when the node has been closed.
func (n *Node) Done() <-chan struct{} { return n.ctx.Done() }

// Addrs returns the node's full multiaddrs (ending in /p2p/<id>), the form
// other nodes take as --bootstrap.
func (n *Node) Addrs() []multiaddr.Multiaddr {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()})
	if err != nil {
		return nil
	}
	return addrs
}

// Publish signs and sends data to every subscriber of topic in the overlay.
func (n *Node) Publish(ctx context.Context, topic string, data []byte) error {
	if n.ctx.Err() != nil {
		return ErrClosed
	}
	return n.overlay.Publish(ctx, topic, data)
}

// Subscribe subscribes to topic and returns its messages on a channel,
// which is closed when ctx ends or the node closes. A consumer that falls
// far behind loses messages rather than slowing the node down: the
// overlay subscription's queue drops what does not fit
// (immense_overlay_messages_dropped_total). With Since it resumes after a
// position, from the topic's history.
func (n *Node) Subscribe(ctx context.Context, topic string, opts ...SubscribeOption) (<-chan *Message, error) {
	var so subscribeOptions
	for _, opt := range opts {
		opt(&so)
	}
	if n.ctx.Err() != nil {
		return nil, ErrClosed
	}
	sub, err := n.overlay.Subscribe(topic)
	if err != nil {
		return nil, err
	}
	out := make(chan *Message, 64)
	sctx, cancel := context.WithCancel(ctx)
	// End the subscription with the node too. AfterFunc's goroutine only
	// cancels sctx, and stop keeps it from starting once we are done.
	stop := context.AfterFunc(n.ctx, cancel)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer close(out)
		defer sub.Cancel()
		defer cancel()
		defer stop()
		n.presence.join(topic, n.host.ID().String())
		defer n.presence.leave(topic, n.host.ID().String())
		var resume *overlay.Resume
		if so.resume {
			var ok bool
			if resume, ok = n.replay(sctx, topic, so.since, out); !ok {
				return
			}
		}
		for {
			m, err := sub.Next(sctx)
			if err != nil {
				return
			}
			if resume != nil && !resume.Live(m) {
				continue
			}
			select {
			case out <- m:
			case <-sctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// Close leaves the overlay and stops the host. It is idempotent and returns
// once every goroutine of the node has stopped.
func (n *Node) Close() error {
	var err error
	n.once.Do(func() {
		if n.browsers != nil {
			n.browsers.Close()
		}
		n.cancel()
		n.wg.Wait()
		if n.state != nil {
			err = n.state.close()
		}
		if oerr := n.overlay.Close(); err == nil {
			err = oerr
		}
		if herr := n.host.Close(); err == nil {
			err = herr
		}
		n.log.Info("node stopped")
	})
	return err
}
