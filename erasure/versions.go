package erasure

import (
	"container/list"
	"context"
	"fmt"
	"sync"
)

// maxRememberedVersions bounds the objects whose highest verified manifest
// version a service remembers (about 200 bytes each, so ~3 MiB). The
// least recently used go first: a reader forgets objects it has not
// looked at for long, not the ones it reads.
const maxRememberedVersions = 16384

// versionMemory remembers, per DHT key, the highest manifest version this
// service has verified, so that an older signed manifest served later (a
// replay after the record expired from the DHT, or a DHT server that kept
// an old one) is refused instead of returning stale data. It is an LRU of
// bounded size; safe for concurrent use.
type versionMemory struct {
	max int

	mu    sync.Mutex
	order *list.List // of *versionSeen, most recent at the front
	byKey map[string]*list.Element
}

type versionSeen struct {
	key     string
	version uint64
}

func newVersionMemory(max int) *versionMemory {
	return &versionMemory{max: max, order: list.New(), byKey: map[string]*list.Element{}}
}

// get returns the highest version remembered for key, 0 if none.
func (v *versionMemory) get(key string) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e, ok := v.byKey[key]; ok {
		return e.Value.(*versionSeen).version
	}
	return 0
}

// observe records that version of key was verified, and returns the
// highest version known before (0 if none). A lower version than that is
// not recorded: the caller refuses it.
func (v *versionMemory) observe(key string, version uint64) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e, ok := v.byKey[key]; ok {
		s := e.Value.(*versionSeen)
		v.order.MoveToFront(e)
		prev := s.version
		s.version = max(s.version, version)
		return prev
	}
	v.byKey[key] = v.order.PushFront(&versionSeen{key: key, version: version})
	for v.order.Len() > v.max {
		old := v.order.Back()
		v.order.Remove(old)
		delete(v.byKey, old.Value.(*versionSeen).key)
	}
	return 0
}

// len returns the number of keys remembered.
func (v *versionMemory) len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.order.Len()
}

// latest fetches and verifies the current manifest under dhtKey, and
// refuses it with ErrRolledBack if a higher version of the object was
// verified before: the DHT keeps only the highest version it holds, and
// once the record expired an attacker can put back any older signed one.
// It returns an error wrapping ErrNotFound when the DHT has none.
func (s *Service) latest(ctx context.Context, dhtKey string) (*Manifest, []byte, error) {
	m, rec, err := s.fetchManifest(ctx, dhtKey)
	if err != nil {
		return nil, nil, err
	}
	if prev := s.seen.observe(dhtKey, m.Version); m.Version < prev {
		s.metrics.rolledBack()
		s.log.Warn("refused a manifest older than one verified before (replayed or stale record)",
			"key", dhtKey, "version", m.Version, "highest_seen", prev)
		return nil, nil, fmt.Errorf("get manifest %s: version %d, but version %d was verified before: %w",
			dhtKey, m.Version, prev, ErrRolledBack)
	}
	return m, rec, nil
}

// nextVersion returns the version a write of key (object dhtKey) after
// the DHT's manifest cur (nil if none) publishes: above everything this
// service has published or verified of it, so versions never go back,
// even after the record expired from the DHT.
func (s *Service) nextVersion(key, dhtKey string, cur *Manifest) uint64 {
	v := max(s.tracked.floor(key), s.seen.get(dhtKey))
	if cur != nil {
		v = max(v, cur.Version)
	}
	return v + 1
}

// published notes that this service published version of dhtKey.
func (s *Service) published(dhtKey string, version uint64) { s.seen.observe(dhtKey, version) }

// republishTombstones re-puts the tombstones of keys deleted less than
// GCMissingGrace ago whose last put is RepublishInterval old, so that an
// expired tombstone does not let a replayed live manifest bring a deleted
// object back; the list on disk makes a restart keep doing it.
func (s *Service) republishTombstones(ctx context.Context) {
	now := s.cfg.Now()
	ts, err := s.tracked.tombstones(now, s.cfg.GCMissingGrace)
	if err != nil {
		s.log.Debug("forget expired tombstones", "err", err)
	}
	for _, t := range ts {
		obj := s.key.ObjectID(t.key)
		if last, ok := s.republished.get(obj); ok && now.Sub(last) < s.cfg.RepublishInterval {
			continue
		}
		if err := s.records.PutValue(ctx, DHTKey(s.key.Namespace(), obj), t.rec); err != nil {
			s.log.Debug("republish tombstone", "key", t.key, "err", err)
			continue
		}
		s.republished.set(obj, now)
	}
}
