package erasure

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestLeastShardsTable: the least n for 99.99% with k of n holders each
// online with probability p, the table of issue 14, computed by hand from
// the binomial tail (and cross-checked with the closed form in
// TestProbAtLeast).
func TestLeastShardsTable(t *testing.T) {
	want := map[float64][4]int{ // k = 4, 8, 16, 32
		0.2: {73, 107, 166, 274},
		0.6: {20, 29, 47, 81},
		0.8: {12, 19, 31, 55},
	}
	for p, ns := range want {
		for i, k := range []int{4, 8, 16, 32} {
			avail := make([]float64, 300)
			for j := range avail {
				avail[j] = p
			}
			n, ok := LeastShards(k, avail, DefaultTarget)
			if !ok || n != ns[i] {
				t.Errorf("p=%v k=%d: n=%d (ok %v), want %d", p, k, n, ok, ns[i])
			}
			// The least: one fewer misses the target.
			if BinomialAtLeast(k, n-1, p) >= DefaultTarget || BinomialAtLeast(k, n, p) < DefaultTarget {
				t.Errorf("p=%v k=%d: n=%d is not the least", p, k, n)
			}
		}
	}
	// Heterogeneous: the most available holders count first. Two servers
	// and two volunteers at 0.2, k=2: the servers alone reach the target.
	if n, ok := LeastShards(2, []float64{0.2, 1, 0.2, 1}, DefaultTarget); !ok || n != 2 {
		t.Errorf("two servers: n=%d ok=%v", n, ok)
	}
	if _, ok := LeastShards(3, []float64{0.2, 0.2, 0.2}, DefaultTarget); ok {
		t.Error("unreachable target reported met")
	}
}

// TestChooseDataShards: k grows with size, one data shard per
// MinShardSize of a segment, between DataShards and MaxDataShards, and
// is lowered to keep MinParity parity shards on the holders available.
func TestChooseDataShards(t *testing.T) {
	pol := PutPolicy{DataShards: 4, MaxDataShards: 16, MinShardSize: 16 << 10, SegmentSize: 1 << 20,
		MinParity: 2, MaxShards: 32}
	for _, tc := range []struct {
		size    int64
		holders int
		want    int
	}{
		{1 << 10, 32, 4},    // small: the least k
		{64 << 10, 32, 4},   // 4 shards of 16 KiB
		{128 << 10, 32, 8},  // 8 of 16 KiB
		{200 << 10, 32, 12}, // 12 of 16.7 KiB
		{256 << 10, 32, 16}, // 16 of 16 KiB
		{64 << 20, 32, 16},  // segments of 1 MiB: 16 of 64 KiB
		{64 << 20, 12, 10},  // 12 peers: 2 parity shards left
		{64 << 20, 3, 1},    // 3 peers: k=1, m=2
		{1 << 10, 5, 3},     // small network lowers even the least k
		{64 << 20, 0, 1},    // none: 1 (PlanPut refuses before)
	} {
		if got := ChooseDataShards(tc.size, tc.holders, pol); got != tc.want {
			t.Errorf("size %d on %d holders: k=%d, want %d", tc.size, tc.holders, got, tc.want)
		}
	}
	// MaxDataShards unset: a fixed k, as before issue 14.
	fixed := PutPolicy{DataShards: 4, MinParity: 2, MaxShards: 32, MinShardSize: 16 << 10}
	if got := ChooseDataShards(64<<20, 32, fixed); got != 4 {
		t.Errorf("fixed k: %d", got)
	}
}

// TestPlanPutPrefersAvailable: with volunteers of mixed availability, Put
// puts the object on the available ones and needs fewer shards than on
// the population average: at k=16, a population at 0.6 would need 47.
func TestPlanPutPrefersAvailable(t *testing.T) {
	var cs []Candidate
	for i := range 200 {
		a := 0.1 // most volunteers are rarely online
		if i%5 == 0 {
			a = 0.9 // a fifth nearly always
		}
		cs = append(cs, Candidate{ID: peer.ID(fmt.Sprintf("v%03d", i)), Availability: a, HasQuota: true,
			Net: fmt.Sprintf("n%d", i)})
	}
	pol := DefaultConfig().PutPolicy()
	p, err := PlanPut(PlacementSeed{3}, cs, pol, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	if p.K != 16 || !p.TargetMet || p.K+p.M > 28 {
		t.Fatalf("plan k=%d m=%d prob %v met %v: want k=16 and at most 28 shards", p.K, p.M, p.Prob, p.TargetMet)
	}
	// The plan is the optimum for the holders it drew.
	avail := map[peer.ID]float64{}
	for _, c := range cs {
		avail[c.ID] = c.Availability
	}
	var drawn []float64
	for _, h := range Place(PlacementSeed{3}, 32, cs) {
		drawn = append(drawn, avail[h])
	}
	if n, _ := LeastShards(16, drawn, pol.Target); n != p.K+p.M {
		t.Fatalf("plan has %d shards, the optimum for its holders %d", p.K+p.M, n)
	}
}

// TestPlaceBalancesQuota: a peer whose quota is nearly full wins fewer
// shards than an equally available one with room.
func TestPlaceBalancesQuota(t *testing.T) {
	cs := candidates(10)
	for i := range cs {
		cs[i].Availability = 0.8
	}
	cs[0].Used, cs[1].Used = 0.9, 0
	wins := map[peer.ID]int{}
	for o := range 2000 {
		wins[Place(PlacementSeed{byte(o), byte(o >> 8)}, 1, cs)[0]]++
	}
	if wins[cs[1].ID] <= 4*wins[cs[0].ID] {
		t.Fatalf("quota not weighted: full %d, empty %d", wins[cs[0].ID], wins[cs[1].ID])
	}
}

// TestPopulationPrior: a peer never observed is assumed to be like those
// observed (their mean estimate), not a fixed 0.5; before anything is
// observed, Prior.
func TestPopulationPrior(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	tr := NewAvailabilityTracker(AvailabilityConfig{HalfLife: time.Hour, Now: clk.Now})
	if a := tr.Availability("new"); a != DefaultPrior {
		t.Fatalf("nothing observed: %v, want %v", a, DefaultPrior)
	}
	// Eight peers online 10% of the time, for many half-lives.
	for range 200 {
		for i := range 8 {
			tr.Succeeded(peer.ID(fmt.Sprint(i)))
		}
		clk.Advance(6 * time.Minute)
		for i := range 8 {
			tr.Failed(peer.ID(fmt.Sprint(i)))
		}
		clk.Advance(54 * time.Minute)
	}
	a := tr.Availability("new")
	if math.Abs(a-0.1) > 0.05 {
		t.Fatalf("population prior %v, want about 0.1", a)
	}
	// A newcomer starts there and its own observations move it.
	tr.Connected("new")
	clk.Advance(time.Hour)
	if b := tr.Availability("new"); math.Abs(b-(1-(1-a)/2)) > 0.02 {
		t.Fatalf("newcomer after a half-life online: %v, want %v", b, 1-(1-a)/2)
	}
}

// TestPlanRepairLazy: lost shards are regenerated only once P(>=k online)
// of the holders left falls below the target, and then only as many as
// bring it back to the target.
func TestPlanRepairLazy(t *testing.T) {
	now, pol := time.Unix(1e6, 0), DefaultRepairPolicy()
	p := Params{DataShards: 4, ParityShards: 10, SegmentSize: MinSegmentSize}
	cs := candidates(30)
	var holders []HolderStatus
	for _, c := range cs[:14] {
		holders = append(holders, HolderStatus{Peer: c.ID, Reachable: true, Complete: true, LastSeen: now, Availability: 0.8})
	}
	gone := func(i int) { holders[i].Reachable, holders[i].LastSeen = false, now.Add(-2*pol.GracePeriod) }
	// 14 holders at 0.8 for k=4, of which 12 meet the target (the issue's
	// table): the first two losses wait.
	for i := range 2 {
		gone(i)
		if plan := PlanRepair(PlacementSeed{}, p, holders, cs, pol, now); plan.Action != RepairNone {
			t.Fatalf("%d lost, %d left: %v (%s)", i+1, 14-i-1, plan.Action, plan.Reason)
		}
	}
	gone(2)
	plan := PlanRepair(PlacementSeed{}, p, holders, cs, pol, now)
	// 11 at 0.8 miss the target (0.999765); one new holder at 0.5 gives
	// 0.999873 (0.999765 + 0.5 x P(exactly 3 of 11 online), 0.000216),
	// still short; two give 0.999931.
	if got := ProbAtLeast(4, append(slices.Repeat([]float64{0.8}, 11), 0.5)); got >= pol.Target {
		t.Fatalf("one new holder at 0.5 already meets the target: %v", got)
	}
	if plan.Action != RepairNow || len(plan.Regenerate) != 2 || len(plan.Targets) != 2 || plan.ProbAfter < pol.Target {
		t.Fatalf("3 lost, 11 left (P %v): want 2 regenerated, got %+v", BinomialAtLeast(4, 11, 0.8), plan)
	}
}

// TestPlanRepairMostSurelyLostFirst: repair regenerates absent shards
// first, then gone ones by how long their holder has been unseen, and
// leaves the rest, whose holders may come back, where they are.
func TestPlanRepairMostSurelyLostFirst(t *testing.T) {
	now, pol := time.Unix(1e6, 0), DefaultRepairPolicy()
	p := Params{DataShards: 4, ParityShards: 4, SegmentSize: MinSegmentSize}
	cs := candidates(20)
	for i := range cs {
		cs[i].Availability = 0.99
	}
	var holders []HolderStatus
	for _, c := range cs[:8] {
		holders = append(holders, HolderStatus{Peer: c.ID, Reachable: true, Complete: true, LastSeen: now, Availability: 0.99})
	}
	holders[1].Reachable, holders[1].LastSeen = false, now.Add(-3*pol.GracePeriod) // gone, unseen for 3 days
	holders[4].Reachable, holders[4].LastSeen = false, now.Add(-9*pol.GracePeriod) // gone, unseen for 9 days
	holders[6].Complete = false                                                    // absent: answered without it
	// 5 left at 0.99: P(>=4) = 0.99902 < 0.9999; one more at 0.99 gives
	// 0.99998: one regeneration suffices, the absent shard.
	plan := PlanRepair(PlacementSeed{}, p, holders, cs, pol, now)
	if plan.Action != RepairNow || fmt.Sprint(plan.Regenerate) != "[6]" || plan.ProbAfter < pol.Target {
		t.Fatalf("want [6] regenerated, got %+v", plan)
	}
	// With new holders at 0.9, one gives 0.99989 (short by a hair), two
	// 0.99999: the absent shard, then the one unseen longest.
	for i := range cs {
		cs[i].Availability = 0.9
	}
	plan = PlanRepair(PlacementSeed{}, p, holders, cs, pol, now)
	if plan.Action != RepairNow || fmt.Sprint(plan.Regenerate) != "[6 4]" || plan.ProbAfter < pol.Target {
		t.Fatalf("want [6 4] regenerated, got %+v", plan)
	}
}

// TestPopulationPriorRunningSum: the prior kept as a running sum equals
// the mean of every tracked estimate computed one by one, through
// observations, pruning, forgetting and an epoch rebase.
func TestPopulationPriorRunningSum(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	tr := NewAvailabilityTracker(AvailabilityConfig{HalfLife: time.Minute, Now: clk.Now, MaxPeers: 40})
	r := rand.New(rand.NewPCG(1, 2))
	ids := make([]peer.ID, 60)
	for i := range ids {
		ids[i] = peer.ID(fmt.Sprint("p", i))
	}
	for step := range 5000 {
		p := ids[r.IntN(len(ids))]
		switch r.IntN(10) {
		case 0:
			tr.Forget(p)
		case 1, 2, 3, 4:
			tr.Connected(p)
		default:
			tr.Disconnected(p)
		}
		clk.Advance(time.Duration(r.IntN(20)) * time.Second) // 5000 steps pass maxEpochHalfLives
		if step%97 != 0 {
			continue
		}
		tr.mu.Lock()
		sum, n := 0.0, 0
		for _, pa := range tr.peers {
			sum += tr.estimateAt(pa, clk.t)
			n++
		}
		tr.priorAt = time.Time{} // force a refresh
		got := tr.priorLocked(clk.t)
		tr.mu.Unlock()
		if n > 0 && math.Abs(got-sum/float64(n)) > 1e-9 {
			t.Fatalf("step %d: prior %v, mean of %d estimates %v", step, got, n, sum/float64(n))
		}
	}
	if !tr.epoch.After(time.Unix(0, 0)) {
		t.Fatal("the epoch was never rebased")
	}
}

// TestLowerBound: hand-computed cases of a - z sqrt(a(1-a)/(n+1)).
func TestLowerBound(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	tr := NewAvailabilityTracker(AvailabilityConfig{HalfLife: time.Hour, Prior: 0.5, Now: clk.Now, Confidence: 1})
	if a := tr.LowerBound("stranger"); a != 0.5 {
		t.Fatalf("never observed: %v, want the prior 0.5 (nothing to be optimistic about)", a)
	}
	tr.Connected("p")
	clk.Advance(time.Hour) // estimate 0.75, no return seen: 0.75 - sqrt(0.1875)
	if a, want := tr.LowerBound("p"), 0.75-math.Sqrt(0.1875); math.Abs(a-want) > 1e-9 {
		t.Fatalf("one session: %v, want %v", a, want)
	}
	// Back after a short absence: one return, seen just now (weight 1).
	tr.Disconnected("p")
	tr.Connected("p") // no time passed: estimate still 0.75
	if a, want := tr.LowerBound("p"), 0.75-math.Sqrt(0.1875/2); math.Abs(a-want) > 1e-9 {
		t.Fatalf("one return: %v, want %v", a, want)
	}
	// A half-life later the return weighs 1/2 and the estimate is 0.875.
	clk.Advance(time.Hour)
	if a, want := tr.LowerBound("p"), 0.875-math.Sqrt(0.875*0.125/1.5); math.Abs(a-want) > 1e-9 {
		t.Fatalf("a half-life later: %v, want %v", a, want)
	}
	// Always online: no spread, no margin.
	clk.Advance(100 * time.Hour)
	if a := tr.LowerBound("p"); a < 0.999999 {
		t.Fatalf("online for 100 half-lives: %v", a)
	}
	off := NewAvailabilityTracker(AvailabilityConfig{HalfLife: time.Hour, Prior: 0.5, Now: clk.Now, Confidence: -1})
	off.Connected("q")
	clk.Advance(time.Hour)
	if off.LowerBound("q") != off.Availability("q") {
		t.Fatal("negative confidence: the bound is not the mean")
	}
}

// TestLowerBoundAgainstWinnersCurse is why the policy places on the lower
// bound. 2,000 peers with availabilities from Beta(0.2, 0.8) (realistic-
// mix's volunteers) come and go in heavy-tailed sessions (Weibull shape
// 0.5, mean 2 h; downtimes scaled to each peer's availability) for ten
// days under a 24-hour tracker. Placement seeks the peers with the highest
// estimates: the 100 (400) highest means are, by their true availability,
// overestimated by 0.050 (0.064) on average, the highest lower bounds
// (the default z, 0.15) by 0.030 (0.044); with z = 0.25 by 0.024 (0.030).
// Asserted: at least 0.03 for the mean, and a quarter less for the bound
// (the rest is within what the target tolerates: realistic-mix reads
// 0.99995 over a year, docs/simulation.md).
func TestLowerBoundAgainstWinnersCurse(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	tr := NewAvailabilityTracker(AvailabilityConfig{Now: clk.Now})
	r := rand.New(rand.NewPCG(14, 2))
	const n = 2000
	type node struct {
		id     peer.ID
		avail  float64
		online bool
		next   time.Duration
	}
	// Weibull shape 0.5 with mean m: scale m/2, sample scale*(-ln U)^2.
	weib := func(mean time.Duration) time.Duration {
		u := 1 - r.Float64()
		return time.Duration(float64(mean) / 2 * math.Pow(-math.Log(u), 2))
	}
	beta := func() float64 { // Beta(0.2, 0.8) as X/(X+Y) of Gammas, by Johnk for shape < 1
		for {
			x, y := math.Pow(r.Float64(), 1/0.2), math.Pow(r.Float64(), 1/0.8)
			if x+y <= 1 && x+y > 0 {
				return min(max(x/(x+y), 0.01), 0.99)
			}
		}
	}
	nodes := make([]*node, n)
	for i := range nodes {
		a := beta()
		nodes[i] = &node{id: peer.ID(fmt.Sprint("v", i)), avail: a, online: r.Float64() < a}
		nodes[i].next = weib(2 * time.Hour)
	}
	const step = time.Minute
	for now := time.Duration(0); now < 240*time.Hour; now += step {
		for _, nd := range nodes {
			if now < nd.next {
				continue
			}
			nd.online = !nd.online
			if nd.online {
				tr.Connected(nd.id)
				nd.next = now + weib(2*time.Hour)
			} else {
				tr.Disconnected(nd.id)
				nd.next = now + weib(time.Duration(float64(2*time.Hour)*(1-nd.avail)/nd.avail))
			}
		}
		clk.Advance(step)
	}
	overestimate := func(score func(peer.ID) float64, top int) float64 {
		sorted := slices.Clone(nodes)
		slices.SortStableFunc(sorted, func(a, b *node) int { return cmpDesc(score(a.id), score(b.id)) })
		over := 0.0
		for _, nd := range sorted[:top] {
			over += score(nd.id) - nd.avail
		}
		return over / float64(top)
	}
	for _, top := range []int{100, 400} {
		byMean, byBound := overestimate(tr.Availability, top), overestimate(tr.LowerBound, top)
		t.Logf("the %d most available by their estimate are overestimated by %.3f (mean) and %.3f (lower bound) on average", top, byMean, byBound)
		if byMean < 0.03 {
			t.Fatalf("top %d: the mean overestimates its winners by only %.3f: no winner's curse to fix", top, byMean)
		}
		if byBound > 0.75*byMean {
			t.Fatalf("top %d: the lower bound overestimates its winners by %.3f, the mean by %.3f", top, byBound, byMean)
		}
	}
}
