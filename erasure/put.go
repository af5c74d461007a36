package erasure

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// PutResult describes a stored object.
type PutResult struct {
	Object  ObjectID
	Version uint64
	Size    int64
	K, M    int
	Holders []peer.ID // Holders[i] holds shard i of every segment
	// Prob is the estimated probability that at least K holders are online;
	// TargetMet says whether it reached Config.Target (it cannot when there
	// are too few or too unreliable peers).
	Prob      float64
	TargetMet bool
}

// Put stores value under key as a new version and returns where it went.
// It encodes the value, chooses m from the candidates' availability,
// uploads each shard index to its holder (replacing holders that refuse or
// fail), records key in the list of keys this service repairs (see
// Deps.KeysFile), and only then publishes the signed manifest. If any step
// fails, the shards already uploaded are deleted again, best effort.
func (s *Service) Put(ctx context.Context, key string, value []byte) (*PutResult, error) {
	res, err := s.put(ctx, key, value)
	if err != nil {
		s.metrics.put("error")
		return nil, fmt.Errorf("put %q: %w", key, err)
	}
	s.metrics.put("ok")
	return res, nil
}

func (s *Service) put(ctx context.Context, key string, value []byte) (*PutResult, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	if int64(len(value)) > s.cfg.MaxValueSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrValueTooLarge, len(value), s.cfg.MaxValueSize)
	}
	obj := s.key.ObjectID(key)
	dhtKey := DHTKey(s.key.Namespace(), obj)
	mu := s.objLock(obj)
	mu.Lock()
	defer mu.Unlock()
	// Not latest: a writer overwrites a rolled-back manifest rather than
	// refuse it; nextVersion puts the new one above it and above all it
	// published before.
	prev, _, err := s.fetchManifest(ctx, dhtKey)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	version := s.nextVersion(key, dhtKey, prev)
	// Round one plans with what we know. If holders fail and no spare peer
	// is left, round two plans again without them: fewer candidates may
	// mean a smaller m, which needs a fresh encoding.
	failed := map[peer.ID]bool{}
	for round := 0; ; round++ {
		res, err := s.putOnce(ctx, key, obj, version, value, failed)
		if err == nil || round == 1 || !errors.Is(err, ErrNotEnoughPeers) || ctx.Err() != nil {
			return res, err
		}
		s.log.Debug("put: holders failed and no spare peer left; planning again without them",
			"key", key, "failed", len(failed), "err", err)
	}
}

// putOnce plans, encodes and uploads one attempt at a Put, and publishes
// the manifest. Peers that fail are added to failed; shards that reached a
// peer in a failed attempt are deleted again, best effort.
func (s *Service) putOnce(ctx context.Context, key string, obj ObjectID, version uint64, value []byte, failed map[peer.ID]bool) (*PutResult, error) {
	dhtKey := DHTKey(s.key.Namespace(), obj)
	cands, err := s.candidates(ctx, dhtKey)
	if err != nil {
		return nil, err
	}
	for i := range cands {
		if failed[cands[i].ID] {
			cands[i].HasQuota = false
		}
	}
	plan, err := PlanPut(s.key.PlacementSeed(obj), cands, s.cfg.PutPolicy(), int64(len(value)))
	if err != nil {
		return nil, err
	}
	k, m, holders := plan.K, plan.M, plan.Holders
	if !plan.TargetMet {
		s.log.Info("redundancy target not reachable with the peers available; storing with the most shards possible",
			"key", key, "k", k, "m", m, "prob", plan.Prob, "target", s.cfg.Target, "candidates", len(cands))
	}
	segSize, err := fitSegmentSize(int64(len(value)), s.cfg.SegmentSize, k+m, holders)
	if err != nil {
		return nil, err
	}
	params := Params{DataShards: k, ParityShards: m, SegmentSize: segSize}
	codec, err := s.codec(params)
	if err != nil {
		return nil, err
	}
	oc, err := s.key.ObjectCipher(key, version)
	if err != nil {
		return nil, err
	}
	enc, err := codec.Encode(oc, value)
	if err != nil {
		return nil, err
	}
	if err := s.upload(ctx, obj, version, enc, holders, cands, failed); err != nil {
		s.discard(ctx, enc, holders, failed)
		return nil, err
	}
	man := &Manifest{
		Object: obj, Version: version, DataVersion: version, Created: s.cfg.Now(),
		Size: int64(len(value)), Params: params, Hashes: enc.Hashes, Placement: holders,
	}
	rec, err := man.Sign(s.key)
	if err != nil {
		return nil, err
	}
	if err := s.commit(ctx, key, dhtKey, version, rec); err != nil {
		s.discard(ctx, enc, holders, nil)
		return nil, err
	}
	s.republished.set(obj, s.cfg.Now())
	s.sched.Add(obj, s.cfg.Now())
	s.log.Debug("put", "key", key, "version", version, "size", len(value), "k", k, "m", m, "prob", plan.Prob)
	return &PutResult{Object: obj, Version: version, Size: int64(len(value)), K: k, M: m,
		Holders: holders, Prob: plan.Prob, TargetMet: plan.TargetMet}, nil
}

// fitSegmentSize doubles the segment size until a manifest of a value of
// size bytes with n shards fits in MaxManifestSize.
func fitSegmentSize(size int64, seg, n int, holders []peer.ID) (int, error) {
	placement := 0
	for _, p := range holders {
		placement += 1 + len(p)
	}
	for ; seg <= MaxSegmentSize; seg *= 2 {
		p := Params{DataShards: 1, SegmentSize: seg}
		if manifestHeaderLen+p.Segments(size)*n*32+placement+64 <= MaxManifestSize {
			return seg, nil
		}
	}
	return 0, fmt.Errorf("%w: %d bytes do not fit one manifest with %d shards", ErrValueTooLarge, size, n)
}

// upload sends every shard index of enc to its holder in parallel,
// replacing a holder that refuses or fails by the next peer PlaceShards
// offers (excluding every peer already holding or tried; the zones and
// networks of the holders count, those of peers that failed do not).
// holders is updated in place; peers that failed are added to failed.
func (s *Service) upload(ctx context.Context, obj ObjectID, version uint64, enc *Encoded, holders []peer.ID, cands []Candidate, failed map[peer.ID]bool) error {
	seed := s.key.PlacementSeed(obj)
	byID := newCandidateMap(cands)
	var mu sync.Mutex // guards holders, tried and failed
	tried := map[peer.ID]Candidate{}
	for p := range failed {
		tried[p] = Candidate{ID: p}
	}
	for _, p := range holders {
		tried[p] = byID.get(p)
	}
	errs := make([]error, len(holders))
	var wg sync.WaitGroup
	for i := range holders {
		wg.Go(func() {
			for attempt := 0; ; attempt++ {
				mu.Lock()
				p := holders[i]
				mu.Unlock()
				err := s.sendColumn(ctx, p, obj, version, i, enc)
				if err == nil {
					return
				}
				s.log.Debug("shard holder failed, placing elsewhere", "index", i, "peer", p, "err", err)
				mu.Lock()
				failed[p] = true
				tried[p] = Candidate{ID: p} // it holds nothing: its zone and network are free
				if attempt+1 >= s.cfg.StoreAttempts || ctx.Err() != nil {
					mu.Unlock()
					errs[i] = err
					return
				}
				next := PlaceShards(seed, []int{i}, cands, tried)
				if len(next) == 0 {
					mu.Unlock()
					errs[i] = fmt.Errorf("%w: shard %d: %v", ErrNotEnoughPeers, i, err)
					return
				}
				tried[next[0]] = byID.get(next[0])
				holders[i] = next[0]
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// sendColumn stores shard i of every segment on p.
func (s *Service) sendColumn(ctx context.Context, p peer.ID, obj ObjectID, version uint64, i int, enc *Encoded) error {
	for seg := range enc.Shards {
		ref := ShardRef{Namespace: s.key.Namespace(), Object: obj, Version: version, Segment: uint32(seg), Index: uint16(i)}
		if err := s.storeShard(ctx, p, enc.Hashes[seg][i], ref, enc.Shards[seg][i]); err != nil {
			return err
		}
	}
	return nil
}

// commit records key and version in the list of keys this service
// repairs, then publishes the manifest rec: the key is on disk before the
// manifest makes the object visible, so an object readers can see is never
// one a restart drops from repair, nor one whose versions a restart starts
// again from 1. If the publication fails the key's entry is put back as
// it was (untracked if the Put added it, deleted with its tombstone if it
// was); its version floor stays (skipping a version is harmless).
func (s *Service) commit(ctx context.Context, key, dhtKey string, version uint64, rec []byte) error {
	undo, err := s.tracked.recordPut(key, version)
	if err != nil {
		return fmt.Errorf("record key: %w", err)
	}
	if err := s.putOwn(ctx, s.key.ObjectID(key), dhtKey, version, rec); err != nil {
		if uerr := undo(); uerr != nil {
			s.log.Warn("put failed and could not be undone in the key list", "key", key, "err", uerr)
		}
		return fmt.Errorf("publish manifest: %w", err)
	}
	s.published(dhtKey, version, rec)
	if err := s.tracked.markPublished(key, version); err != nil {
		// The DHT has it; the rollback floor catches up with the next
		// write of the list.
		s.log.Debug("record published version", "key", key, "err", err)
	}
	return nil
}

// discard deletes, best effort, the shards of a Put that will not be
// published, from every holder not in skip. What it misses, GC removes.
func (s *Service) discard(ctx context.Context, enc *Encoded, holders []peer.ID, skip map[peer.ID]bool) {
	var wg sync.WaitGroup
	for i, p := range holders {
		if skip[p] {
			continue
		}
		wg.Go(func() { s.deleteIndex(ctx, enc.Hashes, i, p) })
	}
	wg.Wait()
}
