package erasure

import (
	"context"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Health is the state of an object's redundancy right now.
type Health struct {
	Object  ObjectID
	Version uint64
	K, M    int
	// Reachable counts holders online now with all their shards; Needed is
	// K. The object can be read while Reachable >= Needed.
	Reachable, Needed, Total int
	Prob                     float64 // estimated P(at least K online)
	Repair                   RepairAction
	Holders                  []HolderHealth
}

// HolderHealth is one holder's part of a Health report.
type HolderHealth struct {
	Index        int
	Peer         peer.ID
	Reachable    bool // answered now
	Complete     bool // has all its shards
	Availability float64
	State        ShardState
	// HandedOff: Peer is not the manifest's holder of Index but the peer
	// that holder handed its shards to when it left (see Service.Handoff);
	// repair will adopt it.
	HandedOff bool
}

// Health reports how many holders of key are reachable with all their
// shards now, against the k needed to read it.
func (s *Service) Health(ctx context.Context, key string) (*Health, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	obj := s.key.ObjectID(key)
	m, _, err := s.latest(ctx, DHTKey(s.key.Namespace(), obj))
	if err != nil {
		return nil, fmt.Errorf("health %q: %w", key, err)
	}
	if m.Tombstone {
		return nil, fmt.Errorf("health %q: deleted: %w", key, ErrNotFound)
	}
	st := s.checkHolders(ctx, m)
	cands, err := s.candidates(ctx, DHTKey(s.key.Namespace(), obj))
	if err != nil {
		s.log.Debug("health: no candidates", "err", err) // the report is still useful
	}
	plan := PlanRepair(s.key.PlacementSeed(obj), m.Params, st, s.withHolders(cands, st), s.cfg.Repair, s.cfg.Now())
	h := &Health{Object: obj, Version: m.Version, K: m.Params.DataShards, M: m.Params.ParityShards,
		Needed: m.Params.DataShards, Total: m.Params.Total(), Prob: plan.Prob, Repair: plan.Action}
	for i, x := range st {
		if x.Reachable && x.Complete {
			h.Reachable++
		}
		h.Holders = append(h.Holders, HolderHealth{Index: i, Peer: x.Peer, Reachable: x.Reachable,
			Complete: x.Complete, Availability: x.Availability, State: plan.States[i], HandedOff: x.HandedOff})
	}
	return h, nil
}

// checkHolders asks every holder of m whether it has all its shards. A
// holder that does not answer is looked past: if it handed its shards to
// another peer before leaving (a trusted hint chain, see hintChain) and
// that peer has them all, the status is that peer's, marked HandedOff.
func (s *Service) checkHolders(ctx context.Context, m *Manifest) []HolderStatus {
	out, _ := s.checkHoldersHinted(ctx, m)
	return out
}

// checkHoldersHinted is checkHolders, also telling how many indices are
// on the holders volunteers' repair hints name (checkRepaired), within
// their delegation's budget.
func (s *Service) checkHoldersHinted(ctx context.Context, m *Manifest) ([]HolderStatus, int) {
	out := make([]HolderStatus, len(m.Placement))
	rep := make([]repairedStatus, len(m.Placement))
	var wg sync.WaitGroup
	for i, p := range m.Placement {
		wg.Go(func() {
			st := s.checkIndex(ctx, m, i, p)
			// Only an unreachable holder may have left on purpose: one
			// that answers without its shards has lost them.
			handed := false
			if !st.Reachable {
				var hs HolderStatus
				if hs, handed = s.checkHandedOff(ctx, m, i); handed {
					st = hs
				}
			}
			// A volunteer may have regenerated the shard of a holder that
			// is gone or lost it.
			if !handed && !(st.Reachable && st.Complete) {
				rep[i] = s.checkRepaired(ctx, m, i)
			}
			out[i] = st
		})
	}
	wg.Wait()
	return out, applyRepaired(out, rep)
}

// checkIndex asks p whether it has shard i of every segment of m.
func (s *Service) checkIndex(ctx context.Context, m *Manifest, i int, p peer.ID) HolderStatus {
	hashes := make([]Hash, len(m.Hashes))
	for seg := range m.Hashes {
		hashes[seg] = m.Hashes[seg][i]
	}
	var reachable, complete bool
	if p == s.h.ID() {
		reachable, complete = true, true
		for seg, h := range hashes {
			info, ok := s.store.Stat(h)
			if !ok || info.Size != int64(m.Params.ShardSize(m.Params.SegmentLen(m.Size, seg))) {
				complete = false
			}
		}
	} else {
		res, err := s.client.Check(ctx, p, hashes, false)
		s.noteOutcome(ctx, p, err)
		if err == nil {
			reachable, complete = true, true
			for seg, r := range res {
				if !r.Present || r.Size != int64(m.Params.ShardSize(m.Params.SegmentLen(m.Size, seg))) {
					complete = false
				}
			}
		}
	}
	return CheckedHolder(p, s.h.ID(), reachable, complete, s.avail, s.started, s.cfg.Now())
}
