package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/immense-p2p/immense/sim/benchplot"
	"github.com/immense-p2p/immense/sim/live"
	"github.com/immense-p2p/immense/sim/model"
	"github.com/immense-p2p/immense/sim/report"
	"github.com/immense-p2p/immense/sim/runner"
	"github.com/immense-p2p/immense/sim/scenario"
)

func cmdBenchplot(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sim benchplot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "output directory, required")
	fs.Usage = func() { fmt.Fprint(stderr, usage+"\nFlags of benchplot:\n"); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *out == "" || fs.NArg() == 0 {
		fmt.Fprintln(stderr, "sim benchplot: --out and at least one benchmark output file are required")
		return 2
	}
	files, err := benchplot.Run(fs.Args(), *out)
	for _, f := range files {
		fmt.Fprintln(stdout, f)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sim benchplot: %v\n", err)
		return 1
	}
	return 0
}

func cmdReplot(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sim replot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "the run's report directory (with timeseries.csv), required")
	kind := fs.String("kind", "live", "what wrote it: live, model or sweep")
	file := fs.String("scenario", "", "live: the scenario the run used (its storage and warm-up), required")
	fs.Usage = func() { fmt.Fprint(stderr, usage+"\nFlags of replot:\n"); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *dir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "sim replot: --dir is required")
		return 2
	}
	var charts []report.Chart
	var xLabel string
	switch *kind {
	case "live":
		if *file == "" {
			fmt.Fprintln(stderr, "sim replot: --scenario is required for a live run")
			return 2
		}
		sc, err := scenario.Load(*file)
		if err == nil {
			sc.Mode = scenario.Live
			err = sc.Prepare()
		}
		if err != nil {
			fmt.Fprintf(stderr, "sim replot: %v\n", err)
			return 2
		}
		charts, xLabel = live.Charts(sc.Storage.Objects > 0), live.XLabel(sc)
	case "model":
		charts, xLabel = model.Charts(), model.XLabel
	case "sweep":
		charts, xLabel = runner.SweepCharts(), runner.SweepXLabel
	default:
		fmt.Fprintf(stderr, "sim replot: --kind %q: want live, model or sweep\n", *kind)
		return 2
	}
	f, err := os.Open(filepath.Join(*dir, "timeseries.csv"))
	if err != nil {
		fmt.Fprintf(stderr, "sim replot: %v\n", err)
		return 1
	}
	s, err := report.ReadCSV(f)
	f.Close()
	if err != nil {
		fmt.Fprintf(stderr, "sim replot: %v\n", err)
		return 1
	}
	for _, c := range charts {
		path := filepath.Join(*dir, c.File)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			continue // the run drew nothing there (no data for it)
		}
		if err := report.Plot(s, c, xLabel, path); err != nil {
			fmt.Fprintf(stderr, "sim replot: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, path)
	}
	return 0
}
