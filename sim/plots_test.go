package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBenchplotCommand(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"benchplot", "--out", dir, "benchplot/testdata/sample.txt"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if n := strings.Count(out.String(), ".png\n"); n != 6 {
		t.Errorf("%d files listed, want 6:\n%s", n, out.String())
	}
	if code := run(context.Background(), []string{"benchplot", "--out", dir}, &out, &errb); code != 2 {
		t.Errorf("no input: exit %d, want 2", code)
	}
}

// replot redraws a model run's plots from its CSV: the one the model
// drew is there, the others are left out as the run left them out.
func TestReplotCommand(t *testing.T) {
	dir := t.TempDir()
	csv := "days,online_share,volunteers_online_share,objects_readable_share,objects_lost,repair_bytes_per_node_per_day\n" +
		"0,0.2,0.19,1,0,100\n1,0.21,0.2,1,0,120\n"
	if err := os.WriteFile(filepath.Join(dir, "timeseries.csv"), []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "online.png"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"replot", "--kind", "model", "--dir", dir}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	b, err := os.ReadFile(filepath.Join(dir, "online.png"))
	if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Fatalf("online.png not redrawn (%d bytes, %v)", len(b), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "repair.png")); err == nil {
		t.Error("repair.png drawn although the run had not drawn it")
	}
	if code := run(context.Background(), []string{"replot", "--kind", "live", "--dir", dir}, &out, &errb); code != 2 {
		t.Errorf("live without --scenario: exit %d, want 2", code)
	}
}
