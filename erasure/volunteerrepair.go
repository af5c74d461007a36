package erasure

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
)

// Volunteer repair: a peer without an app's key that holds shards of the
// app's objects regenerates the lost shards of those objects under the
// app's Delegation, and says where it put them in RepairHints, which
// readers follow and the app folds into its next manifest. See
// docs/state.md ("Repair by volunteers") and docs/security.md.

// Repair roles, the role label of immense_state_repair_role_bytes_total.
const (
	roleServer    = "server"    // an app-key holder repairing its namespace
	roleVolunteer = "volunteer" // a holder repairing under a delegation
)

// VolunteerResult counts what one VolunteerRepair pass did.
type VolunteerResult struct {
	// Objects is how many objects of other namespaces the store held
	// shards of; Delegated of them had a delegation this peer may act on.
	Objects, Delegated int
	// Repaired counts objects this peer regenerated shards of, Deferred
	// those it left to a holder of better rank for now.
	Repaired, Deferred int
	// Shards and Bytes are the shards regenerated and stored on new
	// holders, and their bytes.
	Shards int
	Bytes  int64
}

// RenewDelegation signs and publishes this app's delegation when
// Config.DelegateRepair is set and the one it last published is past half
// its lifetime (or none was): volunteers then repair the namespace's
// objects while the app is away. The repair loop calls it every tick.
func (s *Service) RenewDelegation(ctx context.Context) error {
	ttl := s.cfg.DelegateRepair
	if ttl <= 0 {
		return nil
	}
	now := s.cfg.Now()
	ns := s.key.Namespace()
	if last, ok := s.delegated.get(ns); ok && now.Sub(last) < ttl/2 {
		return nil
	}
	d := &Delegation{Ops: OpRepair, Created: now, Expires: now.Add(ttl), Budget: s.cfg.DelegationBudget}
	rec, err := d.Sign(s.key)
	if err == nil {
		err = s.records.PutValue(ctx, DelegationKey(ns), rec)
	}
	if err != nil {
		return fmt.Errorf("publish delegation: %w", err)
	}
	s.delegated.set(ns, now)
	s.log.Debug("published repair delegation", "expires", d.Expires, "budget", d.Budget)
	return nil
}

// lookupDelegation gets and verifies the delegation of namespace ns; an
// error wraps ErrNotFound when there is none.
func (s *Service) lookupDelegation(ctx context.Context, ns NamespaceID) (*Delegation, []byte, error) {
	return getRecord(ctx, s.records, "delegation", DelegationKey(ns), validateDelegation)
}

// volunteerLoop runs VolunteerRepair every VolunteerRepairInterval (±25%
// jitter, so that holders started together do not pass in step).
func (s *Service) volunteerLoop() {
	s.everyJittered(s.cfg.VolunteerRepairInterval, func() {
		if _, err := s.VolunteerRepair(s.ctx); err != nil && s.ctx.Err() == nil {
			s.log.Debug("volunteer repair", "err", err)
		}
	})
}

// VolunteerRepair checks every object of another namespace that this peer
// holds shards of and whose app delegates repair to it, and repairs those
// PlanRepair says need it (lazily: only below the target), when this peer
// is first in rank among the object's healthy holders or the ones before
// it have had VolunteerBackoff each and not done it. It regenerates at
// most the delegation's budget of indices per object version, stores them
// on new holders chosen by the placement policy, and publishes a
// RepairHint for each.
func (s *Service) VolunteerRepair(ctx context.Context) (VolunteerResult, error) {
	var res VolunteerResult
	if err := s.checkOpen(); err != nil {
		return res, err
	}
	own := s.key.Namespace()
	objs := map[NamespaceID]map[ObjectID]bool{}
	for _, info := range s.store.List() {
		for _, r := range info.Refs {
			if r.Namespace == own {
				continue
			}
			if objs[r.Namespace] == nil {
				objs[r.Namespace] = map[ObjectID]bool{}
			}
			objs[r.Namespace][r.Object] = true
		}
	}
	var errs []error
	for ns, set := range objs {
		res.Objects += len(set)
		d, rec, err := s.lookupDelegation(ctx, ns)
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				errs = append(errs, err)
			}
			continue
		}
		for obj := range set {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			r, err := s.volunteerRepairObject(ctx, d, rec, ns, obj)
			if err != nil {
				errs = append(errs, fmt.Errorf("object %s: %w", obj, err))
			}
			res.Delegated += r.Delegated
			res.Repaired += r.Repaired
			res.Deferred += r.Deferred
			res.Shards += r.Shards
			res.Bytes += r.Bytes
		}
	}
	return res, errors.Join(errs...)
}

// volunteerRepairObject checks and, if its turn has come, repairs one
// object under delegation d (rec is its encoding).
func (s *Service) volunteerRepairObject(ctx context.Context, d *Delegation, rec []byte, ns NamespaceID, obj ObjectID) (VolunteerResult, error) {
	var res VolunteerResult
	dhtKey := DHTKey(ns, obj)
	m, _, err := s.latest(ctx, dhtKey)
	if errors.Is(err, ErrNotFound) {
		return res, nil
	}
	if err != nil {
		return res, err
	}
	self := s.h.ID()
	if m.Tombstone || d.Allows(OpRepair, self, m, s.cfg.Now()) != nil {
		return res, nil
	}
	res.Delegated++
	holders, hinted := s.checkHoldersHinted(ctx, m)
	hinted += s.renewRepairHints(ctx, d, rec, m, holders, d.Budget-hinted)
	seed := volunteerSeed(m)
	now := s.cfg.Now()
	// Planned first without candidates: finding them costs a DHT lookup,
	// and most objects need nothing.
	plan := PlanRepair(seed, m.Params, holders, s.withHolders(nil, holders), s.cfg.Repair, now)
	needKey := fmt.Sprintf("%s/%d", dhtKey, m.Version)
	if plan.Action == RepairNone || plan.Healthy < m.Params.DataShards {
		s.volunteerNeed.remove(needKey)
		return res, nil
	}
	since, _ := s.volunteerNeed.setFirst(needKey, now)
	rank := 0 // a named delegate is alone
	if d.Delegate == "" {
		rank = volunteerRank(seed, holders, self)
	}
	if rank < 0 || now.Sub(since) < time.Duration(rank)*s.cfg.VolunteerBackoff {
		// A holder of better rank is on it; we take over if it has not
		// done it after its turn (it may be offline or out of bandwidth).
		res.Deferred++
		return res, nil
	}
	left := d.Budget - hinted
	if left <= 0 {
		s.log.Debug("volunteer repair: delegation budget used up; waiting for the app", "object", obj.String(), "budget", d.Budget)
		return res, nil
	}
	cands, err := s.candidates(ctx, dhtKey)
	if err != nil {
		return res, err
	}
	// No target may be a peer the manifest places an index on, even one
	// whose index a hint moved elsewhere: readers refuse such a hint.
	cands = slices.DeleteFunc(cands, func(c Candidate) bool { return holds(m, c.ID) })
	if plan = PlanRepair(seed, m.Params, holders, s.withHolders(cands, holders), s.cfg.Repair, now); plan.Action != RepairNow {
		s.log.Debug("volunteer repair: cannot repair now", "object", obj.String(), "reason", plan.Reason)
		return res, nil
	}
	if len(plan.Targets) > left {
		plan.Targets = plan.Targets[:left]
	}
	plan.Regenerate = plan.Regenerate[:len(plan.Targets)]
	base, _ := adoptHandedOff(m, holders)
	s.log.Info("repairing object as a volunteer", "namespace", ns.String(), "object", obj.String(), "reason", plan.Reason,
		"shards", plan.Regenerate, "targets", plan.Targets, "rank", rank)
	moved, bytes, regErr := s.regenerate(ctx, base, plan)
	res.Bytes = bytes
	s.metrics.roleBytes(roleVolunteer, bytes)
	var errs []error
	if regErr != nil {
		errs = append(errs, regErr)
	}
	for i, p := range moved {
		h := &RepairHint{Object: obj, DataVersion: m.DataVersion, Index: i, Created: now, Signer: self,
			Holder: p, Delegation: d, delegation: rec}
		b, err := h.Sign(s.h.Peerstore().PrivKey(self))
		if err == nil {
			err = s.records.PutValue(ctx, h.Key(), b)
		}
		if err != nil {
			// The shards are on p, but nobody will know: its GC removes them.
			errs = append(errs, fmt.Errorf("publish repair hint %d: %w", i, err))
			continue
		}
		res.Shards += len(m.Hashes)
	}
	if res.Shards > 0 {
		res.Repaired++
		s.volunteerNeed.remove(needKey)
	}
	return res, errors.Join(errs...)
}

// renewRepairHints re-signs, under the current delegation d (rec), the
// repair hints of m's unreachable indices that were refused only because
// they carry an older delegation (expired while the app was away) and
// whose holder still has every shard: the shards stay where they are, and
// count again for readers. It updates holders for the indices renewed and
// returns how many, at most budget.
func (s *Service) renewRepairHints(ctx context.Context, d *Delegation, rec []byte, m *Manifest, holders []HolderStatus, budget int) int {
	self := s.h.ID()
	now := s.cfg.Now()
	renewed := 0
	for i, st := range holders {
		if renewed >= budget {
			break
		}
		if st.Reachable {
			continue
		}
		key := RepairHintKey(m.Namespace(), m.Object, i)
		b, err := s.records.GetValue(ctx, key)
		if err != nil {
			continue
		}
		old, err := validateRepairHint(key, b)
		if err != nil || old.DataVersion != m.DataVersion || !old.Delegation.Created.Before(d.Created) ||
			holds(m, old.Holder) || old.Holder == self {
			continue
		}
		hs := s.checkIndex(ctx, m, i, old.Holder)
		if !hs.Reachable || !hs.Complete {
			continue
		}
		h := &RepairHint{Object: m.Object, DataVersion: m.DataVersion, Index: i, Created: now, Signer: self,
			Holder: old.Holder, Delegation: d, delegation: rec}
		nb, err := h.Sign(s.h.Peerstore().PrivKey(self))
		if err == nil {
			err = s.records.PutValue(ctx, key, nb)
		}
		if err != nil {
			s.log.Debug("renew repair hint", "key", key, "err", err)
			continue
		}
		hs.HandedOff = true
		holders[i] = hs
		renewed++
	}
	return renewed
}

// volunteerSeed is the placement seed volunteers repair an object with.
// The app's own seed (AppKey.PlacementSeed) is secret; this one is public
// but unknown before the app signs the manifest (it hashes the
// signature), so nobody can grind peer ids to win an object's repair in
// advance, and every holder computes the same ranks and targets.
func volunteerSeed(m *Manifest) PlacementSeed {
	h := sha256.New()
	h.Write([]byte("immense-state volunteer repair v1\x00"))
	h.Write(m.Signature)
	var s PlacementSeed
	h.Sum(s[:0])
	return s
}

// volunteerRank returns self's place (0 first) among the healthy holders
// of an object that its manifest names (those an open delegation lets
// act; not the ones hints led to), ordered by SHA-256(seed || peer id),
// or -1 if self is not one: the holder of rank r repairs once the object
// has needed it for r backoffs, so one volunteer does the work and the
// next steps in only if it does not.
func volunteerRank(seed PlacementSeed, holders []HolderStatus, self peer.ID) int {
	type ranked struct {
		p peer.ID
		h [32]byte
	}
	var rs []ranked
	for _, h := range holders {
		if h.Reachable && h.Complete && !h.HandedOff && !slices.ContainsFunc(rs, func(r ranked) bool { return r.p == h.Peer }) {
			rs = append(rs, ranked{h.Peer, sha256.Sum256(append(seed[:], h.Peer...))})
		}
	}
	sort.Slice(rs, func(a, b int) bool { return string(rs[a].h[:]) < string(rs[b].h[:]) })
	for i, r := range rs {
		if r.p == self {
			return i
		}
	}
	return -1
}

// lookupRepairHint gets and verifies the repair hint of index i of m and
// checks it against m (acceptRepairHint).
func (s *Service) lookupRepairHint(ctx context.Context, m *Manifest, i int) (*RepairHint, []byte, error) {
	key := RepairHintKey(m.Namespace(), m.Object, i)
	h, b, err := getRecord(ctx, s.records, "repair hint", key, validateRepairHint)
	if err != nil {
		if errors.Is(err, ErrInvalidRepairHint) {
			s.metrics.repairHintRefused()
		}
		return nil, nil, err
	}
	if err := acceptRepairHint(m, h, s.cfg.Now()); err != nil {
		s.metrics.repairHintRefused()
		s.log.Debug("refused a repair hint", "key", key, "err", err)
		return nil, nil, fmt.Errorf("repair hint %s: %w", key, err)
	}
	return h, b, nil
}

// acceptRepairHint checks a verified repair hint against the current
// manifest m at time now: same data version; made, and still read, within
// its delegation's lifetime, by a peer the delegation names (for an open
// one, a holder m names); the new holder is not already a holder of m.
// Content is never taken from it: the shards are verified against m.
func acceptRepairHint(m *Manifest, h *RepairHint, now time.Time) error {
	d := h.Delegation
	switch {
	case h.DataVersion != m.DataVersion:
		return fmt.Errorf("%w: for data version %d, not %d", ErrInvalidRepairHint, h.DataVersion, m.DataVersion)
	case h.Created.Before(d.Created) || h.Created.After(d.Expires):
		return fmt.Errorf("%w: made outside its delegation's lifetime", ErrInvalidRepairHint)
	case holds(m, h.Holder):
		return fmt.Errorf("%w: %s already holds a shard of the object", ErrInvalidRepairHint, h.Holder)
	}
	if err := d.Allows(OpRepair, h.Signer, m, now); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidRepairHint, err)
	}
	return nil
}

// fetchViaRepairHint fetches shard i of segment seg from the peer a
// repair hint of index i names.
func (s *Service) fetchViaRepairHint(ctx context.Context, m *Manifest, seg, i int) ([]byte, peer.ID, error) {
	h, _, err := s.lookupRepairHint(ctx, m, i)
	if err != nil {
		return nil, "", err
	}
	data, err := s.fetchShard(ctx, h.Holder, m.Hashes[seg][i])
	if err != nil {
		return nil, "", fmt.Errorf("repaired holder of index %d: %w", i, err)
	}
	return data, h.Holder, nil
}

// repairedStatus is the status of the holder a repair hint names, with
// the budget of the delegation it was made under.
type repairedStatus struct {
	st     HolderStatus
	budget int
	ok     bool
}

// checkRepaired looks for the holder a repair hint names for index i of
// m when the manifest's holder did not answer: its status (HandedOff set,
// so that the app's repair adopts it) if it has every shard.
func (s *Service) checkRepaired(ctx context.Context, m *Manifest, i int) repairedStatus {
	h, _, err := s.lookupRepairHint(ctx, m, i)
	if err != nil {
		return repairedStatus{}
	}
	st := s.checkIndex(ctx, m, i, h.Holder)
	if !st.Reachable || !st.Complete {
		return repairedStatus{}
	}
	st.HandedOff = true
	return repairedStatus{st: st, budget: h.Delegation.Budget, ok: true}
}

// applyRepaired puts the holders repair hints named (rep, by index) in
// place of the manifest's unreachable ones in out, in index order, no
// more than each hint's delegation budget: a delegated peer cannot move
// more of an object than the app allowed. It returns how many it used.
func applyRepaired(out []HolderStatus, rep []repairedStatus) int {
	used := 0
	for i, r := range rep {
		if r.ok && used < r.budget {
			out[i] = r.st
			used++
		}
	}
	return used
}

// keepRepaired decides, in GC, whether to keep this peer's copy of index
// i of m, which m places elsewhere: kept while an accepted repair hint
// names this peer as its holder and the manifest's holder does not answer
// with every shard. The kept hint is republished now and then (its signer
// may be offline, and DHT records expire).
func (s *Service) keepRepaired(ctx context.Context, m *Manifest, i int) (bool, error) {
	h, rec, err := s.lookupRepairHint(ctx, m, i)
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrInvalidRepairHint):
		return false, nil
	case err != nil:
		return true, err // never delete on doubt
	case h.Holder != s.h.ID():
		return false, nil
	}
	if st := s.checkIndex(ctx, m, i, m.Placement[i]); st.Reachable && st.Complete {
		return false, nil
	}
	now := s.cfg.Now()
	key := h.Key()
	if prev, _ := s.hintsRepublished.get(key); now.Sub(prev) >= s.cfg.RepublishInterval {
		if err := s.records.PutValue(ctx, key, rec); err != nil {
			s.log.Debug("republish repair hint", "key", key, "err", err)
		} else {
			s.hintsRepublished.set(key, now)
		}
	}
	return true, nil
}

// newVolunteerMetrics creates the metrics of volunteer repair and returns
// them for registration.
func (m *metrics) newVolunteerMetrics(ns, sub string) []prometheus.Collector {
	m.roles = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "repair_role_bytes_total", Help: "Shard bytes regenerated and uploaded by repair, by the role this peer had: server (holder of the app key, repairing its namespace) or volunteer (a holder repairing another app's objects under its delegation)."},
		[]string{"role"})
	m.hintsRefused = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "repair_hints_refused_total", Help: "Repair hints found in the DHT and refused: expired or foreign delegation, signer not allowed, wrong data version, holder already placed."})
	for _, r := range []string{roleServer, roleVolunteer} {
		m.roles.WithLabelValues(r)
	}
	return []prometheus.Collector{m.roles, m.hintsRefused}
}

func (m *metrics) roleBytes(role string, bytes int64) {
	if m != nil && bytes > 0 {
		m.roles.WithLabelValues(role).Add(float64(bytes))
		if role == roleServer {
			m.roleTotals.Server.Add(bytes)
		} else {
			m.roleTotals.Volunteer.Add(bytes)
		}
	}
}

// RepairBytes counts the shard bytes this peer's repairs regenerated and
// uploaded since it started, by role (immense_state_repair_role_bytes_total).
type RepairBytes struct {
	// Server: repairs of its own namespace, as a holder of the app key.
	Server atomic.Int64
	// Volunteer: repairs of other apps' objects under their delegation.
	Volunteer atomic.Int64
}

// RepairBytes returns the shard bytes this peer's repairs uploaded since
// it started: as the app's server, and as a volunteer for other apps.
func (s *Service) RepairBytes() (server, volunteer int64) {
	return s.metrics.roleTotals.Server.Load(), s.metrics.roleTotals.Volunteer.Load()
}

func (m *metrics) repairHintRefused() {
	if m != nil {
		m.hintsRefused.Inc()
	}
}
