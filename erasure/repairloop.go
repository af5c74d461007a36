package erasure

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Track makes this service responsible for repairing key (e.g. a key
// another app peer wrote). Put tracks the keys it writes. Like Put's, the
// key is recorded durably (see Deps.KeysFile) before Track returns.
func (s *Service) Track(key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if _, err := s.tracked.add(key); err != nil {
		return fmt.Errorf("track %q: %w", key, err)
	}
	s.sched.Add(s.key.ObjectID(key), s.cfg.Now())
	return nil
}

// Untrack stops repairing key. It returns an error if the key list could
// not be written; the key is no longer repaired by this run either way.
func (s *Service) Untrack(key string) error {
	s.sched.Remove(s.key.ObjectID(key))
	if err := s.tracked.remove(key); err != nil {
		return fmt.Errorf("untrack %q: %w", key, err)
	}
	return nil
}

// repairLoop checks due objects on every tick until the service closes.
func (s *Service) repairLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.RepairTick)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.republishTombstones(s.ctx)
			if err := s.RenewDelegation(s.ctx); err != nil {
				s.log.Debug("renew delegation", "err", err)
			}
			for _, obj := range s.sched.Due(s.cfg.Now()) {
				if s.ctx.Err() != nil {
					return
				}
				if _, err := s.RepairObject(s.ctx, obj); err != nil {
					s.log.Debug("repair", "object", obj, "err", err)
				}
			}
		}
	}
}

// Repair checks the object under key now and repairs it if it needs it,
// as the background loop would (see RepairObject), for an operator who
// knows a holder left. Shards a departed holder handed off are adopted.
func (s *Service) Repair(ctx context.Context, key string) (*RepairPlan, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	plan, err := s.RepairObject(ctx, s.key.ObjectID(key))
	if err != nil {
		return plan, fmt.Errorf("repair %q: %w", key, err)
	}
	return plan, nil
}

// repairOutcome is how a repair check of one object ended. Its String is
// the outcome label of immense_state_repairs_total.
type repairOutcome int

const (
	// outcomeHealthy: nothing to repair; the manifest is re-put when
	// RepublishInterval has passed.
	outcomeHealthy repairOutcome = iota
	// outcomeBlocked: repair is needed but impossible now (see
	// RepairBlocked); checked again after RetryAfter.
	outcomeBlocked
	// outcomeDeferred: repair is needed but the rate limit said later; the
	// scheduler has already moved the next check.
	outcomeDeferred
	// outcomeRepaired: lost shards were regenerated onto new holders and a
	// new manifest version published.
	outcomeRepaired
	// outcomeAdopted: a new version places handed-off shards where they
	// are; nothing was regenerated.
	outcomeAdopted
	// outcomeFailed: regeneration or publication failed; checked again
	// after RetryAfter.
	outcomeFailed
	// outcomeError: the manifest could not be read.
	outcomeError
	numOutcomes
)

func (o repairOutcome) String() string {
	if o < 0 || o >= numOutcomes {
		return fmt.Sprintf("repairOutcome(%d)", int(o))
	}
	return [...]string{"healthy", "blocked", "deferred", "repaired", "adopted", "failed", "error"}[o]
}

// repairWork is what a repair check found and did before deciding what to
// publish.
type repairWork struct {
	action  RepairAction // PlanRepair's
	allowed bool         // RepairNow only: the rate limit let the repair start
	adopted int          // handed-off indices to adopt into the next version
	moved   int          // indices regeneration moved to new holders
	regErr  error        // why regeneration (partly) failed, if it did
}

// repairDecision is what a repair check does once its work is done.
type repairDecision struct {
	outcome   repairOutcome
	publish   bool  // sign and publish the next manifest version
	republish bool  // re-put the current manifest if RepublishInterval passed
	retry     bool  // check again after RetryAfter
	err       error // what the check reports, once published if publish
}

// decideRepair turns a check's work into its outcome. It is pure, so that
// every case can be tested without a network: a repair that moved shards,
// or any adoption, publishes a new version; adoption is worth publishing
// even when regeneration failed, was refused or was never needed, and is
// counted as such unless shards moved too.
func decideRepair(w repairWork) repairDecision {
	var d repairDecision
	switch {
	case w.action == RepairNone:
		d.outcome = outcomeHealthy
	case w.action == RepairBlocked:
		d.outcome, d.retry = outcomeBlocked, true
	case !w.allowed:
		d.outcome = outcomeDeferred
	case w.moved > 0:
		d.outcome, d.publish = outcomeRepaired, true
		d.retry = w.regErr != nil // partly done: come back for the rest
	default:
		d.outcome, d.retry, d.err = outcomeFailed, true, w.regErr
		if d.err == nil {
			d.err = errors.New("no shard could be regenerated")
		}
	}
	if w.adopted == 0 {
		d.republish = d.outcome == outcomeHealthy
		return d
	}
	d.publish = true
	switch d.outcome {
	case outcomeRepaired:
	case outcomeFailed:
		d.outcome, d.err = outcomeAdopted, fmt.Errorf("handed-off shards adopted, but: %w", d.err)
	default:
		d.outcome = outcomeAdopted
	}
	return d
}

// RepairObject checks one object of this namespace now and repairs it if
// PlanRepair says so and the scheduler's rate limit allows. Only a peer
// holding the app key can repair: the new placement must be signed into a
// new manifest version. It returns the plan it acted on.
func (s *Service) RepairObject(ctx context.Context, obj ObjectID) (*RepairPlan, error) {
	dhtKey := DHTKey(s.key.Namespace(), obj)
	mu := s.objLock(obj)
	if !mu.TryLock() {
		// A Put or Delete of this object (or one sharing its stripe) is
		// running: check again later rather than hold up the loop.
		s.sched.Retry(obj, s.cfg.Now())
		return nil, fmt.Errorf("object %s: busy: %w", obj, ErrBusy)
	}
	defer mu.Unlock()
	m, rec, err := s.latest(ctx, dhtKey)
	if errors.Is(err, ErrNotFound) {
		s.sched.Remove(obj)
		return nil, err
	}
	if err != nil {
		s.sched.Retry(obj, s.cfg.Now())
		s.metrics.repair(outcomeError, 0, 0)
		return nil, err
	}
	if m.Tombstone {
		s.sched.Remove(obj)
		return nil, fmt.Errorf("object %s: deleted: %w", obj, ErrNotFound)
	}
	if floor := s.tracked.publishedObj(obj); m.Version < floor {
		// This service published a newer version (e.g. before a restart
		// emptied its memory of versions seen): repairing this one would
		// publish old content above it. The next Put overwrites it.
		s.sched.Retry(obj, s.cfg.Now())
		s.metrics.rolledBack()
		s.metrics.repair(outcomeError, 0, 0)
		return nil, fmt.Errorf("object %s: manifest version %d, but this peer published version %d: %w", obj, m.Version, floor, ErrRolledBack)
	}
	cands, err := s.candidates(ctx, dhtKey)
	if err != nil {
		s.sched.Retry(obj, s.cfg.Now())
		return nil, err
	}
	holders := s.checkHolders(ctx, m)
	plan := PlanRepair(s.key.PlacementSeed(obj), m.Params, holders, s.withHolders(cands, holders), s.cfg.Repair, s.cfg.Now())
	base, adopted := adoptHandedOff(m, holders)
	w := repairWork{action: plan.Action, adopted: adopted}
	var (
		moved map[int]peer.ID
		bytes int64
	)
	switch plan.Action {
	case RepairBlocked:
		s.log.Info("object needs repair but cannot be repaired now", "key", s.tracked.keyOf(obj), "object", obj, "reason", plan.Reason)
	case RepairNow:
		if w.allowed = s.sched.AllowRepair(obj, s.cfg.Now()); w.allowed {
			s.log.Info("repairing object", "key", s.tracked.keyOf(obj), "object", obj, "reason", plan.Reason, "shards", plan.Regenerate, "targets", plan.Targets)
			moved, bytes, w.regErr = s.regenerate(ctx, base, plan)
			w.moved = len(moved)
		}
	}
	d := decideRepair(w)
	if d.publish {
		version, err := s.publishRepair(ctx, obj, dhtKey, m, base, moved)
		switch {
		case err != nil:
			d = repairDecision{outcome: outcomeFailed, retry: true, err: err}
		case adopted > 0:
			s.metrics.adopted(adopted)
			s.log.Info("adopted handed-off shards", "key", s.tracked.keyOf(obj), "object", obj, "version", version, "indices", adopted)
		}
	}
	if d.republish {
		s.republish(ctx, obj, dhtKey, rec)
	}
	shards := 0
	if d.outcome == outcomeRepaired {
		shards = len(moved)
	}
	s.metrics.repair(d.outcome, shards, bytes)
	s.metrics.roleBytes(roleServer, bytes)
	if d.retry {
		s.sched.Retry(obj, s.cfg.Now())
	}
	if d.err != nil {
		return &plan, fmt.Errorf("repair object %s: %w", obj, d.err)
	}
	return &plan, nil
}

// adoptHandedOff returns m with every index whose holder handed its shards
// off placed on the peer that has them now, and how many such indices
// there are (m itself when none). Nothing is regenerated for them.
func adoptHandedOff(m *Manifest, holders []HolderStatus) (*Manifest, int) {
	adopt := map[int]peer.ID{}
	for i, h := range holders {
		if h.HandedOff {
			adopt[i] = h.Peer
		}
	}
	if len(adopt) == 0 {
		return m, 0
	}
	c := *m
	c.Placement = append([]peer.ID(nil), m.Placement...)
	for i, p := range adopt {
		c.Placement[i] = p
	}
	return &c, len(adopt)
}

// publishRepair signs and publishes the version after m: base's placement
// (m's, with handed-off shards adopted) with the moved indices on their
// new holders. It returns the version published.
func (s *Service) publishRepair(ctx context.Context, obj ObjectID, dhtKey string, m, base *Manifest, moved map[int]peer.ID) (uint64, error) {
	next := *base
	next.Placement = append([]peer.ID(nil), base.Placement...)
	for i, p := range moved {
		next.Placement[i] = p
	}
	next.Version = max(m.Version, s.tracked.floorObj(obj)) + 1
	next.Created = s.cfg.Now()
	// Another app peer may have written the object meanwhile: publishing
	// our version+1 over theirs would revert their write.
	if cur, _, err := s.fetchManifest(ctx, dhtKey); err == nil && cur.Version != m.Version {
		return 0, fmt.Errorf("superseded by version %d during repair", cur.Version)
	}
	rec, err := next.Sign(s.key)
	if err == nil {
		err = s.putOwn(ctx, obj, dhtKey, next.Version, rec)
	}
	if err != nil {
		return 0, fmt.Errorf("publish manifest: %w", err)
	}
	s.republished.set(obj, s.cfg.Now())
	s.published(dhtKey, next.Version, rec)
	if err := s.tracked.raise(obj, next.Version); err != nil {
		// The DHT has the version; the floor catches up with the next
		// write of the list.
		s.log.Debug("record repaired version", "object", obj, "err", err)
	}
	return next.Version, nil
}

// regenerate rebuilds the shards plan.Regenerate from healthy holders,
// segment by segment, and stores them on plan.Targets. It returns the new
// holder of every index fully moved, and the bytes uploaded.
func (s *Service) regenerate(ctx context.Context, m *Manifest, plan RepairPlan) (map[int]peer.ID, int64, error) {
	codec, err := s.codec(m.Params)
	if err != nil {
		return nil, 0, err
	}
	var healthy []int
	for i, st := range plan.States {
		if st == ShardHealthy {
			healthy = append(healthy, i)
		}
	}
	fs := s.newFetchState(m, healthy)
	targets := map[int]peer.ID{}
	for j, p := range plan.Targets {
		targets[plan.Regenerate[j]] = p
	}
	var bytes int64
	var errs []error
	for seg := range m.Hashes {
		if len(targets) == 0 {
			break
		}
		shards, err := s.fetchSegment(ctx, m, seg, fs)
		if err != nil {
			return nil, bytes, err
		}
		if err := codec.ReconstructSegment(m.Params.SegmentLen(m.Size, seg), shards, nil); err != nil {
			return nil, bytes, err
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i, p := range targets {
			wg.Go(func() {
				ref := ShardRef{Namespace: m.Namespace(), Object: m.Object, Version: m.DataVersion,
					Segment: uint32(seg), Index: uint16(i)}
				err := s.storeShard(ctx, p, m.Hashes[seg][i], ref, shards[i])
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("shard %d to %s: %w", i, p, err))
					delete(targets, i) // this index stays where it was
					return
				}
				bytes += int64(len(shards[i]))
			})
		}
		wg.Wait()
	}
	return targets, bytes, errors.Join(errs...)
}

// republish re-puts the current manifest when it has not been put for
// RepublishInterval, so that the DHT does not expire it.
func (s *Service) republish(ctx context.Context, obj ObjectID, dhtKey string, rec []byte) {
	now := s.cfg.Now()
	last, ok := s.republished.get(obj)
	if ok && now.Sub(last) < s.cfg.RepublishInterval {
		return
	}
	if err := s.records.PutValue(ctx, dhtKey, rec); err != nil {
		s.log.Debug("republish manifest", "object", obj, "err", err)
		return
	}
	s.republished.set(obj, now)
}
