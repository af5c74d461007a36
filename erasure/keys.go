package erasure

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/immense-p2p/immense/internal/durable"
)

// MaxKeyLen is the longest object key, in bytes.
const MaxKeyLen = 256

// ValidateKey checks an object key: 1 to MaxKeyLen bytes of
// [A-Za-z0-9._:-]. No slash, so that an HTTP path such as
// /v1/state/{key}/health is never ambiguous.
func ValidateKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: want 1 to %d bytes, got %d", ErrInvalidKey, MaxKeyLen, len(key))
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return fmt.Errorf("%w: byte %q at offset %d is not one of [A-Za-z0-9._:-]", ErrInvalidKey, c, i)
		}
	}
	return nil
}

// keyList is what a service remembers durably about the keys of its
// namespace: which it repairs (those it wrote or was asked to track), the
// highest manifest version it published of each, and the tombstones of
// those it deleted, which it republishes for a while. With a file
// (Deps.KeysFile) each change is written there durably before it counts,
// so that a restart never silently drops a key from repair, never starts
// a key's versions again from 1 (an expired record and a replayed old
// manifest would then win), and keeps republishing tombstones.
//
// The file is JSON:
//
//	{"format": 2, "keys": [
//	  {"key": "a", "version": 3, "tracked": true},
//	  {"key": "b", "version": 7, "deleted": "2026-12-01T10:00:00Z", "tombstone": "<base64 signed record>"}]}
//
// sorted by key. A JSON array of key names, the format node/ wrote
// (state-keys.json) before the service kept the list, loads as those keys
// tracked, with no version known.
type keyList struct {
	path  string // "" keeps the list in memory only
	objOf func(key string) ObjectID

	mu    sync.Mutex
	keys  map[string]*keyEntry
	byObj map[ObjectID]string
}

// keyEntry is what the list holds of one key.
type keyEntry struct {
	Key string `json:"key"`
	// Version is the highest manifest version this service published (or
	// was about to) for the key: the floor of its next one.
	Version uint64 `json:"version,omitempty"`
	// Published is the highest version this service saw the DHT accept:
	// repair refuses a manifest below it (a rollback). Not Version, which
	// a failed publish leaves one ahead of what the DHT holds.
	Published uint64 `json:"published,omitempty"`
	// Tracked: the service repairs the key.
	Tracked bool `json:"tracked,omitempty"`
	// Deleted and Tombstone: when the key was deleted, and the signed
	// tombstone to republish until GCMissingGrace has passed since.
	Deleted   *time.Time `json:"deleted,omitempty"`
	Tombstone []byte     `json:"tombstone,omitempty"`
}

// keyFile is the file's layout.
type keyFile struct {
	Format int         `json:"format"`
	Keys   []*keyEntry `json:"keys"`
}

const keyFileFormat = 2

// loadKeyList reads the list at path; a missing file is an empty list.
// objOf maps a key to its object id (the app key's ObjectID).
func loadKeyList(path string, objOf func(string) ObjectID) (*keyList, error) {
	l := &keyList{path: path, objOf: objOf, keys: map[string]*keyEntry{}, byObj: map[ObjectID]string{}}
	if path == "" {
		return l, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	entries, err := parseKeyFile(b)
	if err != nil {
		return nil, fmt.Errorf("%s is corrupt (%v): move it away to start over; the keys it lists will no longer be repaired by this node", path, err)
	}
	for _, e := range entries {
		// Put never wrote a key the rule refuses: a hand edit, skipped
		// rather than fatal.
		if ValidateKey(e.Key) == nil {
			l.set(e)
		}
	}
	return l, nil
}

// parseKeyFile reads either format of the key list.
func parseKeyFile(b []byte) ([]*keyEntry, error) {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '[' {
		var keys []string
		if err := json.Unmarshal(b, &keys); err != nil {
			return nil, err
		}
		out := make([]*keyEntry, len(keys))
		for i, k := range keys {
			out[i] = &keyEntry{Key: k, Tracked: true}
		}
		return out, nil
	}
	var f keyFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	if f.Format != keyFileFormat {
		return nil, fmt.Errorf("format %d, want %d", f.Format, keyFileFormat)
	}
	for _, e := range f.Keys {
		if e == nil {
			return nil, errors.New("null entry")
		}
	}
	return f.Keys, nil
}

// set puts e in the list (or, if it holds nothing worth keeping, takes
// its key out); l.mu must be held or l not yet shared.
func (l *keyList) set(e *keyEntry) {
	if len(e.Tombstone) == 0 {
		e.Tombstone = nil // "" in a file: none (it is not written back)
	}
	if !e.Tracked && e.Version == 0 && e.Tombstone == nil {
		delete(l.keys, e.Key)
		if l.objOf != nil {
			delete(l.byObj, l.objOf(e.Key))
		}
		return
	}
	l.keys[e.Key] = e
	if l.objOf != nil {
		l.byObj[l.objOf(e.Key)] = e.Key
	}
}

// update applies change to a copy of key's entry and saves the list; if
// the file cannot be written the entry is left as it was.
func (l *keyList) update(key string, change func(e *keyEntry)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.keys[key]
	e := &keyEntry{Key: key}
	if old != nil {
		c := *old
		e = &c
	}
	change(e)
	l.set(e)
	if err := l.save(); err != nil {
		if old != nil {
			l.set(old)
		} else {
			l.set(&keyEntry{Key: key})
		}
		return err
	}
	return nil
}

// add records key as tracked and reports whether it is new. If the file
// cannot be written the list is left as it was.
func (l *keyList) add(key string) (bool, error) {
	l.mu.Lock()
	if e := l.keys[key]; e != nil && e.Tracked {
		l.mu.Unlock()
		return false, nil
	}
	l.mu.Unlock()
	err := l.update(key, func(e *keyEntry) { e.Tracked = true })
	return err == nil, err
}

// recordPut records key as tracked and live at version (at least), before
// its manifest is published, and returns what undoes it if the
// publication fails: the entry as it was (tracked or not, a tombstone and
// its deletion time), its version floor kept. If the file cannot be
// written the list is left as it was.
func (l *keyList) recordPut(key string, version uint64) (undo func() error, err error) {
	l.mu.Lock()
	var was keyEntry
	if e := l.keys[key]; e != nil {
		was = *e
	}
	l.mu.Unlock()
	err = l.update(key, func(e *keyEntry) {
		e.Tracked, e.Version = true, max(e.Version, version)
		e.Deleted, e.Tombstone = nil, nil
	})
	if err != nil {
		return nil, err
	}
	return func() error {
		return l.update(key, func(e *keyEntry) {
			e.Tracked, e.Deleted, e.Tombstone = was.Tracked, was.Deleted, was.Tombstone
		})
	}, nil
}

// recordDelete records that key was deleted at time at with the signed
// tombstone rec of version, before the tombstone is published: the key is
// no longer repaired, its version floor stays, and the tombstone is
// republished until the GC grace has passed.
func (l *keyList) recordDelete(key string, version uint64, rec []byte, at time.Time) error {
	return l.update(key, func(e *keyEntry) {
		e.Tracked, e.Version = false, max(e.Version, version)
		e.Deleted, e.Tombstone = &at, bytes.Clone(rec)
	})
}

// raise records that version of the key of obj was published (by a
// repair), lifting its floor, if the list knows the key.
func (l *keyList) raise(obj ObjectID, version uint64) error {
	l.mu.Lock()
	key, ok := l.byObj[obj]
	l.mu.Unlock()
	if !ok {
		return nil
	}
	return l.markPublished(key, version)
}

// markPublished records that the DHT accepted version of key.
func (l *keyList) markPublished(key string, version uint64) error {
	l.mu.Lock()
	e := l.keys[key]
	done := e != nil && e.Published >= version && e.Version >= version
	l.mu.Unlock()
	if done {
		return nil
	}
	return l.update(key, func(e *keyEntry) {
		e.Version, e.Published = max(e.Version, version), max(e.Published, version)
	})
}

// keeps reports whether the list keeps the key of obj tracked or with a
// tombstone (ownRecords keeps its record then).
func (l *keyList) keeps(obj ObjectID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.keys[l.byObj[obj]]
	return e != nil && (e.Tracked || e.Tombstone != nil)
}

// tombstoneOf returns the signed tombstone the list keeps of the key of
// obj, nil if none, and the key's version floor (at least the
// tombstone's version).
func (l *keyList) tombstoneOf(obj ObjectID) (uint64, []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.keys[l.byObj[obj]]; e != nil && e.Tombstone != nil {
		return e.Version, e.Tombstone
	}
	return 0, nil
}

// isTracked reports whether the service repairs key.
func (l *keyList) isTracked(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.keys[key]
	return e != nil && e.Tracked
}

// floorObj returns the highest version recorded for the key of obj (the
// floor of its next one), 0 if the list does not know it.
func (l *keyList) floorObj(obj ObjectID) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if key, ok := l.byObj[obj]; ok {
		return l.keys[key].Version
	}
	return 0
}

// publishedObj returns the highest version of the key of obj the DHT
// accepted from this service, 0 if the list does not know it.
func (l *keyList) publishedObj(obj ObjectID) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if key, ok := l.byObj[obj]; ok {
		return l.keys[key].Published
	}
	return 0
}

// floor returns the highest version recorded for key, 0 if none.
func (l *keyList) floor(key string) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.keys[key]; e != nil {
		return e.Version
	}
	return 0
}

// remove stops tracking key; its version floor stays. It is forgotten
// even if the file cannot be written: the next write that succeeds leaves
// it out.
func (l *keyList) remove(key string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.keys[key]
	if e == nil || !e.Tracked {
		return nil
	}
	c := *e
	c.Tracked = false
	l.set(&c)
	return l.save()
}

// tombstone is a deleted key whose tombstone is still republished.
type tombstone struct {
	key     string
	deleted time.Time
	rec     []byte
}

// tombstones returns the tombstones deleted less than grace before now,
// and drops (from the list and its file) those older: by then holders'
// GC has removed the shards anyway, and the version floor stays.
func (l *keyList) tombstones(now time.Time, grace time.Duration) ([]tombstone, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []tombstone
	expired := false
	for _, k := range l.sorted() {
		e := l.keys[k]
		if e.Tombstone == nil {
			continue
		}
		if e.Deleted != nil && now.Sub(*e.Deleted) < grace {
			out = append(out, tombstone{key: k, deleted: *e.Deleted, rec: e.Tombstone})
			continue
		}
		c := *e
		c.Deleted, c.Tombstone = nil, nil
		l.set(&c)
		expired = true
	}
	if expired {
		return out, l.save()
	}
	return out, nil
}

// list returns the tracked keys, sorted.
func (l *keyList) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var keys []string
	for _, k := range l.sorted() {
		if l.keys[k].Tracked {
			keys = append(keys, k)
		}
	}
	return keys
}

// sorted returns every key in the list, sorted; l.mu must be held.
func (l *keyList) sorted() []string {
	keys := make([]string, 0, len(l.keys))
	for k := range l.keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// save writes the list to its file; l.mu must be held.
func (l *keyList) save() error {
	if l.path == "" {
		return nil
	}
	f := keyFile{Format: keyFileFormat, Keys: []*keyEntry{}}
	for _, k := range l.sorted() {
		f.Keys = append(f.Keys, l.keys[k])
	}
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(l.path, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", l.path, err)
	}
	return nil
}

// Keys returns the keys this service repairs (those it wrote and those
// tracked with Track), sorted.
func (s *Service) Keys() []string { return s.tracked.list() }

// keyOf returns the key of obj if this service tracks it, for logs;
// otherwise "".
func (l *keyList) keyOf(obj ObjectID) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byObj[obj]
}
