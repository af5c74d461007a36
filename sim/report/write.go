package report

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

var errNothingToPlot = errors.New("nothing to plot")

// Result is everything one run (or one set of repeated runs) produced.
type Result struct {
	Title       string
	Description string
	Summary     Summary
	// Series is the time series (or, for the sweep, the table by network
	// size); XLabel names its first column.
	Series *Series
	XLabel string
	Charts []Chart
	// Latencies are publish-to-deliver latencies in ms (for a CDF plot).
	Latencies []float64
	// Sections are extra report.md sections, in order.
	Sections []Section
}

// Section is a titled piece of Markdown.
type Section struct {
	Title string
	Body  string
}

// Write writes summary.json, timeseries.csv, the charts and report.md into
// dir, creating it if needed.
func Write(dir string, r *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create output dir: %w", err)
	}
	r.Summary.dropNaN()
	js, err := r.Summary.JSON()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), js, 0o644); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	var md strings.Builder
	fmt.Fprintf(&md, "# %s\n\n", r.Title)
	if r.Description != "" {
		fmt.Fprintf(&md, "%s\n\n", strings.TrimSpace(r.Description))
	}
	md.WriteString(SummaryTable(&r.Summary))
	if len(r.Summary.Notes) > 0 {
		md.WriteString("\nNotes:\n\n")
		for _, n := range r.Summary.Notes {
			fmt.Fprintf(&md, "- %s\n", n)
		}
	}
	if r.Series != nil && len(r.Series.Rows) > 0 {
		f, err := os.Create(filepath.Join(dir, "timeseries.csv"))
		if err != nil {
			return fmt.Errorf("write time series: %w", err)
		}
		err = r.Series.WriteCSV(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write time series: %w", err)
		}
		md.WriteString("\n## Plots\n\nData: [timeseries.csv](timeseries.csv).\n\n")
		for _, c := range r.Charts {
			err := Plot(r.Series, c, r.XLabel, filepath.Join(dir, c.File))
			if errors.Is(err, errNothingToPlot) {
				continue
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(&md, "![%s](%s)\n\n", c.Title, c.File)
		}
	}
	if len(r.Latencies) > 0 {
		if err := PlotCDF(r.Latencies, "publish → deliver latency", "ms", filepath.Join(dir, "latency_cdf.png")); err != nil {
			return err
		}
		md.WriteString("![publish → deliver latency](latency_cdf.png)\n\n")
	}
	for _, s := range r.Sections {
		fmt.Fprintf(&md, "## %s\n\n%s\n\n", s.Title, strings.TrimSpace(s.Body))
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(md.String()), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// Clean drops NaN and infinite details, which JSON cannot carry.
func (s *Summary) Clean() { s.dropNaN() }

func (s *Summary) dropNaN() {
	for k, v := range s.Details {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			delete(s.Details, k)
		}
	}
	for k, v := range s.StdDev {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			delete(s.StdDev, k)
		}
	}
}

// SummaryTable renders the summary's figures as a Markdown table, with the
// standard deviation over runs when there are several.
func SummaryTable(s *Summary) string {
	if s.Celebrity != nil {
		return celebrityTable(s)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Mode **%s**, %d nodes, seed %d", s.Mode, s.Nodes, s.Seed)
	if s.Runs > 1 {
		fmt.Fprintf(&b, ", mean of %d runs (seeds %d to %d)", s.Runs, s.Seed, s.Seed+uint64(s.Runs)-1)
	}
	b.WriteString(".\n\n")
	sd := len(s.StdDev) > 0
	if sd {
		b.WriteString("| figure | value | std dev over runs |\n|---|---|---|\n")
	} else {
		b.WriteString("| figure | value |\n|---|---|\n")
	}
	row := func(k string, v *float64) {
		val := "not measured"
		if v != nil {
			val = FormatValue(*v)
		}
		if sd {
			dev := ""
			if d, ok := s.StdDev[k]; ok && v != nil {
				dev = FormatValue(d)
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", k, val, dev)
		} else {
			fmt.Fprintf(&b, "| %s | %s |\n", k, val)
		}
	}
	row("availability_mean", s.AvailabilityMean)
	row("objects", s.Objects)
	row("objects_lost", s.ObjectsLost)
	row("retrievability", s.Retrievability)
	row("repair_bytes_per_node_per_day", s.RepairBytesPerNodePerDay)
	row("delivery_ratio", s.DeliveryRatio)
	row("latency_p50_ms", s.LatencyP50MS)
	row("latency_p99_ms", s.LatencyP99MS)
	row("lookup_success", s.LookupSuccess)
	keys := make([]string, 0, len(s.Details))
	for k := range s.Details {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := s.Details[k]
		row(k, &v)
	}
	return b.String()
}

// FormatValue prints a figure with sensible precision.
func FormatValue(v float64) string {
	switch a := math.Abs(v); {
	case v == math.Trunc(v) && a < 1e15:
		return fmt.Sprintf("%.0f", v)
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 1:
		return fmt.Sprintf("%.3g", v)
	}
	return fmt.Sprintf("%.5g", v)
}
