package erasure

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/routing"
	"github.com/prometheus/client_golang/prometheus"
)

// expire drops the record under key, as DHT servers do once it has not
// been re-put for 48 h.
func (r *memRecords) expire(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.vals, key)
}

// TestManifestRollback: once an object's record has expired from the DHT,
// a peer without the app key puts back an older signed manifest it kept.
// A reader that verified a newer version reads that one from its memory
// and puts it back (counted); one that kept only the version refuses
// (ErrRolledBack); the writer's next Put goes above every version it published,
// also after a restart; a deleted object's tombstone is republished (also
// after a restart), so a replayed live manifest does not bring the object
// back. Another object is read throughout.
func TestManifestRollback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 7
		appKey, _ := GenerateAppKey()
		attackerKey, _ := GenerateAppKey()
		reg := prometheus.NewRegistry()
		tn := newTestNet(t, n, netOpts{
			key: func(i int) *AppKey {
				if i == n-1 {
					return attackerKey
				}
				return appKey
			},
			config: func(i int, c *Config, _ *StoreConfig) {
				c.MaxShards = 6
				switch i {
				case 0: // the writer republishes
					c.DisableRepair = false
					c.RepublishInterval = 10 * time.Second
				case 1:
					c.Registerer = reg
				}
			},
		})
		ctx := context.Background()
		dir := t.TempDir()
		keysFile := filepath.Join(dir, "state-keys.json")
		writer := withKeysFile(t, tn, 0, keysFile)
		reader := tn.nodes[1].svc
		dhtKey := DHTKey(appKey.Namespace(), appKey.ObjectID("obj"))
		// The attacker reads records from the DHT like anyone, and puts
		// them back later.
		kept := func() []byte {
			b, err := tn.records.GetValue(ctx, dhtKey)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		replay := func(rec []byte) {
			tn.records.expire(dhtKey)
			if err := tn.records.PutValue(ctx, dhtKey, rec); err != nil {
				t.Fatalf("the DHT refused the replay: %v", err)
			}
		}
		get := func(svc *Service, key string) (string, error) {
			b, err := svc.Get(ctx, key)
			return string(b), err
		}
		steady := func() {
			t.Helper()
			if v, err := get(reader, "other"); err != nil || v != "steady" {
				t.Fatalf("honest read of another object: %q %v", v, err)
			}
		}
		rollbacks := func() float64 { return counterValue(reader.metrics.rollbacks) }

		if _, err := writer.Put(ctx, "other", []byte("steady")); err != nil {
			t.Fatal(err)
		}
		var old []byte
		for _, v := range []string{"v1", "v2", "v3"} {
			if v == "v3" {
				old = kept() // version 2
			}
			if _, err := writer.Put(ctx, "obj", []byte(v)); err != nil {
				t.Fatal(err)
			}
		}
		if v, err := get(reader, "obj"); err != nil || v != "v3" {
			t.Fatalf("read: %q %v", v, err)
		}

		// The reader kept the record of version 3: it reads that one, and
		// puts it back in the DHT.
		replay(old)
		if v, err := get(reader, "obj"); err != nil || v != "v3" || rollbacks() != 1 {
			t.Fatalf("read of a replayed version 2 after version 3: %q %v (rollbacks counted %v)", v, err, rollbacks())
		}
		if m, err := validateRecord(dhtKey, kept()); err != nil || m.Version != 3 {
			t.Fatalf("the DHT after the reader put version 3 back: %+v %v", m, err)
		}
		// A reader that kept only the version refuses the replay.
		forgetful := tn.nodes[2].svc
		forgetful.seen = newVersionMemory(maxRememberedVersions, 0, 0)
		if v, err := get(forgetful, "obj"); err != nil || v != "v3" {
			t.Fatalf("read: %q %v", v, err)
		}
		replay(old)
		if _, err := get(forgetful, "obj"); !errors.Is(err, ErrRolledBack) || counterValue(forgetful.metrics.rollbacks) != 1 {
			t.Fatalf("read of a replayed version 2 after version 3: %v (rollbacks counted %v)", err, counterValue(forgetful.metrics.rollbacks))
		}
		steady()
		res, err := writer.Put(ctx, "obj", []byte("v4"))
		if err != nil || res.Version != 4 {
			t.Fatalf("put over the replay: %+v %v", res, err)
		}
		if v, err := get(reader, "obj"); err != nil || v != "v4" {
			t.Fatalf("read: %q %v", v, err)
		}

		// Versions survive a restart of the writer and the record's expiry.
		writer = withKeysFile(t, tn, 0, keysFile)
		tn.records.expire(dhtKey)
		if res, err = writer.Put(ctx, "obj", []byte("v5")); err != nil || res.Version != 5 {
			t.Fatalf("put after a restart and an expiry: %+v %v", res, err)
		}

		// Delete, then the attacker replays the live version 5.
		live := kept()
		if err := writer.Delete(ctx, "obj"); err != nil {
			t.Fatal(err)
		}
		if _, err := get(reader, "obj"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("read after delete: %v", err)
		}
		replay(live)
		if _, err := get(reader, "obj"); !errors.Is(err, ErrNotFound) || rollbacks() != 2 {
			t.Fatalf("read of a replayed live version after the tombstone: %v (rollbacks counted %v)", err, rollbacks())
		}

		steady()
		// The writer republishes its tombstone: a reader that never saw
		// the object finds it deleted again.
		time.Sleep(10*time.Second + 2*time.Second)
		synctest.Wait()
		if _, err := get(tn.nodes[2].svc, "obj"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("fresh read after the tombstone's republication: %v", err)
		}

		// And after a restart too.
		writer = withKeysFile(t, tn, 0, keysFile)
		replay(live)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if _, err := get(tn.nodes[3].svc, "obj"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("fresh read after a restart's republication: %v", err)
		}
		// A new Put after the delete goes above the tombstone, even with
		// the record expired.
		tn.records.expire(dhtKey)
		if res, err = writer.Put(ctx, "obj", []byte("v7")); err != nil || res.Version != 7 {
			t.Fatalf("put after delete and expiry: %+v %v", res, err)
		}
		if v, err := get(reader, "obj"); err != nil || v != "v7" {
			t.Fatalf("read: %q %v", v, err)
		}
		steady()
		if _, err := os.Stat(keysFile); err != nil {
			t.Fatal(err)
		}
	})
}

// TestTombstonesExpire: the list republishes a tombstone until the GC
// grace has passed, then keeps only the version floor, on disk too.
func TestTombstonesExpire(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	l, err := loadKeyList(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1_800_000_000, 0)
	if _, err := l.recordPut("k", 3); err != nil {
		t.Fatal(err)
	}
	if err := l.recordDelete("k", 4, []byte("tombstone"), at); err != nil {
		t.Fatal(err)
	}
	if l, err = loadKeyList(path, nil); err != nil {
		t.Fatal(err)
	}
	ts, err := l.tombstones(at.Add(time.Minute), time.Hour)
	if err != nil || len(ts) != 1 || string(ts[0].rec) != "tombstone" || len(l.list()) != 0 {
		t.Fatalf("tombstones %v %v, tracked %v", ts, err, l.list())
	}
	if ts, err = l.tombstones(at.Add(time.Hour), time.Hour); err != nil || len(ts) != 0 {
		t.Fatalf("after the grace: %v %v", ts, err)
	}
	if l, err = loadKeyList(path, nil); err != nil || l.floor("k") != 4 {
		t.Fatalf("reloaded floor %d %v", l.floor("k"), err)
	}
	if ts, _ = l.tombstones(at, time.Hour); len(ts) != 0 {
		t.Fatal("an expired tombstone came back from disk")
	}
}

// TestVersionMemoryBounded: the reader's memory of versions is an LRU,
// and the records it keeps beside them are bounded in size and in all.
func TestVersionMemoryBounded(t *testing.T) {
	v := newVersionMemory(2, 5, 6)
	v.observe("a", 5, []byte("a5"))
	v.observe("b", 1, []byte("b1"))
	if prev := v.observe("a", 3, []byte("a3")); prev != 5 || v.get("a") != 5 || string(v.record("a")) != "a5" {
		t.Fatalf("older version: prev %d, kept %d %q", prev, v.get("a"), v.record("a"))
	}
	v.observe("c", 1, []byte("too large")) // evicts b, the least recently used
	if v.len() != 2 || v.get("b") != 0 || v.get("a") != 5 || v.record("c") != nil || v.get("c") != 1 {
		t.Fatalf("len %d, a %d, b %d, c %d %q", v.len(), v.get("a"), v.get("b"), v.get("c"), v.record("c"))
	}
	v.observe("c", 2, []byte("c2"))
	v.observe("a", 6, []byte("a6...")) // 7 bytes in all: c's record goes, not a's
	if string(v.record("a")) != "a6..." || v.record("c") != nil || v.get("c") != 2 || v.bytes != 5 {
		t.Fatalf("a %q, c %d %q, bytes %d", v.record("a"), v.get("c"), v.record("c"), v.bytes)
	}
}

// failingRecords fails every PutValue, as a DHT that cannot reach anyone.
type failingRecords struct{ Records }

func (failingRecords) PutValue(context.Context, string, []byte, ...routing.Option) error {
	return errors.New("no peer answered")
}

// TestFailedPutKeepsRepair: a Put whose manifest could not be published
// leaves the key's version floor one ahead of what the DHT holds; repair
// of the live version must still run (it is not a rollback: this peer
// never published the higher version), and the next Put goes above both.
func TestFailedPutKeepsRepair(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 6, netOpts{config: func(_ int, c *Config, _ *StoreConfig) { c.MaxShards = 5 }})
		ctx := context.Background()
		w := tn.nodes[0].svc
		if _, err := w.Put(ctx, "obj", []byte("v1")); err != nil {
			t.Fatal(err)
		}
		good := w.records
		w.records = failingRecords{good}
		if _, err := w.Put(ctx, "obj", []byte("v2")); err == nil {
			t.Fatal("a Put whose manifest was not published succeeded")
		}
		w.records = good
		if _, err := w.Repair(ctx, "obj"); errors.Is(err, ErrRolledBack) {
			t.Fatalf("repair after a failed Put: %v", err)
		}
		res, err := w.Put(ctx, "obj", []byte("v3"))
		if err != nil || res.Version != 3 {
			t.Fatalf("the next Put: %+v, %v; want version 3", res, err)
		}
		if got, err := tn.nodes[1].svc.Get(ctx, "obj"); err != nil || string(got) != "v3" {
			t.Fatalf("read back %q, %v", got, err)
		}
	})
}

// TestFailedDeleteUndone: a Delete whose tombstone could not be published
// fails and is not carried out later: the key is still tracked, nothing is
// left for the tombstone republisher, and the object still reads.
func TestFailedDeleteUndone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 6, netOpts{config: func(_ int, c *Config, _ *StoreConfig) { c.MaxShards = 5 }})
		ctx := context.Background()
		w := tn.nodes[0].svc
		if _, err := w.Put(ctx, "obj", []byte("v1")); err != nil {
			t.Fatal(err)
		}
		good := w.records
		w.records = failingRecords{good}
		if err := w.Delete(ctx, "obj"); err == nil {
			t.Fatal("a Delete whose tombstone was not published succeeded")
		}
		w.records = good
		if keys := w.Keys(); len(keys) != 1 || keys[0] != "obj" {
			t.Fatalf("tracked keys after a failed delete: %v", keys)
		}
		if ts, _ := w.tracked.tombstones(time.Now(), time.Hour); len(ts) != 0 {
			t.Fatalf("tombstones left to republish: %d", len(ts))
		}
		if got, err := tn.nodes[1].svc.Get(ctx, "obj"); err != nil || string(got) != "v1" {
			t.Fatalf("read after a failed delete: %q, %v", got, err)
		}
	})
}

// TestVersionsOfOthersApart: what a peer remembers of its own namespace's
// versions is kept apart from what lookups of other namespaces (GC,
// handoff and volunteer repair of the shards it holds for others) note, so
// that a stranger's many namespaces cannot evict it: with room for 2 keys,
// 3 foreign keys leave the own key remembered. Before, one LRU of 16,384
// keys held both, and a stranger who stored tiny shards under 16,384 of
// its own namespaces had one GC pass wipe this peer's rollback protection.
func TestVersionsOfOthersApart(t *testing.T) {
	key, err := GenerateAppKey()
	if err != nil {
		t.Fatal(err)
	}
	own := DHTKey(key.Namespace(), ObjectID{1})
	s := &Service{
		seen:       newVersionMemory(2, 0, 0),
		seenOthers: newVersionMemory(2, 0, 0),
		ownKeys:    strings.TrimSuffix(DHTKey(key.Namespace(), ObjectID{}), ObjectID{}.String()),
	}
	s.versionsOf(own).observe(own, 7, nil)
	for i := range 3 {
		foreign := DHTKey(NamespaceID{byte(i + 1)}, ObjectID{1})
		if s.versionsOf(foreign) == s.seen {
			t.Fatalf("%s counted as this peer's own namespace", foreign)
		}
		s.versionsOf(foreign).observe(foreign, 1, nil)
	}
	if v := s.versionsOf(own).get(own); v != 7 {
		t.Fatalf("own key's version %d after 3 foreign lookups, want 7", v)
	}
}
