package erasure

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// maxRememberedVersions bounds the objects whose highest verified manifest
// version a service remembers (about 200 bytes each, so ~3 MiB). The
// least recently used go first: a reader forgets objects it has not
// looked at for long, not the ones it reads.
const maxRememberedVersions = 16384

// maxRememberedRecord and maxRememberedRecordBytes bound the signed
// manifests a service keeps beside the versions: the newest it verified
// of each object, if no larger than this (a manifest of up to a few
// hundred segments), and this much in all (the least recently used are
// dropped first).
const (
	maxRememberedRecord      = 16 << 10
	maxRememberedRecordBytes = 8 << 20
)

// versionMemory remembers, per DHT key, the highest manifest version this
// service has verified, so that an older signed manifest served later (a
// replay after the record expired from the DHT, or a DHT server that kept
// an old one) is refused instead of returning stale data; and, within a
// byte budget, that version's signed record, so that the service can
// read (and put back) the newer one instead of failing. It is an LRU of
// bounded size; safe for concurrent use.
type versionMemory struct {
	max, maxRec, maxBytes int

	mu    sync.Mutex
	order *list.List // of *versionSeen, most recent at the front
	byKey map[string]*list.Element
	bytes int // of the records kept
}

type versionSeen struct {
	key     string
	version uint64
	rec     []byte // the signed record of version, nil if not kept
}

// newVersionMemory remembers max keys, and their records of up to maxRec
// bytes, maxBytes in all.
func newVersionMemory(max, maxRec, maxBytes int) *versionMemory {
	return &versionMemory{max: max, maxRec: maxRec, maxBytes: maxBytes, order: list.New(), byKey: map[string]*list.Element{}}
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

// observe records that version of key, whose signed record is rec, was
// verified, and returns the highest version known before (0 if none). A
// lower version than that is not recorded: the caller refuses it.
func (v *versionMemory) observe(key string, version uint64, rec []byte) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	var s *versionSeen
	prev := uint64(0)
	if e, ok := v.byKey[key]; ok {
		s = e.Value.(*versionSeen)
		v.order.MoveToFront(e)
		prev = s.version
	} else {
		s = &versionSeen{key: key}
		v.byKey[key] = v.order.PushFront(s)
		for v.order.Len() > v.max {
			old := v.order.Back()
			v.bytes -= len(old.Value.(*versionSeen).rec)
			v.order.Remove(old)
			delete(v.byKey, old.Value.(*versionSeen).key)
		}
	}
	if version > s.version || (version == s.version && s.rec == nil) {
		v.bytes -= len(s.rec)
		s.version, s.rec = version, nil
		if len(rec) > 0 && len(rec) <= v.maxRec {
			s.rec = append([]byte(nil), rec...)
			v.bytes += len(rec)
			// Over the budget: drop the records of the least recently
			// used keys (their versions stay).
			for e := v.order.Back(); v.bytes > v.maxBytes && e != nil; e = e.Prev() {
				if o := e.Value.(*versionSeen); o != s {
					v.bytes -= len(o.rec)
					o.rec = nil
				}
			}
		}
	}
	return prev
}

// record returns the signed record of the highest version remembered for
// key, nil if it was not kept.
func (v *versionMemory) record(key string) []byte {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e, ok := v.byKey[key]; ok {
		return e.Value.(*versionSeen).rec
	}
	return nil
}

// len returns the number of keys remembered.
func (v *versionMemory) len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.order.Len()
}

// versionsOf returns the memory of verified versions that dhtKey's
// belong in: the service's own namespace has one, every other namespace
// (the shards this peer holds for others, which GC, handoff and volunteer
// repair look up) shares the other. Else a stranger could evict what this
// peer remembers of its own objects, and with it their protection from
// rollback, by storing tiny shards under 16,384 namespaces of its own and
// waiting for GC to look each up.
func (s *Service) versionsOf(dhtKey string) *versionMemory {
	if strings.HasPrefix(dhtKey, s.ownKeys) {
		return s.seen
	}
	return s.seenOthers
}

// latest fetches and verifies the current manifest under dhtKey. If a
// higher version of the object was verified before (the DHT keeps only
// the highest version it holds, and once the record expired an attacker
// can put back any older signed one; under churn the peers that took the
// newer one may all be offline), it returns that version instead when it
// kept its record, and puts it back in the DHT; else it refuses with
// ErrRolledBack. It returns an error wrapping ErrNotFound when the DHT has
// none.
//
// For this service's own objects it also falls back on the newest record
// it kept (ownrecords.go) when the DHT has none, or one below the version
// its key list says the DHT accepted: a lone peer's DHT, or every DHT
// server of a small network, restarted and lost them.
func (s *Service) latest(ctx context.Context, dhtKey string) (*Manifest, []byte, error) {
	m, rec, err := s.fetchManifest(ctx, dhtKey)
	if errors.Is(err, ErrNotFound) {
		if km, krec := s.bestKept(dhtKey, 0); km != nil {
			s.putBack(ctx, dhtKey, km, krec, 0)
			return km, krec, nil
		}
	}
	if err != nil {
		return nil, nil, err
	}
	obj, own := s.ownObject(dhtKey)
	if own {
		if km, krec := s.bestKept(dhtKey, m.Version); km != nil {
			s.metrics.rolledBack()
			s.putBack(ctx, dhtKey, km, krec, m.Version)
			return km, krec, nil
		}
		if published := s.tracked.publishedObj(obj); m.Version < published {
			s.metrics.rolledBack()
			s.log.Warn("refused a manifest older than one this peer published (replayed or stale record), and none newer is kept",
				"key", dhtKey, "version", m.Version, "published", published)
			return nil, nil, fmt.Errorf("get manifest %s: version %d, but this peer published version %d: %w",
				dhtKey, m.Version, published, ErrRolledBack)
		}
	}
	seen := s.versionsOf(dhtKey)
	prev := seen.observe(dhtKey, m.Version, rec)
	if m.Version >= prev {
		if own && m.Version > prev {
			s.keepNewer(obj, m.Version, rec)
		}
		return m, rec, nil
	}
	s.metrics.rolledBack()
	if newer := seen.record(dhtKey); newer != nil {
		if nm, err := validateRecord(dhtKey, newer); err == nil && nm.Version == prev {
			s.log.Info("the DHT served a manifest older than one verified before: using that one and putting it back",
				"key", dhtKey, "version", m.Version, "highest_seen", prev)
			if err := s.records.PutValue(ctx, dhtKey, newer); err != nil {
				s.log.Debug("put back the newer manifest", "key", dhtKey, "err", err)
			}
			return nm, newer, nil
		}
	}
	s.log.Warn("refused a manifest older than one verified before (replayed or stale record)",
		"key", dhtKey, "version", m.Version, "highest_seen", prev)
	return nil, nil, fmt.Errorf("get manifest %s: version %d, but version %d was verified before: %w",
		dhtKey, m.Version, prev, ErrRolledBack)
}

// nextVersion returns the version a write of key (object dhtKey) after
// the DHT's manifest cur (nil if none) publishes: above everything this
// service has published, verified or kept of it, so versions never go
// back, even after the record expired from the DHT.
func (s *Service) nextVersion(key, dhtKey string, cur *Manifest) uint64 {
	v := max(s.tracked.floor(key), s.versionsOf(dhtKey).get(dhtKey))
	if obj, ok := s.ownObject(dhtKey); ok {
		// A newer record another app peer published, kept since a read.
		if kept, err := s.own.version(obj); err == nil {
			v = max(v, kept)
		}
	}
	if cur != nil {
		v = max(v, cur.Version)
	}
	return v + 1
}

// published notes that this service published version of dhtKey, whose
// signed record is rec.
func (s *Service) published(dhtKey string, version uint64, rec []byte) {
	s.versionsOf(dhtKey).observe(dhtKey, version, rec)
}

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
