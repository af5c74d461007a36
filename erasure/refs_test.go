package erasure

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func sampleRefs() []StoredRef {
	var refs []StoredRef
	for i := range 3 {
		var r StoredRef
		r.Namespace[0], r.Object[0] = byte(i+1), byte(i+10)
		r.Version, r.Segment, r.Index = uint64(i+1), uint32(i), uint16(i)
		r.Added = time.Unix(1_700_000_000+int64(i), 5)
		refs = append(refs, r)
	}
	return refs
}

func TestRefsRoundTrip(t *testing.T) {
	refs := sampleRefs()
	b := encodeRefs(refs)
	got, err := decodeRefs(b)
	if err != nil || len(got) != len(refs) {
		t.Fatalf("decode: %v %d", err, len(got))
	}
	for i := range refs {
		if got[i].ShardRef != refs[i].ShardRef || !got[i].Added.Equal(refs[i].Added) {
			t.Fatalf("ref %d: %+v, want %+v", i, got[i], refs[i])
		}
	}
	bad := map[string][]byte{
		"short":     b[:5],
		"truncated": b[:len(b)-1],
		"long":      append(bytes.Clone(b), 0),
		"crc":       append(bytes.Clone(b[:len(b)-1]), b[len(b)-1]^1),
		"duplicate": encodeRefs([]StoredRef{refs[0], refs[0]}),
		"none":      encodeRefs(nil),
	}
	many := make([]StoredRef, MaxShardRefs+1)
	for i := range many {
		many[i].Index = uint16(i)
	}
	bad["too many"] = encodeRefs(many)
	for name, b := range bad {
		if _, err := decodeRefs(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzRefsDecode(f *testing.F) {
	good := encodeRefs(sampleRefs())
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte("IMSR\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		refs, err := decodeRefs(b)
		if err != nil {
			if refs != nil {
				t.Fatal("refs returned with error")
			}
			return
		}
		if len(refs) == 0 || len(refs) > MaxShardRefs {
			t.Fatalf("%d refs accepted", len(refs))
		}
		if !bytes.Equal(encodeRefs(refs), b) {
			t.Fatal("accepted refs file does not re-encode to the same bytes")
		}
	})
}

// TestStoreRefs: the same bytes stored for two namespaces carry both refs,
// across a reopen (with and without full verification); each namespace's
// Unref removes its refs only, and the file goes with the last.
func TestStoreRefs(t *testing.T) {
	for _, verify := range []bool{true, false} {
		dir := t.TempDir()
		cfg := DefaultStoreConfig(dir)
		cfg.Quota, cfg.VerifyOnOpen = 1<<20, verify
		s, err := OpenStore(cfg)
		if err != nil {
			t.Fatal(err)
		}
		data := []byte("the same ciphertext")
		h := HashShard(data)
		owner := ShardRef{Namespace: NamespaceID{1}, Object: ObjectID{1}, Version: 3, Index: 2}
		squat := ShardRef{Namespace: NamespaceID{2}, Object: ObjectID{9}, Version: 1}
		squat2 := squat
		squat2.Segment = 5
		for _, r := range []ShardRef{squat, owner, owner, squat2} {
			if err := s.Put(h, r, data); err != nil {
				t.Fatal(err)
			}
		}
		want := fileCost(int64(len(data))+shardHeaderLen) + fileCost(refsFileLen(3))
		if info, _ := s.Stat(h); len(info.Refs) != 3 || info.Ref != squat || s.Used() != want {
			t.Fatalf("refs %+v used %d, want 3 refs, %d bytes", info.Refs, s.Used(), want)
		}
		if sh, obj := s.Counts(); sh != 1 || obj != 2 {
			t.Fatalf("after puts: Counts %d shards %d objects, want 1 and 2", sh, obj)
		}
		s.Close()
		s, err = OpenStore(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if info, _ := s.Stat(h); len(info.Refs) != 3 || refIndex(info.Refs, owner) < 0 || s.Used() != want {
			t.Fatalf("after reopen: refs %+v used %d", info.Refs, s.Used())
		}
		if sh, obj := s.Counts(); sh != 1 || obj != 2 {
			t.Fatalf("after reopen: Counts %d shards %d objects, want 1 and 2", sh, obj)
		}
		if gone, err := s.Unref(h, squat.Namespace); err != nil || gone {
			t.Fatalf("squatter's unref: gone %v err %v", gone, err)
		}
		if _, err := s.Unref(h, squat.Namespace); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second unref: %v", err)
		}
		if info, _, err := s.Get(h); err != nil || len(info.Refs) != 1 || info.Ref != owner {
			t.Fatalf("after the squatter's unref: %+v %v", info, err)
		}
		if sh, obj := s.Counts(); sh != 1 || obj != 1 {
			t.Fatalf("after the squatter's unref: Counts %d shards %d objects, want 1 and 1", sh, obj)
		}
		if gone, err := s.Unref(h, owner.Namespace); err != nil || !gone {
			t.Fatalf("owner's unref: gone %v err %v", gone, err)
		}
		if s.Used() != 0 || s.Len() != 0 {
			t.Fatalf("used %d len %d after the last ref went", s.Used(), s.Len())
		}
		if sh, obj := s.Counts(); sh != 0 || obj != 0 {
			t.Fatalf("after the last unref: Counts %d shards %d objects, want 0 and 0", sh, obj)
		}
		if files, _ := os.ReadDir(filepath.Join(dir, shardsDirName, h.String()[:2])); len(files) != 0 {
			t.Fatalf("files left: %v", files)
		}
		s.Close()
	}
}

func TestStoreRefsBounded(t *testing.T) {
	data := []byte("popular")
	h := HashShard(data)
	quota := fileCost(int64(len(data))+shardHeaderLen) + fileCost(refsFileLen(MaxShardRefs))
	s := openTestStore(t, t.TempDir(), quota)
	for i := range MaxShardRefs {
		if err := s.Put(h, ShardRef{Index: uint16(i)}, data); err != nil {
			t.Fatalf("ref %d: %v", i, err)
		}
	}
	err := s.Put(h, ShardRef{Index: MaxShardRefs}, data)
	if !errors.Is(err, ErrTooManyRefs) || !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("ref over the cap: %v", err)
	}
	if s.Used() != quota {
		t.Fatalf("used %d, want %d", s.Used(), quota)
	}
	// The refs file counts against the quota.
	s2 := openTestStore(t, t.TempDir(), fileCost(int64(len(data))+shardHeaderLen)) // no room for a refs file
	if err := s2.Put(h, ShardRef{}, data); err != nil {
		t.Fatal(err)
	}
	if err := s2.Put(h, ShardRef{Index: 1}, data); !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("ref over the quota: %v", err)
	}
}

// TestStoreRefsCrash: a refs file whose shard is gone (a removal cut short)
// and a corrupt one are removed at open; the shard then keeps the ref of
// its header.
func TestStoreRefsCrash(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, 1<<20)
	a, b := []byte("shard a"), []byte("shard b")
	ha, hb := HashShard(a), HashShard(b)
	for _, r := range []ShardRef{{Index: 1}, {Index: 2}} {
		s.Put(ha, r, a)
		s.Put(hb, r, b)
	}
	s.Close()
	os.Remove(s.path(ha))
	p := s.refsPath(hb)
	raw, _ := os.ReadFile(p)
	raw[10] ^= 1
	os.WriteFile(p, raw, 0o600)

	s2 := openTestStore(t, dir, 1<<20)
	if s2.Len() != 1 {
		t.Fatalf("%d shards", s2.Len())
	}
	if info, ok := s2.Stat(hb); !ok || len(info.Refs) != 1 || info.Ref.Index != 1 || s2.Used() != info.diskBytes() {
		t.Fatalf("shard b: %+v used %d", info, s2.Used())
	}
	for _, p := range []string{s.refsPath(ha), s.refsPath(hb)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s not removed", p)
		}
	}
}

// TestStoreGCPerRef: GC drops the refs its keep function refuses, each by
// its own age, and the shard only with the last.
func TestStoreGCPerRef(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	cfg := DefaultStoreConfig(t.TempDir())
	cfg.Now = func() time.Time { return now }
	s, err := OpenStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := []byte("shared")
	h := HashShard(data)
	s.Put(h, ShardRef{Index: 0}, data)
	now = now.Add(time.Hour)
	s.Put(h, ShardRef{Index: 1}, data)
	var asked []time.Time
	removed, _, err := s.GC(context.Background(), func(_ context.Context, info ShardInfo) (bool, error) {
		asked = append(asked, info.Stored)
		return info.Ref.Index == 1, nil
	})
	if err != nil || removed != 0 || len(asked) != 2 || !asked[1].Equal(now) {
		t.Fatalf("gc: removed %d err %v asked %v", removed, err, asked)
	}
	if info, ok := s.Stat(h); !ok || len(info.Refs) != 1 || info.Ref.Index != 1 {
		t.Fatalf("after gc: %+v", info)
	}
	removed, freed, err := s.GC(context.Background(), func(context.Context, ShardInfo) (bool, error) { return false, nil })
	if err != nil || removed != 1 || freed != fileCost(int64(len(data))+shardHeaderLen)+fileCost(refsFileLen(1)) || s.Used() != 0 {
		t.Fatalf("gc: removed %d freed %d err %v used %d", removed, freed, err, s.Used())
	}
}

// TestStoreRenewsRef: storing a ref that is there already renews its Added
// time, across a reopen, so that GCMinAge protects a shard placed here
// again from that moment (GC may hold an older manifest that lists it no
// more); a store again within refRenewAge writes nothing. Before, the
// first store's time stood.
func TestStoreRenewsRef(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	cfg := DefaultStoreConfig(dir)
	cfg.Quota, cfg.Now = 1<<20, func() time.Time { return now }
	s, err := OpenStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("placed here twice")
	h := HashShard(data)
	ref := ShardRef{Namespace: NamespaceID{1}, Object: ObjectID{1}, Version: 3, Index: 2}
	added := func() time.Time {
		t.Helper()
		info, ok := s.Stat(h)
		if !ok || len(info.Refs) != 1 {
			t.Fatalf("stat: %+v, %v; want the one ref", info, ok)
		}
		return info.Refs[0].Added
	}
	if err := s.Put(h, ref, data); err != nil {
		t.Fatal(err)
	}
	first := now
	now = now.Add(2 * time.Hour)
	if err := s.Put(h, ref, data); err != nil {
		t.Fatal(err)
	}
	if got := added(); !got.Equal(now) {
		t.Fatalf("Added %v after a store again 2 h later, want %v (was %v)", got, now, first)
	}
	used := s.Used()
	renewed := now
	now = now.Add(refRenewAge / 2)
	if err := s.Put(h, ref, data); err != nil {
		t.Fatal(err)
	}
	if got := added(); !got.Equal(renewed) || s.Used() != used {
		t.Fatalf("a store again within refRenewAge: Added %v, used %d; want %v and %d unchanged", got, s.Used(), renewed, used)
	}
	s.Close()
	if s, err = OpenStore(cfg); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := added(); !got.Equal(renewed) {
		t.Fatalf("after reopen: Added %v, want %v", got, renewed)
	}
}

// TestStoreRenewsRefWhenFull: storing a ref again into a full store
// succeeds (the shard is here), keeping the old time when renewing it
// would need a refs file the quota has no room for. Before the renewal
// rule was made safe, a writer got ErrQuotaExceeded for a shard the peer
// held, and placed it elsewhere.
func TestStoreRenewsRefWhenFull(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	data := []byte("placed here twice, no room left")
	cfg := DefaultStoreConfig(t.TempDir())
	cfg.Quota, cfg.Now = fileCost(int64(len(data))+shardHeaderLen), func() time.Time { return now }
	s, err := OpenStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := HashShard(data)
	ref := ShardRef{Namespace: NamespaceID{1}, Object: ObjectID{1}}
	if err := s.Put(h, ref, data); err != nil {
		t.Fatal(err)
	}
	first := now
	now = now.Add(2 * time.Hour)
	if err := s.Put(h, ref, data); err != nil {
		t.Fatalf("storing a held shard again into a full store: %v", err)
	}
	if info, _ := s.Stat(h); !info.Refs[0].Added.Equal(first) || s.Used() != cfg.Quota {
		t.Fatalf("Added %v, used %d; want %v kept and %d", info.Refs[0].Added, s.Used(), first, cfg.Quota)
	}
}
