package model

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/immense-p2p/immense/sim/scenario"
)

const small = `
name: model-test
mode: model
seed: 7
nodes: 3000
warmup: 2d
duration: 20d
sample_every: 1d
servers: {count: 3}
volunteers:
  availability: 0.2
  availability_spread: 2
  session: {dist: weibull, shape: 0.5, mean: 2h}
  downtime: {dist: weibull, shape: 0.5}
  lifetime: {dist: exponential, mean: 60d}
network:
  regions: [{name: a, share: 0.5}, {name: b, share: 0.5}]
  latency_ms: [[10, 50], [50, 10]]
events:
  - {kind: region_dark, region: a, at: 5d, duration: 6h}
  - {kind: mass_reboot, at: 10d, within: 1h, downtime: 5m}
storage:
  objects: 150
  size_min: 64KiB
  size_max: 4MiB
topic: {publish_every: 1h, samples: 10}
lookups: {every: 1h, samples: 100}
`

func parse(t *testing.T, doc string) *scenario.Scenario {
	t.Helper()
	sc, err := scenario.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// TestDeterministic: the same seed gives the same summary.json, byte for
// byte; another seed gives another.
func TestDeterministic(t *testing.T) {
	run := func(seed uint64) []byte {
		sc := parse(t, small)
		sc.Seed = seed
		res, err := Run(context.Background(), sc, Options{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := res.Summary.JSON()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Logf("%s", deterministic(t, run, 7, 8))
}

// TestModelFigures: a small network behaves as its scenario says:
// availability near the volunteers' 20% (plus the servers), storage
// repaired through erasure's policy without loss, messages delivered and
// lookups successful.
func TestModelFigures(t *testing.T) {
	sc := parse(t, small)
	res, err := Run(context.Background(), sc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Summary
	want := (3 + 2997*0.2) / 3000.0
	if a := *s.AvailabilityMean; a < want*0.85 || a > want*1.15 {
		t.Errorf("availability_mean %.4f, want about %.4f", a, want)
	}
	if *s.Objects != 150 || *s.ObjectsLost != 0 {
		t.Errorf("objects %v lost %v", *s.Objects, *s.ObjectsLost)
	}
	if s.Details["repairs"] == 0 || *s.RepairBytesPerNodePerDay <= 0 {
		t.Errorf("no repair under 20%% availability and 60-day lifetimes: %v", s.Details)
	}
	if *s.Retrievability < 0.9 {
		t.Errorf("retrievability %v", *s.Retrievability)
	}
	if *s.DeliveryRatio < 0.99 || *s.LatencyP50MS < 10 || *s.LatencyP99MS < *s.LatencyP50MS {
		t.Errorf("delivery %v p50 %v p99 %v", *s.DeliveryRatio, *s.LatencyP50MS, *s.LatencyP99MS)
	}
	if *s.LookupSuccess < 0.9 || s.Details["lookup_hops_mean"] < 1 {
		t.Errorf("lookup success %v hops %v", *s.LookupSuccess, s.Details["lookup_hops_mean"])
	}
	if len(res.Series.Rows) != 21 {
		t.Errorf("%d time series rows, want 21 (days 0..20)", len(res.Series.Rows))
	}
}

// TestFanout: every live member is reached, no earlier than one link
// latency, and the per-hop cost adds at least its own value to every
// delivery (two per hop: before forwarding and before delivering).
func TestFanout(t *testing.T) {
	ms := make([]member, 500)
	for i := range ms {
		ms[i] = member{alive: i%50 != 0}
	}
	f := fanout{D: 6, Dlazy: 6, HistoryGossip: 3, Heartbeat: time.Second, Tx: 100 * time.Microsecond,
		Latency: func(a, b int) time.Duration { return 10 * time.Millisecond }}
	base := f.publish(rand.New(rand.NewPCG(1, 1)), ms, 1, 0)
	f.PerHopCost = 5 * time.Millisecond
	slow := f.publish(rand.New(rand.NewPCG(1, 1)), ms, 1, 0)
	direct := 0
	for i, d := range base {
		switch {
		case i == 1 || !ms[i].alive:
			if d.at != -1 {
				t.Fatalf("member %d (publisher or dead) has latency %v", i, d.at)
			}
		case d.at < 10*time.Millisecond || d.at > time.Second:
			t.Fatalf("member %d latency %v", i, d.at)
		case slow[i].at < d.at+2*f.PerHopCost:
			t.Fatalf("member %d: %v with per-hop cost, %v without", i, slow[i].at, d.at)
		}
		if d.direct {
			direct++
		}
	}
	// Without connections beyond its mesh, the publisher reaches its mesh
	// peers directly and nobody else.
	if direct < 1 || direct > f.D {
		t.Errorf("%d members reached directly through a mesh of degree %d", direct, f.D)
	}
}

// TestFloodPublish: a publisher connected to every member sends to each
// directly, one copy after another on its uplink, so every live member
// gets the message at most one link latency plus its place in the queue
// after publication (the last in the queue may get it sooner through a
// forwarder, two hops away); with 100 connections, 100 members get it
// directly at most.
func TestFloodPublish(t *testing.T) {
	ms := make([]member, 300)
	alive := 0
	for i := range ms {
		ms[i] = member{alive: i%30 != 0}
		if ms[i].alive {
			alive++
		}
	}
	f := fanout{D: 6, Dlazy: 6, HistoryGossip: 3, Heartbeat: time.Second, Tx: 100 * time.Microsecond,
		Latency: func(a, b int) time.Duration { return 10 * time.Millisecond }}
	res := f.publish(rand.New(rand.NewPCG(2, 2)), ms, 1, len(ms))
	slots := map[time.Duration]bool{}
	for i, d := range res {
		if i == 1 || !ms[i].alive {
			continue
		}
		q := d.at - 10*time.Millisecond
		if q < f.Tx || q > time.Duration(alive-1)*f.Tx {
			t.Fatalf("member %d: %v: want 10 ms + 1 to %d times %v", i, d.at, alive-1, f.Tx)
		}
		if d.direct {
			if q%f.Tx != 0 || slots[q] {
				t.Fatalf("member %d got it directly at %v: not a free slot of the publisher's uplink", i, d.at)
			}
			slots[q] = true
		}
	}
	if len(slots) < (alive-1)/2 {
		t.Errorf("only %d of %d members got it directly", len(slots), alive-1)
	}
	res = f.publish(rand.New(rand.NewPCG(2, 2)), ms, 1, 100)
	direct := 0
	for _, d := range res {
		if d.direct {
			direct++
		}
	}
	if direct < 50 || direct > 100 {
		t.Errorf("%d members reached directly with 100 connections", direct)
	}
}

// TestKeyIndex: closestOnline agrees with a brute-force sort.
func TestKeyIndex(t *testing.T) {
	sc := parse(t, small)
	p, err := newPopulation(sc, 3)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(4, 4))
	for range 20 {
		var tgt point
		for i := range tgt {
			tgt[i] = byte(r.IntN(256))
		}
		got := p.closestOnline(tgt, 20, nil)
		var want []int32
		for i := range sc.Nodes {
			if p.isOnline(i) {
				want = append(want, int32(i))
			}
		}
		for i := 0; i < len(want); i++ { // selection of the 20 closest
			for j := i + 1; j < len(want); j++ {
				if xorLess(&p.points[want[j]], &p.points[want[i]], &tgt) {
					want[i], want[j] = want[j], want[i]
				}
			}
			if i == 19 {
				break
			}
		}
		want = want[:20]
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("closest %d: got slot %d, want %d", i, got[i], want[i])
			}
		}
	}
}

// TestServerSubnets: with the servers in one /24 (server_subnets: 1) an
// object gets at most one server holder, as erasure's placement allows;
// with a network per server (the default) objects get several.
func TestServerSubnets(t *testing.T) {
	mostOn := func(subnets string) int {
		doc := strings.Replace(small, "  size_max: 4MiB\n", "  size_max: 4MiB\n  server_subnets: "+subnets+"\n", 1)
		doc = strings.Replace(doc, "servers: {count: 3}", "servers: {count: 10}", 1)
		sc := parse(t, doc)
		pop, err := newPopulation(sc, 1)
		if err != nil {
			t.Fatal(err)
		}
		s, err := newStorage(sc, pop, func() time.Duration { return 0 }, 1)
		if err != nil {
			t.Fatal(err)
		}
		most := 0
		for _, o := range s.objects {
			if !s.write(o) {
				t.Fatal("write failed")
			}
			n := 0
			for _, h := range o.holders {
				if int(h.slot) < pop.servers {
					n++
				}
			}
			most = max(most, n)
		}
		return most
	}
	if got := mostOn("1"); got != 1 {
		t.Fatalf("servers in one /24: an object has %d server holders, want at most 1", got)
	}
	if got := mostOn("0"); got < 2 {
		t.Fatalf("a /24 per server: at most %d server holders per object; the test shows nothing", got)
	}
}
