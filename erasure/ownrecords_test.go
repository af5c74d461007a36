package erasure

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"

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
