package live

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"testing/synctest"

	"github.com/immense-p2p/immense/sim/scenario"
)

// TestRunScenario runs one live scenario in virtual time for `sim run`:
// testing/synctest bubbles can only be made by synctest.Test, which needs
// the *testing.T of a running test, so the command builds this package's
// test binary and runs this test. Without SIM_LIVE_SCENARIO it is skipped.
func TestRunScenario(t *testing.T) {
	path := os.Getenv(EnvScenario)
	if path == "" {
		t.Skip("run by `go run ./sim run` for live scenarios in virtual time; set " + EnvScenario + " to run one by hand")
	}
	sc, err := scenario.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	sc.Mode = scenario.Live
	if err := sc.Prepare(); err != nil {
		t.Fatal(err)
	}
	seed := sc.Seed
	if s := os.Getenv(EnvSeed); s != "" {
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s: %v", EnvSeed, err)
		}
	}
	out := os.Getenv(EnvResult)
	if out == "" {
		t.Fatalf("%s is required", EnvResult)
	}
	opt := Options{Seed: seed}
	opt.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if os.Getenv(EnvNodeLogs) != "" {
		opt.NodeLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	lastTenth := -1
	opt.Progress = func(frac float64, detail string) {
		// Inside the bubble time.Now is virtual; wall time is measured
		// outside it and not available here, so report virtual progress.
		if tenth := int(frac * 10); tenth > lastTenth {
			lastTenth = tenth
			fmt.Fprintf(os.Stderr, "%s seed %d: %3.0f%% (virtual %s)\n", sc.Name, seed, 100*frac, detail)
		}
	}
	synctest.Test(t, func(t *testing.T) {
		opt.DataDir = t.TempDir()
		res, err := Run(context.Background(), sc, opt)
		if err != nil {
			t.Fatal(err)
		}
		res.Summary.Clean()
		b, err := json.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, b, 0o644); err != nil {
			t.Fatal(err)
		}
	})
}
