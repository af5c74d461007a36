package erasure

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// fakeClock is a settable clock for the pure policy code.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func TestAvailabilityEWMA(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	tr := NewAvailabilityTracker(AvailabilityConfig{HalfLife: time.Hour, Prior: 0.5, Now: clk.Now})
	p := peer.ID("p")
	if a := tr.Availability(p); a != 0.5 {
		t.Fatalf("prior %v", a)
	}
	if _, ok := tr.LastSeen(p); ok {
		t.Fatal("unseen peer has a last-seen time")
	}
	tr.Connected(p)
	clk.Advance(time.Hour) // one half-life online: 0.5 -> 0.75
	if a := tr.Availability(p); math.Abs(a-0.75) > 1e-9 {
		t.Fatalf("after 1 half-life online: %v, want 0.75", a)
	}
	tr.Disconnected(p)
	offAt := clk.t
	clk.Advance(2 * time.Hour) // two half-lives offline: 0.75 -> 0.1875
	if a := tr.Availability(p); math.Abs(a-0.1875) > 1e-9 {
		t.Fatalf("after 2 half-lives offline: %v, want 0.1875", a)
	}
	if ls, ok := tr.LastSeen(p); !ok || !ls.Equal(offAt) {
		t.Fatalf("last seen %v, want %v", ls, offAt)
	}
	// A peer on 20% of the time converges to ~0.2.
	tr = NewAvailabilityTracker(AvailabilityConfig{HalfLife: 24 * time.Hour, Now: clk.Now})
	q := peer.ID("q")
	for range 500 {
		tr.Succeeded(q)
		clk.Advance(12 * time.Minute)
		tr.Failed(q)
		clk.Advance(48 * time.Minute)
	}
	if a := tr.Availability(q); math.Abs(a-0.2) > 0.05 {
		t.Fatalf("20%% duty cycle estimated at %v", a)
	}
}

func TestProbAtLeast(t *testing.T) {
	// Binomial cross-check against the closed form.
	binom := func(k, n int, p float64) float64 {
		s := 0.0
		for j := k; j <= n; j++ {
			c := 1.0
			for i := range j {
				c = c * float64(n-i) / float64(i+1)
			}
			s += c * math.Pow(p, float64(j)) * math.Pow(1-p, float64(n-j))
		}
		return s
	}
	for _, tc := range []struct {
		k, n int
		p    float64
	}{{1, 1, 0.3}, {4, 8, 0.5}, {4, 32, 0.2}, {8, 16, 0.9}, {3, 3, 1}} {
		got, want := BinomialAtLeast(tc.k, tc.n, tc.p), binom(tc.k, tc.n, tc.p)
		if math.Abs(got-want) > 1e-12 {
			t.Errorf("k=%d n=%d p=%v: %v, want %v", tc.k, tc.n, tc.p, got, want)
		}
	}
	// Heterogeneous: P(at least 1 of {0.5, 0.2}) = 1 - 0.5*0.8.
	if got := ProbAtLeast(1, []float64{0.5, 0.2}); math.Abs(got-0.6) > 1e-12 {
		t.Errorf("poisson-binomial: %v", got)
	}
	if ProbAtLeast(0, nil) != 1 || ProbAtLeast(3, []float64{1, 1}) != 0 {
		t.Error("edge cases")
	}
}

func TestChooseParity(t *testing.T) {
	servers := make([]float64, 32)
	volunteers := make([]float64, 32)
	for i := range servers {
		servers[i], volunteers[i] = 0.99, 0.2
	}
	m, prob, ok := ChooseParity(4, servers, DefaultTarget, DefaultMinParity, MaxShards)
	if !ok || m != 2 || prob < DefaultTarget {
		t.Fatalf("servers: m=%d p=%v ok=%v, want the minimum parity 2", m, prob, ok)
	}
	m, _, ok = ChooseParity(4, volunteers, DefaultTarget, DefaultMinParity, MaxShards)
	if ok || m != 28 {
		t.Fatalf("20%% volunteers: m=%d ok=%v, want capped at 28 and not ok", m, ok)
	}
	half := volunteers[:0]
	for range 32 {
		half = append(half, 0.5)
	}
	m, prob, ok = ChooseParity(4, half, DefaultTarget, DefaultMinParity, MaxShards)
	if !ok || prob < DefaultTarget || ProbAtLeast(4, half[:4+m-1]) >= DefaultTarget {
		t.Fatalf("50%%: m=%d p=%v ok=%v is not the least m", m, prob, ok)
	}
	if m, _, ok := ChooseParity(4, servers[:3], DefaultTarget, 2, MaxShards); ok || m != 0 {
		t.Fatalf("too few peers: m=%d ok=%v", m, ok)
	}
}

func candidates(n int, zones ...string) []Candidate {
	cs := make([]Candidate, n)
	for i := range cs {
		cs[i] = Candidate{ID: peer.ID(fmt.Sprintf("peer-%02d", i)), Availability: 0.5, HasQuota: true}
		if len(zones) > 0 {
			cs[i].Zone = zones[i%len(zones)]
		}
	}
	return cs
}

func TestPlaceDeterministicDistinctPrefix(t *testing.T) {
	obj := PlacementSeed{1}
	cs := candidates(20)
	a := Place(obj, 8, cs)
	// Reverse the input order: same answer.
	rev := make([]Candidate, len(cs))
	for i := range cs {
		rev[len(cs)-1-i] = cs[i]
	}
	b := Place(obj, 8, rev)
	seen := map[peer.ID]bool{}
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("placement depends on candidate order")
		}
		if seen[a[i]] {
			t.Fatal("peer chosen twice")
		}
		seen[a[i]] = true
	}
	c := Place(obj, 12, cs)
	for i := range a {
		if a[i] != c[i] {
			t.Fatal("Place(8) is not a prefix of Place(12)")
		}
	}
	if len(Place(obj, 30, cs)) != 20 {
		t.Fatal("more shards than candidates")
	}
	// Equal weights: shard 0 goes to the peer with the least hash of
	// (target, id).
	tgt := ShardTarget(obj, 0)
	best := cs[0].ID
	for _, cd := range cs {
		if placementScore(tgt, keyOf(cd.ID), 1) < placementScore(tgt, keyOf(best), 1) {
			best = cd.ID
		}
	}
	if a[0] != best {
		t.Fatal("shard 0 not on the best-scoring peer")
	}
}

func TestPlaceSkipsFullAndSpreadsZones(t *testing.T) {
	cs := candidates(12, "a", "b", "c")
	full := map[peer.ID]bool{}
	for i := range cs {
		if i%4 == 0 {
			cs[i].HasQuota = false
			full[cs[i].ID] = true
		}
	}
	for o := range 50 {
		got := Place(PlacementSeed{byte(o)}, 6, cs)
		zones := map[string]int{}
		for _, p := range got {
			if full[p] {
				t.Fatal("placed on a peer without quota")
			}
			for _, c := range cs {
				if c.ID == p {
					zones[c.Zone]++
				}
			}
		}
		if zones["a"] != 2 || zones["b"] != 2 || zones["c"] != 2 {
			t.Fatalf("zones not spread: %v", zones)
		}
	}
}

func TestPlaceWeightsAvailability(t *testing.T) {
	cs := candidates(10)
	cs[0].Availability, cs[1].Availability = 1, 0.05
	wins := map[peer.ID]int{}
	for o := range 2000 {
		wins[Place(PlacementSeed{byte(o), byte(o >> 8)}, 1, cs)[0]]++
	}
	if wins[cs[0].ID] <= 3*wins[cs[1].ID] || wins[cs[0].ID] < 200 {
		t.Fatalf("availability not weighted: %d vs %d", wins[cs[0].ID], wins[cs[1].ID])
	}
}

func TestPlanRepair(t *testing.T) {
	now := time.Unix(1e6, 0)
	p := Params{DataShards: 4, ParityShards: 4, SegmentSize: MinSegmentSize}
	cs := candidates(20)
	holders := make([]HolderStatus, 8)
	for i := range holders {
		holders[i] = HolderStatus{Peer: cs[i].ID, Reachable: true, Complete: true, LastSeen: now, Availability: 0.99}
	}
	pol := DefaultRepairPolicy()
	plan := PlanRepair(PlacementSeed{}, p, holders, cs, pol, now)
	if plan.Action != RepairNone {
		t.Fatalf("healthy object: %v (%s)", plan.Action, plan.Reason)
	}
	// One shard gone, 7 present >= threshold 6, target met: lazy, no repair.
	holders[0].Reachable, holders[0].LastSeen = false, now.Add(-48*time.Hour)
	if plan = PlanRepair(PlacementSeed{}, p, holders, cs, pol, now); plan.Action != RepairNone || plan.Lost != 1 {
		t.Fatalf("one lost: %v lost=%d (%s)", plan.Action, plan.Lost, plan.Reason)
	}
	// Three gone: 5 present < 6: repair exactly those, onto non-holders.
	for i := 1; i < 3; i++ {
		holders[i].Reachable, holders[i].LastSeen = false, time.Time{}
	}
	plan = PlanRepair(PlacementSeed{}, p, holders, cs, pol, now)
	// All three are needed (one at 0.5 gives 0.99950, two 0.99975, three
	// 0.99987: as near the target as these candidates allow); the two never
	// seen go first, then the one seen 48 hours ago.
	if plan.Action != RepairNow || fmt.Sprint(plan.Regenerate) != "[1 2 0]" || len(plan.Targets) != 3 {
		t.Fatalf("three lost: %+v", plan)
	}
	for _, tgt := range plan.Targets {
		for _, h := range holders {
			if tgt == h.Peer {
				t.Fatal("repair target is a current holder")
			}
		}
	}
	// No peer known but the holders: blocked, saying that, not "quota".
	plan = PlanRepair(PlacementSeed{}, p, holders, nil, pol, now)
	if plan.Action != RepairBlocked || !strings.Contains(plan.Reason, "no peer besides the object's holders") {
		t.Fatalf("three lost, no candidates: %+v", plan)
	}
	// Offline within the grace period is not lost.
	for i := range 3 {
		holders[i].LastSeen = now.Add(-time.Hour)
	}
	if plan = PlanRepair(PlacementSeed{}, p, holders, cs, pol, now); plan.Action != RepairNone || plan.Offline != 3 {
		t.Fatalf("offline in grace: %+v", plan)
	}
	// Present but missing its shard: absent, lost.
	holders[5].Complete = false
	holders[6].Complete = false
	holders[7].Reachable = false
	holders[7].LastSeen = time.Time{}
	plan = PlanRepair(PlacementSeed{}, p, holders, cs, pol, now)
	if plan.Action != RepairBlocked {
		t.Fatalf("2 healthy of k=4: want blocked, got %+v", plan)
	}
}

func TestRepairSchedulerJitterAndRate(t *testing.T) {
	cfg := DefaultSchedulerConfig()
	cfg.Seed = 42
	cfg.ChecksPerSecond, cfg.CheckBurst = 1, 10
	s, err := NewRepairScheduler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(0, 0)
	for i := range 100 {
		s.Add(ObjectID{byte(i)}, now)
	}
	// First checks spread over the interval: not all due at once.
	if n := len(s.Due(now.Add(cfg.Interval / 10))); n == 0 || n > 10 {
		t.Fatalf("%d due after a tenth of the interval", n)
	}
	// After the full interval all are due, but the bucket lets 1/s through.
	later := now.Add(cfg.Interval)
	got := len(s.Due(later))
	if got > 10 {
		t.Fatalf("%d checks in one instant, burst is 10", got)
	}
	total := got
	for sec := 1; sec <= 200; sec++ {
		total += len(s.Due(later.Add(time.Duration(sec) * time.Second)))
	}
	if total < 90 || total > 100+10 {
		t.Fatalf("%d checks over 200 s", total)
	}
	// Repairs: burst, then one per 5 s.
	allowed := 0
	for range 10 {
		if s.AllowRepair(ObjectID{}, later) {
			allowed++
		}
	}
	if allowed != cfg.RepairBurst {
		t.Fatalf("%d repairs allowed at once, burst %d", allowed, cfg.RepairBurst)
	}
}

// TestRepairSchedulerOrder: Due returns due objects earliest first (ties
// by id), each once, and reschedules them; Remove and Retry keep the queue
// right; NextDue tells when the next one is due.
func TestRepairSchedulerOrder(t *testing.T) {
	cfg := DefaultSchedulerConfig()
	cfg.Seed = 7
	cfg.ChecksPerSecond, cfg.CheckBurst = 1000, 1000
	cfg.Jitter = 0 // a check reschedules exactly one interval later
	s, err := NewRepairScheduler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.NextDue(); ok {
		t.Fatal("NextDue on an empty scheduler")
	}
	now := time.Unix(0, 0)
	const n = 200
	for i := range n {
		s.Add(ObjectID{byte(i), byte(i >> 8)}, now)
	}
	s.Add(ObjectID{0}, now.Add(time.Hour)) // already scheduled: keeps its time
	removed := ObjectID{5}
	s.Remove(removed)
	retried := ObjectID{6}
	s.Retry(retried, now) // due again after about RetryAfter (1 min), well before most
	first, ok := s.NextDue()
	if !ok || first.Before(now) || first.After(now.Add(cfg.Interval)) {
		t.Fatalf("NextDue %v %v", first, ok)
	}
	early := s.Due(now.Add(2 * cfg.RetryAfter))
	if !slices.Contains(early, retried) || len(early) > n/3 {
		t.Fatalf("%d due after 2 RetryAfter, the retried object among them: %v", len(early), slices.Contains(early, retried))
	}
	at := now.Add(cfg.Interval)
	due := append(early, s.Due(at)...)
	if len(due) != n-1 || s.Len() != n-1 {
		t.Fatalf("%d due of %d scheduled, want %d", len(due), s.Len(), n-1)
	}
	seen := map[ObjectID]bool{}
	for _, o := range due {
		if seen[o] || o == removed {
			t.Fatalf("%v returned twice or after Remove", o)
		}
		seen[o] = true
	}
	if more := s.Due(at); len(more) != 0 {
		t.Fatalf("%d due again at once", len(more))
	}
	next, _ := s.NextDue()
	if want := now.Add(2*cfg.RetryAfter + cfg.Interval); next.After(want) || !next.After(at) {
		t.Fatalf("next check %v, want after %v and no later than %v (an early one, an interval on)", next, at, want)
	}
}

// TestPlanPut: Put's plan keeps MinParity parity shards in a small network
// by lowering k, never chooses a peer without quota or the same peer twice,
// picks the least m that reaches the target, and does not depend on the
// order of the candidates.
func TestPlanPut(t *testing.T) {
	obj := PlacementSeed{7}
	pol := PutPolicy{DataShards: 4, MinParity: 2, MaxShards: 32, Target: 0.9999}
	if _, err := PlanPut(obj, nil, pol, 1<<10); err != ErrNotEnoughPeers {
		t.Fatalf("no candidates: %v", err)
	}
	full := candidates(3)
	for i := range full {
		full[i].HasQuota = false
	}
	if _, err := PlanPut(obj, full, pol, 1<<10); err != ErrNotEnoughPeers {
		t.Fatalf("no candidate with quota: %v", err)
	}

	// Four usable peers (one listed twice, one without quota): k = 2, m = 2.
	small := candidates(5)
	small[4].HasQuota = false
	small = append(small, small[0])
	for i := range small {
		small[i].Availability = 1
	}
	p, err := PlanPut(obj, small, pol, 1<<10)
	if err != nil || p.K != 2 || p.M != 2 || len(p.Holders) != 4 || !p.TargetMet {
		t.Fatalf("small network: %+v %v, want k=2 m=2 on 4 holders", p, err)
	}
	seen := map[peer.ID]bool{}
	for _, h := range p.Holders {
		if seen[h] || h == small[4].ID {
			t.Fatalf("holders %v: repeated or without quota", p.Holders)
		}
		seen[h] = true
	}

	// Many peers online half of the time: k = 4 and the least m reaching
	// the target, as ChooseParity computes it on the holders in order.
	many := candidates(40)
	for i := range many {
		many[i].Availability = 0.5
	}
	p, err = PlanPut(obj, many, pol, 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	avails := make([]float64, 32)
	for i := range avails {
		avails[i] = 0.5
	}
	m, prob, ok := ChooseParity(4, avails, pol.Target, pol.MinParity, pol.MaxShards)
	if p.K != 4 || p.M != m || p.Prob != prob || p.TargetMet != ok || len(p.Holders) != 4+m {
		t.Fatalf("large network: %+v, want k=4 m=%d prob %v", p, m, prob)
	}
	if want := Place(obj, 32, many)[:4+m]; fmt.Sprint(want) != fmt.Sprint(p.Holders) {
		t.Fatalf("holders %v, Place says %v", p.Holders, want)
	}
	rev := make([]Candidate, len(many))
	for i, c := range many {
		rev[len(many)-1-i] = c
	}
	if q, _ := PlanPut(obj, rev, pol, 1<<10); fmt.Sprint(q) != fmt.Sprint(p) {
		t.Fatalf("candidate order changed the plan: %+v vs %+v", q, p)
	}
}

// TestCheckedHolder: the checker counts itself as always available; a
// reachable holder is seen now; an unreachable one keeps the tracker's
// last sighting, or the checker's start if that is later.
func TestCheckedHolder(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tr := NewAvailabilityTracker(AvailabilityConfig{HalfLife: time.Hour, Prior: 0.5, Now: clk.Now})
	self, a, b := peer.ID("self"), peer.ID("a"), peer.ID("b")
	tr.Connected(a)
	clk.Advance(time.Minute)
	tr.Disconnected(a)
	seenA := clk.t
	started := time.Unix(500, 0)
	clk.Advance(time.Hour)
	now := clk.t

	if st := CheckedHolder(self, self, true, true, tr, started, now); st.Availability != 1 || !st.LastSeen.Equal(now) || !st.Complete {
		t.Errorf("self: %+v", st)
	}
	if st := CheckedHolder(a, self, false, true, tr, started, now); st.Reachable || st.Complete || !st.LastSeen.Equal(seenA) || st.Availability != tr.LowerBound(a) {
		t.Errorf("a (offline, seen at %v): %+v", seenA, st)
	}
	if st := CheckedHolder(b, self, false, false, tr, started, now); !st.LastSeen.Equal(started) || st.Availability != tr.PopulationPrior() || tr.LowerBound(b) != tr.PopulationPrior() {
		t.Errorf("b (never seen): %+v", st)
	}
	late := now.Add(-time.Second) // the checker restarted after a was last seen
	if st := CheckedHolder(a, self, false, false, tr, late, now); !st.LastSeen.Equal(late) {
		t.Errorf("a after a restart: %+v", st)
	}
	if st := CheckedHolder(b, self, true, false, tr, started, now); !st.Reachable || st.Complete || !st.LastSeen.Equal(now) {
		t.Errorf("b reachable without its shards: %+v", st)
	}
}

// TestAvailabilityTrackerBounded: a stranger connecting under ever new
// identities cannot grow the tracker past MaxPeers; the peers forgotten are
// offline ones, least recently observed first, never a connected one.
func TestAvailabilityTrackerBounded(t *testing.T) {
	now := time.Unix(0, 0)
	tr := NewAvailabilityTracker(AvailabilityConfig{Now: func() time.Time { return now }, MaxPeers: 10})
	ids := make([]peer.ID, 30)
	for i := range ids {
		ids[i] = peer.ID(fmt.Sprintf("peer-%02d", i))
	}
	tr.Connected(ids[0]) // the oldest entry, but connected
	for i := 1; i < 10; i++ {
		now = now.Add(time.Minute)
		tr.Connected(ids[i])
		tr.Disconnected(ids[i])
	}
	now = now.Add(time.Minute)
	tr.Connected(ids[10])
	if tr.Len() != 10 {
		t.Fatalf("%d peers tracked, want 10", tr.Len())
	}
	if _, ok := tr.LastSeen(ids[1]); ok {
		t.Error("the least recently observed offline peer is still tracked")
	}
	if !tr.Online(ids[0]) {
		t.Error("a connected peer was forgotten")
	}
	for _, id := range ids[11:] {
		now = now.Add(time.Minute)
		tr.Connected(id)
		tr.Disconnected(id)
	}
	if tr.Len() > 10 || !tr.Online(ids[0]) {
		t.Errorf("after 30 identities: %d tracked, connected peer kept: %v", tr.Len(), tr.Online(ids[0]))
	}
}
