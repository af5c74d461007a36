package erasure

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/routing"
	dto "github.com/prometheus/client_model/go"
)

// TestKeptRecordsAfterDHTRestart: every DHT server restarts and loses the
// manifests (a lone peer's restart, or a small network's): the writer,
// restarted too, still reads its values, puts the records it kept back
// (counted), refuses an older record served in place of the one it
// published, still knows a deleted key is deleted, and can delete a key
// the DHT lost; it forgets the record of a key it no longer keeps.
// Without kept records (RecordsDir empty, as before) the first Get is
// ErrNotFound.
func TestKeptRecordsAfterDHTRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 5, netOpts{})
		dir := t.TempDir()
		files := Deps{KeysFile: filepath.Join(dir, "state-keys.json"), RecordsDir: filepath.Join(dir, "state-records")}
		w := restartWith(t, tn, 0, files)
		ctx := context.Background()
		for _, k := range []string{"a", "b", "c", "d"} {
			if _, err := w.Put(ctx, k, []byte("value of "+k)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Delete(ctx, "c"); err != nil {
			t.Fatal(err)
		}
		dhtKey := func(k string) string { return DHTKey(w.Namespace(), w.key.ObjectID(k)) }
		old, err := tn.records.GetValue(ctx, dhtKey("a"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Put(ctx, "a", []byte("new value of a")); err != nil {
			t.Fatal(err)
		}

		// Every DHT server restarts, and so does the writer. One of them
		// then serves a's first record (e.g. from a peer that kept it).
		for _, k := range []string{"a", "b", "c", "d"} {
			tn.records.expire(dhtKey(k))
		}
		if err := tn.records.PutValue(ctx, dhtKey("a"), old); err != nil {
			t.Fatal(err)
		}
		w = restartWith(t, tn, 0, files)

		if v, err := w.Get(ctx, "b"); err != nil || string(v) != "value of b" {
			t.Fatalf("get b after the DHT lost its manifest: %q, %v", v, err)
		}
		if _, err := tn.records.GetValue(ctx, dhtKey("b")); err != nil {
			t.Fatalf("b's record was not put back: %v", err)
		}
		if v, err := w.Get(ctx, "a"); err != nil || string(v) != "new value of a" {
			t.Fatalf("get a with its older record in the DHT: %q, %v", v, err)
		}
		if _, err := w.Get(ctx, "c"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get of the deleted c: %v, want ErrNotFound", err)
		}
		if m, err := w.Manifest(ctx, "c"); err != nil || !m.Tombstone {
			t.Fatalf("c's manifest: %+v, %v; want its tombstone", m, err)
		}
		if err := w.Delete(ctx, "d"); err != nil {
			t.Fatalf("delete of d, which the DHT lost: %v", err)
		}
		var m dto.Metric
		if err := w.metrics.putBacks.Write(&m); err != nil || m.GetCounter().GetValue() != 3 {
			t.Errorf("put backs counted: %v (%v), want 3 (b, a, c)", m.GetCounter().GetValue(), err)
		}

		// Untracked, a's record is forgotten by the next sweep; the
		// others stay (b live, c and d tombstones).
		if err := w.Untrack("a"); err != nil {
			t.Fatal(err)
		}
		w.sweepOwnRecords()
		for k, want := range map[string]bool{"a": false, "b": true, "c": true, "d": true} {
			_, err := os.Stat(w.own.path(w.key.ObjectID(k)))
			if got := err == nil; got != want {
				t.Errorf("record of %s kept: %v, want %v (%v)", k, got, want, err)
			}
		}

		// As before: nothing kept, nothing put back.
		tn.records.expire(dhtKey("b"))
		w = restartWith(t, tn, 0, Deps{KeysFile: files.KeysFile})
		if _, err := w.Get(ctx, "b"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get b without kept records: %v, want ErrNotFound", err)
		}
	})
}

// TestKeptRecordsSharedKey: two app peers share the app key; A writes k,
// B overwrites it, A reads B's version. When the DHT loses k, A (running
// on, or restarted) puts back B's version, not its own older one; and if
// an older record does come back (here put by a third party), holders'
// GC keeps the newer version's shards, so B's value survives.
func TestKeptRecordsSharedKey(t *testing.T) {
	for _, restartA := range []bool{false, true} {
		t.Run(map[bool]string{false: "live", true: "restarted"}[restartA], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				tn, a, b, filesA := twoWriters(t)
				ctx := context.Background()
				if _, err := a.Put(ctx, "k", []byte("old value from A")); err != nil {
					t.Fatal(err)
				}
				dhtKey := DHTKey(a.Namespace(), a.key.ObjectID("k"))
				old, err := tn.records.GetValue(ctx, dhtKey)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := b.Put(ctx, "k", []byte("new value from B")); err != nil {
					t.Fatal(err)
				}
				if v, err := a.Get(ctx, "k"); err != nil || string(v) != "new value from B" {
					t.Fatalf("A reads %q, %v", v, err)
				}
				tn.records.expire(dhtKey) // every DHT server restarted
				if restartA {
					a = restartWith(t, tn, 0, filesA)
				}
				if v, err := a.Get(ctx, "k"); err != nil || string(v) != "new value from B" {
					t.Fatalf("A reads after the DHT lost k: %q, %v; want B's value", v, err)
				}

				// The older record comes back anyway.
				tn.records.expire(dhtKey)
				if err := tn.records.PutValue(ctx, dhtKey, old); err != nil {
					t.Fatal(err)
				}
				time.Sleep(DevnetConfig().GCMinAge + time.Second) // past GCMinAge, within GCMissingGrace
				for i := 2; i < 6; i++ {
					if _, _, err := tn.nodes[i].svc.CollectGarbage(ctx); err != nil {
						t.Fatal(err)
					}
				}
				if v, err := b.Get(ctx, "k"); err != nil || string(v) != "new value from B" {
					t.Fatalf("B reads after an older record came back and GC ran: %q, %v", v, err)
				}
			})
		})
	}
}

// TestKeptRecordsCrashAfterDelete: a crash between the key list taking a
// delete and the tombstone being kept leaves the live record on disk;
// after the DHT lost both, the key stays deleted (the key list's
// tombstone is newer and wins).
func TestKeptRecordsCrashAfterDelete(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 5, netOpts{})
		dir := t.TempDir()
		files := Deps{KeysFile: filepath.Join(dir, "state-keys.json"), RecordsDir: filepath.Join(dir, "state-records")}
		w := restartWith(t, tn, 0, files)
		ctx := context.Background()
		if _, err := w.Put(ctx, "k", []byte("v1")); err != nil {
			t.Fatal(err)
		}
		obj := w.key.ObjectID("k")
		live, err := w.own.load(obj)
		if err != nil || live == nil {
			t.Fatalf("no kept record after a put: %v", err)
		}
		if err := w.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if err := w.own.restore(obj, 1, live); err != nil { // the crash
			t.Fatal(err)
		}
		tn.records.expire(DHTKey(w.Namespace(), obj))
		w = restartWith(t, tn, 0, files)
		if v, err := w.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get of a deleted key after the crash and the DHT's loss: %q, %v; want ErrNotFound", v, err)
		}
	})
}

// TestKeptRecordsOldShardsGrace: holders keep the shards of a value
// older than GCMissingGrace when an older record of its object comes back
// (the grace counts from the first GC pass that sees the shards ahead of
// the manifest, not from when they were stored).
func TestKeptRecordsOldShardsGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn, a, b, _ := twoWriters(t)
		ctx := context.Background()
		if _, err := a.Put(ctx, "k", []byte("old value from A")); err != nil {
			t.Fatal(err)
		}
		dhtKey := DHTKey(a.Namespace(), a.key.ObjectID("k"))
		old, _ := tn.records.GetValue(ctx, dhtKey)
		if _, err := b.Put(ctx, "k", []byte("new value from B")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * DevnetConfig().GCMissingGrace) // B's value is simply old
		tn.records.expire(dhtKey)
		if err := tn.records.PutValue(ctx, dhtKey, old); err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{0, 2, 3, 4, 5} { // every holder but B runs GC first
			_, _, err := tn.nodes[i].svc.CollectGarbage(ctx)
			if err != nil {
				t.Fatal(err)
			}
		}
		if v, err := b.Get(ctx, "k"); err != nil || string(v) != "new value from B" {
			t.Fatalf("B reads after an older record came back and GC ran: %q, %v", v, err)
		}
	})
}

// TestKeptRecordsPutAboveKept: after a restart with the DHT empty, a Put
// goes above the newer record it kept of another app peer's write, so
// that peer's put-back cannot revert it.
func TestKeptRecordsPutAboveKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn, a, b, filesA := twoWriters(t)
		ctx := context.Background()
		mustPut(t, a, "k", "A1")
		mustPut(t, b, "k", "B2")
		mustPut(t, b, "k", "B3")
		if v, err := a.Get(ctx, "k"); err != nil || string(v) != "B3" {
			t.Fatal(string(v), err)
		}
		dhtKey := DHTKey(a.Namespace(), a.key.ObjectID("k"))
		tn.records.expire(dhtKey)
		a = restartWith(t, tn, 0, filesA)
		res, err := a.Put(ctx, "k", []byte("A-latest"))
		if err != nil {
			t.Fatal(err)
		}
		if res.Version <= 3 {
			t.Errorf("A's Put got version %d, not above the kept 3", res.Version)
		}
		v, err := b.Get(ctx, "k")
		v2, err2 := a.Get(ctx, "k")
		if string(v) != "A-latest" || string(v2) != "A-latest" {
			t.Fatalf("after A's Put: B reads %q (%v), A reads %q (%v); want A-latest", v, err, v2, err2)
		}
	})
}

// TestKeptRecordsReplayAfterRestart: after a restart, a replayed record
// older than the one kept (another app peer's newer write) is neither
// served nor kept in its place.
func TestKeptRecordsReplayAfterRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn, a, b, filesA := twoWriters(t)
		ctx := context.Background()
		mustPut(t, a, "k", "A1")
		mustPut(t, b, "k", "B2")
		dhtKey := DHTKey(a.Namespace(), a.key.ObjectID("k"))
		rec2, _ := tn.records.GetValue(ctx, dhtKey)
		mustPut(t, b, "k", "B3")
		if v, err := a.Get(ctx, "k"); err != nil || string(v) != "B3" {
			t.Fatal(string(v), err)
		}
		tn.records.expire(dhtKey)
		if err := tn.records.PutValue(ctx, dhtKey, rec2); err != nil { // a stranger replays
			t.Fatal(err)
		}
		a = restartWith(t, tn, 0, filesA)
		v, err := a.Get(ctx, "k")
		kept, _ := a.own.load(a.key.ObjectID("k"))
		km, _ := validateRecord(dhtKey, kept)
		if string(v) != "B3" || km.Version != 3 {
			t.Fatalf("A reads %q (%v), kept record version %d; want B3 and 3", v, err, km.Version)
		}
	})
}

// TestKeptRecordsFailedPutKeepsTombstone: a Put that fails to publish
// after a Delete leaves the key deleted, tombstone and all, so that a
// replayed live manifest does not read as live after a restart.
func TestKeptRecordsFailedPutKeepsTombstone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 6, netOpts{config: func(_ int, c *Config, _ *StoreConfig) { c.MaxShards = 5 }})
		dir := t.TempDir()
		files := Deps{KeysFile: filepath.Join(dir, "a.json"), RecordsDir: filepath.Join(dir, "a")}
		w := restartWith(t, tn, 0, files)
		ctx := context.Background()
		mustPut(t, w, "k", "v1")
		dhtKey := DHTKey(w.Namespace(), w.key.ObjectID("k"))
		live, _ := tn.records.GetValue(ctx, dhtKey)
		if err := w.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		good := w.records
		w.records = failingRecords{good}
		if _, err := w.Put(ctx, "k", []byte("v3")); err == nil {
			t.Fatal("put succeeded")
		}
		w.records = good
		obj := w.key.ObjectID("k")
		if _, ts := w.tracked.tombstoneOf(obj); ts == nil {
			t.Error("the failed Put dropped the tombstone from the key list")
		}
		w.sweepOwnRecords()
		tn.records.expire(dhtKey)
		if err := tn.records.PutValue(ctx, dhtKey, live); err != nil {
			t.Fatal(err)
		}
		w = restartWith(t, tn, 0, files)
		m, err := w.Manifest(ctx, "k")
		if err == nil && !m.Tombstone {
			t.Fatalf("a deleted key reads live again: version %d (published %d)", m.Version, w.tracked.publishedObj(obj))
		}
	})
}

// mustPut puts value under key with svc.
func mustPut(t *testing.T, svc *Service, key, value string) {
	t.Helper()
	if _, err := svc.Put(context.Background(), key, []byte(value)); err != nil {
		t.Fatal(err)
	}
}

// twoWriters starts 6 nodes sharing the app key, of which A (node 0) and
// B (node 1) keep their key lists and records on disk, as app peers do;
// filesA are A's, to restart it with.
func twoWriters(t *testing.T) (tn *testNet, a, b *Service, filesA Deps) {
	t.Helper()
	tn = newTestNet(t, 6, netOpts{})
	dir := t.TempDir()
	files := func(name string) Deps {
		return Deps{KeysFile: filepath.Join(dir, name+".json"), RecordsDir: filepath.Join(dir, name)}
	}
	filesA = files("a")
	return tn, restartWith(t, tn, 0, filesA), restartWith(t, tn, 1, files("b")), filesA
}

// heldRecords holds the first PutValue until release is closed, then
// fails it; later ones go through.
type heldRecords struct {
	Records
	once    sync.Once
	held    chan struct{} // closed when the first PutValue is held
	release chan struct{}
}

func (r *heldRecords) PutValue(ctx context.Context, key string, val []byte, opts ...routing.Option) error {
	first := false
	r.once.Do(func() { first = true })
	if !first {
		return r.Records.PutValue(ctx, key, val, opts...)
	}
	close(r.held)
	<-r.release
	return errors.New("no peer answered")
}

// TestKeptRecordsNotWhilePublishing: while a Put's manifest is on its way
// to the DHT, a lookup by the writer (a read, or its own GC) does not put
// the record it kept back: the publication fails here, the Put discards
// its shards, and the DHT must not end up holding a manifest of them.
func TestKeptRecordsNotWhilePublishing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 5, netOpts{})
		dir := t.TempDir()
		w := restartWith(t, tn, 0, Deps{KeysFile: filepath.Join(dir, "state-keys.json"), RecordsDir: filepath.Join(dir, "state-records")})
		held := &heldRecords{Records: w.records, held: make(chan struct{}), release: make(chan struct{})}
		w.records = held
		ctx := context.Background()
		done := make(chan error)
		go func() {
			_, err := w.Put(ctx, "k", []byte("v1"))
			done <- err
		}()
		<-held.held
		if m, err := w.Manifest(ctx, "k"); !errors.Is(err, ErrNotFound) {
			t.Errorf("manifest while the Put publishes: %+v, %v; want ErrNotFound", m, err)
		}
		close(held.release)
		if err := <-done; err == nil {
			t.Fatal("the Put succeeded with its publication refused")
		}
		if _, err := tn.records.GetValue(ctx, DHTKey(w.Namespace(), w.key.ObjectID("k"))); !errors.Is(err, routing.ErrNotFound) {
			t.Fatalf("the DHT holds a manifest of the failed Put: %v", err)
		}
	})
}
