package runner

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/immense-p2p/immense/sim/scenario"
)

// TestRunCelebrity: `sim run` on a celebrity scenario runs the celebrity
// model and writes summary.json with the keys, the CSV, the CDF
// plot and report.md.
func TestRunCelebrity(t *testing.T) {
	sc, err := scenario.Load("../scenarios/celebrity-1e5.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, err := Run(context.Background(), sc, Options{Out: out, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"summary.json", "timeseries.csv", "arrival_cdf.png", "report.md"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["followers"] != 100000.0 || m["peers"] != 100.0 || m["relays_enabled"] != true || m["time_to_99pct_ms"] == nil {
		t.Errorf("summary.json: %s", b)
	}
}
