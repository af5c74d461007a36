package webrtc

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// TestJSClient runs the JS client's own tests (client/immense.test.js),
// which check its frame codec against testdata/frames.json, written by the
// Go encoder. They need Node 20 or later.
func TestJSClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed; the JS client's tests need Node 20+")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test")
	cmd.Dir = "client"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test: %v\n%s", err, out)
	}
}
