package erasure

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/time/rate"
)

// HolderStatus is what a repair check learned about the holder of one
// shard index.
type HolderStatus struct {
	Peer peer.ID
	// Reachable: the holder answered the check just now.
	Reachable bool
	// Complete: it holds a verified copy of its shard of every segment.
	// Meaningful only when Reachable.
	Complete bool
	// LastSeen is when the holder was last known online; zero if never.
	LastSeen     time.Time
	Availability float64
	// HandedOff: Peer is not the holder the manifest names (which did not
	// answer) but the peer a trusted handoff hint led to, which has every
	// shard. Repair adopts it into the next manifest version.
	HandedOff bool
}

// CheckedHolder is the status PlanRepair needs of holder p, from what a
// check found (reachable: p answered; complete: with its shard of every
// segment) and the checking peer's tracker, whose lower confidence bound
// (LowerBound) is the availability, as at Put. The checking peer (self) is
// online whenever it checks, so its own availability counts as 1. A
// holder not seen since the checker started (started) is given the
// benefit of the doubt from then: after a restart nothing is known yet.
// It is pure: the simulator calls it too.
func CheckedHolder(p, self peer.ID, reachable, complete bool, t *AvailabilityTracker, started, now time.Time) HolderStatus {
	st := HolderStatus{Peer: p, Reachable: reachable, Complete: reachable && complete, LastSeen: started}
	lower, ls, seen := t.view(p)
	st.Availability = lower
	if p == self {
		st.Availability = 1
	}
	if seen && ls.After(st.LastSeen) {
		st.LastSeen = ls
	}
	if reachable {
		st.LastSeen = now
	}
	return st
}

// ShardState classifies one shard index for repair.
type ShardState int

const (
	// ShardHealthy: the holder is online and has the shard.
	ShardHealthy ShardState = iota
	// ShardOffline: the holder is offline but was seen within the grace
	// period; most such holders come back, so the shard is not yet lost.
	ShardOffline
	// ShardAbsent: the holder is online but no longer has the shard
	// (deleted, corrupt, evicted): lost.
	ShardAbsent
	// ShardGone: the holder has not been seen for longer than the grace
	// period: presumed gone for good, the shard lost.
	ShardGone
)

func (s ShardState) String() string {
	switch s {
	case ShardHealthy:
		return "healthy"
	case ShardOffline:
		return "offline"
	case ShardAbsent:
		return "absent"
	case ShardGone:
		return "gone"
	}
	return fmt.Sprintf("ShardState(%d)", int(s))
}

// RepairPolicy holds the repair thresholds.
type RepairPolicy struct {
	// Target is the probability that at least k shards are online that
	// repair restores. Default DefaultTarget (0.9999).
	Target float64
	// GracePeriod is how long an unreachable holder is presumed to come back
	// before its shard counts as lost. Default 24 h: volunteers go offline
	// for nights and weekends, and regenerating every shard whose holder
	// sleeps would cost more bandwidth than it saves (Wuala's lesson).
	GracePeriod time.Duration
}

// DefaultRepairPolicy returns the defaults.
func DefaultRepairPolicy() RepairPolicy {
	return RepairPolicy{Target: DefaultTarget, GracePeriod: 24 * time.Hour}
}

// RepairAction is what PlanRepair decides.
type RepairAction int

const (
	// RepairNone: redundancy is sufficient.
	RepairNone RepairAction = iota
	// RepairNow: regenerate Plan.Regenerate onto Plan.Targets.
	RepairNow
	// RepairBlocked: repair is needed but fewer than k shards are reachable
	// now, so nothing can be rebuilt until holders return.
	RepairBlocked
)

func (a RepairAction) String() string {
	return [...]string{"none", "repair", "blocked"}[a]
}

// RepairPlan is the outcome of PlanRepair.
type RepairPlan struct {
	Action RepairAction
	Reason string
	States []ShardState // per shard index
	// Healthy, Offline and Lost count the shard indices in each class
	// (Lost = Absent + Gone).
	Healthy, Offline, Lost int
	// Prob is the estimated probability that at least k shards are online,
	// lost shards counting as never online; ProbAfter the same once the
	// plan is carried out.
	Prob, ProbAfter float64
	// Regenerate lists the shard indices to rebuild, most surely lost
	// first, Targets the new holder of each (Targets[i] for Regenerate[i]).
	// Targets may be shorter when there are too few candidates; the rest
	// wait for the next check.
	Regenerate []int
	Targets    []peer.ID
}

// PlanRepair decides whether an object needs repair and how. It is pure:
// the simulator calls it with the same inputs the service does. seed is
// the object's placement seed (AppKey.PlacementSeed).
//
// A shard index is lost when its holder is online without it (absent) or
// has been unreachable for longer than the grace period (gone). Repair is
// lazy (Total Recall, Carbonite): it is due only when something is lost
// and the probability that k shards are online, from the availability of
// the holders left (lost shards count as never online), has fallen below
// the target: the same model and target Put chose m with, so an object
// whose surviving holders still meet the target waits, and the losses of
// several holders are repaired together from one fetch of k shards. It
// then regenerates as many lost shards as bring the probability back to
// the target (all of them when that is not enough), most surely lost
// first: absent ones, then gone ones by how long their holder has been
// unseen; the others stay in the manifest and count again if their holder
// returns. The new holders are chosen by PlaceShards (excluding all
// current holders). Shards of holders that are offline
// within the grace period are never moved, however low the probability:
// with volunteers online a fifth of the time, moving the shards of
// sleeping holders would keep repair busy forever (Wuala's lesson).
func PlanRepair(seed PlacementSeed, p Params, holders []HolderStatus, cands []Candidate, pol RepairPolicy, now time.Time) RepairPlan {
	k, n := p.DataShards, p.Total()
	plan := RepairPlan{States: make([]ShardState, n)}
	avail := make([]float64, n)
	for i := range n {
		var h HolderStatus
		if i < len(holders) {
			h = holders[i]
		}
		switch {
		case h.Reachable && h.Complete:
			plan.States[i] = ShardHealthy
			plan.Healthy++
		case h.Reachable:
			plan.States[i] = ShardAbsent
			plan.Lost++
		case !h.LastSeen.IsZero() && now.Sub(h.LastSeen) <= pol.GracePeriod:
			plan.States[i] = ShardOffline
			plan.Offline++
		default:
			plan.States[i] = ShardGone
			plan.Lost++
		}
		if plan.States[i] == ShardHealthy || plan.States[i] == ShardOffline {
			avail[i] = h.Availability
		}
	}
	plan.Prob = ProbAtLeast(k, avail)
	plan.ProbAfter = plan.Prob
	present := plan.Healthy + plan.Offline
	switch {
	case plan.Lost == 0 && plan.Prob >= pol.Target:
		plan.Reason = "all shards present"
		return plan
	case plan.Lost > 0 && plan.Prob >= pol.Target:
		plan.Reason = fmt.Sprintf("%d lost, %d present, target met: repair waits", plan.Lost, present)
		return plan
	}

	exclude := map[peer.ID]Candidate{}
	for _, h := range holders {
		exclude[h.Peer] = Candidate{ID: h.Peer}
	}
	for _, c := range cands {
		if _, ok := exclude[c.ID]; ok {
			exclude[c.ID] = c // keep the zone, for the spread
		}
	}
	candAvail := map[peer.ID]float64{}
	for _, c := range cands {
		candAvail[c.ID] = c.Availability
	}
	for i, s := range plan.States {
		if s == ShardAbsent || s == ShardGone {
			plan.Regenerate = append(plan.Regenerate, i)
		}
	}
	// Most surely lost first: absent shards (the holder answered without
	// it), then gone ones by how long their holder has been unseen.
	lastSeen := func(i int) time.Time {
		if i < len(holders) {
			return holders[i].LastSeen
		}
		return time.Time{}
	}
	slices.SortStableFunc(plan.Regenerate, func(a, b int) int {
		if sa, sb := plan.States[a] == ShardAbsent, plan.States[b] == ShardAbsent; sa != sb {
			if sa {
				return -1
			}
			return 1
		}
		return lastSeen(a).Compare(lastSeen(b))
	})
	plan.Targets = PlaceShards(seed, plan.Regenerate, cands, exclude)
	// Regenerate only as many as bring P(>=k online) back to the target:
	// a holder unseen past the grace period has often not left for good
	// (a volunteer online a few percent of the time is offline for days),
	// and its shard counts again when it returns; regenerating every shard
	// presumed lost stored half as much again as departures took
	// (docs/simulation.md, the repair bound).
	after := append([]float64(nil), avail...)
	plan.ProbAfter = plan.Prob
	for j, t := range plan.Targets {
		after[plan.Regenerate[j]] = candAvail[t]
		plan.ProbAfter = ProbAtLeast(k, after)
		if plan.ProbAfter >= pol.Target {
			plan.Targets, plan.Regenerate = plan.Targets[:j+1], plan.Regenerate[:j+1]
			break
		}
	}
	if len(plan.Regenerate) == 0 {
		plan.Reason = "below target, but no shard is lost: nothing to regenerate"
		if plan.Offline > 0 {
			plan.Reason = "below target, but no shard is lost: offline holders are waited for"
		}
		return plan
	}
	if plan.Healthy < k {
		plan.Action = RepairBlocked
		plan.Reason = fmt.Sprintf("repair needed but only %d of %d shards reachable", plan.Healthy, k)
		return plan
	}
	if len(plan.Targets) == 0 {
		plan.Action = RepairBlocked
		spare := 0
		for _, c := range cands {
			if _, held := exclude[c.ID]; !held {
				spare++
			}
		}
		plan.Reason = "repair needed but no peer besides the object's holders is known to take a shard"
		if spare > 0 {
			plan.Reason = fmt.Sprintf("repair needed but none of the %d candidate peers besides the holders can take a shard", spare)
		}
		return plan
	}
	plan.Action = RepairNow
	plan.Reason = fmt.Sprintf("%d lost, %d present, P(>=k online) %.6f (target %v)",
		plan.Lost, present, plan.Prob, pol.Target)
	return plan
}

// SchedulerConfig configures a RepairScheduler.
type SchedulerConfig struct {
	// Interval between two checks of the same object. Default 1 h.
	Interval time.Duration
	// Jitter spreads checks: each next check is Interval times a uniform
	// factor in [1-Jitter/2, 1+Jitter/2]; the first check of an object is
	// uniform in [0, Interval). Default 0.5, so objects written together
	// (or peers that returned together) do not check in step.
	Jitter float64
	// ChecksPerSecond and CheckBurst bound how fast objects are checked
	// (a check asks each holder one question). Defaults 2/s, burst 16.
	ChecksPerSecond float64
	CheckBurst      int
	// RepairsPerSecond and RepairBurst bound how many repairs start: after
	// a mass departure every app peer would otherwise regenerate at once.
	// Defaults 0.2/s (one every 5 s), burst 4.
	RepairsPerSecond float64
	RepairBurst      int
	// RetryAfter is how soon an object whose repair was refused by the rate
	// limit, blocked or failed is checked again. Default 5 min.
	RetryAfter time.Duration
	// Seed seeds the jitter; 0 picks a random seed. The simulator sets it
	// for reproducible runs.
	Seed uint64
}

// DefaultSchedulerConfig returns the defaults.
func DefaultSchedulerConfig() SchedulerConfig {
	return SchedulerConfig{Interval: time.Hour, Jitter: 0.5, ChecksPerSecond: 2, CheckBurst: 16,
		RepairsPerSecond: 0.2, RepairBurst: 4, RetryAfter: 5 * time.Minute}
}

func (c *SchedulerConfig) validate() error {
	switch {
	case c.Interval <= 0:
		return fmt.Errorf("scheduler: Interval %v must be positive", c.Interval)
	case c.Jitter < 0 || c.Jitter > 1:
		return fmt.Errorf("scheduler: Jitter %v must be in [0, 1]", c.Jitter)
	case c.ChecksPerSecond <= 0 || c.CheckBurst < 1:
		return fmt.Errorf("scheduler: ChecksPerSecond %v / CheckBurst %d must be positive", c.ChecksPerSecond, c.CheckBurst)
	case c.RepairsPerSecond <= 0 || c.RepairBurst < 1:
		return fmt.Errorf("scheduler: RepairsPerSecond %v / RepairBurst %d must be positive", c.RepairsPerSecond, c.RepairBurst)
	case c.RetryAfter <= 0:
		return fmt.Errorf("scheduler: RetryAfter %v must be positive", c.RetryAfter)
	}
	return nil
}

// RepairScheduler decides when each object is checked and whether a repair
// may start, with jitter and token-bucket rate limits. It takes the time as
// an argument and never sleeps, so the service drives it from a ticker and
// the simulator from virtual time. It is safe for concurrent use.
type RepairScheduler struct {
	cfg     SchedulerConfig
	mu      sync.Mutex
	rnd     *rand.Rand
	due     map[ObjectID]*schedEntry
	queue   schedQueue // the entries of due, earliest first
	checks  *rate.Limiter
	repairs *rate.Limiter
}

// NewRepairScheduler returns a scheduler with no objects.
func NewRepairScheduler(cfg SchedulerConfig) (*RepairScheduler, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	return &RepairScheduler{
		cfg:     cfg,
		rnd:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		due:     map[ObjectID]*schedEntry{},
		checks:  rate.NewLimiter(rate.Limit(cfg.ChecksPerSecond), cfg.CheckBurst),
		repairs: rate.NewLimiter(rate.Limit(cfg.RepairsPerSecond), cfg.RepairBurst),
	}, nil
}

// Add schedules obj's first check at a random point of the next interval;
// an object already scheduled keeps its time.
func (s *RepairScheduler) Add(obj ObjectID, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.due[obj]; !ok {
		e := &schedEntry{obj: obj, at: now.Add(time.Duration(s.rnd.Float64() * float64(s.cfg.Interval)))}
		s.due[obj] = e
		heap.Push(&s.queue, e)
	}
}

// Remove stops checking obj.
func (s *RepairScheduler) Remove(obj ObjectID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.due[obj]; ok {
		heap.Remove(&s.queue, e.idx)
		delete(s.due, obj)
	}
}

// Len returns the number of objects scheduled.
func (s *RepairScheduler) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.due)
}

// Objects returns the objects scheduled.
func (s *RepairScheduler) Objects() []ObjectID {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ObjectID, 0, len(s.due))
	for o := range s.due {
		out = append(out, o)
	}
	return out
}

// NextDue returns when the earliest object is due, or false when none is
// scheduled.
func (s *RepairScheduler) NextDue() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return time.Time{}, false
	}
	return s.queue[0].at, true
}

// Due returns the objects to check now, earliest first (ties by object id),
// as many as the check rate allows, and schedules each one's next check an
// interval (with jitter) later. Objects left out stay due for the next
// call. It costs O(log n) per object returned, not a scan of all n.
func (s *RepairScheduler) Due(now time.Time) []ObjectID {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ready []ObjectID
	// Interval > 0 and Jitter <= 1 (validate) put every rescheduled object
	// after now, so none is returned twice; the length bound is a backstop.
	for len(s.queue) > 0 && len(ready) < len(s.queue) {
		e := s.queue[0]
		if e.at.After(now) {
			break
		}
		if !s.checks.AllowN(now, 1) {
			break
		}
		e.at = now.Add(s.jittered(s.cfg.Interval))
		heap.Fix(&s.queue, 0)
		ready = append(ready, e.obj)
	}
	return ready
}

// schedEntry is one scheduled object.
type schedEntry struct {
	obj ObjectID
	at  time.Time
	idx int // position in the queue
}

// schedQueue is a min-heap of entries by due time, then object id (so
// that the order, and with it a seeded simulation, is deterministic).
type schedQueue []*schedEntry

func (q schedQueue) Len() int { return len(q) }
func (q schedQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return string(q[i].obj[:]) < string(q[j].obj[:])
}
func (q schedQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].idx, q[j].idx = i, j
}
func (q *schedQueue) Push(x any) {
	e := x.(*schedEntry)
	e.idx = len(*q)
	*q = append(*q, e)
}
func (q *schedQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return e
}

// jittered returns d scaled by a factor uniform in [1-J/2, 1+J/2].
func (s *RepairScheduler) jittered(d time.Duration) time.Duration {
	f := 1 - s.cfg.Jitter/2 + s.cfg.Jitter*s.rnd.Float64()
	return time.Duration(float64(d) * f)
}

// AllowRepair reports whether a repair may start now (one token of the
// repair bucket). When it may not, the object is rescheduled after
// RetryAfter.
func (s *RepairScheduler) AllowRepair(obj ObjectID, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.repairs.AllowN(now, 1) {
		return true
	}
	s.retryLocked(obj, now)
	return false
}

// Retry checks obj again after about RetryAfter (a blocked or failed repair).
func (s *RepairScheduler) Retry(obj ObjectID, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retryLocked(obj, now)
}

func (s *RepairScheduler) retryLocked(obj ObjectID, now time.Time) {
	if e, ok := s.due[obj]; ok {
		e.at = now.Add(s.jittered(s.cfg.RetryAfter))
		heap.Fix(&s.queue, e.idx)
	}
}
