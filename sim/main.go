// Command sim simulates Immense networks too large or too unreliable to
// try for real: live mode runs real nodes on go-libp2p's simulated network,
// model mode runs a discrete-event model of up to millions of peers that
// calls erasure's own placement, redundancy and repair code.
//
//	go run ./sim run --scenario sim/scenarios/volunteers-20pct-1e5.yaml --out out/acceptance
//	go run ./sim sweep --out out/sweep
//
// See docs/simulation.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/immense-p2p/immense/sim/runner"
	"github.com/immense-p2p/immense/sim/scenario"
)

const usage = `sim simulates Immense networks under churn.

Usage:
  sim run   --scenario FILE --out DIR [--seed N] [--mode live|model] [--runs N]
            [--clock virtual|real] [--parallel N] [--quiet] [--node-logs] [-v]
            [--cpuprofile FILE]
  sim sweep --out DIR [--scenario FILE] [--nodes N,N,...] [--seed N]
  sim storagecost --out DIR [--scenario FILE] [--nodes N] [--days N] [--k K,K,...]
  sim benchplot --out DIR FILE...
  sim replot --dir DIR [--kind live|model|sweep] [--scenario FILE]
  sim help

run    runs one scenario file (sim/scenarios/*.yaml). Its "mode" says how:
       live  - real nodes (package node) on go-libp2p's simulated network.
               --clock virtual (default): in virtual time under
               testing/synctest, through sim/live's test binary (built with
               the go command, so run from inside the module); results do
               not depend on machine load. A 200-node, 5-minute run takes
               about 10 minutes of one core.
               --clock real: in this process, in real time.
       model - the discrete-event model (10^4 to 10^6 nodes, months of
               virtual time), calling erasure's placement, redundancy and
               repair code.
       Writes DIR/summary.json, DIR/timeseries.csv, DIR/*.png and
       DIR/report.md. A live run also reports what the model predicts for
       the same scenario, with the per-hop cost calibrated on the live run.

sweep  runs the scaling study: the model at several network sizes, plotting
       delivery latency, lookup hops and repair traffic per node against
       log N. Defaults: --scenario sim/scenarios/sweep.yaml, its node counts.

storagecost  studies the storage policy's cost (issue 14): the expansion
       erasure's policy chooses against the volunteers' mean availability,
       with the bound curves, and the model at a reduced size with k fixed
       at each value. Defaults: --scenario sim/scenarios/realistic-mix.yaml,
       --nodes 10000, --days 60, --k 4,8,12,16.

benchplot  reads go test -bench output (docs/perf/*.txt) and draws, for
       each benchmark, its figures as ratios against the baseline measured
       in the same run, as PNGs in DIR (see docs/performance.md).

replot redraws the plots of a run's report directory from its
       timeseries.csv (after a change of plot style), without running it
       again; a live run needs its --scenario. The latency CDF needs the
       raw latencies and is left as it is.

Progress goes to stderr. Exit status 0 on success, 1 on a failed run, 2 on
bad usage.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr)
	case "sweep":
		return cmdSweep(ctx, args[1:], stdout, stderr)
	case "storagecost":
		return cmdStorageCost(ctx, args[1:], stdout, stderr)
	case "benchplot":
		return cmdBenchplot(args[1:], stdout, stderr)
	case "replot":
		return cmdReplot(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "sim: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func logger(w io.Writer, verbose bool) *slog.Logger {
	lvl := slog.LevelInfo
	if verbose {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl})).With("component", "sim")
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sim run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("scenario", "", "scenario file (YAML or JSON), required")
	out := fs.String("out", "", "output directory, required")
	seed := fs.Uint64("seed", 0, "seed (overrides the scenario's; 0 keeps it)")
	mode := fs.String("mode", "", "live or model (overrides the scenario's)")
	runs := fs.Int("runs", 0, "live runs to average (overrides the scenario's; 0 keeps it)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	verbose := fs.Bool("v", false, "debug logs")
	nodeLogs := fs.Bool("node-logs", false, "live: show the nodes' own warnings")
	clock := fs.String("clock", runner.ClockVirtual, "live: virtual (testing/synctest, through sim/live's test binary) or real")
	parallel := fs.Int("parallel", 1, "live, virtual clock: runs at once (each uses about one core)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file (go tool pprof)")
	fs.Usage = func() { fmt.Fprint(stderr, usage+"\nFlags of run:\n"); fs.PrintDefaults() }
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *file == "" || *out == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "sim run: --scenario and --out are required")
		return 2
	}
	sc, err := scenario.Load(*file)
	if err == nil {
		if *seed != 0 {
			sc.Seed = *seed
		}
		if *mode != "" {
			sc.Mode = scenario.Mode(*mode)
		}
		if *runs != 0 {
			sc.Runs = *runs
		}
		// Mode-dependent defaults must follow an overridden mode.
		err = sc.Prepare()
	}
	if err != nil {
		fmt.Fprintf(stderr, "sim run: %v\n", err)
		return 2
	}
	log := logger(stderr, *verbose)
	opt := runner.Options{Out: *out, Progress: !*quiet, Logger: log, Clock: *clock, Parallel: *parallel}
	if *nodeLogs {
		opt.NodeLogger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "sim run: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "sim run: cpu profile: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	res, err := runner.Run(ctx, sc, opt)
	if err != nil {
		fmt.Fprintf(stderr, "sim run: %v\n", err)
		return 1
	}
	log.Info("run done", "wall", time.Since(start).Round(time.Second))
	js, _ := res.Summary.JSON()
	stdout.Write(js)
	fmt.Fprintf(stderr, "report: %s/report.md\n", *out)
	return 0
}

func cmdSweep(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sim sweep", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("scenario", "sim/scenarios/sweep.yaml", "base model scenario")
	out := fs.String("out", "", "output directory, required")
	nodes := fs.String("nodes", "", "comma-separated node counts (default: the scenario's sweep list)")
	seed := fs.Uint64("seed", 0, "seed (overrides the scenario's; 0 keeps it)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	fs.Usage = func() { fmt.Fprint(stderr, usage+"\nFlags of sweep:\n"); fs.PrintDefaults() }
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *out == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "sim sweep: --out is required")
		return 2
	}
	sc, err := scenario.Load(*file)
	if err != nil {
		fmt.Fprintf(stderr, "sim sweep: %v\n", err)
		return 2
	}
	if *seed != 0 {
		sc.Seed = *seed
	}
	var counts []int
	if *nodes != "" {
		for _, f := range strings.Split(*nodes, ",") {
			n, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || n < 2 {
				fmt.Fprintf(stderr, "sim sweep: bad node count %q\n", f)
				return 2
			}
			counts = append(counts, int(n))
		}
	}
	res, err := runner.Sweep(ctx, sc, counts, runner.Options{Out: *out, Progress: !*quiet, Logger: logger(stderr, false)})
	if err != nil {
		fmt.Fprintf(stderr, "sim sweep: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%d sizes; report: %s/report.md\n", len(res.Series.Rows), *out)
	return 0
}

func cmdStorageCost(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sim storagecost", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("scenario", "sim/scenarios/realistic-mix.yaml", "base model scenario")
	out := fs.String("out", "", "output directory, required")
	nodes := fs.Int("nodes", 10_000, "nodes of the model runs over k")
	days := fs.Int("days", 60, "simulated days of the model runs over k")
	ks := fs.String("k", "4,8,12,16", "comma-separated k")
	quiet := fs.Bool("quiet", false, "no progress bar")
	fs.Usage = func() { fmt.Fprint(stderr, usage+"\nFlags of storagecost:\n"); fs.PrintDefaults() }
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *out == "" || fs.NArg() > 0 || *nodes < 100 || *days < 1 {
		fmt.Fprintln(stderr, "sim storagecost: --out is required; --nodes >= 100, --days >= 1")
		return 2
	}
	so := runner.StorageCostOptions{Nodes: *nodes, Days: *days}
	for _, f := range strings.Split(*ks, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k < 1 {
			fmt.Fprintf(stderr, "sim storagecost: bad k %q\n", f)
			return 2
		}
		so.Ks = append(so.Ks, k)
	}
	sc, err := scenario.Load(*file)
	if err != nil {
		fmt.Fprintf(stderr, "sim storagecost: %v\n", err)
		return 2
	}
	if _, err := runner.StorageCost(ctx, sc, so, runner.Options{Out: *out, Progress: !*quiet, Logger: logger(stderr, false)}); err != nil {
		fmt.Fprintf(stderr, "sim storagecost: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "report: %s/report.md\n", *out)
	return 0
}

// parseFlags parses args into fs; when it fails it returns the exit code
// (0 for -help, 2 for bad usage) and false.
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	return 0, true
}
