package erasure

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Track makes this service responsible for repairing key (e.g. keys this
// app peer wrote before a restart). Put tracks the keys it writes.
func (s *Service) Track(key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	s.sched.Add(s.key.ObjectID(key), s.cfg.Now())
	return nil
}

// Untrack stops repairing key.
func (s *Service) Untrack(key string) { s.sched.Remove(s.key.ObjectID(key)) }

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
	if err := checkKey(key); err != nil {
		return nil, err
	}
	plan, err := s.RepairObject(ctx, s.key.ObjectID(key))
	if err != nil {
		return plan, fmt.Errorf("repair %q: %w", key, err)
	}
	return plan, nil
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
		s.metrics.repair("error", 0, 0)
		return nil, err
	}
	if m.Tombstone {
		s.sched.Remove(obj)
		return nil, fmt.Errorf("object %s: deleted: %w", obj, ErrNotFound)
	}
	cands, err := s.candidates(ctx, dhtKey)
	if err != nil {
		s.sched.Retry(obj, s.cfg.Now())
		return nil, err
	}
	holders := s.checkHolders(ctx, m)
	plan := PlanRepair(obj, m.Params, holders, cands, s.cfg.Repair, s.cfg.Now())
	// Shards a departed holder handed off are adopted: the next version
	// places them where they are, and nothing is regenerated for them.
	adopt := map[int]peer.ID{}
	for i, h := range holders {
		if h.HandedOff {
			adopt[i] = h.Peer
		}
	}
	base := m
	if len(adopt) > 0 {
		c := *m
		c.Placement = append([]peer.ID(nil), m.Placement...)
		for i, p := range adopt {
			c.Placement[i] = p
		}
		base = &c
	}
	var (
		moved   map[int]peer.ID
		bytes   int64
		regErr  error
		outcome string
	)
	switch plan.Action {
	case RepairNone:
		outcome = "healthy"
	case RepairBlocked:
		outcome = "blocked"
		s.log.Info("object needs repair but cannot be repaired now", "object", obj, "reason", plan.Reason)
	default:
		if !s.sched.AllowRepair(obj, s.cfg.Now()) {
			outcome = "deferred"
			break
		}
		s.log.Info("repairing object", "object", obj, "reason", plan.Reason, "shards", plan.Regenerate, "targets", plan.Targets)
		moved, bytes, regErr = s.regenerate(ctx, base, plan)
		outcome = "repaired"
		if len(moved) == 0 {
			outcome = "failed"
			if regErr == nil {
				regErr = errors.New("no shard could be regenerated")
			}
		}
	}
	if len(adopt) == 0 {
		switch outcome {
		case "healthy":
			s.metrics.repair("healthy", 0, 0)
			s.republish(ctx, obj, dhtKey, rec)
			return &plan, nil
		case "blocked":
			s.metrics.repair("blocked", 0, 0)
			s.sched.Retry(obj, s.cfg.Now())
			return &plan, nil
		case "deferred":
			s.metrics.repair("deferred", 0, 0)
			return &plan, nil
		case "failed":
			s.metrics.repair("failed", 0, bytes)
			s.sched.Retry(obj, s.cfg.Now())
			return &plan, fmt.Errorf("repair object %s: %w", obj, regErr)
		}
	}
	next := *base
	next.Placement = append([]peer.ID(nil), base.Placement...)
	for i, p := range moved {
		next.Placement[i] = p
	}
	next.Version = m.Version + 1
	next.Created = s.cfg.Now()
	// Another app peer may have written the object meanwhile: publishing
	// our version+1 over theirs would revert their write.
	if cur, _, lerr := s.latest(ctx, dhtKey); lerr == nil && cur.Version != m.Version {
		s.metrics.repair("failed", 0, bytes)
		s.sched.Retry(obj, s.cfg.Now())
		return &plan, fmt.Errorf("repair object %s: superseded by version %d during repair", obj, cur.Version)
	}
	newRec, serr := next.Sign(s.key)
	if serr == nil {
		serr = s.records.PutValue(ctx, dhtKey, newRec)
	}
	if serr != nil {
		s.metrics.repair("failed", 0, bytes)
		s.sched.Retry(obj, s.cfg.Now())
		return &plan, fmt.Errorf("repair object %s: publish manifest: %w", obj, serr)
	}
	s.republished.set(obj, s.cfg.Now())
	if len(adopt) > 0 {
		s.metrics.adopted(len(adopt))
		s.log.Info("adopted handed-off shards", "object", obj, "version", next.Version, "indices", len(adopt))
	}
	if len(moved) > 0 {
		s.metrics.repair("repaired", len(moved), bytes)
	} else {
		s.metrics.repair("adopted", 0, bytes)
	}
	switch {
	case outcome == "failed":
		s.sched.Retry(obj, s.cfg.Now())
		return &plan, fmt.Errorf("repair object %s: handed-off shards adopted, but: %w", obj, regErr)
	case outcome == "blocked", regErr != nil:
		s.sched.Retry(obj, s.cfg.Now()) // partly done: come back for the rest
	}
	return &plan, nil
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
				ref := ShardRef{Namespace: s.key.Namespace(), Object: m.Object, Version: m.DataVersion,
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
