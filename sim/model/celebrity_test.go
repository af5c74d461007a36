package model

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/immense-p2p/immense/sim/scenario"
)

const msD = time.Millisecond

// handFeed is the hand-computed case: a peer that has the post at 100 ms,
// sends a copy every 1 ms, 10 ms from its browsers' access links, with a
// stack latency of 2 ms; copies of 1,000 bytes (8,000 bits).
func handFeed() *peerFeed {
	return &peerFeed{at: 100 * msD, perCopy: msD, hop: 10 * msD, tr: stack{p50: 2 * msD}, bits: 8000}
}

// handFollowers: b0 capable, 8 Mbit/s both ways (1 ms per copy), access
// 5 ms; b1 not capable, 8 Mbit/s down, access 4 ms; b2 capable, 4 Mbit/s
// both ways (2 ms per copy), access 6 ms. Nobody leaves.
func handFollowers() []follower {
	return []follower{
		{access: 5 * msD, up: 8e6, down: 8e6, capable: true, leave: -1},
		{access: 4 * msD, up: 8e6, down: 8e6, leave: -1},
		{access: 6 * msD, up: 4e6, down: 4e6, capable: true, leave: -1},
	}
}

// handRelays: budget 1, fan-out 2, depth 1, 1 ms to verify, a data channel
// of 20 ms and 0.5 ms of CPU per copy (x2 for a browser), 3 ms between two
// browsers besides their access links.
func handRelays() *relayConf {
	return &relayConf{budget: 1, fanOut: 2, depth: 1, verify: msD,
		dc: stack{cpu: msD / 2, p50: 20 * msD}, cpuFactor: 2, hop: 3 * msD}
}

func checkArrivals(t *testing.T, got []time.Duration, want ...float64) {
	t.Helper()
	for i, w := range want {
		wd := time.Duration(w * float64(msD))
		if w < 0 {
			wd = -1 // a relay that left before it had the post
		}
		if got[i] != wd {
			t.Errorf("arrival %d = %v, want %vms", i, got[i], w)
		}
	}
}

// TestFeedDirectByHand: copy k leaves the peer at 100+k ms and arrives
// 2 (stack) + 10 (peer side) + access + downlink transmission later.
func TestFeedDirectByHand(t *testing.T) {
	arr := make([]time.Duration, 3)
	feedDirect(handFeed(), handFollowers(), arr)
	// b0: 100+1+2+10+5+1; b1: 100+2+2+10+4+1; b2: 100+3+2+10+6+2.
	checkArrivals(t, arr, 119, 119, 123)
}

// TestFeedRelaysByHand: one peer, 3 followers, budget 1, fan-out 2. The
// tree puts capable followers first, fastest uplink first: b0 (8 Mbit/s)
// is the peer's only child and relays to b2 then b1.
func TestFeedRelaysByHand(t *testing.T) {
	arr := make([]time.Duration, 3)
	st := feedRelays(handFeed(), handRelays(), handFollowers(), arr, nil)
	// b0: 100+1+2+10+5+1 = 119. Its copies leave every max(0.5*2, 8000/8e6 s) = 1 ms
	// after verifying (1 ms): b2 at 119+1+1 = 121, arriving 121+20+5+3+6+2 = 157;
	// b1 at 122, arriving 122+20+5+3+4+1 = 155. Positions: b0, b2, b1.
	checkArrivals(t, arr, 119, 157, 155)
	want := feedStats{peerCopies: 1, relays: 1, viaRelay: 2, maxDepth: 2}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
}

// TestFeedRelayLeaves: the relay leaves after it has the post but before it
// sends anything; its children are fed by the peer once reattached.
func TestFeedRelayLeaves(t *testing.T) {
	bs := handFollowers()
	bs[0].leave = 120*msD + msD/2
	bs[1].reattach, bs[2].reattach = 30*msD, 50*msD
	arr := make([]time.Duration, 3)
	st := feedRelays(handFeed(), handRelays(), bs, arr, nil)
	// b2: 120.5+50 + 1 (peer copy) +2+10+6+2 = 191.5; b1: 120.5+30+1+2+10+4+1 = 168.5.
	checkArrivals(t, arr, 119, 191.5, 168.5)
	if st.reattached != 2 || st.left != 0 || st.peerCopies != 3 {
		t.Errorf("stats %+v", st)
	}

	// Leaving at 50 ms, before it has the post: it is no follower any
	// more, and its children, reattached by 100 and 80 ms, are fed when
	// the peer has the post (100 ms): b2 100+1+2+10+6+2, b1 100+1+2+10+4+1.
	bs[0].leave = 50 * msD
	st = feedRelays(handFeed(), handRelays(), bs, arr, nil)
	checkArrivals(t, arr, -1, 121, 118)
	if st.left != 1 || st.reattached != 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestFeedRelayDepth: with depth 1, a relay's children do not relay; the
// fourth follower, for whom no parent is left, is the peer's second copy.
func TestFeedRelayDepth(t *testing.T) {
	bs := append(handFollowers(), follower{access: 5 * msD, up: 2e6, down: 8e6, capable: true, leave: -1})
	arr := make([]time.Duration, 4)
	st := feedRelays(handFeed(), handRelays(), bs, arr, nil)
	// Positions: b0, b2, b3 (capable, slowest), b1. b0 feeds b2 and b3; b1
	// would be b2's child, but b2 is at depth 2: the peer feeds it second:
	// 100+2+2+10+4+1.
	if arr[3] != 119*msD || st.peerCopies != 2 || st.maxDepth != 2 || st.viaRelay != 2 {
		t.Errorf("arrivals %v, stats %+v", arr, st)
	}
}

// TestFeedUnderBudget: no tree when the peer's followers fit its budget.
func TestFeedUnderBudget(t *testing.T) {
	rc := handRelays()
	rc.budget = 3
	arr := make([]time.Duration, 3)
	st := feedRelays(handFeed(), rc, handFollowers(), arr, nil)
	checkArrivals(t, arr, 119, 119, 123)
	if st.relays != 0 || st.peerCopies != 3 {
		t.Errorf("stats %+v", st)
	}
}

func celebrityScenario(t *testing.T, path string) *scenario.Scenario {
	t.Helper()
	sc, err := scenario.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// TestCelebrity1e5: the CI-sized scenario runs, is deterministic for a
// seed, changes with the seed, and relays do what they are for: fewer
// copies from the peers and no later 99th percentile.
func TestCelebrity1e5(t *testing.T) {
	run := func(seed uint64) []byte {
		sc := celebrityScenario(t, "../scenarios/celebrity-1e5.yaml")
		sc.Seed = seed
		res, err := RunCelebrity(context.Background(), sc, Options{})
		if err != nil {
			t.Fatal(err)
		}
		c := res.Summary.Celebrity
		if c == nil || c.Followers != 100_000 || c.Peers != 100 || !c.RelaysEnabled {
			t.Fatalf("summary %+v", c)
		}
		if c.TimeTo99pctMS == nil || c.WithoutRelays.TimeTo99pctMS == nil || c.TimeToAllMS == nil {
			t.Fatalf("missing figures: %+v", c)
		}
		if *c.TimeTo50pctMS > *c.TimeTo99pctMS || *c.TimeTo99pctMS > *c.TimeToAllMS {
			t.Errorf("quantiles out of order: %+v", c.Arrival)
		}
		d := res.Summary.Details
		if d["relays"] == 0 || d["peer_copies_with_relays"] >= d["peer_copies_without_relays"] {
			t.Errorf("relays did not take copies off the peers: %v relays, %v vs %v copies",
				d["relays"], d["peer_copies_with_relays"], d["peer_copies_without_relays"])
		}
		if *c.TimeTo99pctMS > *c.WithoutRelays.TimeTo99pctMS {
			t.Errorf("p99 with relays %v > without %v", *c.TimeTo99pctMS, *c.WithoutRelays.TimeTo99pctMS)
		}
		b, err := res.Summary.JSON()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a := deterministic(t, run, 1, 2)
	for _, k := range []string{`"followers"`, `"peers"`, `"relays_enabled": true`, `"time_to_50pct_ms"`,
		`"time_to_99pct_ms"`, `"time_to_all_ms"`, `"without_relays"`} {
		if !bytes.Contains(a, []byte(k)) {
			t.Errorf("summary.json lacks %s", k)
		}
	}
	t.Logf("%s", a)
}

// TestCelebrity1e7Parses: the full scenario is valid and a celebrity one
// (it is run by `go run ./sim run`, not by tests: about 20 s).
func TestCelebrity1e7Parses(t *testing.T) {
	sc := celebrityScenario(t, "../scenarios/celebrity-1e7.yaml")
	if sc.Celebrity == nil || sc.Celebrity.Followers != 10_000_000 || sc.Nodes != 10_000 || !sc.Celebrity.Relays.Enabled {
		t.Fatalf("celebrity-1e7: %+v", sc.Celebrity)
	}
}

// deterministic checks that run gives the same bytes twice for seed and
// others for other, and returns them.
func deterministic(t *testing.T, run func(seed uint64) []byte, seed, other uint64) []byte {
	t.Helper()
	a, b, c := run(seed), run(seed), run(other)
	if !bytes.Equal(a, b) {
		t.Fatalf("same seed, different summaries:\n%s\n%s", a, b)
	}
	if bytes.Equal(a, c) {
		t.Fatal("different seeds gave identical summaries")
	}
	return a
}
