package erasure

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

func testCipher(t testing.TB, k *AppKey, key string) *ObjectCipher {
	t.Helper()
	oc, err := k.ObjectCipher(key, 1)
	if err != nil {
		t.Fatal(err)
	}
	return oc
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestCodecRoundTripAnyK(t *testing.T) {
	k, _ := GenerateAppKey()
	oc := testCipher(t, k, "obj")
	r := rand.New(rand.NewPCG(1, 2))
	for _, p := range []Params{{4, 4, 4096}, {1, 0, 1024}, {3, 2, 1024}, {8, 8, 65536}} {
		c, err := NewCodec(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, size := range []int{0, 1, 1023, 1024, 1025, 3*p.SegmentSize + 17} {
			value := randBytes(r, size)
			enc, err := c.Encode(oc, value)
			if err != nil {
				t.Fatal(err)
			}
			if len(enc.Shards) != p.Segments(int64(size)) {
				t.Fatalf("%v size %d: %d segments", p, size, len(enc.Shards))
			}
			// Drop m random shards of every segment: any k must do.
			for s := range enc.Shards {
				for _, i := range r.Perm(p.Total())[:p.ParityShards] {
					enc.Shards[s][i] = nil
				}
			}
			got, err := c.Decode(oc, int64(size), enc)
			if err != nil {
				t.Fatalf("%v size %d: %v", p, size, err)
			}
			if !bytes.Equal(got, value) {
				t.Fatalf("%v size %d: value differs", p, size)
			}
		}
	}
}

func TestCodecDiscardsBadShards(t *testing.T) {
	k, _ := GenerateAppKey()
	oc := testCipher(t, k, "obj")
	c, _ := NewCodec(Params{4, 2, 4096})
	value := bytes.Repeat([]byte("marker"), 500)
	shards, hashes, err := c.EncodeSegment(oc, 0, value)
	if err != nil {
		t.Fatal(err)
	}
	// Corrupt two shards: still k good ones left.
	shards[0] = bytes.Clone(shards[0])
	shards[0][3] ^= 1
	shards[5] = shards[5][:len(shards[5])-1]
	got, err := c.DecodeSegment(oc, 0, len(value), shards, hashes)
	if err != nil || !bytes.Equal(got, value) {
		t.Fatalf("decode with 2 bad shards: %v", err)
	}
	// Three bad: fewer than k.
	shards, hashes, _ = c.EncodeSegment(oc, 0, value)
	for _, i := range []int{0, 1, 2} {
		shards[i] = bytes.Clone(shards[i])
		shards[i][0] ^= 1
	}
	if _, err := c.DecodeSegment(oc, 0, len(value), shards, hashes); !errors.Is(err, ErrNotEnoughShards) {
		t.Fatalf("3 bad of 6 with k=4: %v", err)
	}
}

func TestCodecBindsContext(t *testing.T) {
	k, _ := GenerateAppKey()
	c, _ := NewCodec(Params{2, 1, 1024})
	value := []byte("secret value")
	oc := testCipher(t, k, "a")
	shards, hashes, _ := c.EncodeSegment(oc, 0, value)
	try := func(name string, oc *ObjectCipher, seg int) {
		t.Helper()
		s := make([][]byte, len(shards))
		copy(s, shards)
		if _, err := c.DecodeSegment(oc, seg, len(value), s, hashes); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%s: err %v, want ErrDecrypt", name, err)
		}
	}
	try("other object", testCipher(t, k, "b"), 0)
	try("other segment", oc, 1)
	v2, _ := k.ObjectCipher("a", 2)
	try("other version", v2, 0)
	other, _ := GenerateAppKey()
	try("other app key", testCipher(t, other, "a"), 0)
	for _, s := range shards {
		if bytes.Contains(s, value) {
			t.Fatal("plaintext visible in a shard")
		}
	}
}

func TestReconstructSegmentWithoutKey(t *testing.T) {
	k, _ := GenerateAppKey()
	oc := testCipher(t, k, "obj")
	c, _ := NewCodec(Params{3, 3, 2048})
	value := bytes.Repeat([]byte{7}, 2000)
	shards, hashes, _ := c.EncodeSegment(oc, 0, value)
	want := make([][]byte, len(shards))
	copy(want, shards)
	holes := make([][]byte, len(shards))
	copy(holes, shards)
	holes[0], holes[4], holes[5] = nil, nil, nil
	if err := c.ReconstructSegment(len(value), holes, hashes); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if HashShard(holes[i]) != hashes[i] {
			t.Fatalf("shard %d rebuilt wrong", i)
		}
	}
}

func TestParamsValidate(t *testing.T) {
	bad := []Params{{0, 1, 4096}, {1, -1, 4096}, {20, 13, 4096}, {4, 4, 10}, {4, 4, MaxSegmentSize + 1}}
	for _, p := range bad {
		if _, err := NewCodec(p); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}
