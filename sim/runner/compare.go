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
// report section putting the two side by side. The model's per-hop cost is
// calibrated on the live run: bisection until the model's median latency
// matches the live median; the p99, the delivery ratio and the lookup
// figures are then predictions to compare.
func CompareWithModel(ctx context.Context, sc *scenario.Scenario, live *report.Summary) (report.Section, error) {
	msc := *sc
	msc.Mode = scenario.Model
	msc.Storage.Objects = 0 // live mode does not store objects yet
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
	fmt.Fprintf(&b, "The model run on this scenario (same nodes, churn, latencies and gossipsub parameters). "+
		"Its per-hop cost is calibrated so that its median latency matches the live median: "+
		"**per_hop_cost = %.2f ms** (put it in model scenarios' `gossipsub.per_hop_cost`). "+
		"Everything else in the model column is a prediction.\n\n", float64(cost)/float64(time.Millisecond))
	b.WriteString("| figure | live | model (calibrated) | model (per_hop_cost " + sc.GossipSub.PerHopCost.String() + ") |\n|---|---|---|---|\n")
	row := func(name string, l, m, m0 float64, okL, okM, okM0 bool) {
		f := func(v float64, ok bool) string {
			if !ok || math.IsNaN(v) {
				return "—"
			}
			return report.FormatValue(v)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", name, f(l, okL), f(m, okM), f(m0, okM0))
	}
	for _, k := range []string{"availability_mean", "delivery_ratio", "latency_p50_ms", "latency_p99_ms", "lookup_success", "lookup_hops_mean"} {
		l, okL := live.Get(k)
		m, okM := fitted.Get(k)
		m0, okM0 := base.Get(k)
		row(k, l, m, m0, okL, okM, okM0)
	}
	if live.Details == nil {
		live.Details = map[string]float64{}
	}
	live.Details["model_per_hop_cost_ms"] = float64(cost) / float64(time.Millisecond)
	if v, ok := fitted.Get("latency_p99_ms"); ok {
		live.Details["model_latency_p99_ms"] = v
	}
	if v, ok := fitted.Get("lookup_hops_mean"); ok {
		live.Details["model_lookup_hops_mean"] = v
	}
	return report.Section{Title: "Model at the same scale", Body: b.String()}, nil
}
