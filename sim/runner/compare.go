package runner

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/immense-p2p/immense/sim/model"
	"github.com/immense-p2p/immense/sim/report"
	"github.com/immense-p2p/immense/sim/scenario"
)

// CompareWithModel runs the model on the live scenario sc and returns a
// report section putting the two side by side: the model's predictions
// with the scenario's per-hop cost, and with a per-hop cost fitted by
// bisection until the model's median latency matches the live median.
// The model's figures go into live's details as model_*.
func CompareWithModel(ctx context.Context, sc *scenario.Scenario, live *report.Summary) (report.Section, error) {
	msc := *sc
	msc.Mode = scenario.Model
	msc.Events = append([]scenario.Event(nil), sc.Events...)
	runWith := func(cost time.Duration) (*report.Summary, error) {
		s := msc
		s.GossipSub.PerHopCost = scenario.Duration(cost)
		res, err := model.Run(ctx, &s, model.Options{})
		if err != nil {
			return nil, err
		}
		return &res.Summary, nil
	}
	base, err := runWith(sc.GossipSub.PerHopCost.D())
	if err != nil {
		return report.Section{}, err
	}
	cost, fitted := sc.GossipSub.PerHopCost.D(), base
	if live.LatencyP50MS != nil && base.LatencyP50MS != nil {
		target := *live.LatencyP50MS
		lo, hi := time.Duration(0), 200*time.Millisecond
		for range 24 {
			mid := (lo + hi) / 2
			s, err := runWith(mid)
			if err != nil {
				return report.Section{}, err
			}
			if s.LatencyP50MS != nil && *s.LatencyP50MS < target {
				lo = mid
			} else {
				hi = mid
			}
		}
		cost = (lo + hi) / 2
		if fitted, err = runWith(cost); err != nil {
			return report.Section{}, err
		}
	}
	var b strings.Builder
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	fmt.Fprintf(&b, "The model run on this scenario: the same nodes going up and down at the same times, the same latencies, "+
		"gossipsub parameters and objects. The *model* column is its prediction, with the scenario's per-hop cost "+
		"(%.2f ms). The last column fits the per-hop cost so that the model's median latency matches the live median: "+
		"**per_hop_cost = %.2f ms**. Live runs in virtual time, where a node's own work (signature checks, queues) "+
		"takes no time, so what this fit absorbs is whatever the model gets wrong about the paths, not CPU.\n\n",
		ms(sc.GossipSub.PerHopCost.D()), ms(cost))
	if l, okL := live.Get("latency_p50_ms"); okL {
		if m, okM := base.Get("latency_p50_ms"); okM && l > 0 {
			fmt.Fprintf(&b, "Model median latency / live median latency: **%.2f**", m/l)
			if l99, ok := live.Get("latency_p99_ms"); ok && l99 > 0 {
				if m99, ok := base.Get("latency_p99_ms"); ok {
					fmt.Fprintf(&b, " (p99: %.2f)", m99/l99)
				}
			}
			b.WriteString(".\n\n")
		}
	}
	b.WriteString("| figure | live | model | model (fitted per_hop_cost) |\n|---|---|---|---|\n")
	row := func(name string, l, m, m0 float64, okL, okM, okM0 bool) {
		f := func(v float64, ok bool) string {
			if !ok || math.IsNaN(v) {
				return "—"
			}
			return report.FormatValue(v)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", name, f(l, okL), f(m0, okM0), f(m, okM))
	}
	for _, k := range []string{"availability_mean", "delivery_ratio", "latency_p50_ms", "latency_p99_ms", "delivery_direct_share",
		"lookup_success", "lookup_hops_mean", "objects", "objects_lost", "retrievability", "object_available_share",
		"repair_upload_bytes_per_node_per_day", "parity_per_object_mean"} {
		l, okL := live.Get(k)
		m, okM := fitted.Get(k)
		m0, okM0 := base.Get(k)
		row(k, l, m, m0, okL, okM, okM0)
	}
	if live.Details == nil {
		live.Details = map[string]float64{}
	}
	live.Details["model_fitted_per_hop_cost_ms"] = ms(cost)
	for _, k := range []string{"latency_p50_ms", "latency_p99_ms", "lookup_hops_mean", "delivery_direct_share"} {
		if v, ok := base.Get(k); ok {
			live.Details["model_"+k] = v
		}
	}
	return report.Section{Title: "Model at the same scale", Body: b.String()}, nil
}
