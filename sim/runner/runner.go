// Package runner runs scenarios for the sim command: one scenario in its
// mode (live runs repeated and aggregated), or the scaling sweep, and
// writes their reports.
package runner

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/immense-p2p/immense/sim/live"
	"github.com/immense-p2p/immense/sim/model"
	"github.com/immense-p2p/immense/sim/progress"
	"github.com/immense-p2p/immense/sim/report"
	"github.com/immense-p2p/immense/sim/scenario"
	"golang.org/x/sync/errgroup"
)

// Options tune a run.
type Options struct {
	// Out is the directory reports are written to.
	Out string
	// Progress draws progress bars on stderr when true.
	Progress bool
	Logger   *slog.Logger
	// NodeLogger receives the live nodes' logs (nil: discarded).
	NodeLogger *slog.Logger
	// Clock of live runs: ClockVirtual (default) or ClockReal.
	Clock string
	// Parallel is how many virtual-time live runs go at once (each is one
	// process using about one core). Default 1.
	Parallel int
}

// Run runs sc and writes its report into opt.Out. A live scenario with
// Runs > 1 runs that many times (seeds Seed, Seed+1, ...): each run's
// report goes to run-<i>/ and the aggregate, with the spread of every
// figure, to opt.Out. A live report also shows what the model predicts for
// the same scenario, for comparison.
func Run(ctx context.Context, sc *scenario.Scenario, opt Options) (*report.Result, error) {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	start := time.Now()
	var res *report.Result
	var err error
	switch sc.Mode {
	case scenario.Model:
		res, err = runModel(ctx, sc, opt)
	case scenario.Live:
		res, err = runLive(ctx, sc, opt)
	default:
		err = fmt.Errorf("unknown mode %q", sc.Mode)
	}
	if err != nil {
		return nil, err
	}
	res.Sections = append(res.Sections, report.Section{Title: "Run", Body: fmt.Sprintf(
		"Scenario file: `%s`. Wall-clock time: %v (2-core development VM, shared).", sc.Path, time.Since(start).Round(time.Second))})
	if err := report.Write(opt.Out, res); err != nil {
		return nil, err
	}
	return res, nil
}

func bar(opt Options, label string) *progress.Bar {
	if !opt.Progress {
		return nil
	}
	return progress.New(os.Stderr, label)
}

func runModel(ctx context.Context, sc *scenario.Scenario, opt Options) (*report.Result, error) {
	b := bar(opt, sc.Name)
	run := model.Run
	if sc.Celebrity != nil {
		run = model.RunCelebrity
	}
	res, err := run(ctx, sc, model.Options{Progress: b.Set})
	b.Done("")
	return res, err
}

func runLive(ctx context.Context, sc *scenario.Scenario, opt Options) (*report.Result, error) {
	if opt.Clock == "" {
		opt.Clock = ClockVirtual
	}
	if opt.Clock != ClockVirtual && opt.Clock != ClockReal {
		return nil, fmt.Errorf("unknown clock %q (want %s or %s)", opt.Clock, ClockVirtual, ClockReal)
	}
	tmp, err := os.MkdirTemp("", "immense-sim-live-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var bin string
	if opt.Clock == ClockVirtual {
		opt.Logger.Info("building the live test binary (live runs use virtual time)")
		if bin, err = liveTestBinary(ctx, tmp); err != nil {
			return nil, err
		}
	}
	results := make([]*report.Result, sc.Runs)
	one := func(i int) error {
		seed := sc.Seed + uint64(i)
		opt.Logger.Info("live run", "scenario", sc.Name, "run", i+1, "of", sc.Runs, "seed", seed, "clock", opt.Clock,
			"virtual_time", (sc.Warmup.D() + sc.Duration.D()).String())
		var res *report.Result
		var err error
		if opt.Clock == ClockVirtual {
			res, err = runVirtual(ctx, bin, sc, seed, tmp, opt)
		} else {
			dir := filepath.Join(tmp, fmt.Sprintf("run-%d", i+1))
			b := bar(opt, fmt.Sprintf("%s run %d/%d", sc.Name, i+1, sc.Runs))
			res, err = live.Run(ctx, sc, live.Options{Seed: seed, DataDir: dir, Logger: opt.Logger, NodeLogger: opt.NodeLogger, Progress: b.Set})
			b.Done("")
		}
		if err != nil {
			return fmt.Errorf("live run %d: %w", i+1, err)
		}
		res.Summary.Notes = append(res.Summary.Notes, "clock: "+opt.Clock)
		if sc.Runs > 1 {
			if err := report.Write(filepath.Join(opt.Out, fmt.Sprintf("run-%d", i+1)), res); err != nil {
				return err
			}
		}
		results[i] = res
		return nil
	}
	par := 1
	if opt.Clock == ClockVirtual && opt.Parallel > 1 {
		par = opt.Parallel
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(par)
	ctx = gctx
	for i := range sc.Runs {
		g.Go(func() error { return one(i) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	sums := make([]report.Summary, len(results))
	for i, r := range results {
		sums[i] = r.Summary
	}
	out := *results[0]
	out.Summary = report.Aggregate(sums)
	out.Title = fmt.Sprintf("%s (live)", sc.Name)
	if sc.Runs > 1 {
		out.Description += fmt.Sprintf("\n\nFigures are the mean of %d runs; each run's full report is in run-1/ to run-%d/. "+
			"The time series and plots below are run 1's.", sc.Runs, sc.Runs)
	}
	cmp, err := CompareWithModel(ctx, sc, &out.Summary)
	if err != nil {
		opt.Logger.Warn("model comparison", "err", err)
	} else {
		out.Sections = append(out.Sections, cmp)
	}
	return &out, nil
}
