package model

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/immense-p2p/immense/internal/connlimit"
	"github.com/immense-p2p/immense/sim/churn"
	"github.com/immense-p2p/immense/sim/event"
	"github.com/immense-p2p/immense/sim/report"
	"github.com/immense-p2p/immense/sim/scenario"
)

// Options tune a model run.
type Options struct {
	// Progress, if set, is called as the run advances.
	Progress func(frac float64, detail string)
}

type evKind uint8

const (
	evWrite evKind = iota
	evRepairTick
	evReadProbe
	evSample
	evPublish
	evLookup
)

type ev struct {
	kind evKind
	obj  int32
}

// readProbeEvery is how often the model checks which objects are readable:
// every hour, or every sample when samples are closer (live scenarios,
// whose reads happen at every sample).
func (r *run) readProbeEvery() time.Duration { return min(time.Hour, r.sc.SampleEvery.D()) }

// run is one model run.
type run struct {
	sc   *scenario.Scenario
	opt  Options
	seed uint64
	pop  *population
	st   *storage
	q    event.Queue[ev]
	now  time.Duration
	end  time.Duration
	rng  *rand.Rand

	// Availability: node-seconds online over the measured window.
	onlineNodeSec float64
	lastT         time.Duration
	transitions   int
	replacements  int

	series  *report.Series
	lastRow time.Duration

	// Topic and lookups.
	lat                         []float64
	expected, delivered, direct int
	lookups, lookupsFound       int
	hops                        []float64
}

// Run runs sc in model mode.
func Run(ctx context.Context, sc *scenario.Scenario, opt Options) (*report.Result, error) {
	r := &run{sc: sc, opt: opt, seed: sc.Seed, end: sc.Warmup.D() + sc.Duration.D()}
	r.rng = rand.New(rand.NewPCG(sc.Seed, 0x6d6f64)) // "mod"
	var err error
	if r.pop, err = newPopulation(sc, sc.Seed); err != nil {
		return nil, err
	}
	if sc.Storage.Objects > 0 {
		if r.st, err = newStorage(sc, r.pop, func() time.Duration { return r.now }, sc.Seed); err != nil {
			return nil, err
		}
		w := sc.Warmup.D()
		for i := range r.st.objects {
			at := w + time.Duration(r.rng.Float64()*float64(sc.Storage.WriteWithin.D()))
			r.q.Push(at, ev{kind: evWrite, obj: int32(i)})
		}
		r.q.Push(sc.Storage.RepairTick.D(), ev{kind: evRepairTick})
		r.q.Push(w+r.readProbeEvery(), ev{kind: evReadProbe})
	}
	r.series = report.NewSeries("t_days", "online_share", "volunteers_online_share", "objects_lost",
		"objects_readable_share", "repair_bytes_per_node_per_day", "repairs")
	r.q.Push(sc.Warmup.D(), ev{kind: evSample})
	w, d := sc.Warmup.D(), sc.Duration.D()
	if sc.Topic.PublishEvery > 0 {
		n := min(sc.Topic.Samples, max(1, int(d/sc.Topic.PublishEvery.D())))
		for i := range n {
			r.q.Push(w+time.Duration((float64(i)+0.5)*float64(d)/float64(n)), ev{kind: evPublish})
		}
	}
	if sc.Lookups.Every > 0 {
		n := min(sc.Lookups.Samples, max(1, int(d/sc.Lookups.Every.D())))
		for i := range n {
			r.q.Push(w+time.Duration((float64(i)+0.5)*float64(d)/float64(n)), ev{kind: evLookup})
		}
	}
	if err := r.loop(ctx); err != nil {
		return nil, err
	}
	return r.result(), nil
}

func (r *run) loop(ctx context.Context) error {
	var buf []churn.Transition
	steps := 0
	for {
		ts, okS := r.pop.sched.Peek()
		tm, okM := r.q.Peek()
		if (!okS || ts > r.end) && (!okM || tm > r.end) {
			break
		}
		steps++
		if steps%65536 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if r.opt.Progress != nil {
				r.opt.Progress(float64(r.now)/float64(r.end), fmt.Sprintf("day %.1f of %.1f", r.now.Hours()/24, r.end.Hours()/24))
			}
		}
		if okS && ts <= r.end && (!okM || ts <= tm) {
			buf = r.pop.sched.Step(buf[:0])
			for _, t := range buf {
				r.advance(t.At)
				if err := r.transition(t); err != nil {
					return err
				}
			}
			continue
		}
		at, e, _ := r.q.Pop()
		r.advance(at)
		r.handle(e)
	}
	r.advance(r.end)
	return nil
}

// advance moves the clock, integrating the number of nodes online.
func (r *run) advance(t time.Duration) {
	if t < r.now {
		return
	}
	w := r.sc.Warmup.D()
	if t > w {
		from := max(r.lastT, w)
		r.onlineNodeSec += float64(r.pop.online.len()) * (t - from).Seconds()
		if r.st != nil {
			r.st.integrate(t - from)
		}
		r.lastT = t
	} else {
		r.lastT = t
	}
	r.now = t
}

func (r *run) transition(t churn.Transition) error {
	if t.At >= r.sc.Warmup.D() {
		r.transitions++
		if t.Kind == churn.Replace {
			r.replacements++
		}
	}
	if err := r.pop.apply(t); err != nil {
		return err
	}
	if r.st != nil && t.Kind != churn.Replace {
		r.st.transition(t.Node, t.Kind == churn.Up)
	}
	if r.st != nil && t.Kind == churn.Replace {
		r.st.replaced(t.Node)
	}
	return nil
}

func (r *run) handle(e ev) {
	switch e.kind {
	case evWrite:
		if !r.st.write(r.st.objects[e.obj]) {
			r.st.writeRetries++
			r.q.Push(r.now+10*time.Minute, e)
		}
	case evRepairTick:
		r.st.tick()
		r.q.Push(r.now+r.sc.Storage.RepairTick.D(), e)
	case evReadProbe:
		r.st.probeReadable()
		r.q.Push(r.now+r.readProbeEvery(), e)
	case evSample:
		r.sample()
		if next := r.now + r.sc.SampleEvery.D(); next <= r.end {
			r.q.Push(next, e)
		}
	case evPublish:
		r.publish()
	case evLookup:
		r.lookup()
	}
}

// sample records a row of the time series.
func (r *run) sample() {
	nan := math.NaN()
	days := (r.now - r.sc.Warmup.D()).Hours() / 24
	vol := 0
	for _, s := range r.pop.online.list {
		if int(s) >= r.pop.servers {
			vol++
		}
	}
	volShare := nan
	if v := r.sc.VolunteerCount(); v > 0 {
		volShare = float64(vol) / float64(v)
	}
	lost, readable, rbytes, repairs := nan, nan, nan, nan
	if r.st != nil {
		lost = 0
		for _, o := range r.st.objects {
			if o.lost {
				lost++
			}
		}
		readable = r.st.lastReadable
		if dt := (r.now - r.lastRow).Hours() / 24; dt > 0 && r.now > r.sc.Warmup.D() {
			rbytes = r.st.intervalBytes / float64(r.sc.Nodes) / dt
		}
		repairs = float64(r.st.intervalRepairs)
		r.st.intervalBytes, r.st.intervalRepairs = 0, 0
	}
	r.series.Add(days, float64(r.pop.online.len())/float64(r.sc.Nodes), volShare, lost, readable, rbytes, repairs)
	r.lastRow = r.now
}

// subscribers returns the members of the topic mesh now: every node online
// and settled, plus those gone within the last heartbeat (still in their
// neighbours' meshes), and the indexes of the settled ones in it.
func (r *run) subscribers() ([]member, []int32) {
	settle, hb := r.sc.Topic.Settle.D(), r.sc.GossipSub.Heartbeat.D()
	var ms []member
	var slots []int32
	for i := range r.sc.Nodes {
		since := r.pop.since[i]
		on := r.pop.isOnline(i)
		switch {
		case on && r.now-since >= settle:
			ms = append(ms, member{region: r.pop.region[i], alive: true})
			slots = append(slots, int32(i))
		case !on && r.now-since < time.Duration(r.rng.Int64N(int64(hb))+1):
			ms = append(ms, member{region: r.pop.region[i], alive: false})
			slots = append(slots, -1)
		}
	}
	return ms, slots
}

func (r *run) fanoutModel() *fanout {
	g := r.sc.GossipSub
	bits := float64(r.sc.Topic.MessageSize+messageOverhead) * 8
	lat := r.sc.Network
	return &fanout{
		D: g.D, Dlazy: g.Dlazy, HistoryGossip: g.HistoryGossip,
		Heartbeat: g.Heartbeat.D(), PerHopCost: g.PerHopCost.D(),
		Tx:      time.Duration(bits / (lat.BandwidthMbps * 1e6) * float64(time.Second)),
		Latency: lat.Latency,
	}
}

// messageOverhead is what a gossipsub message carries besides its payload:
// envelope (9), signature (64), public key and peer id (~80), sequence
// number, topic and protobuf framing, QUIC and UDP headers.
const messageOverhead = 250

func (r *run) publish() {
	ms, slots := r.subscribers()
	var alive []int
	for i, m := range ms {
		if m.alive {
			alive = append(alive, i)
		}
	}
	if len(alive) < 2 {
		return
	}
	src := alive[r.rng.IntN(len(alive))]
	res := r.fanoutModel().publish(r.rng, ms, src, r.publisherConns(int(slots[src])))
	deadline := r.sc.Topic.Deadline.D()
	for i, d := range res {
		if i == src || !ms[i].alive || slots[i] < 0 {
			continue
		}
		r.expected++
		if d.at >= 0 && d.at <= deadline {
			r.delivered++
			if d.direct {
				r.direct++
			}
			r.lat = append(r.lat, float64(d.at)/float64(time.Millisecond))
		}
	}
}

// publisherConns is how many peers the publisher in slot is connected to,
// all of them subscribers (every node subscribes to the topic), which is
// how far its flood publish reaches: the high-water mark of its node
// preset's connection manager (VolunteerConfig: 96; servers run
// DefaultConfig: 400). Live mode measures it: in live-200 volunteers hold
// 98 connections on average, servers one to every online node. The
// manager trims a node back to its low-water mark (48) only once it passes
// the high one, and DHT and gossip traffic fill it up again within seconds.
func (r *run) publisherConns(slot int) int {
	if slot < r.pop.servers {
		return connlimit.ServerHighWater
	}
	return connlimit.VolunteerHighWater
}

func (r *run) lookup() {
	n := r.pop.online.len()
	if n < 2 {
		return
	}
	settle := r.sc.Topic.Settle.D()
	pick := func() int32 {
		for range 100 {
			s := r.pop.online.random(r.rng)
			if r.now-r.pop.since[s] >= settle {
				return s
			}
		}
		return r.pop.online.random(r.rng)
	}
	a, b := pick(), pick()
	if a == b {
		return
	}
	lm := &lookupModel{pop: r.pop, now: r.now, refresh: r.sc.Lookups.Refresh.D(), r: r.rng}
	found, hops := lm.lookup(a, b)
	r.lookups++
	if found {
		r.lookupsFound++
		r.hops = append(r.hops, float64(hops))
	}
}

func (r *run) result() *report.Result {
	sc := r.sc
	days := sc.Duration.D().Hours() / 24
	nan := math.NaN()
	sum := report.Summary{
		Mode:             "model",
		Scenario:         sc.Name,
		Seed:             r.seed,
		Runs:             1,
		Nodes:            sc.Nodes,
		AvailabilityMean: report.F(r.onlineNodeSec / (float64(sc.Nodes) * sc.Duration.D().Seconds())),
		Details: map[string]float64{
			"transitions":    float64(r.transitions),
			"replacements":   float64(r.replacements),
			"simulated_days": days,
		},
	}
	ratio := func(a, b int) float64 {
		if b == 0 {
			return nan
		}
		return float64(a) / float64(b)
	}
	if r.st != nil {
		s := r.st
		lost := s.finalLoss()
		written, met, shards, parity, onServers, totalShards := 0, 0, 0.0, 0.0, 0, 0
		for _, o := range s.objects {
			if !o.written {
				continue
			}
			written++
			if o.targetMet {
				met++
			}
			shards += float64(o.params.Total())
			parity += float64(o.params.ParityShards)
			for _, h := range o.holders {
				totalShards++
				if int(h.slot) < r.pop.servers && s.alive(h) {
					onServers++
				}
			}
		}
		sum.Objects = report.F(float64(written))
		sum.ObjectsLost = report.F(float64(lost))
		if s.readableTotal > 0 {
			sum.Retrievability = report.F(s.readableSamples / s.readableTotal)
			// The same figure under live mode's name: live reads the
			// objects, and reports this share separately.
			d := sum.Details
			d["object_available_share"] = s.readableSamples / s.readableTotal
		}
		sum.RepairBytesPerNodePerDay = report.F(s.repairBytes / float64(sc.Nodes) / days)
		d := sum.Details
		d["repair_bytes_per_server_per_day"] = s.serverRepairBytes / float64(len(s.repairers)) / days
		d["repair_upload_bytes_per_node_per_day"] = s.repairUpload / float64(sc.Nodes) / days
		d["repairs"] = float64(s.repairs)
		d["repairs_blocked"] = float64(s.blocked)
		d["repairs_deferred"] = float64(s.deferred)
		d["shards_regenerated"] = float64(s.regenerated)
		d["checks"] = float64(s.checks)
		d["objects_written"] = float64(written)
		d["put_target_met_share"] = ratio(met, written)
		if written > 0 {
			d["shards_per_object_mean"] = shards / float64(written)
			d["parity_per_object_mean"] = parity / float64(written)
		}
		d["shards_on_servers_share"] = ratio(onServers, totalShards)
		r.storageCost(&sum)
	}
	if sc.Topic.PublishEvery > 0 {
		sum.DeliveryRatio = report.F(ratio(r.delivered, r.expected))
		sum.LatencyP50MS = report.F(report.Quantile(r.lat, 0.5))
		sum.LatencyP99MS = report.F(report.Quantile(r.lat, 0.99))
		sum.Details["deliveries_expected"] = float64(r.expected)
		sum.Details["delivery_direct_share"] = ratio(r.direct, r.delivered)
		sum.Details["per_hop_cost_ms"] = float64(sc.GossipSub.PerHopCost.D()) / float64(time.Millisecond)
	}
	if sc.Lookups.Every > 0 {
		sum.LookupSuccess = report.F(ratio(r.lookupsFound, r.lookups))
		m, _ := report.MeanStd(r.hops)
		sum.Details["lookup_hops_mean"] = m
		sum.Details["lookup_hops_p99"] = report.Quantile(r.hops, 0.99)
		sum.Details["lookups"] = float64(r.lookups)
	}
	if sc.Storage.Objects == 0 {
		sum.Notes = append(sum.Notes, "no objects in this scenario: storage figures are null")
	}
	if sc.Topic.PublishEvery == 0 {
		sum.Notes = append(sum.Notes, "no topic traffic in this scenario: delivery figures are null")
	}
	if sc.Lookups.Every == 0 {
		sum.Notes = append(sum.Notes, "no lookups in this scenario: lookup_success is null")
	}
	return &report.Result{
		Title:       fmt.Sprintf("%s (model, seed %d)", sc.Name, r.seed),
		Description: sc.Description,
		Summary:     sum,
		Series:      r.series,
		XLabel:      XLabel,
		Latencies:   r.lat,
		Charts:      Charts(),
	}
}

// Charts are the plots of a model run's time series; `sim replot` draws
// them again from a committed CSV.
func Charts() []report.Chart {
	return []report.Chart{
		{File: "online.png", Title: "share of nodes online", YLabel: "share", Lines: []string{"online_share", "volunteers_online_share"}, YMin: 0, YMax: 1},
		{File: "objects.png", Title: "objects readable now, objects lost", YLabel: "share / count", Lines: []string{"objects_readable_share", "objects_lost"}},
		{File: "repair.png", Title: "repair traffic per node per day", YLabel: "bytes", Lines: []string{"repair_bytes_per_node_per_day"}},
	}
}

// XLabel is the x axis of a model run's plots.
const XLabel = "days after warm-up"
