package model

import (
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/sim/scenario"
	"github.com/libp2p/go-libp2p/core/peer"
)

// holderRef is the holder of one shard index: a slot and the generation
// (identity) that received the shard. Once the slot's occupant leaves for
// good the shard is gone.
type holderRef struct {
	slot int32
	gen  int32
	id   peer.ID
}

type object struct {
	id         erasure.ObjectID
	key        point // DHT key of its manifest: candidates are found near it
	owner      int   // index in storage.repairers
	size       int64
	params     erasure.Params
	holders    []holderRef
	shardBytes int64 // bytes of one shard index, all segments together
	written    bool
	lost       bool
	targetMet  bool
}

// seed is the object's placement seed. A service derives it from the app
// key (erasure.AppKey.PlacementSeed), secret and uniformly random to the
// rest of the network; the model's object ids are uniformly random
// already, and no attacker in the model grinds ids, so the id serves.
func (o *object) seed() erasure.PlacementSeed { return erasure.PlacementSeed(o.id) }

// repairer is one app server's erasure service, as far as policy goes: its
// repair scheduler and availability tracker, and when it (re)started.
type repairer struct {
	slot    int
	sched   *erasure.RepairScheduler
	tracker *erasure.AvailabilityTracker
	full    bool // tracker is the shared one of observe: full
	started time.Duration
}

// storage runs erasure's policy over the population.
type storage struct {
	sc        *scenario.Scenario
	pop       *population
	now       func() time.Duration
	epoch     time.Time
	repairers []*repairer
	objects   []*object
	byID      map[erasure.ObjectID]*object
	policy    erasure.RepairPolicy
	rng       *rand.Rand
	shared    *erasure.AvailabilityTracker // observe: full
	tracked   []bool                       // per slot: its identity is in shared (see noteOutcome)

	// Counters.
	repairBytes float64 // network bytes moved by repairs
	// repairUpload counts only the regenerated shards stored on their new
	// holders (the holder itself included), which is what erasure's
	// immense_state_repair_bytes_total counts and live mode reports.
	repairUpload    float64
	repairs         int
	blocked         int
	deferred        int
	regenerated     int
	checks          int
	writeRetries    int
	intervalBytes   float64 // since the last sample
	intervalRepairs int
	readableSamples float64
	readableTotal   float64
	lastReadable    float64
	// Why reads fail (diagnostics, summed over the hourly probes):
	// trueProbSum sums, per object sample, P(>=k online) from the true
	// long-run availability of the holders still in the network;
	// unreadableDeparted counts unreadable samples of objects with a
	// departed holder not yet replaced, unreadableTrueLow those whose
	// holders by their true availability miss the target.
	trueProbSum        float64
	unreadable         int
	unreadableDeparted int
	unreadableTrueLow  int
	// regenAliveBytes counts the regenerated shard bytes whose previous
	// holder had not left (it was offline past the grace period).
	regenAliveBytes float64
	avail           []float64 // scratch

	// Quotas and stored bytes (issue 14): used is the shard bytes each slot
	// holds; storedVol and storedSrv their sums by class; storedVolSec and
	// storedSrvSec their integrals over the measured window (byte-seconds),
	// for the Blake-Rodrigues bound; departedBytes the bytes that left
	// the network with departing holders.
	used                       []int64
	storedVol, storedSrv       int64
	storedVolSec, storedSrvSec float64
	departedBytes              float64
	// Repair bytes by who paid them (fetched + uploaded): app servers, and
	// volunteers regenerating under delegation (repair_by: volunteers).
	serverRepairBytes, volunteerRepairBytes float64
	volunteerRepairBySlot                   map[int32]float64
}

func newStorage(sc *scenario.Scenario, pop *population, now func() time.Duration, seed uint64) (*storage, error) {
	s := &storage{
		sc:      sc,
		pop:     pop,
		now:     now,
		epoch:   time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		byID:    map[erasure.ObjectID]*object{},
		policy:  erasure.RepairPolicy{Target: sc.Storage.Target, GracePeriod: sc.Storage.GracePeriod.D()},
		rng:     rand.New(rand.NewPCG(seed, 0x73746f72)), // "stor"
		used:    make([]int64, sc.Nodes),
		tracked: make([]bool, sc.Nodes),

		volunteerRepairBySlot: map[int32]float64{},
		// No object is written before the first probe: nothing to report.
		lastReadable: math.NaN(),
	}
	clock := func() time.Time { return s.clock() }
	acfg := erasure.AvailabilityConfig{Now: clock, HalfLife: sc.Storage.AvailabilityHalfLife.D(),
		Confidence: sc.Storage.AvailabilityConfidence}
	if sc.Storage.Observe == "full" {
		s.shared = erasure.NewAvailabilityTracker(acfg)
	}
	st := sc.Storage
	for i := range st.AppServers {
		cfg := erasure.DefaultSchedulerConfig()
		cfg.Interval, cfg.Jitter = st.CheckInterval.D(), st.Jitter
		cfg.ChecksPerSecond, cfg.CheckBurst = st.ChecksPerSecond, st.CheckBurst
		cfg.RepairsPerSecond, cfg.RepairBurst = st.RepairsPerSecond, st.RepairBurst
		cfg.RetryAfter = st.RetryAfter.D()
		cfg.Seed = seed*1000 + uint64(i) + 1
		sch, err := erasure.NewRepairScheduler(cfg)
		if err != nil {
			return nil, err
		}
		tr := s.shared
		if tr == nil {
			tr = erasure.NewAvailabilityTracker(acfg)
		}
		s.repairers = append(s.repairers, &repairer{slot: i, sched: sch, tracker: tr, full: s.shared != nil})
	}
	ns := erasure.NamespaceID(keyPoint("immense-sim-namespace"))
	for i := range st.Objects {
		o := &object{owner: i % len(s.repairers)}
		for j := 0; j < 32; j += 8 {
			v := s.rng.Uint64()
			for b := range 8 {
				o.id[j+b] = byte(v >> (8 * b))
			}
		}
		o.key = keyPoint(erasure.DHTKey(ns, o.id))
		// Log-uniform size between SizeMin and SizeMax.
		lo, hi := math.Log(float64(st.SizeMin)), math.Log(float64(st.SizeMax))
		o.size = int64(math.Exp(lo + s.rng.Float64()*(hi-lo)))
		s.objects = append(s.objects, o)
		s.byID[o.id] = o
	}
	return s, nil
}

func (s *storage) clock() time.Time { return s.epoch.Add(s.now()) }

// transition feeds the shared tracker (observe: full) and restarts a
// server's service when it comes back.
func (s *storage) transition(slot int, up bool) {
	if s.shared != nil {
		if up {
			s.shared.Connected(s.pop.ids[slot])
		} else {
			s.shared.Disconnected(s.pop.ids[slot])
		}
		s.tracked[slot] = true
	}
	if up && slot < len(s.repairers) {
		s.repairers[slot].started = s.now()
	}
}

// replaced forgets what the departed occupant of slot held: its shards
// left the network with it.
func (s *storage) replaced(slot int) {
	s.tracked[slot] = false // a new identity
	s.departedBytes += float64(s.used[slot])
	s.addUsed(int32(slot), -s.used[slot])
}

// addUsed changes the bytes slot holds by d.
func (s *storage) addUsed(slot int32, d int64) {
	s.used[slot] += d
	if int(slot) < s.pop.servers {
		s.storedSrv += d
	} else {
		s.storedVol += d
	}
}

// integrate adds dt of the current stored bytes to the integrals.
func (s *storage) integrate(dt time.Duration) {
	s.storedVolSec += float64(s.storedVol) * dt.Seconds()
	s.storedSrvSec += float64(s.storedSrv) * dt.Seconds()
}

// quota is the shard bytes the node in slot accepts; 0: no limit.
func (s *storage) quota(slot int32) int64 {
	if int(slot) < s.pop.servers {
		return int64(s.sc.Storage.ServerQuota)
	}
	return int64(s.sc.Storage.VolunteerQuota)
}

// noteOutcome is erasure.Service.noteOutcome for r's request to holder h.
// With observe: full the shared tracker has seen every connect and
// disconnect, so the outcome of a request to a peer it tracks tells it
// nothing new (the state observed is already the peer's, and bringing the
// estimate up to date now or later is the same computation, up to
// rounding): it is skipped, which saves a third of the tracker's work at
// 10^5 nodes. tracked says, per slot, whether its current identity is in
// the shared tracker; a peer not tracked yet (a server online since the
// start) or gone (its identity replaced) is noted.
func (s *storage) noteOutcome(r *repairer, h holderRef, online bool) {
	current := s.alive(h)
	if r.full && current && s.tracked[h.slot] {
		return
	}
	if r.full {
		if on, known := r.tracker.State(h.id); known && on == online {
			return
		}
	}
	if online {
		r.tracker.Succeeded(h.id)
	} else {
		r.tracker.Failed(h.id)
	}
	if r.full && current {
		s.tracked[h.slot] = true
	}
}

// candidates is what Service.candidates returns on the repairer: itself,
// then node's StoragePeers (the DHT's closest peers to the key, then every
// connected peer: the other servers, which bootstrap from each other, and
// a sample of the volunteers that dialled in). A peer that cannot take need
// more bytes within its quota has none (it would refuse the shard); Used
// is its share of its quota in use, which placement weighs.
func (s *storage) candidates(r *repairer, o *object, need int64) []erasure.Candidate {
	st := s.sc.Storage
	var out []erasure.Candidate
	seen := map[int32]bool{}
	add := func(slot int32) {
		if seen[slot] {
			return
		}
		seen[slot] = true
		id := s.pop.ids[slot]
		quota := slot >= int32(s.pop.servers) || *st.ServersHoldShards
		used := 0.0
		if q := s.quota(slot); q > 0 {
			used = float64(s.used[slot]) / float64(q)
			quota = quota && s.used[slot]+need <= q
		}
		out = append(out, erasure.Candidate{ID: id, Availability: r.tracker.LowerBound(id), HasQuota: quota,
			Net: s.netOf(slot), Used: used})
	}
	add(int32(r.slot))
	for _, slot := range s.pop.closestOnline(o.key, st.Candidates, nil) {
		add(slot)
	}
	for _, o := range s.repairers {
		if s.pop.isOnline(o.slot) {
			add(int32(o.slot))
		}
	}
	if n := s.pop.online.len(); n > 0 {
		for range min(st.ConnectedPeers, n) {
			add(s.pop.online.random(s.rng))
		}
	}
	return out
}

// netOf is the synthetic network (erasure.Candidate.Net) of the node in
// slot: server i in network i mod storage.server_subnets (or one of its
// own), a volunteer in one of 2^22 networks drawn from its slot and
// generation (a new identity in a slot is a new machine). Only equality
// matters to placement, so these are labels, not addresses.
func (s *storage) netOf(slot int32) string {
	if int(slot) < s.pop.servers {
		if n := s.sc.Storage.ServerSubnets; n > 0 {
			return "server-net-" + strconv.Itoa(int(slot)%n)
		}
		return "server-" + strconv.Itoa(int(slot))
	}
	x := uint64(slot)<<32 | uint64(uint32(s.pop.gens[slot]))
	// splitmix64's finaliser: a fixed, well-mixed function of (slot, gen).
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return "net-" + strconv.FormatUint(x>>42, 10)
}

func (s *storage) ref(id peer.ID) holderRef {
	slot := s.pop.slotOf[id]
	return holderRef{slot: slot, gen: s.pop.gens[slot], id: id}
}

// alive reports whether h still holds its shard (its identity is still in
// the network, online or not).
func (s *storage) alive(h holderRef) bool { return s.pop.gens[h.slot] == h.gen }

func (s *storage) reachable(h holderRef) bool { return s.alive(h) && s.pop.isOnline(int(h.slot)) }

// write stores object o as Service.put does. It returns false when the
// owner is offline or has no candidate: the caller retries later.
func (s *storage) write(o *object) bool {
	r := s.repairers[o.owner]
	if !s.pop.isOnline(r.slot) {
		return false
	}
	st := s.sc.Storage
	// The largest shard any plan can have: at the least k.
	need := shardBytes(erasure.Params{DataShards: st.DataShards, ParityShards: st.MinParity, SegmentSize: int(st.SegmentSize)}, o.size)
	plan, err := erasure.PlanPut(o.seed(), s.candidates(r, o, need), s.putPolicy(), o.size)
	if err != nil {
		return false
	}
	o.params = erasure.Params{DataShards: plan.K, ParityShards: plan.M, SegmentSize: int(st.SegmentSize)}
	o.shardBytes = shardBytes(o.params, o.size)
	o.holders = o.holders[:0]
	for _, p := range plan.Holders {
		h := s.ref(p)
		o.holders = append(o.holders, h)
		s.addUsed(h.slot, o.shardBytes)
		if p != s.pop.ids[r.slot] {
			s.noteOutcome(r, h, true) // the upload succeeded: it is online
		}
	}
	o.written, o.targetMet = true, plan.TargetMet
	r.sched.Add(o.id, s.clock())
	return true
}

// putPolicy is the scenario's erasure.PutPolicy.
func (s *storage) putPolicy() erasure.PutPolicy {
	st := s.sc.Storage
	return erasure.PutPolicy{DataShards: st.DataShards, MaxDataShards: st.MaxDataShards,
		MinShardSize: int(st.MinShardSize), SegmentSize: int(st.SegmentSize),
		MinParity: st.MinParity, MaxShards: st.MaxShards, Target: st.Target}
}

// shardBytes is the bytes of one shard index of an object of size bytes
// stored with p, all segments together.
func shardBytes(p erasure.Params, size int64) int64 {
	n := int64(0)
	for seg := range p.Segments(size) {
		n += int64(p.ShardSize(p.SegmentLen(size, seg)))
	}
	return n
}

// tick runs every repairer's due checks, as Service.repairLoop does.
func (s *storage) tick() {
	for _, r := range s.repairers {
		if !s.pop.isOnline(r.slot) {
			continue // its service is down; objects stay due
		}
		for _, id := range r.sched.Due(s.clock()) {
			if o := s.byID[id]; o != nil {
				s.check(r, o)
			}
		}
	}
}

// check is Service.RepairObject for one object.
func (s *storage) check(r *repairer, o *object) {
	now := s.clock()
	s.checks++
	self := s.pop.ids[r.slot]
	// Gone for good: fewer than k shards left anywhere.
	aliveN := 0
	for _, h := range o.holders {
		if s.alive(h) {
			aliveN++
		}
	}
	if aliveN < o.params.DataShards {
		o.lost = true
		r.sched.Remove(o.id)
		return
	}
	holders := make([]erasure.HolderStatus, len(o.holders))
	selfHealthy := false
	for i, h := range o.holders {
		var on bool
		if h.id == self && s.alive(h) {
			on, selfHealthy = true, true
		} else {
			on = s.reachable(h)
			s.noteOutcome(r, h, on)
		}
		holders[i] = erasure.CheckedHolder(h.id, self, on, on, r.tracker, s.epoch.Add(r.started), now)
	}
	// PlanRepair decides whether repair is due before it looks at the
	// candidates, so the common healthy case is settled without building
	// them (the service's Health does the same); only when it is due are
	// the candidates fetched and the plan made with them.
	plan := erasure.PlanRepair(o.seed(), o.params, holders, nil, s.policy, now)
	if plan.Action == erasure.RepairNone {
		return
	}
	plan = erasure.PlanRepair(o.seed(), o.params, holders, s.candidates(r, o, o.shardBytes), s.policy, now)
	switch plan.Action {
	case erasure.RepairNone:
		return
	case erasure.RepairBlocked:
		s.blocked++
		r.sched.Retry(o.id, now)
		return
	}
	if !r.sched.AllowRepair(o.id, now) {
		s.deferred++
		return
	}
	// Regenerate: the regenerating peer fetches k shards of every segment
	// from healthy holders (a local one costs no traffic) and stores each
	// regenerated shard index on its new holder. It is the app server, or
	// with repair_by: volunteers the first volunteer holding a healthy
	// shard (under the app's delegation; the server still decides).
	regen, local := self, selfHealthy
	if s.sc.Storage.RepairBy == "volunteers" {
		for i, st := range plan.States {
			if st == erasure.ShardHealthy && int(o.holders[i].slot) >= s.pop.servers {
				regen, local = o.holders[i].id, true
				break
			}
		}
	}
	fetched := int64(o.params.DataShards)
	if local {
		fetched--
	}
	bytes := float64(fetched * o.shardBytes)
	for i, st := range plan.States {
		if st == erasure.ShardHealthy && o.holders[i].id != self {
			s.noteOutcome(r, o.holders[i], true)
		}
	}
	for j, t := range plan.Targets {
		idx := plan.Regenerate[j]
		s.repairUpload += float64(o.shardBytes)
		if t != regen {
			bytes += float64(o.shardBytes)
		}
		nh := s.ref(t)
		if t != self {
			s.noteOutcome(r, nh, true)
		}
		if old := o.holders[idx]; s.alive(old) {
			s.addUsed(old.slot, -o.shardBytes) // its stale shard is collected
			s.regenAliveBytes += float64(o.shardBytes)
		}
		o.holders[idx] = nh
		s.addUsed(o.holders[idx].slot, o.shardBytes)
		s.regenerated++
	}
	if regen == self {
		s.serverRepairBytes += bytes
	} else {
		slot := s.pop.slotOf[regen]
		s.volunteerRepairBytes += bytes
		s.volunteerRepairBySlot[slot] += bytes
	}
	s.repairs++
	s.intervalRepairs++
	s.repairBytes += bytes
	s.intervalBytes += bytes
}

// probeReadable counts the objects readable now: at least k holders online
// with their shard.
func (s *storage) probeReadable() {
	total, readable := 0, 0
	for _, o := range s.objects {
		if !o.written {
			continue
		}
		total++
		if o.lost {
			continue
		}
		up, departed := 0, false
		s.avail = s.avail[:0]
		for _, h := range o.holders {
			if s.reachable(h) {
				up++
			}
			if s.alive(h) {
				s.avail = append(s.avail, s.pop.sched.Profile(int(h.slot)).Availability)
			} else {
				departed = true
			}
		}
		pt := erasure.ProbAtLeast(o.params.DataShards, s.avail)
		s.trueProbSum += pt
		if up >= o.params.DataShards {
			readable++
		} else {
			s.unreadable++
			if departed {
				s.unreadableDeparted++
			}
			if pt < s.sc.Storage.Target {
				s.unreadableTrueLow++
			}
		}
	}
	if total > 0 {
		s.readableSamples += float64(readable)
		s.readableTotal += float64(total)
		s.lastReadable = float64(readable) / float64(total)
	}
}

// finalLoss marks objects that have fewer than k shards left.
func (s *storage) finalLoss() int {
	lost := 0
	for _, o := range s.objects {
		if !o.written {
			continue
		}
		aliveN := 0
		for _, h := range o.holders {
			if s.alive(h) {
				aliveN++
			}
		}
		if aliveN < o.params.DataShards {
			o.lost = true
		}
		if o.lost {
			lost++
		}
	}
	return lost
}
