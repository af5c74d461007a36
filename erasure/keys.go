package erasure

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"

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

// keyList is the set of keys a service wrote or was asked to track, which
// it repairs. With a file (Deps.KeysFile) a key is written there durably
// before it counts, so that a restart never silently drops it from repair.
//
// The file is a JSON array of the keys, sorted: node/ wrote the same file
// (state-keys.json) before the service kept it, so data directories of
// either era load alike.
type keyList struct {
	path string // "" keeps the list in memory only

	mu   sync.Mutex
	keys map[string]bool
}

// loadKeyList reads the list at path; a missing file is an empty list.
func loadKeyList(path string) (*keyList, error) {
	l := &keyList{path: path, keys: map[string]bool{}}
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
	var keys []string
	if err := json.Unmarshal(b, &keys); err != nil {
		return nil, fmt.Errorf("%s is corrupt (%v): move it away to start over; the keys it lists will no longer be repaired by this node", path, err)
	}
	for _, k := range keys {
		// Put never wrote a key the rule refuses: a hand edit, skipped
		// rather than fatal.
		if ValidateKey(k) == nil {
			l.keys[k] = true
		}
	}
	return l, nil
}

// add records key and reports whether it is new. If the file cannot be
// written the list is left as it was.
func (l *keyList) add(key string) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys[key] {
		return false, nil
	}
	l.keys[key] = true
	if err := l.save(); err != nil {
		delete(l.keys, key)
		return false, err
	}
	return true, nil
}

// remove forgets key. It is forgotten even if the file cannot be written:
// the next write that succeeds leaves it out.
func (l *keyList) remove(key string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.keys[key] {
		return nil
	}
	delete(l.keys, key)
	return l.save()
}

// list returns the keys, sorted.
func (l *keyList) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sorted()
}

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
	b, err := json.Marshal(l.sorted())
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
