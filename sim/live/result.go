package live

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/immense-p2p/immense/sim/report"
)

// result turns the run's records into a report.
func (r *run) result(seed uint64) *report.Result {
	sc := r.sc
	r.mu.Lock()
	defer r.mu.Unlock()
	w, end := sc.Warmup.D(), r.end
	settle, deadline := sc.Topic.Settle.D(), sc.Topic.Deadline.D()

	// Copy the online intervals; an open one ends at the end of the run.
	online := make([][]interval, len(r.nodes))
	for i, ln := range r.nodes {
		ln.mu.Lock()
		for _, iv := range ln.online {
			if iv.to < 0 {
				iv.to = end + deadline
			}
			online[i] = append(online[i], iv)
		}
		ln.mu.Unlock()
	}
	covers := func(i int, from, to time.Duration) bool {
		for _, iv := range online[i] {
			if iv.from <= from && iv.to >= to {
				return true
			}
		}
		return false
	}

	// Availability over the measured window.
	upTime := 0.0
	for i := range online {
		for _, iv := range online[i] {
			a, b := max(iv.from, w), min(iv.to, end)
			if b > a {
				upTime += (b - a).Seconds()
			}
		}
	}
	avail := upTime / (float64(len(r.nodes)) * (end - w).Seconds())

	// Deliveries, bucketed by sample interval for the time series.
	step := sc.SampleEvery.D()
	buckets := int(end/step) + 1
	type agg struct {
		expected, delivered int
		lat                 []float64
		lookups, lookupsOK  int
		hops                []float64
	}
	bk := make([]agg, buckets)
	var lat []float64
	expected, delivered, strictExp, strictDel, msgs, direct := 0, 0, 0, 0, 0, 0
	seqs := make([]uint64, 0, len(r.pubs))
	for s := range r.pubs {
		seqs = append(seqs, s)
	}
	sort.Slice(seqs, func(a, b int) bool { return seqs[a] < seqs[b] })
	for _, s := range seqs {
		p := r.pubs[s]
		if p.at < w || p.at > end {
			continue
		}
		msgs++
		b := &bk[min(int(p.at/step), buckets-1)]
		for i := range r.nodes {
			if i == p.publisher {
				continue
			}
			d, got := p.received[i]
			ok := got && d <= deadline
			if covers(i, p.at, p.at) {
				strictExp++
				if ok {
					strictDel++
				}
			}
			if !covers(i, p.at-settle, p.at+deadline) {
				continue
			}
			expected++
			b.expected++
			if ok {
				if p.direct[i] {
					direct++
				}
				delivered++
				b.delivered++
				ms := float64(d) / float64(time.Millisecond)
				lat = append(lat, ms)
				b.lat = append(b.lat, ms)
			}
		}
	}
	lookups, lookupsOK := 0, 0
	var hops []float64
	for _, l := range r.lookups {
		if l.at < w || l.at > end {
			continue
		}
		lookups++
		b := &bk[min(int(l.at/step), buckets-1)]
		b.lookups++
		if l.ok {
			lookupsOK++
			b.lookupsOK++
			hops = append(hops, float64(l.hops))
			b.hops = append(b.hops, float64(l.hops))
		}
	}

	ratio := func(a, b int) float64 {
		if b == 0 {
			return math.NaN()
		}
		return float64(a) / float64(b)
	}
	mean := func(xs []float64) float64 {
		m, _ := report.MeanStd(xs)
		return m
	}
	cols := []string{"t_s", "online", "servers_online", "delivery_ratio", "latency_p50_ms", "latency_p99_ms",
		"lookup_success", "lookup_hops_mean", "conns_per_node", "routing_table_per_node"}
	var st *storageFigures
	if len(r.objects) > 0 {
		st = r.storageFigures(online)
		cols = append(cols, "objects_read_share", "objects_available_share", "repair_bytes_per_node_per_day")
	}
	series := report.NewSeries(cols...)
	var conns, srvConns, volConns []float64
	var prevRepair repairCounters
	var prevAt time.Duration
	for _, s := range r.samples {
		b := bk[min(int((s.at-1)/step), buckets-1)] // the interval that just ended
		row := []float64{s.at.Seconds(), float64(s.online), float64(s.servers),
			ratio(b.delivered, b.expected), report.Quantile(b.lat, 0.5), report.Quantile(b.lat, 0.99),
			ratio(b.lookupsOK, b.lookups), mean(b.hops), s.conns, s.rtSize}
		if st != nil {
			// The reads launched at this sample, and the repair traffic of
			// the interval that just ended.
			g := st.bySample[int(s.at/step)]
			days := (s.at - prevAt).Hours() / 24
			row = append(row, ratio(g.ok, g.n), ratio(g.available, g.n),
				(s.repair.bytes-prevRepair.bytes)/float64(sc.Nodes)/days)
			prevRepair, prevAt = s.repair, s.at
		}
		series.Add(row...)
		if s.at > w {
			conns = append(conns, s.conns)
			srvConns = append(srvConns, s.serverConns)
			volConns = append(volConns, s.volunteerConns)
		}
	}

	sum := report.Summary{
		Mode:             "live",
		Scenario:         sc.Name,
		Seed:             seed,
		Runs:             1,
		Nodes:            sc.Nodes,
		AvailabilityMean: report.F(avail),
		DeliveryRatio:    report.F(ratio(delivered, expected)),
		LatencyP50MS:     report.F(report.Quantile(lat, 0.5)),
		LatencyP99MS:     report.F(report.Quantile(lat, 0.99)),
		LookupSuccess:    report.F(ratio(lookupsOK, lookups)),
		Details: map[string]float64{
			"messages":                         float64(msgs),
			"deliveries_expected":              float64(expected),
			"delivery_ratio_online_at_publish": ratio(strictDel, strictExp),
			"publish_errors":                   float64(r.pubErrs),
			"lookups":                          float64(lookups),
			"lookup_errors":                    float64(r.lookupErr),
			"lookup_hops_mean":                 mean(hops),
			"lookup_hops_p99":                  report.Quantile(hops, 0.99),
			"conns_per_node":                   mean(conns),
			"conns_per_server":                 mean(srvConns),
			"conns_per_volunteer":              mean(volConns),
			"delivery_direct_share":            ratio(direct, delivered),
			"node_start_errors":                float64(r.startErrs),
		},
	}
	charts := Charts(st != nil)
	if st != nil {
		st.summarize(&sum, sc.Nodes, (end-w).Hours()/24)
	} else {
		sum.Notes = append(sum.Notes, "no objects in this scenario: storage figures are null")
	}
	return &report.Result{
		Title:       fmt.Sprintf("%s (live, seed %d)", sc.Name, seed),
		Description: sc.Description,
		Summary:     sum,
		Series:      series,
		XLabel:      XLabel(sc),
		Latencies:   lat,
		Charts:      charts,
	}
}
