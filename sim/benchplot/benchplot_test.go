package benchplot

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSample(t *testing.T) {
	f, err := os.Open("testdata/sample.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rs, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string][]Result{}
	for _, r := range rs {
		byName[r.Name] = append(byName[r.Name], r)
	}
	// Two runs of each PublishDeliver size (-count 2); Fanout's stack and
	// bare from their benchmark lines, ws and barews from the table only.
	for name, n := range map[string]int{
		"PublishDeliver/N=10": 2, "PublishDeliver/N=30": 2,
		"Fanout/stack/K=100": 1, "Fanout/bare/K=100": 1, "Fanout/ws/K=100": 1, "Fanout/barews/K=100": 1,
	} {
		if got := len(byName[name]); got != n {
			t.Errorf("%s: %d results, want %d", name, got, n)
		}
	}
	if len(rs) != 8 {
		t.Errorf("%d results, want 8", len(rs))
	}
	if got := byName["Fanout/stack/K=100"][0].Metrics["deliv/cpu-s"]; got != 34620 {
		t.Errorf("stack deliv/cpu-s = %v, want 34620 (the benchmark line's)", got)
	}
	if got := byName["Fanout/ws/K=100"][0].Metrics["KiB/sub"]; got != 20 {
		t.Errorf("ws KiB/sub from the table = %v, want 20", got)
	}
	if r := byName["PublishDeliver/N=10"][0]; r.Metrics["p50-ratio"] <= 0 || r.Metrics["ns/op"] <= 0 {
		t.Errorf("PublishDeliver metrics missing: %v", r.Metrics)
	}

	figs := map[string]Figure{}
	for _, f := range Figures(rs) {
		figs[f.File] = f
	}
	for _, want := range []string{"publishdeliver-ratios.png", "publishdeliver-auth-ratios.png", "publishdeliver-history-ratios.png",
		"fanout-deliveries-per-cpu.png", "fanout-p99.png", "fanout-memory-per-subscriber.png"} {
		if _, ok := figs[want]; !ok {
			t.Errorf("no figure %s", want)
		}
	}
	// Each mode over bare pion of the same run: bare itself is 1.
	for _, s := range figs["fanout-deliveries-per-cpu.png"].Series {
		v := s.Values[0]
		if len(v) != 1 {
			t.Fatalf("%s: %d values for K=100, want 1", s.Name, len(v))
		}
		if want := map[string]float64{"bare pion": 1, "data channel (ours)": 34620.0 / 27810}[s.Name]; want != 0 && math.Abs(v[0]-want) > 1e-9 {
			t.Errorf("%s: ratio %v, want %v", s.Name, v[0], want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{
		"BenchmarkX-2   many   12 ns/op\n",
		"BenchmarkX-2   10   12 ns/op 3\n",
		"BenchmarkX-2   10   twelve ns/op\n",
		"K mode deliv/s\n100 ws fast\n",
	} {
		if _, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func TestRunWritesPNGs(t *testing.T) {
	dir := t.TempDir()
	files, err := Run([]string{"testdata/sample.txt"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 6 {
		t.Errorf("%d files, want 6", len(files))
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 1000 || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("%s: %d bytes, not a PNG", filepath.Base(name), len(b))
		}
	}
	if _, err := Run([]string{"testdata/nothing.txt"}, dir); err == nil {
		t.Error("missing input: no error")
	}
}
