package report

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAggregate(t *testing.T) {
	mk := func(seed uint64, d float64) Summary {
		return Summary{Mode: "live", Seed: seed, Runs: 1, Nodes: 200, DeliveryRatio: F(d), LatencyP50MS: F(10 * d),
			Details: map[string]float64{"lookups": d * 100}}
	}
	a := Aggregate([]Summary{mk(1, 0.99), mk(2, 1), mk(3, 0.98)})
	if a.Runs != 3 || math.Abs(*a.DeliveryRatio-0.99) > 1e-12 || math.Abs(a.StdDev["delivery_ratio"]-0.01) > 1e-12 {
		t.Errorf("aggregate: runs %d mean %v sd %v", a.Runs, *a.DeliveryRatio, a.StdDev["delivery_ratio"])
	}
	if a.ObjectsLost != nil || a.LookupSuccess != nil {
		t.Error("figures no run measured must stay null")
	}
	if len(a.PerRun) != 3 || a.Details["lookups"] != 99 {
		t.Errorf("per run %d, details %v", len(a.PerRun), a.Details)
	}
}

// TestWrite: the report has every required key (null when not measured),
// the CSV, the plots and a report.md that embeds them.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	s := NewSeries("t", "a", "b")
	for i := range 20 {
		s.Add(float64(i), float64(i*i), math.NaN())
	}
	r := &Result{Title: "t", Summary: Summary{Mode: "model", Nodes: 5, DeliveryRatio: F(1), Details: map[string]float64{"x": math.NaN(), "y": 2}},
		Series: s, XLabel: "days", Latencies: []float64{1, 2, 3, 50},
		Charts: []Chart{{File: "a.png", Title: "a", Lines: []string{"a"}}, {File: "b.png", Title: "b", Lines: []string{"b"}}}}
	if err := Write(dir, r); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"nodes", "availability_mean", "objects", "objects_lost", "retrievability", "repair_bytes_per_node_per_day",
		"delivery_ratio", "latency_p50_ms", "latency_p99_ms", "lookup_success"} {
		if _, ok := m[k]; !ok {
			t.Errorf("summary.json lacks %q", k)
		}
	}
	if m["objects"] != nil || m["delivery_ratio"] != 1.0 {
		t.Errorf("objects %v delivery %v", m["objects"], m["delivery_ratio"])
	}
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	for _, want := range []string{"![a](a.png)", "latency_cdf.png", "timeseries.csv", "| delivery_ratio | 1 |"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if strings.Contains(string(md), "b.png") {
		t.Error("a chart with no data was embedded")
	}
	for _, f := range []string{"a.png", "latency_cdf.png", "timeseries.csv"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	csv, _ := os.ReadFile(filepath.Join(dir, "timeseries.csv"))
	if !strings.HasPrefix(string(csv), "t,a,b\n0,0,\n") {
		t.Errorf("csv starts %q", string(csv)[:20])
	}
	// Series survive JSON with their gaps (live runs come back that way).
	var back Series
	js, _ := json.Marshal(s)
	if err := json.Unmarshal(js, &back); err != nil || !math.IsNaN(back.Rows[3][2]) || back.Rows[3][1] != 9 {
		t.Errorf("series JSON round trip: %v %v", err, back.Rows[3])
	}
}

func TestQuantile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	if Quantile(xs, 0.5) != 3 || Quantile(xs, 0.99) != 5 || Quantile(xs, 0) != 1 || !math.IsNaN(Quantile(nil, 0.5)) {
		t.Error("Quantile")
	}
	if xs[0] != 5 {
		t.Error("Quantile modified its input")
	}
}
