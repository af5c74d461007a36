package webrtc

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// relayMetrics are the metrics of browser relays (immense_webrtc_relay_*).
type relayMetrics struct {
	relays        prometheus.Gauge       // sessions relaying a topic
	viaRelays     prometheus.Gauge       // sessions fed by a relay
	directMembers prometheus.Gauge       // tree members fed by the peer
	maxDepth      prometheus.Gauge       // deepest member of any tree
	records       prometheus.Counter     // records signed
	reattached    *prometheus.CounterVec // reason
	reports       *prometheus.CounterVec // reason
	isolated      prometheus.Counter
	signals       *prometheus.CounterVec // result
	probes        *prometheus.CounterVec // result
	probeUpload   prometheus.Histogram   // measured upload, bytes/s
}

const (
	reattachJoin     = "join"     // a plain session moved under a relay
	reattachLeft     = "left"     // its relay closed or withdrew
	reattachReported = "reported" // the child reported its relay
	reattachIsolated = "isolated" // its relay was isolated
	reattachBudget   = "budget"   // its relay's budget shrank

	signalForwarded = "forwarded"
	signalRefused   = "refused"
	signalLimited   = "rate_limited"

	probeMeasured = "measured"
	probeLimited  = "rate_limited" // a second probe within ProbeInterval
	probeTooLarge = "too_large"    // over maxProbeBytes
	probeBadNonce = "bad_nonce"    // a chunk without the peer's nonce
)

func newRelayMetrics(reg prometheus.Registerer) (*relayMetrics, error) {
	const ns, sub = "immense", "webrtc_relay"
	m := &relayMetrics{
		relays: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "relays",
			Help: "Browser sessions relaying a topic to other browsers (counted once per topic)."}),
		viaRelays: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "fed_via_relays",
			Help: "Browser sessions fed a topic by another browser rather than by this peer."}),
		directMembers: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "fed_directly",
			Help: "Sessions of relayed topics fed signed records by this peer (relays, and children it took back)."}),
		maxDepth: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "max_depth",
			Help: "Largest relay depth of any session (1: fed by this peer)."}),
		records: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "records_signed_total",
			Help: "Messages of relayed topics signed as records."}),
		reattached: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "attachments_total",
			Help: "Sessions (re)attached to a feeder, by reason: join, left, reported, isolated, budget."}, []string{"reason"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "reports_total",
			Help: "Reports of relays by their children, by reason: gone, stalled, dropped, forged, refused."}, []string{"reason"}),
		isolated: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "isolated_total",
			Help: "Relays isolated after reports by a quorum of their children."}),
		signals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "signals_total",
			Help: "SIGNAL frames between browsers by result (forwarded, refused), and relay frames of any type refused for exceeding Relay.SignalRate (rate_limited)."}, []string{"result"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "probes_total",
			Help: "Upload probes of browsers offering to relay, by result: measured, rate_limited (a second one within Relay.ProbeInterval), too_large (over 64 KiB), bad_nonce (a chunk without the nonce the peer sent)."}, []string{"result"}),
		probeUpload: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "probe_upload_bytes_per_second",
			Help:    "Upload of browsers offering to relay, as this peer measured it from their probes.",
			Buckets: prometheus.ExponentialBuckets(16<<10, 2, 10)}), // 16 KiB/s to 8 MiB/s
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.relays, m.viaRelays, m.directMembers, m.maxDepth, m.records, m.reattached, m.reports, m.isolated, m.signals, m.probes, m.probeUpload} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("webrtc: relay metrics already registered (one Server per Registerer)")
			}
			return nil, err
		}
	}
	return m, nil
}
