package model

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/immense-p2p/immense/internal/connlimit"
	"github.com/immense-p2p/immense/sim/report"
	"github.com/immense-p2p/immense/sim/scenario"
)

// RunCelebrity runs a celebrity-post scenario (issue 15): one post
// published on a peer spreads over the gossipsub mesh of the scenario's
// peers (the fan-out model of fanout.go, each peer with its own uplink),
// and every peer feeds its followers, once directly and, when relays are
// enabled, once through browser relay trees. Both runs see the same peers,
// the same gossip and the same followers.
//
// Peers and relay trees are explicit; followers are not events: each peer
// draws its followers' links in turn, computes their arrival times in
// closed form (copy k leaves the peer after k copy times, and arrives a
// stack latency and the link latencies later) and adds them to an arrival
// histogram of 1 ms buckets, keeping nothing per follower. docs/simulation.md
// ("A celebrity post") lists the approximations.
func RunCelebrity(ctx context.Context, sc *scenario.Scenario, opt Options) (*report.Result, error) {
	c := sc.Celebrity
	if c == nil {
		return nil, fmt.Errorf("scenario %s has no celebrity section", sc.Name)
	}
	cr := newCelebrityRun(sc)
	cr.gossip()
	if err := cr.feedAll(ctx, opt.Progress); err != nil {
		return nil, err
	}
	return cr.result(), nil
}

// celebrityBucketMS is the arrival histogram's resolution.
const celebrityBucketMS = 1.0

// cpeer is one peer of a celebrity run.
type cpeer struct {
	class     int
	region    int
	uplink    float64 // bit/s
	access    time.Duration
	followers int
	at        time.Duration // when it has the post; -1 never
}

type celebrityRun struct {
	sc   *scenario.Scenario
	c    *scenario.Celebrity
	rng  *rand.Rand
	bits float64
	ws   stack
	dc   stack

	peers     []cpeer
	publisher int

	with, without *report.ArrivalHistogram
	// Totals over peers.
	copiesWith, copiesWithout       int64
	maxCopiesWith, maxCopiesWithout int
	relays, viaRelay, reattached    int64
	left, capable                   int64
	maxDepth, peersWithRelays       int
	overBudget, overMemory          int
	cpuWith, cpuWithout             float64 // peer CPU-seconds
}

func stackOf(t scenario.Transport) stack {
	return stack{cpu: t.CPUPerDelivery.D(), p50: t.LatencyP50.D(),
		sigma: scenario.Sigma(float64(t.LatencyP50), float64(t.LatencyP99))}
}

// lognormal returns median * e^(sigma N).
func lognormal(r *rand.Rand, median, sigma float64) float64 {
	return median * math.Exp(sigma*r.NormFloat64())
}

func newCelebrityRun(sc *scenario.Scenario) *celebrityRun {
	c := sc.Celebrity
	cr := &celebrityRun{sc: sc, c: c, rng: rand.New(rand.NewPCG(sc.Seed, 0x63656c)), // "cel"
		bits: float64(c.MessageSize+c.Overhead) * 8, ws: stackOf(c.WebSocket), dc: stackOf(c.DataChannel)}
	horizon := float64(c.Horizon.D()) / float64(time.Millisecond)
	cr.with = report.NewArrivalHistogram(celebrityBucketMS, horizon)
	cr.without = report.NewArrivalHistogram(celebrityBucketMS, horizon)

	// Peers: classes in contiguous ranges, the last class takes the
	// rounding; regions drawn by share.
	n := sc.Nodes
	cr.peers = make([]cpeer, n)
	start := make([]int, len(c.Peers)+1)
	for i, pc := range c.Peers {
		start[i+1] = start[i] + int(math.Round(pc.Share*float64(n)))
	}
	start[len(c.Peers)] = n
	for ci, pc := range c.Peers {
		for i := start[ci]; i < min(start[ci+1], n); i++ {
			cr.peers[i] = cpeer{class: ci, region: cr.pickRegion(),
				uplink: lognormal(cr.rng, pc.Uplink.MedianMbps, pc.Uplink.Sigma) * 1e6,
				access: time.Duration(pc.AccessMS * float64(time.Millisecond)), at: -1}
		}
	}
	// Followers: a class by its share of the weight, then a peer of the
	// class uniformly (a multinomial over peers).
	cum := make([]float64, len(c.Peers))
	total := 0.0
	for ci, pc := range c.Peers {
		total += float64(start[ci+1]-start[ci]) * pc.FollowerWeight
		cum[ci] = total
	}
	for range c.Followers {
		u := cr.rng.Float64() * total
		ci := sort.SearchFloat64s(cum, u)
		ci = min(ci, len(cum)-1)
		for start[ci+1] == start[ci] {
			ci = (ci + 1) % len(cum)
		}
		cr.peers[start[ci]+cr.rng.IntN(start[ci+1]-start[ci])].followers++
	}
	// The publisher: a random peer of the publisher's class.
	for ci, pc := range c.Peers {
		if pc.Name == c.Publisher && start[ci+1] > start[ci] {
			cr.publisher = start[ci] + cr.rng.IntN(start[ci+1]-start[ci])
		}
	}
	return cr
}

func (cr *celebrityRun) pickRegion() int {
	u := cr.rng.Float64()
	regs := cr.sc.Network.Regions
	for i, r := range regs {
		if u < r.Share {
			return i
		}
		u -= r.Share
	}
	return len(regs) - 1
}

// gossip spreads the post over the peers' gossipsub mesh with the fan-out
// model: one-way latency between two peers is their regions' plus both
// access links, each peer sends on its own uplink, the publisher floods to
// as many peers as its node preset's high-water mark (a peer with a public
// address runs the server preset).
func (cr *celebrityRun) gossip() {
	g := cr.sc.GossipSub
	lat := cr.sc.Network
	ms := make([]member, len(cr.peers))
	for i, p := range cr.peers {
		ms[i] = member{region: i, alive: true, tx: transmit(cr.bits, p.uplink)}
	}
	f := &fanout{D: g.D, Dlazy: g.Dlazy, HistoryGossip: g.HistoryGossip,
		Heartbeat: g.Heartbeat.D(), PerHopCost: g.PerHopCost.D(),
		Tx: transmit(cr.bits, lat.BandwidthMbps*1e6),
		Latency: func(a, b int) time.Duration {
			pa, pb := &cr.peers[a], &cr.peers[b]
			return lat.Latency(pa.region, pb.region) + pa.access + pb.access
		}}
	conns := connlimit.VolunteerHighWater
	if cr.c.Peers[cr.peers[cr.publisher].class].Transport == "websocket" {
		conns = connlimit.ServerHighWater
	}
	res := f.publish(cr.rng, ms, cr.publisher, conns)
	for i, d := range res {
		cr.peers[i].at = d.at
	}
	cr.peers[cr.publisher].at = 0
}

// budget returns how many followers a peer of class pc, sending a copy
// every perCopy, feeds itself: its class's direct budget, capped by the
// memory it gives to sessions and by what it sends within the budget
// window.
func (cr *celebrityRun) budget(pc *scenario.PeerClass, perCopy time.Duration) int {
	b := pc.DirectBudget
	if pc.MemoryMiB > 0 {
		b = min(b, int(pc.MemoryMiB*1024/cr.transport(pc).MemoryPerSubscriberKiB))
	}
	if w := cr.c.Relays.BudgetWindow.D(); w > 0 && perCopy > 0 {
		b = min(b, int(w/perCopy))
	}
	return max(1, b)
}

func (cr *celebrityRun) transport(pc *scenario.PeerClass) scenario.Transport {
	if pc.Transport == "websocket" {
		return cr.c.WebSocket
	}
	return cr.c.DataChannel
}

// feedAll feeds every peer's followers, with and without relays.
func (cr *celebrityRun) feedAll(ctx context.Context, progress func(float64, string)) error {
	c := cr.c
	rel := c.Relays
	var bs []follower
	var arr []time.Duration
	var order []int
	cumB := make([]float64, len(c.Browsers))
	t := 0.0
	for i, b := range c.Browsers {
		t += b.Share
		cumB[i] = t
	}
	for i := range cr.peers {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if progress != nil {
				progress(float64(i)/float64(len(cr.peers)), fmt.Sprintf("peer %d of %d", i, len(cr.peers)))
			}
		}
		p := &cr.peers[i]
		pc := &c.Peers[p.class]
		n := p.followers
		if p.at < 0 {
			for range n {
				cr.without.Miss()
				cr.with.Miss()
			}
			continue
		}
		// Each peer draws its followers from a stream of its own, so that
		// a peer's followers do not depend on the others'.
		r := rand.New(rand.NewPCG(cr.sc.Seed, uint64(i)<<8|0x66))
		bs = bs[:0]
		for range n {
			bc := &c.Browsers[min(sort.SearchFloat64s(cumB, r.Float64()*t), len(cumB)-1)]
			b := follower{
				access:   time.Duration(lognormal(r, bc.AccessMS.Median, bc.AccessMS.Sigma) * float64(time.Millisecond)),
				up:       lognormal(r, bc.Uplink.MedianMbps, bc.Uplink.Sigma) * 1e6,
				down:     lognormal(r, bc.Downlink.MedianMbps, bc.Downlink.Sigma) * 1e6,
				z:        r.NormFloat64(),
				leave:    -1,
				reattach: time.Duration(r.Float64() * float64(rel.ReattachWithin.D())),
			}
			optIn, settled, leaves, at := r.Float64() < rel.OptIn, r.Float64() < rel.Settled, r.Float64() < rel.LeaveShare, r.Float64()
			b.capable = optIn && settled && !bc.Metered && b.up >= rel.MinUplinkMbps*1e6
			if leaves {
				b.leave = time.Duration(at * float64(rel.LeaveWithin.D()))
			}
			if b.capable {
				cr.capable++
			}
			bs = append(bs, b)
		}
		if cap(arr) < n {
			arr = make([]time.Duration, n)
			order = make([]int, 0, n)
		}
		arr = arr[:n]
		tr := stackOf(cr.transport(pc))
		f := &peerFeed{at: p.at, tr: tr, bits: cr.bits,
			perCopy: max(time.Duration(float64(tr.cpu)/pc.Cores), transmit(cr.bits, p.uplink)),
			hop:     p.access + cr.sc.Network.Latency(p.region, p.region)}
		feedDirect(f, bs, arr)
		for _, a := range arr {
			cr.without.Add(ms(a))
		}
		cr.copiesWithout += int64(n)
		cr.maxCopiesWithout = max(cr.maxCopiesWithout, n)
		cr.cpuWithout += float64(n) * tr.cpu.Seconds()
		tk := cr.transport(pc)
		if pc.MemoryMiB > 0 && float64(n)*tk.MemoryPerSubscriberKiB > pc.MemoryMiB*1024 {
			cr.overMemory++
		}
		if !rel.Enabled {
			continue
		}
		rc := &relayConf{budget: cr.budget(pc, f.perCopy), fanOut: rel.FanOut, depth: rel.Depth, verify: rel.Verify.D(),
			dc: cr.dc, cpuFactor: rel.CPUFactor, hop: cr.sc.Network.Latency(p.region, p.region)}
		st := feedRelays(f, rc, bs, arr, order)
		for _, a := range arr {
			if a >= 0 {
				cr.with.Add(ms(a))
			}
		}
		cr.copiesWith += int64(st.peerCopies)
		cr.maxCopiesWith = max(cr.maxCopiesWith, st.peerCopies)
		cr.cpuWith += float64(st.peerCopies) * tr.cpu.Seconds()
		cr.relays += int64(st.relays)
		cr.viaRelay += int64(st.viaRelay)
		cr.reattached += int64(st.reattached)
		cr.left += int64(st.left)
		cr.maxDepth = max(cr.maxDepth, st.maxDepth)
		if st.relays > 0 {
			cr.peersWithRelays++
		}
		if st.peerCopies-st.reattached > rc.budget {
			cr.overBudget++
		}
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (cr *celebrityRun) result() *report.Result {
	c := cr.c
	sum := report.Summary{Mode: string(scenario.Model), Scenario: cr.sc.Name, Seed: cr.sc.Seed, Runs: 1, Nodes: len(cr.peers)}
	cel := &report.Celebrity{Followers: c.Followers, Peers: len(cr.peers), RelaysEnabled: c.Relays.Enabled,
		WithoutRelays: cr.without.Arrival()}
	cel.Arrival = cel.WithoutRelays
	if c.Relays.Enabled {
		cel.Arrival = cr.with.Arrival()
	}
	sum.Celebrity = cel

	var reached []float64
	var followers []float64
	for _, p := range cr.peers {
		if p.at >= 0 {
			reached = append(reached, ms(p.at))
		}
		followers = append(followers, float64(p.followers))
	}
	fl := float64(c.Followers)
	d := map[string]float64{
		"peers_reached_share":                float64(len(reached)) / float64(len(cr.peers)),
		"peer_has_post_p50_ms":               report.Quantile(reached, 0.5),
		"peer_has_post_p99_ms":               report.Quantile(reached, 0.99),
		"peer_has_post_max_ms":               report.Quantile(reached, 1),
		"followers_per_peer_p50":             report.Quantile(followers, 0.5),
		"followers_per_peer_max":             report.Quantile(followers, 1),
		"followers_past_horizon_without":     float64(cr.without.Late),
		"peer_copies_without_relays":         float64(cr.copiesWithout),
		"peer_copies_max_per_peer_without":   float64(cr.maxCopiesWithout),
		"peer_cpu_seconds_without_relays":    cr.cpuWithout,
		"peer_upload_bytes_without_relays":   float64(cr.copiesWithout) * cr.bits / 8,
		"peers_over_memory_without_relays":   float64(cr.overMemory),
		"followers_capable_share":            float64(cr.capable) / fl,
		"without_relays_share_within_2s":     cr.without.Share(2000),
		"without_relays_share_within_5s":     cr.without.Share(5000),
		"publisher_peer_class_index":         float64(cr.peers[cr.publisher].class),
		"message_bytes_per_copy":             cr.bits / 8,
		"relay_fan_out":                      float64(c.Relays.FanOut),
		"relay_depth_bound":                  float64(c.Relays.Depth),
		"relay_reattach_bound_ms":            ms(c.Relays.ReattachWithin.D()),
		"relay_leave_share":                  c.Relays.LeaveShare,
		"data_channel_cpu_per_delivery_us":   float64(cr.dc.cpu) / float64(time.Microsecond),
		"websocket_cpu_per_delivery_us":      float64(cr.ws.cpu) / float64(time.Microsecond),
		"followers_unreached_without_relays": float64(cr.without.Missed),
	}
	if c.Relays.Enabled {
		for k, v := range map[string]float64{
			"relays":                         float64(cr.relays),
			"relays_share_of_followers":      float64(cr.relays) / fl,
			"followers_via_relay_share":      float64(cr.viaRelay) / fl,
			"relay_tree_depth_max":           float64(cr.maxDepth),
			"peers_with_relays":              float64(cr.peersWithRelays),
			"peers_over_budget":              float64(cr.overBudget),
			"relays_left_before_post":        float64(cr.left),
			"followers_reattached":           float64(cr.reattached),
			"peer_copies_with_relays":        float64(cr.copiesWith),
			"peer_copies_max_per_peer_with":  float64(cr.maxCopiesWith),
			"peer_cpu_seconds_with_relays":   cr.cpuWith,
			"peer_upload_bytes_with_relays":  float64(cr.copiesWith) * cr.bits / 8,
			"peer_upload_ratio_with_without": float64(cr.copiesWith) / float64(cr.copiesWithout),
			"with_relays_share_within_2s":    cr.with.Share(2000),
			"with_relays_share_within_5s":    cr.with.Share(5000),
			"with_relays_followers_counted":  float64(cr.with.Total),
			"followers_past_horizon_with":    float64(cr.with.Late),
		} {
			d[k] = v
		}
	}
	sum.Details = d

	names := []string{"without_relays"}
	hs := []*report.ArrivalHistogram{cr.without}
	if c.Relays.Enabled {
		names = []string{"with_relays", "without_relays"}
		hs = []*report.ArrivalHistogram{cr.with, cr.without}
	}
	// Log-spaced sample times (2% apart) from 10 ms to past the latest
	// arrival, for a CDF on a log axis.
	end := max(cr.with.MaxMS, cr.without.MaxMS)
	var ts []float64
	for t := 10 * celebrityBucketMS; ; t *= 1.02 {
		ts = append(ts, math.Round(t))
		if t > end {
			break
		}
	}
	ts = slices.Compact(ts)
	var desc strings.Builder
	fmt.Fprintf(&desc, "%s\n\nOne post published on peer %d (class %s) to %d followers over %d peers.",
		strings.TrimSpace(cr.sc.Description), cr.publisher, c.Peers[cr.peers[cr.publisher].class].Name, c.Followers, len(cr.peers))
	return &report.Result{
		Title:       fmt.Sprintf("%s (celebrity post, model)", cr.sc.Name),
		Description: desc.String(),
		Summary:     sum,
		Series:      report.CDFSeries(ts, names, hs),
		XLabel:      "ms since publication",
		Charts: []report.Chart{{File: "arrival_cdf.png", Title: "share of followers who have the post",
			YLabel: "share of followers", Lines: names, LogX: true, NoMarkers: true, YMin: 0, YMax: 1}},
	}
}
