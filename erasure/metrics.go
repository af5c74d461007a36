package erasure

import "github.com/prometheus/client_golang/prometheus"

// metrics are the Prometheus figures of the state service. Every method is
// nil-safe so that parts used without a service (a bare ShardServer in a
// test) need no registry.
type metrics struct {
	shardsStored   prometheus.Counter
	shardsServed   prometheus.Counter
	shardsRefused  *prometheus.CounterVec
	badShards      prometheus.Counter
	repairs        *prometheus.CounterVec
	repairBytes    prometheus.Counter
	repairedShards prometheus.Counter
	gcRemoved      prometheus.Counter
	rollbacks      prometheus.Counter
	putBacks       prometheus.Counter
	deletes        *prometheus.CounterVec
	handoffShards  *prometheus.CounterVec
	adoptions      prometheus.Counter
	puts, gets     *prometheus.CounterVec
	sharedNet      prometheus.Counter
	// volunteer repair (volunteerrepair.go)
	roles        *prometheus.CounterVec
	hintsRefused prometheus.Counter
	roleTotals   RepairBytes
}

// newMetrics creates the metrics and registers them, with gauges reading
// the store, on reg (which may be nil: then nothing is registered).
func newMetrics(reg prometheus.Registerer, store *Store) (*metrics, error) {
	const ns, sub = "immense", "state"
	m := &metrics{
		shardsStored: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "shards_stored_total", Help: "Shards this peer accepted and stored for others."}),
		shardsServed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "shards_served_total", Help: "Shards this peer served to fetch requests."}),
		shardsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "shards_refused_total", Help: "Store requests refused, by reason."}, []string{"reason"}),
		badShards: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "bad_shards_total", Help: "Shards received from peers that failed verification."}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "repairs_total", Help: "Repair checks of objects, by outcome."}, []string{"outcome"}),
		repairBytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "repair_bytes_total", Help: "Shard bytes regenerated and uploaded by repair."}),
		repairedShards: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "repaired_shards_total", Help: "Shards regenerated onto new peers by repair."}),
		gcRemoved: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "gc_removed_shards_total", Help: "Local shards removed by garbage collection."}),
		rollbacks: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "rollbacks_refused_total", Help: "Manifests refused because a higher version of the object was verified before (a replayed or stale record)."}),
		putBacks: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "manifests_put_back_total", Help: "Manifests of this peer's own objects put back in the DHT from the records it keeps on disk, because the DHT had none or an older one (DHT servers restarted)."}),
		deletes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "shard_deletes_total", Help: "Delete requests from peers, by result: removed (the shard went), unref (the signer's refs went; other namespaces' keep the shard), unauthorized (not signed by the owner of a namespace the shard is stored under)."},
			[]string{"result"}),
		handoffShards: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "handoff_shards_total", Help: "Shards this peer held when it left on purpose, by result: handed_off to another peer or failed (not handed off in time)."},
			[]string{"result"}),
		adoptions: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "handoff_adoptions_total", Help: "Shard indices repair moved in a manifest to the peer a departed holder handed them to, without regenerating them."}),
		puts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "puts_total", Help: "Put and Delete operations, by result."}, []string{"result"}),
		gets: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "gets_total", Help: "Get operations, by result."}, []string{"result"}),
		sharedNet: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "placement_shared_network_candidates_total", Help: "Candidate holders (for Put, repair, handoff) without an operator-given zone whose /24 (IPv4) or /48 (IPv6) another candidate already had: placement gives one holder per object to each such network. Many of them: identities crowded on few networks."}),
	}
	// Create the label values up front so that every series exists (at 0)
	// from the start: a rate() over a series that appears late misleads.
	for o := range numOutcomes {
		m.repairs.WithLabelValues(o.String())
	}
	for _, r := range []string{"quota", "refs", "hash", "busy", "error"} {
		m.shardsRefused.WithLabelValues(r)
	}
	for _, r := range []string{"removed", "unref", "unauthorized"} {
		m.deletes.WithLabelValues(r)
	}
	for _, r := range []string{"handed_off", "failed"} {
		m.handoffShards.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error"} {
		m.puts.WithLabelValues(r)
		m.gets.WithLabelValues(r)
	}
	m.gets.WithLabelValues("not_found")
	volunteer := m.newVolunteerMetrics(ns, sub)
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.shardsStored, m.shardsServed, m.shardsRefused, m.badShards,
		m.repairs, m.repairBytes, m.repairedShards, m.gcRemoved, m.rollbacks, m.putBacks, m.deletes, m.handoffShards, m.adoptions, m.puts, m.gets, m.sharedNet}
	cs = append(cs, volunteer...)
	if store != nil {
		cs = append(cs,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
				Name: "storage_used_bytes", Help: "Bytes of shard files held (in-flight writes included)."},
				func() float64 { return float64(store.Used()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
				Name: "storage_quota_bytes", Help: "Configured storage quota."},
				func() float64 { return float64(store.Quota()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
				Name: "shards", Help: "Shards held in the local store."},
				func() float64 { return float64(store.Len()) }),
		)
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) stored() {
	if m != nil {
		m.shardsStored.Inc()
	}
}

func (m *metrics) served() {
	if m != nil {
		m.shardsServed.Inc()
	}
}

func (m *metrics) refused(reason string) {
	if m != nil {
		m.shardsRefused.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) bad() {
	if m != nil {
		m.badShards.Inc()
	}
}

func (m *metrics) repair(outcome repairOutcome, shards int, bytes int64) {
	if m != nil {
		m.repairs.WithLabelValues(outcome.String()).Inc()
		m.repairedShards.Add(float64(shards))
		m.repairBytes.Add(float64(bytes))
	}
}

func (m *metrics) gc(removed int) {
	if m != nil {
		m.gcRemoved.Add(float64(removed))
	}
}

func (m *metrics) putBack() {
	if m != nil {
		m.putBacks.Inc()
	}
}

func (m *metrics) rolledBack() {
	if m != nil {
		m.rollbacks.Inc()
	}
}

func (m *metrics) deleted(result string) {
	if m != nil {
		m.deletes.WithLabelValues(result).Inc()
	}
}

func (m *metrics) put(result string) {
	if m != nil {
		m.puts.WithLabelValues(result).Inc()
	}
}

func (m *metrics) get(result string) {
	if m != nil {
		m.gets.WithLabelValues(result).Inc()
	}
}

func (m *metrics) handoff(result string, shards int) {
	if m != nil {
		m.handoffShards.WithLabelValues(result).Add(float64(shards))
	}
}

func (m *metrics) adopted(indices int) {
	if m != nil {
		m.adoptions.Add(float64(indices))
	}
}

func (m *metrics) sharedNetwork(n int) {
	if m != nil {
		m.sharedNet.Add(float64(n))
	}
}
