package erasure

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// gcLoop runs CollectGarbage every GCInterval (with ±25% jitter, so that
// peers started together do not all query the DHT at once), and forgets
// the kept records of keys the key list no longer keeps.
func (s *Service) gcLoop() {
	s.everyJittered(s.cfg.GCInterval, func() {
		if _, _, err := s.CollectGarbage(s.ctx); err != nil && s.ctx.Err() == nil {
			s.log.Warn("garbage collection", "err", err)
		}
		s.sweepOwnRecords()
	})
}

// everyJittered runs fn every interval × U[0.75, 1.25] until the service
// closes, then marks its goroutine done.
func (s *Service) everyJittered(interval time.Duration, fn func()) {
	defer s.wg.Done()
	for {
		t := time.NewTimer(time.Duration(float64(interval) * (0.75 + 0.5*rand.Float64())))
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		fn()
	}
}

// CollectGarbage removes local shards that no current manifest needs: the
// object was deleted (tombstone), the manifest no longer places this shard
// on this peer (superseded by a newer version or moved by repair) and no
// handoff hint hands it here (see keepHandedOff), or the manifest has been
// missing from the DHT for GCMissingGrace. Shards younger than GCMinAge and
// shards whose manifest or hint lookup fails are kept. It works without the
// app key: manifests and hints are public, only content is not.
func (s *Service) CollectGarbage(ctx context.Context) (removed int, freed int64, err error) {
	type lookup struct {
		m   *Manifest
		err error
	}
	cache := map[string]lookup{}
	type handoff struct {
		keep bool
		err  error
	}
	handed := map[string]handoff{}
	now := s.cfg.Now()
	self := s.h.ID()
	ahead := map[string]bool{} // objects with a shard newer than their manifest
	keep := func(ctx context.Context, info ShardInfo) (bool, error) {
		if now.Sub(info.Stored) < s.cfg.GCMinAge {
			return true, nil
		}
		dhtKey := DHTKey(info.Ref.Namespace, info.Ref.Object)
		l, ok := cache[dhtKey]
		if !ok {
			l.m, _, l.err = s.latest(ctx, dhtKey)
			cache[dhtKey] = l
		}
		switch {
		case errors.Is(l.err, ErrNotFound):
			since, seen := s.missing.setFirst(dhtKey, now)
			if !seen {
				return true, nil
			}
			return now.Sub(since) < s.cfg.GCMissingGrace, nil
		case l.err != nil:
			return true, l.err
		}
		s.missing.remove(dhtKey)
		if info.Ref.Version > l.m.Version {
			// Newer than the manifest: the DHT lost the record that
			// places it, and an older one came back (put back by a writer
			// that had not seen the newer, or replayed). Kept as a shard
			// whose manifest is missing would be, counted from the first
			// pass that saw the object so, for its writer to put its
			// record back; a Put that failed leaves these too.
			ahead[dhtKey] = true
			since, seen := s.ahead.setFirst(dhtKey, now)
			return !seen || now.Sub(since) < s.cfg.GCMissingGrace, nil
		}
		if l.m.Tombstone {
			return false, nil
		}
		_, idx, ok := l.m.HasShard(info.Hash)
		if !ok {
			return false, nil
		}
		if l.m.Placement[idx] == self {
			s.placed.set(dhtKey, now)
			return true, nil
		}
		// Handed here by a holder that left, and not yet adopted by the
		// writer: kept while the hint stands (one lookup per index).
		hk := fmt.Sprintf("%s/%d", dhtKey, idx)
		h, ok := handed[hk]
		if !ok {
			h.keep, h.err = s.keepHandedOff(ctx, l.m, idx)
			handed[hk] = h
		}
		if h.keep {
			s.placed.set(dhtKey, now)
		}
		return h.keep, h.err
	}
	removed, freed, err = s.store.GC(ctx, keep)
	// Forget the missing manifests of objects no shard here names any
	// more (their junk is gone): else every object a stranger ever made
	// up stayed in the map until restart. The same for placed objects.
	named := map[string]bool{}
	for _, info := range s.store.List() {
		for _, r := range info.Refs {
			named[DHTKey(r.Namespace, r.Object)] = true
		}
	}
	s.missing.retain(func(k string) bool { return named[k] })
	if err == nil {
		s.ahead.retain(func(k string) bool { return ahead[k] })
	}
	s.placed.retain(func(k string) bool { return named[k] })
	s.metrics.gc(removed)
	if removed > 0 {
		s.log.Info("garbage collected shards", "removed", removed, "freed", freed)
	}
	return removed, freed, err
}
