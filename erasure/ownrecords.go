package erasure

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/immense-p2p/immense/internal/durable"
)

// ownRecords keeps on disk the newest signed record this service knows of
// each object of its namespace that its key list keeps (Deps.RecordsDir):
// a writer is the authority on its own manifests, while DHT servers keep
// records in memory only. Without them a lone peer's restart, or every DHT
// server of a small network restarting at once, lost every manifest, and
// with it every value, though the shards were still on disk.
//
// What is kept: the record this service publishes, written before the DHT
// is asked to take it and put back as it was if the DHT refuses it (so a
// crash in between leaves the record the DHT may hold, never an older
// one), and a newer record of a kept key that another app peer sharing the
// app key published, once read. latest puts the best record it knows back
// when the DHT has none, or one older than this service published
// (bestKept). A file is named by the object id (hex); files of keys the
// list no longer keeps go at start and after each GC pass (sweep).
type ownRecords struct {
	dir string // "" keeps none
	// mu orders writes and sweeps (a sweep never removes a write in
	// progress) and guards versions: the version kept of each object
	// looked at since start (0: none kept), so that a lookup of a kept
	// record reads and verifies the file only when it may be newer than
	// what the caller has.
	mu       sync.Mutex
	versions map[ObjectID]uint64
	// publishing: objects whose record is kept but not yet accepted by
	// the DHT (putOwn), which no lookup may put back: the publication may
	// still fail, and its shards be discarded.
	publishing map[ObjectID]bool
}

func newOwnRecords(dir string) *ownRecords {
	return &ownRecords{dir: dir, versions: map[ObjectID]uint64{}, publishing: map[ObjectID]bool{}}
}

// setPublishing marks obj as being published (putOwn) or no longer.
func (r *ownRecords) setPublishing(obj ObjectID, on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if on {
		r.publishing[obj] = true
	} else {
		delete(r.publishing, obj)
	}
}

// isPublishing reports whether obj is being published.
func (r *ownRecords) isPublishing(obj ObjectID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.publishing[obj]
}

func (r *ownRecords) path(obj ObjectID) string {
	return filepath.Join(r.dir, obj.String()+".rec")
}

// save keeps rec, version v of obj, unless a newer version is kept
// (refused with an error) or the same one (nothing to do).
func (r *ownRecords) save(obj ObjectID, v uint64, rec []byte) error {
	if r.dir == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	kept, err := r.versionLocked(obj)
	switch {
	case err != nil:
		return err
	case kept > v:
		return fmt.Errorf("version %d of %s is kept, newer than %d", kept, obj, v)
	case kept == v:
		return nil
	}
	if err := durable.WriteFile(r.path(obj), rec, 0o600); err != nil {
		return err
	}
	r.versions[obj] = v
	return nil
}

// restore puts back prev, version v of obj, whatever is kept now (a
// publication that failed), or removes the record if prev is nil.
func (r *ownRecords) restore(obj ObjectID, v uint64, prev []byte) error {
	if r.dir == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.versions, obj)
	if prev != nil {
		if err := durable.WriteFile(r.path(obj), prev, 0o600); err != nil {
			return err
		}
		r.versions[obj] = v
		return nil
	}
	if err := os.Remove(r.path(obj)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	r.versions[obj] = 0
	return nil
}

// version returns the version kept of obj, 0 if none.
func (r *ownRecords) version(obj ObjectID) (uint64, error) {
	if r.dir == "" {
		return 0, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.versionLocked(obj)
}

func (r *ownRecords) versionLocked(obj ObjectID) (uint64, error) {
	if v, ok := r.versions[obj]; ok {
		return v, nil
	}
	b, err := r.load(obj)
	if err != nil || b == nil {
		if err == nil {
			r.versions[obj] = 0
		}
		return 0, err
	}
	m, err := ParseManifest(b)
	if err == nil && m.Object != obj {
		err = fmt.Errorf("%w: of object %s", ErrInvalidManifest, m.Object)
	}
	if err != nil {
		return 0, fmt.Errorf("kept record of %s: %w", obj, err)
	}
	r.versions[obj] = m.Version
	return m.Version, nil
}

// load returns the record kept of obj, nil if none.
func (r *ownRecords) load(obj ObjectID) ([]byte, error) {
	if r.dir == "" {
		return nil, nil
	}
	f, err := os.Open(r.path(obj))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxManifestSize+1))
	if err == nil && len(b) > MaxManifestSize {
		err = fmt.Errorf("%s: over %d bytes", r.path(obj), MaxManifestSize)
	}
	return b, err
}

// sweep removes the records of objects keep refuses, files that are not
// records and temporary files a crash left, and returns how many it
// removed.
func (r *ownRecords) sweep(keep func(ObjectID) bool) (int, error) {
	if r.dir == "" {
		return 0, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return 0, err
	}
	removed := 0
	var errs []error
	for _, e := range entries {
		name, isRec := strings.CutSuffix(e.Name(), ".rec")
		if obj, ok := parseObjectID(name); isRec && ok && keep(obj) {
			continue
		}
		if err := os.Remove(filepath.Join(r.dir, e.Name())); err != nil {
			errs = append(errs, err)
			continue
		}
		if obj, ok := parseObjectID(name); ok {
			delete(r.versions, obj)
		}
		removed++
	}
	return removed, errors.Join(errs...)
}

// parseObjectID reads an ObjectID as String writes it (a record's file
// name).
func parseObjectID(s string) (obj ObjectID, ok bool) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(obj) {
		return obj, false
	}
	copy(obj[:], b)
	return obj, true
}

// ownObject returns the object of dhtKey if it is of this service's
// namespace.
func (s *Service) ownObject(dhtKey string) (ObjectID, bool) {
	ns, obj, err := ParseDHTKey(dhtKey)
	return obj, err == nil && ns == s.key.Namespace()
}

// putOwn publishes rec, version v of this service's own object, keeping
// it on disk first; if the DHT refuses it, the record kept before is put
// back.
func (s *Service) putOwn(ctx context.Context, obj ObjectID, dhtKey string, v uint64, rec []byte) error {
	prevVersion, err := s.own.version(obj)
	var prev []byte
	if err == nil && prevVersion > 0 {
		prev, err = s.own.load(obj)
	}
	if err != nil {
		return fmt.Errorf("read kept record: %w", err)
	}
	s.own.setPublishing(obj, true)
	defer s.own.setPublishing(obj, false)
	if err := s.own.save(obj, v, rec); err != nil {
		return fmt.Errorf("keep record: %w", err)
	}
	if err := s.records.PutValue(ctx, dhtKey, rec); err != nil {
		if rerr := s.own.restore(obj, prevVersion, prev); rerr != nil {
			s.log.Warn("put back the kept record of a refused publication", "key", dhtKey, "err", rerr)
		}
		return err
	}
	return nil
}

// keepNewer keeps rec, version v of this service's object obj that another
// app peer published, if the key list keeps the key and nothing as new is
// kept.
func (s *Service) keepNewer(obj ObjectID, v uint64, rec []byte) {
	if !s.tracked.keeps(obj) {
		return
	}
	if kept, err := s.own.version(obj); err != nil || kept >= v {
		return
	}
	if err := s.own.save(obj, v, rec); err != nil {
		s.log.Debug("keep a newer manifest record", "object", obj, "version", v, "err", err)
	}
}

// bestKept returns the newest record this service knows of its own object
// dhtKey, if it is above version: from disk, from the key list (a
// tombstone) or from its memory of verified versions, provided it is not
// below the highest version it verified (a record it no longer has must
// not be replaced by an older one it has), and none while the object is
// being published (putOwn: the record may not be accepted). A record on
// disk that does not verify is logged and ignored.
func (s *Service) bestKept(dhtKey string, version uint64) (*Manifest, []byte) {
	obj, ok := s.ownObject(dhtKey)
	if !ok || s.own.isPublishing(obj) {
		return nil, nil
	}
	var best *Manifest
	var bestRec []byte
	consider := func(b []byte, from string) {
		if b == nil {
			return
		}
		m, err := validateRecord(dhtKey, b)
		if err != nil {
			s.log.Warn("kept manifest record unusable", "key", dhtKey, "from", from, "err", err)
			return
		}
		if best == nil || m.Version > best.Version {
			best, bestRec = m, b
		}
	}
	if kept, err := s.own.version(obj); err != nil {
		s.log.Warn("kept manifest record unreadable", "key", dhtKey, "err", err)
	} else if kept > version {
		b, err := s.own.load(obj)
		if err != nil {
			s.log.Warn("kept manifest record unreadable", "key", dhtKey, "err", err)
		}
		consider(b, "disk")
	}
	// Verified only if they may be newer: latest asks on every read.
	if v, ts := s.tracked.tombstoneOf(obj); v > version {
		consider(ts, "key list")
	}
	if s.seen.get(dhtKey) > version {
		consider(s.seen.record(dhtKey), "memory")
	}
	if best == nil || best.Version <= version || best.Version < s.seen.get(dhtKey) {
		return nil, nil
	}
	return best, bestRec
}

// putBack puts a kept record of dhtKey back in the DHT, which had none
// (dhtVersion 0) or an older one, and remembers its version.
func (s *Service) putBack(ctx context.Context, dhtKey string, m *Manifest, rec []byte, dhtVersion uint64) {
	what := "no manifest"
	if dhtVersion > 0 {
		what = fmt.Sprintf("version %d", dhtVersion)
	}
	s.log.Info("the DHT had "+what+" of an object this peer published: putting back the record it kept",
		"key", dhtKey, "version", m.Version)
	s.metrics.putBack()
	if err := s.records.PutValue(ctx, dhtKey, rec); err != nil {
		s.log.Debug("put back kept manifest", "key", dhtKey, "err", err)
	}
	s.versionsOf(dhtKey).observe(dhtKey, m.Version, rec)
}

// sweepOwnRecords removes the kept records of objects the key list no
// longer keeps (untracked keys, expired tombstones).
func (s *Service) sweepOwnRecords() {
	n, err := s.own.sweep(s.tracked.keeps)
	if err != nil {
		s.log.Warn("sweep kept manifest records", "err", err)
	}
	if n > 0 {
		s.log.Debug("kept manifest records removed", "count", n)
	}
}
