package layering

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestImports: every import between the module's packages goes the way
// docs/architecture.md says.
func TestImports(t *testing.T) {
	root := goCmd(t, "", "env", "GOMOD")
	if root == "" || root == "/dev/null" {
		t.Fatal("not in a module")
	}
	dir := filepath.Dir(strings.TrimSpace(root))
	module := strings.TrimSpace(goCmd(t, dir, "list", "-m"))
	pkgs := decode(t, goCmd(t, dir, "list", "-json", "./..."))
	if len(pkgs) < 5 {
		t.Fatalf("go list found %d packages", len(pkgs))
	}
	for _, line := range Check(module, pkgs) {
		t.Error(line)
	}
	if !t.Failed() {
		t.Logf("%d packages; imports between layers: %s", len(pkgs), strings.Join(edges(module, pkgs), ", "))
	}
}

// TestCheck: the rules refuse what they should, planted imports included.
func TestCheck(t *testing.T) {
	const m = "example.org/immense"
	for _, tc := range []struct {
		from, to string
		ok       bool
	}{
		{"cmd/peer", "node", true},
		{"cmd/peer", "cmd/internal/cli", true},
		{"cmd/peer", "webrtc", true},
		{"node", "webrtc", true},
		{"node", "erasure", true},
		{"node", "internal/durable", true},
		{"webrtc", "overlay", true},
		{"webrtc", "internal/topicname", true},
		{"erasure", "overlay", true},
		{"erasure", "internal/durable", true},
		{"overlay", "internal/topicname", true},
		{"internal/simtest", "internal/durable", true},
		{"sim/live", "node", true},
		{"sim/runner", "sim/live", true},
		{"erasure/x", "erasure", true},

		{"overlay", "node", false},
		{"overlay", "erasure", false},
		{"overlay", "webrtc", false},
		{"webrtc", "erasure", false},
		{"erasure", "webrtc", false},
		{"webrtc", "node", false},
		{"erasure", "node", false},
		{"node", "cmd/internal/cli", false},
		{"node", "sim/model", false},
		{"sim/model", "node", false},
		{"sim/model", "cmd/peer", false},
		{"sim/live", "webrtc", false},
		{"internal/durable", "overlay", false},
		{"internal/durable", "node", false},
		{"cmd/peer", "sim/live", false},
	} {
		bad := Check(m, []Package{{ImportPath: m + "/" + tc.from, Imports: []string{"fmt", "github.com/libp2p/go-libp2p", m + "/" + tc.to}}})
		if tc.ok != (len(bad) == 0) {
			t.Errorf("%s importing %s: Check = %q, want ok=%v", tc.from, tc.to, bad, tc.ok)
		}
	}
	if bad := Check(m, []Package{{ImportPath: m + "/util"}}); len(bad) != 1 {
		t.Errorf("a package outside every layer: Check = %q, want it reported", bad)
	}
}

func goCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out)
}

// decode reads go list -json's stream of objects.
func decode(t *testing.T, out string) []Package {
	t.Helper()
	var pkgs []Package
	dec := json.NewDecoder(strings.NewReader(out))
	for {
		var p Package
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			return pkgs
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
}

// edges lists the imports between layers, as "from → to", sorted.
func edges(module string, pkgs []Package) []string {
	var out []string
	for _, p := range pkgs {
		from, _ := relative(module, p.ImportPath)
		for _, imp := range p.Imports {
			if to, ok := relative(module, imp); ok && layer(to) != layer(from) {
				if e := layer(from) + " → " + layer(to); !slices.Contains(out, e) {
					out = append(out, e)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}
