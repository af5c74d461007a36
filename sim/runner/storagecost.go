package runner

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"time"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/sim/model"
	"github.com/immense-p2p/immense/sim/report"
	"github.com/immense-p2p/immense/sim/scenario"
	"github.com/libp2p/go-libp2p/core/peer"
	"gonum.org/v1/gonum/stat/distuv"
)

// StorageCostOptions size the storage cost study.
type StorageCostOptions struct {
	// Nodes and Days scale the model runs of the sweep over k (servers and
	// objects in proportion to base). Defaults 10^4 and 60.
	Nodes, Days int
	// Ks are the k of the sweep. Default 4, 8, 12, 16.
	Ks []int
}

// StorageCost writes issue 14's two studies of base's storage policy into
// opt.Out: the expansion erasure's policy chooses against the volunteers'
// mean availability, with the bound curves, in availability/; and a sweep
// of model runs of base over a fixed k, in k-<k>/ with the comparison in
// opt.Out.
func StorageCost(ctx context.Context, base *scenario.Scenario, so StorageCostOptions, opt Options) (*report.Result, error) {
	if so.Nodes == 0 {
		so.Nodes = 10_000
	}
	if so.Days == 0 {
		so.Days = 60
	}
	if len(so.Ks) == 0 {
		so.Ks = []int{4, 8, 12, 16}
	}
	start := time.Now()
	curve := AvailabilityCurve(base, 200)
	if err := report.Write(filepath.Join(opt.Out, "availability"), curve); err != nil {
		return nil, err
	}
	cols := []string{"k", "storage_expansion", "storage_expansion_optimum", "retrievability", "objects_lost",
		"repair_bytes_vs_bound", "repair_total_vs_bound", "volunteer_bytes_share"}
	series := report.NewSeries(cols...)
	var rows strings.Builder
	rows.WriteString("| k | expansion | optimum | retrievability | lost | repair upload / bound | repair total / bound | volunteer bytes |\n|---|---|---|---|---|---|---|---|\n")
	for _, k := range so.Ks {
		sc := *base
		sc.Mode = scenario.Model
		scale := float64(so.Nodes) / float64(base.Nodes)
		sc.Nodes = so.Nodes
		sc.Servers.Count = max(1, int(math.Round(float64(base.Servers.Count)*scale)))
		sc.Storage.AppServers = min(sc.Servers.Count, base.Storage.AppServers)
		sc.Storage.Objects = max(1, int(math.Round(float64(base.Storage.Objects)*scale*5)))
		sc.Duration = scenario.Duration(time.Duration(so.Days) * 24 * time.Hour)
		sc.Events = nil
		sc.Storage.DataShards, sc.Storage.MaxDataShards = k, k
		sc.Name = fmt.Sprintf("%s-k%d", base.Name, k)
		if err := sc.Prepare(); err != nil {
			return nil, fmt.Errorf("k=%d: %w", k, err)
		}
		opt.Logger.Info("storage cost", "k", k, "nodes", sc.Nodes, "objects", sc.Storage.Objects)
		b := bar(opt, fmt.Sprintf("k=%d", k))
		res, err := model.Run(ctx, &sc, model.Options{Progress: b.Set})
		b.Done("")
		if err != nil {
			return nil, fmt.Errorf("k=%d: %w", k, err)
		}
		if err := report.Write(filepath.Join(opt.Out, fmt.Sprintf("k-%d", k)), res); err != nil {
			return nil, err
		}
		row := []float64{float64(k)}
		cells := []string{fmt.Sprintf("[%d](k-%d/report.md)", k, k)}
		for _, c := range cols[1:] {
			v, ok := res.Summary.Get(c)
			if !ok {
				v = math.NaN()
			}
			row = append(row, v)
			cells = append(cells, report.FormatValue(v))
		}
		series.Add(row...)
		rows.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	res := &report.Result{
		Title: fmt.Sprintf("Storage cost: %s", base.Name),
		Description: fmt.Sprintf("The model at %d nodes for %d days (no mass events), servers and objects in proportion "+
			"to `%s` (objects x5, for enough of them at this size), with k fixed at each value; "+
			"the expansion against availability is in [availability/](availability/report.md).", so.Nodes, so.Days, base.Path),
		Summary: report.Summary{Mode: "model-storage-cost", Scenario: base.Name, Seed: base.Seed, Runs: 1, Nodes: so.Nodes},
		Series:  series,
		XLabel:  "k (data shards)",
		Charts:  StorageCostCharts(),
		Sections: []report.Section{
			{Title: "Sweep over k", Body: rows.String()},
			{Title: "Run", Body: fmt.Sprintf("Total wall-clock time: %v (2-core development VM, shared).", time.Since(start).Round(time.Second))},
		},
	}
	res.Summary.Notes = []string{"this summary describes the study; each k's summary.json is in k-<k>/"}
	return res, report.Write(opt.Out, res)
}

// StorageCostCharts are the sweep over k's plots.
func StorageCostCharts() []report.Chart {
	return []report.Chart{
		{File: "expansion_vs_k.png", Title: "storage expansion vs k", YLabel: "stored / object bytes", Lines: []string{"storage_expansion", "storage_expansion_optimum"}},
		{File: "repair_vs_k.png", Title: "repair bytes / Blake-Rodrigues bound vs k", YLabel: "ratio", Lines: []string{"repair_bytes_vs_bound", "repair_total_vs_bound"}},
	}
}

// AvailabilityCurve is the expansion erasure's policy (PlanPut, with
// estimates equal to the true availabilities) chooses for base's objects
// on volunteers alone whose mean availability runs from 0.1 to 0.9, with
// base's spread, as a server offers them (20 closest plus 200 connected,
// drawn among the online ones), against the bounds: the least shards for
// the target if every holder had the mean availability (k = 4 and 16, the
// table of issue 14), its limit 1/a for large k, and the best any 16-of-n
// choice among the same candidates could do (no cap on n). Deterministic.
func AvailabilityCurve(base *scenario.Scenario, objects int) *report.Result {
	st := base.Storage
	pol := erasure.PutPolicy{DataShards: st.DataShards, MaxDataShards: st.MaxDataShards, MinShardSize: int(st.MinShardSize),
		SegmentSize: int(st.SegmentSize), MinParity: st.MinParity, MaxShards: st.MaxShards, Target: st.Target}
	series := report.NewSeries("mean_availability", "policy", "target_met_share", "best_of_candidates_k16",
		"homogeneous_k4", "homogeneous_k16", "limit_1_over_a")
	spread := base.Volunteers.AvailabilitySpread
	for i := 1; i <= 9; i++ {
		a := float64(i) / 10
		r := rand.New(rand.NewPCG(base.Seed, uint64(i)))
		pop := make([]float64, 20_000)
		for j := range pop {
			pop[j] = a
			if spread > 0 {
				pop[j] = distuv.Beta{Alpha: a * spread, Beta: (1 - a) * spread, Src: r}.Rand()
			}
			pop[j] = min(max(pop[j], 0.001), 0.999)
		}
		var exp, best []float64
		met := 0
		for o := range objects {
			var cands []erasure.Candidate
			var avail []float64
			for len(cands) < 220 {
				j := r.IntN(len(pop))
				if r.Float64() >= pop[j] { // only online peers are found
					continue
				}
				cands = append(cands, erasure.Candidate{ID: peer.ID(fmt.Sprintf("v%d", j)), Availability: pop[j], HasQuota: true})
				avail = append(avail, pop[j])
			}
			lo, hi := math.Log(float64(st.SizeMin)), math.Log(float64(st.SizeMax))
			size := int64(math.Exp(lo + r.Float64()*(hi-lo)))
			var seed erasure.PlacementSeed
			seed[0], seed[1], seed[2] = byte(i), byte(o), byte(o>>8)
			plan, err := erasure.PlanPut(seed, cands, pol, size)
			if err != nil {
				continue
			}
			if plan.TargetMet {
				met++
			}
			exp = append(exp, float64(plan.K+plan.M)/float64(plan.K))
			n, _ := erasure.LeastShards(16, avail, st.Target)
			best = append(best, float64(n)/16)
		}
		homo := func(k int) float64 {
			all := make([]float64, 2000)
			for j := range all {
				all[j] = a
			}
			n, _ := erasure.LeastShards(k, all, st.Target)
			return float64(n) / float64(k)
		}
		me, _ := report.MeanStd(exp)
		mb, _ := report.MeanStd(best)
		series.Add(a, me, float64(met)/float64(objects), mb, homo(4), homo(16), 1/a)
	}
	return &report.Result{
		Title: fmt.Sprintf("Storage expansion vs mean availability: %s's policy", base.Name),
		Description: "erasure.PlanPut's expansion (k+m)/k, the mean over objects of the scenario's sizes, each on 220 online " +
			"volunteers drawn from a population whose availability is Beta with the scenario's spread and the mean on the " +
			"x axis (the estimates are the true availabilities). Bounds: the least n/k for 99.99% if every holder had the " +
			"mean availability (k = 4, 16), its large-k limit 1/a, and the best 16-of-n choice among the candidates (n uncapped). " +
			"Where the policy cannot meet the target within MaxShards it stores the most probable plan (target_met_share).",
		Summary: report.Summary{Mode: "policy", Scenario: base.Name, Seed: base.Seed, Runs: 1},
		Series:  series,
		XLabel:  "volunteers' mean availability",
		Charts: []report.Chart{{File: "expansion_vs_availability.png", Title: "storage expansion vs mean availability",
			YLabel: "stored / object bytes", Lines: []string{"policy", "best_of_candidates_k16", "homogeneous_k4", "homogeneous_k16", "limit_1_over_a"},
			YMin: 0, YMax: 20}},
	}
}
