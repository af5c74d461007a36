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

	"github.com/immense-p2p/immense/internal/durable"
)

// ownRecords keeps on disk the signed record this service last published
// of each object of its namespace that its key list keeps (Deps.RecordsDir):
// a writer is the authority on its own manifests, while DHT servers keep
// records in memory only. Without them a lone peer's restart, or every DHT
// server of a small network restarting at once, lost every manifest, and
// with it every value, though the shards were still on disk. latest puts a
// kept record back when the DHT has none, or one older than the key list
// says was published. A file is named by the object id (hex), written
// durably once the DHT accepted the record, and removed once the key list
// no longer keeps the key (sweep).
type ownRecords struct {
	dir string // "" keeps none
}

func (r ownRecords) path(obj ObjectID) string { return filepath.Join(r.dir, obj.String()+".rec") }

// save keeps rec as the record of obj.
func (r ownRecords) save(obj ObjectID, rec []byte) error {
	if r.dir == "" {
		return nil
	}
	return durable.WriteFile(r.path(obj), rec, 0o600)
}

// load returns the record kept of obj, nil if none.
func (r ownRecords) load(obj ObjectID) ([]byte, error) {
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
func (r ownRecords) sweep(keep func(ObjectID) bool) (int, error) {
	if r.dir == "" {
		return 0, nil
	}
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
		removed++
	}
	return removed, errors.Join(errs...)
}

// parseObjectID reads an ObjectID as String writes it.
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
	if h, ok := strings.CutPrefix(dhtKey, s.ownKeys); ok {
		return parseObjectID(h)
	}
	return ObjectID{}, false
}

// keptRecord returns the record kept on disk of dhtKey if it is one of
// this service's objects and newer than version (0: any), else nil. A
// record that does not verify is logged and ignored.
func (s *Service) keptRecord(dhtKey string, version uint64) (*Manifest, []byte) {
	obj, ok := s.ownObject(dhtKey)
	if !ok {
		return nil, nil
	}
	b, err := s.own.load(obj)
	if err == nil && b == nil {
		return nil, nil
	}
	var m *Manifest
	if err == nil {
		m, err = validateRecord(dhtKey, b)
	}
	if err != nil {
		s.log.Warn("kept manifest record unusable", "key", dhtKey, "err", err)
		return nil, nil
	}
	if m.Version <= version {
		return nil, nil
	}
	return m, b
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
