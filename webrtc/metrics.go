package webrtc

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus metrics. Labels take values from
// small fixed sets (never topics or peer IDs), so cardinality is bounded
// however browsers behave.
type metrics struct {
	sessions  prometheus.Gauge
	offers    *prometheus.CounterVec // result
	closed    *prometheus.CounterVec // reason
	topics    prometheus.Gauge
	delivered prometheus.Counter
	sends     prometheus.Counter
	batchSize prometheus.Histogram
	dropped   *prometheus.CounterVec // reason
	framesIn  *prometheus.CounterVec // type
	rejected  *prometheus.CounterVec // code
	publishes *prometheus.CounterVec // result
}

// Label values.
const (
	offerAccepted     = "accepted"
	offerUnauthorized = "unauthorized"
	offerBadRequest   = "bad_request"
	offerFull         = "full"
	offerFailed       = "failed"
	offerRateLimited  = "rate_limited"

	closeClient         = "client"          // browser closed the channel or connection
	closeConnectTimeout = "connect_timeout" // never opened a data channel
	closeSlow           = "slow"            // queue overflow under the Disconnect policy
	closeStalled        = "stalled"         // data channel did not drain for StallTimeout
	closeTokenExpired   = "token_expired"
	closeServer         = "server_close"
	closeFailed         = "failed" // ICE/DTLS failure or send error

	dropQueueFull = "queue_full"
	dropTooLarge  = "too_large"

	publishOK          = "ok"
	publishForbidden   = "forbidden"
	publishRateLimited = "rate_limited"
	publishFailed      = "failed"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "immense", "webrtc"
	m := &metrics{
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "sessions",
			Help: "Browser sessions currently open or connecting."}),
		offers: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "offers_total",
			Help: "Signaling offers by result: accepted, unauthorized, bad_request, full, failed."}, []string{"result"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "sessions_closed_total",
			Help: "Closed sessions by reason: client, connect_timeout, slow, stalled, token_expired, server_close, failed."}, []string{"reason"}),
		topics: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "bridged_topics",
			Help: "Overlay subscriptions held on behalf of browsers (one per topic)."}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "messages_delivered_total",
			Help: "Messages written to browser data channels."}),
		sends: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "datachannel_sends_total",
			Help: "Data channel messages sent; fewer than frames when frames are batched."}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "batch_frames",
			Help:    "Frames per data channel message.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128}}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "messages_dropped_total",
			Help: "Messages not delivered to a session: queue_full (slow browser) or too_large (above MaxFrameSize)."}, []string{"reason"}),
		framesIn: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "frames_received_total",
			Help: "Frames received from browsers by type."}, []string{"type"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "frames_rejected_total",
			Help: "Browser frames answered with an ERROR frame, by error code."}, []string{"code"}),
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "publishes_total",
			Help: "Browser publishes by result: ok, forbidden, rate_limited, failed."}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.sessions, m.offers, m.closed, m.topics, m.delivered, m.sends, m.batchSize, m.dropped, m.framesIn, m.rejected, m.publishes} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("webrtc: metrics already registered (one Server per Registerer)")
			}
			return nil, err
		}
	}
	return m, nil
}
