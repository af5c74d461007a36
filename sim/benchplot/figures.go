package benchplot

import (
	"fmt"
	"sort"
	"strings"
)

// Figure is one plot: for each group (a sub-benchmark parameter such as
// N=10 or K=100, in the order met) and each series, the ratios of every
// run.
type Figure struct {
	File   string // e.g. "publishdeliver-ratios.png"
	Title  string
	YLabel string
	Groups []string
	Series []Series
	// LogY when the ratios span more than a factor of ten.
	LogY bool
}

// Series is one line of a figure: Values[g] are the ratios of group g,
// one per run (none when not measured).
type Series struct {
	Name   string
	Values [][]float64
}

// ratioSuffix marks the metrics a benchmark has already divided by its
// in-run baseline (BenchmarkPublishDeliver's "p50-ratio" and so on).
const ratioSuffix = "-ratio"

// ratioTitles name what each family of ratio metrics compares; other
// families get a generic title.
var ratioTitles = map[string]string{
	"PublishDeliver/":        "our topic layer / raw gossipsub, same topology and run",
	"PublishDeliver/auth":    "publish authorization on / off (our layer)",
	"PublishDeliver/history": "history on / off (our layer)",
}

// Figures returns the plots rs supports: one per family of "*-ratio"
// metrics of a benchmark, and for benchmarks named Bench/<mode>/<param>
// whose modes include a baseline mode (baselines), one per metric of
// interest (ratioOf) with each mode divided by the baseline of the same
// run and parameter.
func Figures(rs []Result) []Figure {
	var figs []Figure
	for _, b := range benches(rs) {
		figs = append(figs, ratioMetricFigures(b, rs)...)
		figs = append(figs, modeFigures(b, rs)...)
	}
	return figs
}

func benches(rs []Result) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range rs {
		if !seen[r.Bench()] {
			seen[r.Bench()] = true
			out = append(out, r.Bench())
		}
	}
	return out
}

// ratioMetricFigures plots the metrics a benchmark reported as ratios,
// one figure per prefix ("" for p50-ratio, "auth" for auth-p50-ratio).
func ratioMetricFigures(bench string, rs []Result) []Figure {
	byFamily := map[string]*Figure{}
	var order []string
	var groups []string
	gi := map[string]int{}
	for _, r := range rs {
		if r.Bench() != bench {
			continue
		}
		if _, ok := gi[r.Sub()]; !ok {
			gi[r.Sub()] = len(groups)
			groups = append(groups, r.Sub())
		}
	}
	for _, r := range rs {
		if r.Bench() != bench {
			continue
		}
		for _, unit := range sortedUnits(r.Metrics) {
			stem, ok := strings.CutSuffix(unit, ratioSuffix)
			if !ok {
				continue
			}
			family := ""
			if i := strings.LastIndex(stem, "-"); i >= 0 {
				family = stem[:i]
			}
			f := byFamily[family]
			if f == nil {
				title := ratioTitles[bench+"/"+family]
				if title == "" {
					title = strings.TrimSpace(bench + " " + family + " ratios")
				}
				name := strings.ToLower(bench)
				if family != "" {
					name += "-" + family
				}
				f = &Figure{File: name + "-ratios.png", Title: title, YLabel: "ratio (1 = baseline)", Groups: groups}
				byFamily[family] = f
				order = append(order, family)
			}
			s := f.series(unit, len(groups))
			s.Values[gi[r.Sub()]] = append(s.Values[gi[r.Sub()]], r.Metrics[unit])
		}
	}
	out := make([]Figure, 0, len(order))
	for _, fam := range order {
		f := byFamily[fam]
		f.LogY = spansDecade(f)
		out = append(out, *f)
	}
	return out
}

// baselines are the modes other modes are divided by, first found wins:
// BenchmarkFanout's bare pion.
var baselines = []string{"bare"}

// ratioOf are the metrics plotted for mode benchmarks, with how each is
// described.
var ratioOf = []struct{ unit, file, what string }{
	{"deliv/cpu-s", "deliveries-per-cpu", "deliveries per server CPU-second"},
	{"p99-ms", "p99", "p99 publish → delivery latency"},
	{"KiB/sub", "memory-per-subscriber", "server memory per subscriber"},
}

// modeFigures plots Bench/<mode>/<param> results divided by the baseline
// mode's result of the same run and parameter.
func modeFigures(bench string, rs []Result) []Figure {
	type key struct{ mode, param string }
	runs := map[key][]Result{}
	var modes, params []string
	seenM, seenP := map[string]bool{}, map[string]bool{}
	for _, r := range rs {
		if r.Bench() != bench {
			continue
		}
		mode, param, ok := strings.Cut(r.Sub(), "/")
		if !ok {
			return nil
		}
		runs[key{mode, param}] = append(runs[key{mode, param}], r)
		if !seenM[mode] {
			seenM[mode] = true
			modes = append(modes, mode)
		}
		if !seenP[param] {
			seenP[param] = true
			params = append(params, param)
		}
	}
	base := ""
	for _, b := range baselines {
		if seenM[b] {
			base = b
			break
		}
	}
	if base == "" {
		return nil
	}
	var out []Figure
	for _, m := range ratioOf {
		f := Figure{
			File:   fmt.Sprintf("%s-%s.png", strings.ToLower(bench), m.file),
			Title:  fmt.Sprintf("%s, relative to %s (same run)", m.what, modeNames(base)),
			YLabel: "ratio (1 = " + modeNames(base) + ")",
			Groups: params,
		}
		for _, mode := range modes {
			s := f.series(modeNames(mode), len(params))
			for g, p := range params {
				bs, ms := runs[key{base, p}], runs[key{mode, p}]
				// Runs of -count N pair up in order: run i of the mode
				// with run i of the baseline, both from the same round.
				for i := 0; i < len(bs) && i < len(ms); i++ {
					bv, okb := bs[i].Metrics[m.unit]
					mv, okm := ms[i].Metrics[m.unit]
					if okb && okm && bv > 0 {
						s.Values[g] = append(s.Values[g], mv/bv)
					}
				}
			}
		}
		if f.empty() {
			continue
		}
		f.LogY = spansDecade(&f)
		out = append(out, f)
	}
	return out
}

// modeNames says what BenchmarkFanout's modes are; unknown modes keep
// their name.
func modeNames(mode string) string {
	switch mode {
	case "stack":
		return "data channel (ours)"
	case "bare":
		return "bare pion"
	case "ws":
		return "WebSocket (ours)"
	case "barews":
		return "bare WebSocket"
	}
	return mode
}

func (f *Figure) series(name string, groups int) *Series {
	for i := range f.Series {
		if f.Series[i].Name == name {
			return &f.Series[i]
		}
	}
	f.Series = append(f.Series, Series{Name: name, Values: make([][]float64, groups)})
	return &f.Series[len(f.Series)-1]
}

func (f *Figure) empty() bool {
	for _, s := range f.Series {
		for _, v := range s.Values {
			if len(v) > 0 {
				return false
			}
		}
	}
	return true
}

// spansDecade says whether the ratios of f (with the baseline's 1) span
// more than a factor of ten, where a linear axis hides the small ones.
func spansDecade(f *Figure) bool {
	lo, hi := 1.0, 1.0
	for _, s := range f.Series {
		for _, vs := range s.Values {
			for _, v := range vs {
				if v <= 0 {
					return false
				}
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	return hi/lo > 10
}

func sortedUnits(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
