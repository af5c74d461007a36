package runner

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"time"

	"github.com/immense-p2p/immense/sim/model"
	"github.com/immense-p2p/immense/sim/report"
	"github.com/immense-p2p/immense/sim/scenario"
)

// Sweep runs base in model mode at every node count (counts, or the
// scenario's sweep.nodes when counts is empty), writes each run's report
// into <out>/n-<N>/ and the scaling report, with figures plotted against
// log N, into out.
func Sweep(ctx context.Context, base *scenario.Scenario, counts []int, opt Options) (*report.Result, error) {
	if len(counts) == 0 {
		counts = base.Sweep.Nodes
	}
	if len(counts) == 0 {
		return nil, errors.New("no node counts: give --nodes or sweep.nodes in the scenario")
	}
	start := time.Now()
	cols := []string{"nodes", "latency_p50_ms", "latency_p99_ms", "delivery_ratio", "lookup_hops_mean", "lookup_hops_p99",
		"lookup_success", "repair_bytes_per_node_per_day", "repair_bytes_per_server_per_day", "objects", "objects_lost",
		"retrievability", "availability_mean", "wall_s"}
	series := report.NewSeries(cols...)
	var rows strings.Builder
	rows.WriteString("| N | servers | objects | p50 ms | p99 ms | delivery | hops (mean) | lookups ok | repair B/node/day | lost | wall |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, n := range counts {
		sc := *base
		sc.Mode = scenario.Model
		sc.Nodes = n
		sc.Servers.Count = max(base.Servers.Count, int(math.Round(float64(n)*base.Sweep.ServersPerNode)))
		if base.Sweep.ObjectsPerNode > 0 {
			sc.Storage.Objects = int(math.Round(float64(n) * base.Sweep.ObjectsPerNode))
		}
		sc.Name = fmt.Sprintf("%s-n%d", base.Name, n)
		if err := sc.Prepare(); err != nil {
			return nil, fmt.Errorf("sweep N=%d: %w", n, err)
		}
		t0 := time.Now()
		opt.Logger.Info("sweep", "nodes", n, "servers", sc.Servers.Count, "objects", sc.Storage.Objects)
		b := bar(opt, fmt.Sprintf("N=%d", n))
		res, err := model.Run(ctx, &sc, model.Options{Progress: b.Set})
		b.Done("")
		if err != nil {
			return nil, fmt.Errorf("sweep N=%d: %w", n, err)
		}
		wall := time.Since(t0)
		res.Sections = append(res.Sections, report.Section{Title: "Run", Body: fmt.Sprintf("Part of the sweep of `%s`. Wall-clock time: %v.", base.Path, wall.Round(time.Second))})
		if err := report.Write(filepath.Join(opt.Out, fmt.Sprintf("n-%d", n)), res); err != nil {
			return nil, err
		}
		s := &res.Summary
		row := []float64{float64(n)}
		for _, c := range cols[1 : len(cols)-1] {
			v, ok := s.Get(c)
			if !ok {
				v = math.NaN()
			}
			row = append(row, v)
		}
		row = append(row, wall.Seconds())
		series.Add(row...)
		f := func(k string) string {
			if v, ok := s.Get(k); ok {
				return report.FormatValue(v)
			}
			return "—"
		}
		fmt.Fprintf(&rows, "| [%d](n-%d/report.md) | %d | %d | %s | %s | %s | %s | %s | %s | %s | %v |\n", n, n, sc.Servers.Count, sc.Storage.Objects,
			f("latency_p50_ms"), f("latency_p99_ms"), f("delivery_ratio"), f("lookup_hops_mean"), f("lookup_success"),
			f("repair_bytes_per_node_per_day"), f("objects_lost"), wall.Round(time.Second))
	}
	res := &report.Result{
		Title: fmt.Sprintf("Scaling sweep: %s", base.Name),
		Description: base.Description + fmt.Sprintf("\n\nThe model at %d network sizes, with %.3g objects and %.3g servers per node "+
			"(at least %d servers), everything else as in `%s`. Figures are per run; each size's full report is linked.",
			len(counts), base.Sweep.ObjectsPerNode, base.Sweep.ServersPerNode, base.Servers.Count, base.Path),
		Summary: report.Summary{Mode: "model-sweep", Scenario: base.Name, Seed: base.Seed, Runs: 1, Nodes: counts[len(counts)-1]},
		Series:  series,
		XLabel:  SweepXLabel,
		Charts:  SweepCharts(),
		Sections: []report.Section{
			{Title: "Sizes", Body: rows.String()},
			{Title: "Run", Body: fmt.Sprintf("Total wall-clock time: %v (2-core development VM, shared).", time.Since(start).Round(time.Second))},
		},
	}
	res.Summary.Notes = []string{"this summary describes the sweep; each size's summary.json is in n-<N>/"}
	if err := report.Write(opt.Out, res); err != nil {
		return nil, err
	}
	return res, nil
}

// SweepCharts are the sweep's plots against N; `sim replot` draws them
// again from a committed CSV.
func SweepCharts() []report.Chart {
	return []report.Chart{
		{File: "latency_vs_n.png", Title: "publish → deliver latency vs N", YLabel: "ms", Lines: []string{"latency_p50_ms", "latency_p99_ms"}, LogX: true},
		{File: "hops_vs_n.png", Title: "DHT lookup hops vs N", YLabel: "hops", Lines: []string{"lookup_hops_mean", "lookup_hops_p99"}, LogX: true},
		{File: "repair_vs_n.png", Title: "repair traffic per node per day vs N", YLabel: "bytes", Lines: []string{"repair_bytes_per_node_per_day"}, LogX: true},
	}
}

// SweepXLabel is the x axis of the sweep's plots.
const SweepXLabel = "nodes (log scale)"
