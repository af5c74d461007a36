package erasure

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/libp2p/go-libp2p/core/routing"
)

func TestValidateKey(t *testing.T) {
	for _, c := range []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"user:42.settings_v2-old", true},
		{strings.Repeat("k", MaxKeyLen), true},
		{"", false},
		{strings.Repeat("k", MaxKeyLen+1), false},
		{"a/b", false}, // would make /v1/state/{key}/health ambiguous
		{"a b", false},
		{"clé", false},
		{"a\x00", false},
	} {
		err := ValidateKey(c.key)
		if (err == nil) != c.ok {
			t.Errorf("ValidateKey(%.20q) = %v, want ok %v", c.key, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidateKey(%.20q) = %v, not ErrInvalidKey", c.key, err)
		}
	}
}

func TestKeyListFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state-keys.json")
	l, err := loadKeyList(path, nil)
	if err != nil || len(l.list()) != 0 {
		t.Fatalf("missing file: %v %v", l.list(), err)
	}
	for _, k := range []string{"b", "a", "b"} {
		if _, err := l.add(k); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.remove("nothing"); err != nil {
		t.Fatal(err)
	}
	if got := fileKeys(t, path); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("file lists %v", got)
	}
	if err := l.remove("a"); err != nil {
		t.Fatal(err)
	}
	if l, err = loadKeyList(path, nil); err != nil || !slices.Equal(l.list(), []string{"b"}) {
		t.Fatalf("reloaded %v %v", l.list(), err)
	}

	// A file written by node/ before, with a key the rule refuses (skipped).
	if err := os.WriteFile(path, []byte(`["doc","obj-01","not/a/key"]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if l, err = loadKeyList(path, nil); err != nil || !slices.Equal(l.list(), []string{"doc", "obj-01"}) {
		t.Fatalf("legacy file: %v %v", l.list(), err)
	}

	// A write that fails leaves both the list and the file as they were.
	undo := breakWrites(t, dir)
	if added, err := l.add("new"); err == nil || added {
		t.Fatalf("add with an unwritable directory: added %v, err %v", added, err)
	}
	if !slices.Equal(l.list(), []string{"doc", "obj-01"}) {
		t.Fatalf("after a failed add: %v", l.list())
	}
	undo()
	if l, err = loadKeyList(path, nil); err != nil || !slices.Equal(l.list(), []string{"doc", "obj-01"}) {
		t.Fatalf("after a failed add, the file lists %v %v", l.list(), err)
	}

	if err := os.WriteFile(path, []byte(`["doc",`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadKeyList(path, nil); err == nil || !strings.Contains(err.Error(), "is corrupt") {
		t.Fatalf("corrupt file: %v", err)
	}
}

// fileKeys returns the keys the list in path tracks.
func fileKeys(t *testing.T, path string) []string {
	t.Helper()
	l, err := loadKeyList(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l.list()
}

// breakWrites makes every file write in dir fail until the returned
// function is called. A read-only directory does not stop root, which
// tests may run as: dir is moved away and a plain file put in its place.
func breakWrites(t *testing.T, dir string) (undo func()) {
	t.Helper()
	aside := dir + ".aside"
	if err := os.Rename(dir, aside); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(aside, dir); err != nil {
			t.Fatal(err)
		}
	}
}

// withKeysFile restarts node i's service with its key list in path, as a
// node restarting from its data directory would.
func withKeysFile(t *testing.T, tn *testNet, i int, path string) *Service {
	t.Helper()
	return restartWith(t, tn, i, Deps{KeysFile: path})
}

// restartWith restarts node i's service with the files of files (its
// KeysFile and RecordsDir), as a node restarting from its data directory
// would; its memory of versions starts empty.
func restartWith(t *testing.T, tn *testNet, i int, files Deps) *Service {
	t.Helper()
	nd := tn.nodes[i]
	cfg, key := nd.svc.cfg, nd.svc.key
	nd.svc.Close()
	svc, err := New(cfg, Deps{Host: nd.h, Key: key, Store: nd.store, Records: tn.records,
		Peers: netPeers{n: tn, self: nd.h.ID()}, KeysFile: files.KeysFile, RecordsDir: files.RecordsDir})
	if err != nil {
		t.Fatal(err)
	}
	nd.svc = svc
	return svc
}

// TestServiceKeysFile: the keys a service writes survive a restart; a Put
// whose key cannot be recorded fails and leaves no shard or manifest
// behind; Delete forgets the key.
func TestServiceKeysFile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 5, netOpts{})
		dir := filepath.Join(t.TempDir(), "data")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "state-keys.json")
		svc := withKeysFile(t, tn, 0, path)
		ctx := context.Background()
		for _, k := range []string{"a", "b"} {
			if _, err := svc.Put(ctx, k, []byte("value of "+k)); err != nil {
				t.Fatal(err)
			}
		}
		if err := svc.Delete(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if got := fileKeys(t, path); !slices.Equal(got, []string{"b"}) {
			t.Fatalf("after put a, put b, delete a: file lists %v", got)
		}

		undo := breakWrites(t, dir)
		_, err := svc.Put(ctx, "c", []byte("value of c"))
		if err == nil || !strings.Contains(err.Error(), "record key") {
			t.Fatalf("put with an unwritable key list: %v", err)
		}
		undo()
		obj := svc.key.ObjectID("c")
		if _, err := tn.records.GetValue(ctx, DHTKey(svc.Namespace(), obj)); !errors.Is(err, routing.ErrNotFound) {
			t.Fatalf("the failed put published a manifest (%v)", err)
		}
		for i, nd := range tn.nodes {
			for _, info := range nd.store.List() {
				if info.Ref.Object == obj {
					t.Fatalf("node %d keeps shard %d of the failed put", i, info.Ref.Index)
				}
			}
		}
		if got := svc.Keys(); !slices.Equal(got, []string{"b"}) {
			t.Fatalf("after the failed put, keys %v", got)
		}
		if _, err := svc.Put(ctx, "c", []byte("value of c")); err != nil {
			t.Fatal(err)
		}

		svc = withKeysFile(t, tn, 0, path)
		if got := svc.Keys(); !slices.Equal(got, []string{"b", "c"}) {
			t.Fatalf("after a restart, keys %v", got)
		}
		if n := svc.sched.Len(); n != 2 {
			t.Fatalf("after a restart, %d objects scheduled for repair, want 2", n)
		}
		if err := svc.Untrack("b"); err != nil {
			t.Fatal(err)
		}
		if got := fileKeys(t, path); !slices.Equal(got, []string{"c"}) {
			t.Fatalf("after untrack b: file lists %v", got)
		}
	})
}

func FuzzKeyFileDecode(f *testing.F) {
	for _, s := range keyFileSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := parseKeyFile(b)
		if err != nil {
			return
		}
		// What loads is saved and loads again alike.
		l := &keyList{keys: map[string]*keyEntry{}, byObj: map[ObjectID]string{}}
		for _, e := range entries {
			if ValidateKey(e.Key) == nil {
				l.set(e)
			}
		}
		l.path = filepath.Join(t.TempDir(), "keys.json")
		if err := l.save(); err != nil {
			t.Fatal(err)
		}
		again, err := loadKeyList(l.path, nil)
		if err != nil {
			t.Fatalf("saved list does not load: %v", err)
		}
		if !slices.Equal(again.list(), l.list()) || len(again.keys) != len(l.keys) {
			t.Fatalf("reloaded %v, saved %v", again.list(), l.list())
		}
		for k, e := range l.keys {
			if again.floor(k) != e.Version {
				t.Fatalf("key %q: floor %d, saved %d", k, again.floor(k), e.Version)
			}
		}
	})
}

func keyFileSeeds() [][]byte {
	return [][]byte{
		[]byte(`["doc","obj-01","not/a/key"]`),
		[]byte(`{"format":2,"keys":[{"key":"a","version":3,"tracked":true},{"key":"b","version":7,"deleted":"2026-12-01T10:00:00Z","tombstone":"SU1NRg=="}]}`),
		[]byte(`{"format":3,"keys":[]}`),
		[]byte(`{"format":2,"keys":[null]}`),
	}
}
