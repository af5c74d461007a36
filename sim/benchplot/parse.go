// Package benchplot turns `go test -bench` output into plots of ratios
// against the baseline measured in the same run, for docs/performance.md.
//
// It reads the standard benchmark lines with their custom metrics
// ("BenchmarkX/sub-2  300  77745741 ns/op  1.116 p50-ratio ..."), and the
// comparison table BenchmarkFanout prints beside them ("K mode deliv/s ...").
// Absolute figures on a shared 2-core machine move with its load; the
// ratios of two things measured side by side move much less, so they are
// what is plotted.
package benchplot

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// maxLine bounds one line of input (benchmark lines with many metrics are a
// few hundred bytes).
const maxLine = 1 << 20

// Result is one benchmark line: one run of one (sub-)benchmark.
type Result struct {
	// Name without the "Benchmark" prefix and the GOMAXPROCS suffix,
	// e.g. "PublishDeliver/N=10" or "Fanout/stack/K=100".
	Name    string
	Metrics map[string]float64 // by unit, e.g. "p50-ratio", "deliv/cpu-s"
}

// Bench is the benchmark's name, the part of Name before the first '/'.
func (r Result) Bench() string { b, _, _ := strings.Cut(r.Name, "/"); return b }

// Sub is the part of Name after the first '/', or "".
func (r Result) Sub() string { _, s, _ := strings.Cut(r.Name, "/"); return s }

var procsSuffix = regexp.MustCompile(`-\d+$`)

// Parse reads go test -bench output. Lines it does not know are skipped.
// Rows of BenchmarkFanout's comparison table become results named
// "Fanout/<mode>/K=<k>", with the table's column headers as units, but
// only for names that no benchmark line reported (the table repeats the
// last run of each).
func Parse(r io.Reader) ([]Result, error) {
	var out []Result
	var table []Result
	seen := map[string]bool{}
	var header []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxLine)
	for line := 0; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 4 && strings.HasPrefix(f[0], "Benchmark"):
			res, err := parseBenchLine(f)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line+1, err)
			}
			seen[res.Name] = true
			out = append(out, res)
		case len(f) > 2 && f[0] == "K" && f[1] == "mode":
			header = f
		case header != nil && len(f) == len(header):
			k, err := strconv.Atoi(f[0])
			if err != nil {
				header = nil
				continue
			}
			res := Result{Name: fmt.Sprintf("Fanout/%s/K=%d", f[1], k), Metrics: map[string]float64{}}
			for i := 2; i < len(f); i++ {
				v, err := strconv.ParseFloat(f[i], 64)
				if err != nil {
					return nil, fmt.Errorf("line %d: column %s: %q is not a number", line+1, header[i], f[i])
				}
				res.Metrics[header[i]] = v
			}
			table = append(table, res)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read benchmark output: %w", err)
	}
	for _, t := range table {
		if !seen[t.Name] {
			out = append(out, t)
		}
	}
	return out, nil
}

// parseBenchLine reads "BenchmarkName-P  iterations  (value unit)...".
func parseBenchLine(f []string) (Result, error) {
	name := procsSuffix.ReplaceAllString(strings.TrimPrefix(f[0], "Benchmark"), "")
	if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
		return Result{}, fmt.Errorf("benchmark %s: iterations %q is not a number", name, f[1])
	}
	if len(f)%2 != 0 {
		return Result{}, fmt.Errorf("benchmark %s: a value without a unit", name)
	}
	res := Result{Name: name, Metrics: map[string]float64{}}
	for i := 2; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return Result{}, fmt.Errorf("benchmark %s: %q is not a number", name, f[i])
		}
		res.Metrics[f[i+1]] = v
	}
	return res, nil
}
