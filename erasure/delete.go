package erasure

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Delete removes key: it publishes a signed tombstone (a manifest with a
// higher version and no content), then asks every holder to delete its
// shards with a signed request. Holders that are offline keep theirs until
// their garbage collection sees the tombstone. The key leaves the list of
// keys this service repairs (see Deps.KeysFile).
func (s *Service) Delete(ctx context.Context, key string) error {
	if err := s.delete(ctx, key); err != nil {
		s.metrics.put("error")
		return fmt.Errorf("delete %q: %w", key, err)
	}
	s.metrics.put("ok")
	return nil
}

func (s *Service) delete(ctx context.Context, key string) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	if err := ValidateKey(key); err != nil {
		return err
	}
	obj := s.key.ObjectID(key)
	dhtKey := DHTKey(s.key.Namespace(), obj)
	mu := s.objLock(obj)
	mu.Lock()
	defer mu.Unlock()
	// Not latest: a rolled-back live manifest is deleted over, above the
	// versions this service published (nextVersion).
	m, _, err := s.fetchManifest(ctx, dhtKey)
	if errors.Is(err, ErrNotFound) {
		// A DHT that restarted lost it: delete what the kept record says.
		if km, _ := s.bestKept(dhtKey, 0); km != nil {
			m, err = km, nil
		}
	}
	if err != nil {
		return err
	}
	if m.Tombstone {
		return fmt.Errorf("already deleted at version %d: %w", m.Version, ErrNotFound)
	}
	now := s.cfg.Now()
	ts := &Manifest{Object: obj, Version: s.nextVersion(key, dhtKey, m), Tombstone: true, Created: now}
	rec, err := ts.Sign(s.key)
	if err != nil {
		return err
	}
	// On disk before it is published, like a Put's version: the key leaves
	// repair, its version floor stays, and the tombstone is republished
	// (also after a restart) until holders' GC is done with the object.
	wasTracked := s.tracked.isTracked(key)
	if err := s.tracked.recordDelete(key, ts.Version, rec, now); err != nil {
		return fmt.Errorf("record delete: %w", err)
	}
	if err := s.putOwn(ctx, obj, dhtKey, ts.Version, rec); err != nil {
		// Told it failed, the caller must not find the delete carried out
		// later by the tombstone republisher: undo it, keeping the floor.
		if uerr := s.tracked.update(key, func(e *keyEntry) {
			e.Tracked, e.Deleted, e.Tombstone = wasTracked, nil, nil
		}); uerr != nil {
			s.log.Warn("delete failed and could not be undone in the key list", "key", key, "err", uerr)
		}
		return fmt.Errorf("publish tombstone: %w", err)
	}
	s.published(dhtKey, ts.Version, rec)
	if err := s.tracked.markPublished(key, ts.Version); err != nil {
		s.log.Debug("record published tombstone", "key", key, "err", err)
	}
	s.republished.set(obj, now)
	s.sched.Remove(obj)
	var wg sync.WaitGroup
	for i, p := range m.Placement {
		wg.Go(func() {
			if s.deleteIndex(ctx, m.Hashes, i, p) {
				return
			}
			// The holder did not answer: if it left on purpose, hints say
			// who holds its shards now; delete them there too. What stays
			// behind, GC removes once it sees the tombstone.
			chain, _, _ := s.hintChain(ctx, m, i)
			for _, q := range chain {
				s.deleteIndex(ctx, m.Hashes, i, q)
			}
		})
	}
	wg.Wait()
	return nil
}

// deleteIndex deletes shard index i (its shard of every segment; hashes
// is per segment, per index) from holder p. It reports false if p could
// not be reached.
func (s *Service) deleteIndex(ctx context.Context, hashes [][]Hash, i int, p peer.ID) bool {
	for seg := range hashes {
		h := hashes[seg][i]
		var err error
		if p == s.h.ID() {
			_, err = s.store.Unref(h, s.key.Namespace())
		} else {
			err = s.client.Delete(ctx, p, h, s.key)
			s.noteOutcome(ctx, p, err)
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			s.log.Debug("delete shard", "peer", p, "hash", h, "err", err)
			return false
		}
	}
	return true
}
