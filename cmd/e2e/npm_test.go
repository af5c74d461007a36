package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClientPackage: `npm pack` in webrtc/client makes a package that a
// scratch project installs (offline, from the tarball, as the client's
// README says to) and imports by its name, finding connect.
func TestClientPackage(t *testing.T) {
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm is not installed: the JS client's package is not checked")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the JS client's package is not checked")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := func(dir string, bin string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Dir = dir
		// npm's cache and logs in the test's directory, not the user's.
		cmd.Env = append(os.Environ(), "npm_config_cache="+filepath.Join(t.TempDir(), "npm-cache"), "npm_config_update_notifier=false")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %q in %s: %v\n%s", filepath.Base(bin), args, dir, err, out)
		}
		return string(out)
	}
	packDir := t.TempDir()
	client, err := filepath.Abs(filepath.Join(repoRoot, "webrtc", "client"))
	if err != nil {
		t.Fatal(err)
	}
	out := run(client, npm, "pack", "--pack-destination", packDir)
	lines := strings.Fields(out)
	tarball := filepath.Join(packDir, lines[len(lines)-1])
	if _, err := os.Stat(tarball); err != nil {
		t.Fatalf("npm pack made no %s: %v\n%s", tarball, err, out)
	}

	project := t.TempDir()
	if err := os.WriteFile(filepath.Join(project, "package.json"), []byte(`{"name": "scratch", "version": "1.0.0", "private": true, "type": "module"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	run(project, npm, "install", "--offline", "--no-audit", "--no-fund", tarball)
	for _, f := range []string{"immense.js", "immense.d.ts", "README.md", "package.json"} {
		if _, err := os.Stat(filepath.Join(project, "node_modules", "@immense-p2p", "client", f)); err != nil {
			t.Errorf("installed package lacks %s: %v", f, err)
		}
	}
	if err := os.WriteFile(filepath.Join(project, "main.js"), []byte(`import { connect } from "@immense-p2p/client";
if (typeof connect !== "function") { console.error("connect is", typeof connect); process.exit(1); }
console.log("imported");
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := run(project, node, "main.js"); !strings.Contains(out, "imported") {
		t.Errorf("node main.js: %q", out)
	}
}
