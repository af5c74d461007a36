package erasure

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func openTestStore(t *testing.T, dir string, quota int64) *Store {
	t.Helper()
	cfg := DefaultStoreConfig(dir)
	cfg.Quota = quota
	s, err := OpenStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStorePutGetDelete(t *testing.T) {
	s := openTestStore(t, t.TempDir(), 1<<20)
	data := []byte("shard bytes")
	h := HashShard(data)
	ref := ShardRef{Version: 3, Segment: 1, Index: 2}
	if err := s.Put(HashShard([]byte("other")), ref, data); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("wrong hash accepted: %v", err)
	}
	if err := s.Put(h, ref, data); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(h, ref, data); err != nil {
		t.Fatalf("idempotent put: %v", err)
	}
	info, got, err := s.Get(h)
	if err != nil || !bytes.Equal(got, data) || info.Ref != ref || info.Size != int64(len(data)) {
		t.Fatalf("get: %v %+v", err, info)
	}
	if s.Used() != fileCost(int64(len(data))+shardHeaderLen) || s.Len() != 1 || len(s.List()) != 1 {
		t.Fatalf("used %d len %d", s.Used(), s.Len())
	}
	if err := s.Delete(h); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if err := s.Delete(h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if s.Used() != 0 {
		t.Fatalf("used %d after delete", s.Used())
	}
}

func TestStoreQuotaNeverExceeded(t *testing.T) {
	const shard = 1000
	quota := 5*fileCost(shard+shardHeaderLen) + 10
	s := openTestStore(t, t.TempDir(), quota)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, full := 0, 0
	for i := range 20 {
		wg.Go(func() {
			data := bytes.Repeat([]byte{byte(i)}, shard)
			err := s.Put(HashShard(data), ShardRef{}, data)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrQuotaExceeded):
				full++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok != 5 || full != 15 || s.Used() > quota {
		t.Fatalf("ok %d full %d used %d quota %d", ok, full, s.Used(), quota)
	}
}

func TestStoreCrashSafety(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, 1<<20)
	var hashes []Hash
	for i := range 3 {
		data := bytes.Repeat([]byte{byte(i + 1)}, 500)
		h := HashShard(data)
		if err := s.Put(h, ShardRef{Index: uint16(i)}, data); err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, h)
	}
	s.Close()
	// What a crash can leave: a temp file mid-write...
	os.WriteFile(filepath.Join(dir, tmpDirName, hashes[0].String()+".123"), []byte("partial"), 0o600)
	// ...and, with failing disks, a shard whose bytes rotted, one cut short,
	// and a stray file.
	p1 := filepath.Join(dir, shardsDirName, hashes[1].String()[:2], hashes[1].String())
	b, _ := os.ReadFile(p1)
	b[len(b)-1] ^= 0xff
	os.WriteFile(p1, b, 0o600)
	p2 := filepath.Join(dir, shardsDirName, hashes[2].String()[:2], hashes[2].String())
	os.Truncate(p2, 10)
	os.WriteFile(filepath.Join(dir, shardsDirName, hashes[0].String()[:2], "junk"), []byte("x"), 0o600)

	s2 := openTestStore(t, dir, 1<<20)
	if s2.Len() != 1 {
		t.Fatalf("%d shards after reopen, want 1", s2.Len())
	}
	if _, _, err := s2.Get(hashes[0]); err != nil {
		t.Fatal(err)
	}
	if e, _ := os.ReadDir(filepath.Join(dir, tmpDirName)); len(e) != 0 {
		t.Fatalf("temp files left: %v", e)
	}
	for _, p := range []string{p1, p2} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s not removed", p)
		}
	}
	if s2.Used() != fileCost(500+shardHeaderLen) {
		t.Fatalf("used %d", s2.Used())
	}
}

func TestStoreCorruptOnReadIsRemoved(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, 1<<20)
	data := []byte("will rot")
	h := HashShard(data)
	s.Put(h, ShardRef{}, data)
	p := filepath.Join(dir, shardsDirName, h.String()[:2], h.String())
	b, _ := os.ReadFile(p)
	b[len(b)-1] ^= 1
	os.WriteFile(p, b, 0o600)
	if _, _, err := s.Get(h); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("get corrupt: %v", err)
	}
	if _, ok := s.Stat(h); ok || s.Used() != 0 {
		t.Fatal("corrupt shard still indexed")
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatal("corrupt file not removed")
	}
}

func TestStoreGC(t *testing.T) {
	s := openTestStore(t, t.TempDir(), 1<<20)
	for i := range 4 {
		data := []byte{byte(i)}
		s.Put(HashShard(data), ShardRef{Index: uint16(i)}, data)
	}
	removed, freed, err := s.GC(context.Background(), func(_ context.Context, info ShardInfo) (bool, error) {
		switch info.Ref.Index {
		case 0:
			return false, nil
		case 1:
			return false, errors.New("lookup failed") // doubt keeps
		}
		return true, nil
	})
	if err != nil || removed != 1 || freed != fileCost(1+shardHeaderLen) || s.Len() != 3 {
		t.Fatalf("gc: removed %d freed %d err %v len %d", removed, freed, err, s.Len())
	}
}

// TestStoreTinyShards: a shard costs at least a disk block against the
// quota, so a quota bounds the files (and index entries) a stranger can
// make a volunteer keep: with room for 100 blocks the 101st 4-byte shard
// is refused. Before, each was charged 91 bytes: the same quota took 4,500
// of them, 45 times the quota on disk.
func TestStoreTinyShards(t *testing.T) {
	s := openTestStore(t, t.TempDir(), 100*diskBlock)
	for i := range 101 {
		var d [4]byte
		binary.BigEndian.PutUint32(d[:], uint32(i))
		err := s.Put(HashShard(d[:]), ShardRef{Index: uint16(i)}, d[:])
		switch {
		case i < 100 && err != nil:
			t.Fatalf("shard %d: %v", i, err)
		case i == 100 && !errors.Is(err, ErrQuotaExceeded):
			t.Fatalf("shard 101 in a quota of 100 blocks: %v, want ErrQuotaExceeded", err)
		}
	}
	if s.Used() != 100*diskBlock {
		t.Errorf("used %d, want %d", s.Used(), 100*diskBlock)
	}
}
