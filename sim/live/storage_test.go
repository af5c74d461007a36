package live

import (
	"testing"
	"time"

	"github.com/immense-p2p/immense/sim/report"
	"github.com/immense-p2p/immense/sim/scenario"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestStorageJudge: a read counts as available only if at least k of the
// holders its placement names were online, as the same identity, from its
// start to its end; lost objects and the model's placement-based loss are
// counted apart.
func TestStorageJudge(t *testing.T) {
	sec := func(n int) time.Duration { return time.Duration(n) * time.Second }
	sc := &scenario.Scenario{Warmup: scenario.Duration(sec(10)), SampleEvery: scenario.Duration(sec(10)),
		Duration: scenario.Duration(sec(100))}
	a, b, c, a2 := peer.ID("a"), peer.ID("b"), peer.ID("c"), peer.ID("a2")
	r := &run{sc: sc, end: sec(110),
		nodes: []*liveNode{{idx: 0, gen: 1}, {idx: 1}, {idx: 2}},
		ids:   map[peer.ID]slotGen{a: {0, 0}, a2: {0, 1}, b: {1, 0}, c: {2, 0}},
		objects: []*object{
			{key: "x", written: sec(12), finalOK: true, k: 2, placement: snapshot{version: 2, k: 2, holders: []peer.ID{a, b, c}}},
			{key: "y", written: sec(12), finalErr: "not found", k: 2, placement: snapshot{version: 1, k: 2, holders: []peer.ID{a, b}}},
		},
	}
	online := [][]interval{
		{{from: 0, to: sec(50), gen: 0}, {from: sec(60), to: sec(200), gen: 1}}, // slot 0: a, then a2 (a left for good)
		{{from: 0, to: sec(200)}},
		{{from: 0, to: sec(25)}, {from: sec(40), to: sec(200)}},
	}
	place := r.objects[0].placement
	r.reads = []readAttempt{
		{obj: 0, at: sec(20), end: sec(21), ok: true, place: place},                  // a, b, c up: available
		{obj: 0, at: sec(24), end: sec(26), ok: true, place: place},                  // c leaves during the read: a, b still
		{obj: 0, at: sec(30), end: sec(31), ok: false, place: place},                 // a, b up: available, failed
		{obj: 0, at: sec(70), end: sec(71), ok: true, place: place},                  // a is gone (a2 is not a holder): b, c
		{obj: 1, at: sec(55), end: sec(56), ok: true, place: r.objects[1].placement}, // only b: unavailable, yet read
		{obj: 0, at: sec(5), end: sec(6), ok: false, place: place},                   // warm-up: not counted
	}
	f := r.storageFigures(online)
	if f.reads != 5 || f.ok != 4 || f.available != 4 || f.okAvailable != 3 || f.okUnavailable != 1 {
		t.Errorf("reads %d ok %d available %d ok when available %d ok when unavailable %d; want 5 4 4 3 1",
			f.reads, f.ok, f.available, f.okAvailable, f.okUnavailable)
	}
	if len(f.failures) != 1 {
		t.Errorf("failures %q", f.failures)
	}
	// x keeps b and c (a left for good): 2 >= k. y keeps only b.
	if f.written != 2 || f.lost != 1 || f.lostPlacement != 1 {
		t.Errorf("written %d lost %d lost by placement %d; want 2 1 1", f.written, f.lost, f.lostPlacement)
	}
	sum := report.Summary{Details: map[string]float64{}}
	f.summarize(&sum, 3, 1)
	if *sum.Retrievability != 0.8 || sum.Details["retrievability_when_available"] != 0.75 || *sum.ObjectsLost != 1 {
		t.Errorf("retrievability %v, when available %v, lost %v", *sum.Retrievability, sum.Details["retrievability_when_available"], *sum.ObjectsLost)
	}
}
