// Package layering states which of the module's packages may import which,
// and its test holds the module to it (go list, run from the module root):
//
//	cmd → node → webrtc, erasure → overlay → libraries
//
// with internal/* as leaves anyone may import, sim/* beside cmd (it may use
// node, erasure and overlay, and nothing but sim imports it), and nothing
// outside cmd importing cmd. A package may always import its own layer's
// packages (sim/runner imports sim/live), but not a sibling layer's: webrtc
// and erasure know nothing of each other. Only non-test imports count: a
// test may build a whole node to exercise a lower layer.
package layering

import (
	"fmt"
	"slices"
	"strings"
)

// layers lists, for each top-level directory of the module, the layers its
// packages may import besides their own.
var layers = map[string][]string{
	"cmd":      {"node", "webrtc", "erasure", "overlay", "internal"},
	"sim":      {"node", "erasure", "overlay", "internal"},
	"node":     {"webrtc", "erasure", "overlay", "internal"},
	"webrtc":   {"overlay", "internal"},
	"erasure":  {"overlay", "internal"},
	"overlay":  {"internal"},
	"internal": nil,
}

// narrower lists packages held to less than their layer allows: the
// model is the policy code and its bookkeeping, and must stay light enough
// to simulate millions of nodes (importing node would bring pion and
// libp2p's transports along).
var narrower = map[string][]string{
	"sim/model": {"node", "webrtc"},
}

// layer returns the layer of a package path relative to the module root:
// its first element.
func layer(rel string) string {
	first, _, _ := strings.Cut(rel, "/")
	return first
}

// Package is what Check needs of a package: its import path and its
// non-test imports.
type Package struct {
	ImportPath string
	Imports    []string
}

// Check returns one line per import of module's packages that goes
// against the layering, and per package in no known layer.
func Check(module string, pkgs []Package) []string {
	var bad []string
	for _, p := range pkgs {
		from, ok := relative(module, p.ImportPath)
		if !ok {
			continue
		}
		fl := layer(from)
		allowed, known := layers[fl]
		if !known {
			bad = append(bad, fmt.Sprintf("%s: in no layer; add %q to internal/layering", from, fl))
			continue
		}
		for _, imp := range p.Imports {
			to, ok := relative(module, imp)
			if !ok {
				continue // the standard library or a dependency
			}
			tl := layer(to)
			if tl == fl {
				continue
			}
			if !slices.Contains(allowed, tl) {
				bad = append(bad, fmt.Sprintf("%s imports %s: %s may import only %s", from, to, fl, list(fl, allowed)))
			}
			if slices.Contains(narrower[from], tl) {
				bad = append(bad, fmt.Sprintf("%s imports %s: %s must not import %s", from, to, from, strings.Join(narrower[from], " or ")))
			}
		}
	}
	return bad
}

// relative returns path relative to the module root, if it is in module.
func relative(module, path string) (string, bool) {
	if path == module {
		return ".", true
	}
	rel, ok := strings.CutPrefix(path, module+"/")
	return rel, ok
}

func list(own string, allowed []string) string {
	return strings.Join(append([]string{own}, allowed...), ", ")
}
