package erasure

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func testPeerIDs(t testing.TB, n int) []peer.ID {
	t.Helper()
	ids := make([]peer.ID, n)
	for i := range ids {
		_, pub, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		if ids[i], err = peer.IDFromPublicKey(pub); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// testManifest builds a valid manifest of a 2.5-segment object with k=2, m=1.
func testManifest(t testing.TB, k *AppKey, version uint64) *Manifest {
	t.Helper()
	p := Params{DataShards: 2, ParityShards: 1, SegmentSize: 1024}
	m := &Manifest{
		Object:      k.ObjectID("obj"),
		Version:     version,
		DataVersion: version,
		Created:     time.Unix(1700000000, 0).UTC(),
		Size:        2500,
		Params:      p,
		Placement:   testPeerIDs(t, 3),
	}
	for s := range p.Segments(m.Size) {
		hs := make([]Hash, 3)
		for i := range hs {
			hs[i] = HashShard([]byte{byte(s), byte(i)})
		}
		m.Hashes = append(m.Hashes, hs)
	}
	return m
}

func TestManifestRoundTrip(t *testing.T) {
	k, _ := GenerateAppKey()
	m := testManifest(t, k, 3)
	b, err := m.Sign(k)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	again, err := got.Marshal()
	if err != nil || !bytes.Equal(again, b) {
		t.Fatalf("re-encoding differs: %v", err)
	}
	if got.Namespace() != k.Namespace() || got.Version != 3 || got.Size != 2500 || !got.Created.Equal(m.Created) {
		t.Fatalf("fields differ: %+v", got)
	}
	if _, _, ok := got.HasShard(m.Hashes[2][1]); !ok {
		t.Fatal("HasShard misses a shard")
	}
	if err := (ManifestValidator{}).Validate(m.Key(), b); err != nil {
		t.Fatal(err)
	}
	// Tombstone.
	ts := &Manifest{Object: m.Object, Version: 4, Tombstone: true, Created: m.Created}
	tb, err := ts.Sign(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := (ManifestValidator{}).Validate(m.Key(), tb); err != nil {
		t.Fatal(err)
	}
}

func TestManifestValidatorRejects(t *testing.T) {
	owner, _ := GenerateAppKey()
	intruder, _ := GenerateAppKey()
	m := testManifest(t, owner, 2)
	key := DHTKey(owner.Namespace(), m.Object)
	good, _ := m.Sign(owner)

	forged := testManifest(t, owner, 9)
	forgedBytes, _ := forged.Sign(intruder) // signed correctly, but by someone else

	otherObj := testManifest(t, owner, 2)
	otherObj.Object = owner.ObjectID("other")
	otherObjBytes, _ := otherObj.Sign(owner)

	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 1
	unsigned := bytes.Clone(good)
	copy(unsigned[len(unsigned)-64:], make([]byte, 64))

	v := ManifestValidator{}
	cases := map[string]struct {
		key string
		val []byte
	}{
		"wrong owner":      {key, forgedBytes},
		"other object":     {key, otherObjBytes},
		"bit flip":         {key, flipped},
		"zero signature":   {key, unsigned},
		"garbage":          {key, []byte("garbage")},
		"empty":            {key, nil},
		"truncated":        {key, good[:len(good)-1]},
		"trailing":         {key, append(bytes.Clone(good), 0)},
		"bad key":          {"/immense-state/xyz", good},
		"other namespace":  {"/other/" + owner.Namespace().String() + "/" + m.Object.String(), good},
		"uppercase key":    {"/immense-state/" + bytes2upper(owner.Namespace().String()) + "/" + m.Object.String(), good},
		"intruder's space": {DHTKey(intruder.Namespace(), m.Object), good},
	}
	for name, c := range cases {
		err := v.Validate(c.key, c.val)
		if !errors.Is(err, ErrInvalidManifest) && !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%s: err %v, want a rejection", name, err)
		}
	}
	if err := v.Validate(key, good); err != nil {
		t.Fatal(err)
	}
}

func bytes2upper(s string) string { return string(bytes.ToUpper([]byte(s))) }

func TestManifestSelectHighestVersion(t *testing.T) {
	k, _ := GenerateAppKey()
	var vals [][]byte
	for _, ver := range []uint64{3, 7, 5} {
		b, err := testManifest(t, k, ver).Sign(k)
		if err != nil {
			t.Fatal(err)
		}
		vals = append(vals, b)
	}
	key := DHTKey(k.Namespace(), k.ObjectID("obj"))
	vals = append(vals, []byte("garbage"))
	i, err := ManifestValidator{}.Select(key, vals)
	if err != nil || i != 1 {
		t.Fatalf("Select = %d, %v; want 1", i, err)
	}
	if _, err := (ManifestValidator{}).Select(key, [][]byte{[]byte("x")}); err == nil {
		t.Fatal("Select of only garbage succeeded")
	}
	// Stable: same answer whatever the order of equal versions.
	a, _ := testManifest(t, k, 8).Sign(k)
	b, _ := testManifest(t, k, 8).Sign(k)
	pick := func(vals ...[]byte) []byte {
		i, err := ManifestValidator{}.Select(key, vals)
		if err != nil {
			t.Fatal(err)
		}
		return vals[i]
	}
	if !bytes.Equal(pick(a, b), pick(b, a)) {
		t.Fatal("Select not stable for equal versions")
	}
}

func TestManifestSizeCap(t *testing.T) {
	k, _ := GenerateAppKey()
	m := testManifest(t, k, 1)
	m.Params = Params{DataShards: 16, ParityShards: 16, SegmentSize: MinSegmentSize}
	m.Size = 3000 * MinSegmentSize
	m.Placement = testPeerIDs(t, 32)
	m.Hashes = make([][]Hash, 3000)
	for s := range m.Hashes {
		m.Hashes[s] = make([]Hash, 32)
	}
	if _, err := m.Sign(k); !errors.Is(err, ErrInvalidManifest) {
		t.Fatalf("oversized manifest signed: %v", err)
	}
	if _, err := ParseManifest(make([]byte, MaxManifestSize+1)); !errors.Is(err, ErrInvalidManifest) {
		t.Fatal("oversized input accepted")
	}
}

// FuzzManifestDecode checks that no input makes ParseManifest panic or
// allocate unboundedly, and that whatever it accepts re-encodes to exactly
// the same bytes (the encoding is canonical).
func FuzzManifestDecode(f *testing.F) {
	k, _ := GenerateAppKey()
	m := testManifest(f, k, 1)
	good, _ := m.Sign(k)
	ts, _ := (&Manifest{Object: m.Object, Version: 2, Tombstone: true}).Sign(k)
	f.Add(good)
	f.Add(ts)
	f.Add([]byte("IMMF\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			if m != nil {
				t.Fatal("manifest returned with error")
			}
			return
		}
		again, err := m.Marshal()
		if err != nil {
			t.Fatalf("accepted manifest does not re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatal("encoding not canonical")
		}
	})
}
