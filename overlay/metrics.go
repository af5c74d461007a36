package overlay

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics counts messages per topic, with a cap on distinct topic labels.
type metrics struct {
	published *prometheus.CounterVec
	received  *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	dropped   *prometheus.CounterVec
	// unauthorized counts messages refused by authorization, by reason.
	unauthorized *prometheus.CounterVec

	// Budgets (topics.go, ratelimit.go).
	topicsEvicted prometheus.Counter
	topicsRefused prometheus.Counter
	spam          *prometheus.CounterVec

	// History (historysync.go): fetches by result, requests served by
	// result, messages dropped from windows by limits and budgets.
	historyFetches *prometheus.CounterVec
	historyServes  *prometheus.CounterVec
	historyEvicted prometheus.Counter

	mu     sync.Mutex
	labels map[string]struct{}
	max    int
}

func newMetrics(reg prometheus.Registerer, maxTopics int, o *Overlay) (*metrics, error) {
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "messages_published_total",
			Help: "Messages published by this node, per topic.",
		}, []string{"topic"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "messages_received_total",
			Help: "Messages delivered to local subscriptions, per topic (counted once per message, not per subscriber).",
		}, []string{"topic"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "messages_rejected_total",
			Help: "Messages from the network refused by validation, per topic.",
		}, []string{"topic"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "messages_dropped_total",
			Help: "Messages not delivered to a local subscription because its queue was full (the subscriber reads slower than the topic publishes), per topic, counted per subscription.",
		}, []string{"topic"}),
		topicsEvicted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "topics_evicted_total",
			Help: "Topics without a local subscriber left to make room in the topic table (MaxPublishTopics, MaxTopics).",
		}),
		topicsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "topics_refused_total",
			Help: "Subscribes and publishes refused because the topic table was full of topics that could not be left.",
		}),
		spam: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "spam_refused_total",
			Help: "Gossip refused by the spam budgets, by reason: peer_rate and topic_rate (messages dropped before validation), publisher_rate_direct and publisher_rate_relayed (ignored after validation), strikes (score penalties: messages of its own a peer sent over budget), rpc_subscriptions and rpc_control (whole RPCs dropped), foreign_subscription (announcements of topics outside immense/).",
		}, []string{"reason"}),
		unauthorized: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "messages_unauthorized_total",
			Help: "Messages refused because their publisher had no right to the topic, by reason: no-credential, bad-certificate, bad-token, token-scope (the token does not grant the topic), clock (dated outside the accepted window; ignored, not penalised).",
		}, []string{"reason"}),
		historyFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "history_fetches_total",
			Help: "History windows fetched from other peers on subscribing, by result (ok, failed).",
		}, []string{"result"}),
		historyServes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "history_requests_total",
			Help: "History requests from other peers, by result: ok, rate (over the per-peer rate), busy (too many at once), refused (malformed, no window, or a peer not subscribed to the topic).",
		}, []string{"result"}),
		historyEvicted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "history_evicted_total",
			Help: "Messages dropped from history windows by their limits or the global budgets.",
		}),
		labels: make(map[string]struct{}),
		max:    maxTopics,
	}
	for _, r := range spamReasons {
		m.spam.WithLabelValues(r) // exported at 0 from the start
	}
	if reg == nil {
		return m, nil
	}
	collectors := []prometheus.Collector{
		m.published, m.received, m.rejected, m.dropped, m.topicsEvicted, m.topicsRefused, m.spam, m.unauthorized,
		m.historyFetches, m.historyServes, m.historyEvicted,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "history_bytes",
			Help: "Bytes held in history windows, all topics together (HistoryConfig.MaxBytes caps them).",
		}, func() float64 { return float64(o.history.size()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "graylisted_peers",
			Help: "Connected peers whose gossipsub score is below the graylist threshold: everything they send is ignored.",
		}, func() float64 { return float64(o.scores.below(o.cfg.Score.Thresholds.GraylistThreshold)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "connected_peers",
			Help: "Peers with at least one open connection.",
		}, func() float64 { return float64(len(o.host.Network().Peers())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "routing_table_peers",
			Help: "Peers in the DHT routing table.",
		}, func() float64 { return float64(o.RoutingTableSize()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "topics",
			Help: "Topics this node has joined.",
		}, func() float64 { return float64(len(o.Topics())) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "joins_total",
			Help:        "Join requests this node answered, by result (admitted, or busy: refused with a retry-after and referrals).",
			ConstLabels: prometheus.Labels{"result": "admitted"},
		}, func() float64 { return float64(o.joinAdmitted.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "joins_total",
			Help:        "Join requests this node answered, by result (admitted, or busy: refused with a retry-after and referrals).",
			ConstLabels: prometheus.Labels{"result": "busy"},
		}, func() float64 { return float64(o.joinBusy.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "join_busy_total",
			Help: "Busy answers this node received while joining.",
		}, func() float64 { return float64(o.joinBusyReceived.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "join_referred_total",
			Help: "Times this node, refused by the bootstrap peers, joined through a peer they referred it to.",
		}, func() float64 { return float64(o.joinReferred.Load()) }),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// label returns the metric label for topic: the topic itself for the first
// m.max topics seen, "other" afterwards.
func (m *metrics) label(topic string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.labels[topic]; ok {
		return topic
	}
	if len(m.labels) < m.max {
		m.labels[topic] = struct{}{}
		return topic
	}
	return "other"
}
