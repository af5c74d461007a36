package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"

	"github.com/immense-p2p/immense/sim/live"
	"github.com/immense-p2p/immense/sim/report"
	"github.com/immense-p2p/immense/sim/scenario"
)

// Clocks for live runs.
const (
	// ClockVirtual runs live scenarios in virtual time (testing/synctest):
	// results do not depend on how busy the machine is, and idle time costs
	// nothing. synctest only works inside `go test`, so the command builds
	// sim/live's test binary and runs its TestRunScenario once per run; this
	// needs the Go toolchain and the module's source, as `go run ./sim`
	// does anyway.
	ClockVirtual = "virtual"
	// ClockReal runs live scenarios in this process in real time. Timings
	// then include CPU starvation: on a busy 2-core machine a 200-node run
	// falls far behind (see docs/simulation.md).
	ClockReal = "real"
)

const livePackage = "github.com/immense-p2p/immense/sim/live"

// liveTestBinary builds sim/live's test binary into dir.
func liveTestBinary(ctx context.Context, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "live.test")
	cmd := exec.CommandContext(ctx, goBin, "test", "-c", "-o", bin, livePackage)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s test binary (run from inside the module, or use --clock real): %w", livePackage, err)
	}
	return bin, nil
}

// runVirtual runs sc once with seed through the test binary.
func runVirtual(ctx context.Context, bin string, sc *scenario.Scenario, seed uint64, dir string, opt Options) (*report.Result, error) {
	if sc.Path == "" {
		return nil, errors.New("virtual clock: the scenario must come from a file")
	}
	path, err := filepath.Abs(sc.Path)
	if err != nil {
		return nil, err
	}
	out := filepath.Join(dir, fmt.Sprintf("result-%d.json", seed))
	cmd := exec.CommandContext(ctx, bin, "-test.run=^TestRunScenario$", "-test.count=1", "-test.timeout=0")
	cmd.Env = append(os.Environ(),
		live.EnvScenario+"="+path,
		live.EnvSeed+"="+strconv.FormatUint(seed, 10),
		live.EnvResult+"="+out)
	if opt.NodeLogger != nil {
		cmd.Env = append(cmd.Env, live.EnvNodeLogs+"=1")
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("live run in virtual time: %w", err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("live run result: %w", err)
	}
	var res report.Result
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("live run result: %w", err)
	}
	return &res, nil
}
