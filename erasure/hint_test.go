package erasure

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// testPeerKey returns a seeded Ed25519 identity and its peer id.
func testPeerKey(t testing.TB, seed byte) (crypto.PrivKey, peer.ID) {
	t.Helper()
	priv, _, err := crypto.GenerateEd25519Key(rand.NewChaCha8([32]byte{'h', 'i', 'n', 't', seed}))
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return priv, id
}

// testHint returns a hint from old (whose key is priv) to a new holder,
// signed, and its encoding.
func testHint(t testing.TB) (*Hint, []byte, crypto.PrivKey) {
	t.Helper()
	priv, old := testPeerKey(t, 1)
	_, nw := testPeerKey(t, 2)
	k := newAppKey(make([]byte, 32), [32]byte{7})
	h := &Hint{Namespace: k.Namespace(), Object: k.ObjectID("obj"), DataVersion: 3, Index: 5,
		Old: old, New: nw, Created: time.Unix(1700000000, 123).UTC()}
	b, err := h.Sign(priv)
	if err != nil {
		t.Fatal(err)
	}
	return h, b, priv
}

func TestHintRoundTrip(t *testing.T) {
	h, b, _ := testHint(t)
	if len(b) > MaxHintSize {
		t.Fatalf("%d bytes, over MaxHintSize", len(b))
	}
	got, err := ParseHint(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Namespace != h.Namespace || got.Object != h.Object || got.DataVersion != 3 || got.Index != 5 ||
		got.Old != h.Old || got.New != h.New || !got.Created.Equal(h.Created) {
		t.Fatalf("round trip: %+v, want %+v", got, h)
	}
	again, err := got.Marshal()
	if err != nil || !bytes.Equal(again, b) {
		t.Fatalf("re-encoding differs: %v", err)
	}
	if err := (HintValidator{}).Validate(h.Key(), b); err != nil {
		t.Fatalf("validator refuses a good hint: %v", err)
	}
	ns, obj, idx, old, err := ParseHintKey(h.Key())
	if err != nil || ns != h.Namespace || obj != h.Object || idx != 5 || old != h.Old {
		t.Fatalf("ParseHintKey(%q) = %v %v %d %s %v", h.Key(), ns, obj, idx, old, err)
	}
}

func TestHintValidatorRejects(t *testing.T) {
	h, good, priv := testHint(t)
	otherPriv, other := testPeerKey(t, 3)
	key := h.Key()

	// Signed by another peer's key, but naming the victim as old holder:
	// Sign refuses, and a hand-made one fails verification.
	if _, err := h.Sign(otherPriv); !errors.Is(err, ErrInvalidHint) {
		t.Fatalf("Sign with a key that is not the old holder's: %v", err)
	}
	body, _ := h.body()
	sig, _ := otherPriv.Sign(append([]byte(hintSigDomain), body...))
	wrongKey := append(bytes.Clone(body), sig...)

	forged := bytes.Clone(good)
	forged[len(forged)-1] ^= 1
	// A field changed after signing.
	tampered := bytes.Clone(good)
	tampered[4+1+32+32+7] ^= 1 // data version

	// The other peer's genuine hint, stored under the victim's key.
	h2 := *h
	h2.Old = other
	h2.New = h.Old
	otherHint, err := h2.Sign(otherPriv)
	if err != nil {
		t.Fatal(err)
	}

	// Same holder, a hint for another index or object under this key.
	h3 := *h
	h3.Index = 6
	otherIndex, _ := h3.Sign(priv)

	// Old == new.
	h4 := *h
	h4.New = h.Old
	if _, err := h4.Sign(priv); !errors.Is(err, ErrInvalidHint) {
		t.Fatalf("hint to itself signed: %v", err)
	}

	// A non-Ed25519 identity (secp256k1 ids also inline their key).
	kp, _, err := crypto.GenerateSecp256k1Key(rand.NewChaCha8([32]byte{9}))
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := peer.IDFromPrivateKey(kp)
	h5 := *h
	h5.Old = kid
	if _, err := h5.Sign(kp); !errors.Is(err, ErrInvalidHint) {
		t.Fatalf("secp256k1 key signed a hint: %v", err)
	}
	body5, _ := h5.body()
	sig5, _ := kp.Sign(append([]byte(hintSigDomain), body5...))
	secp := append(body5, make([]byte, 64)...)
	copy(secp[len(body5):], sig5)

	cases := map[string]struct {
		key string
		val []byte
	}{
		"forged signature":                {key, forged},
		"field changed after signing":     {key, tampered},
		"signed by another peer's key":    {key, wrongKey},
		"another holder's hint":           {key, otherHint},
		"another index under this key":    {key, otherIndex},
		"trailing bytes":                  {key, append(bytes.Clone(good), 0)},
		"truncated":                       {key, good[:len(good)-1]},
		"oversized":                       {key, append(bytes.Clone(good), make([]byte, MaxHintSize)...)},
		"empty":                           {key, nil},
		"bad magic":                       {key, append([]byte("IMMF"), good[4:]...)},
		"unknown format":                  {key, append(append([]byte("IMHO"), 2), good[5:]...)},
		"non-Ed25519 old holder":          {HintKey(h.Namespace, h.Object, h.Index, kid), secp},
		"manifest namespace":              {strings.Replace(key, HandoffNamespace, RecordNamespace, 1), good},
		"index with a leading zero":       {strings.Replace(key, "/5/", "/05/", 1), good},
		"index out of range":              {HintKey(h.Namespace, h.Object, MaxShards, h.Old), good},
		"uppercase hex":                   {"/" + HandoffNamespace + "/" + strings.ToUpper(h.Namespace.String()) + key[len(HandoffNamespace)+2+64:], good},
		"key of another object":           {HintKey(h.Namespace, ObjectID{1}, h.Index, h.Old), good},
		"key of another old holder":       {HintKey(h.Namespace, h.Object, h.Index, other), good},
		"key with an extra path part":     {key + "/x", good},
		"peer id not in canonical base58": {strings.TrimSuffix(key, h.Old.String()) + peer.ToCid(h.Old).String(), good},
	}
	for name, c := range cases {
		if err := (HintValidator{}).Validate(c.key, c.val); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := (HintValidator{}).Validate(key, good); err != nil {
		t.Fatalf("good hint refused: %v", err)
	}
}

func TestHintSelectNewest(t *testing.T) {
	h, older, priv := testHint(t)
	h.Created = h.Created.Add(time.Second)
	_, nw := testPeerKey(t, 4)
	h.New = nw
	newer, err := h.Sign(priv)
	if err != nil {
		t.Fatal(err)
	}
	v := HintValidator{}
	for _, vals := range [][][]byte{{older, newer}, {newer, older}, {[]byte("junk"), newer, older}} {
		i, err := v.Select(h.Key(), vals)
		if err != nil || !bytes.Equal(vals[i], newer) {
			t.Fatalf("Select picked %d (%v), want the newer hint", i, err)
		}
	}
	if _, err := v.Select(h.Key(), [][]byte{[]byte("junk")}); err == nil {
		t.Fatal("Select of nothing valid succeeded")
	}
}

func FuzzHandoffDecode(f *testing.F) {
	_, good, _ := testHint(f)
	f.Add(good)
	f.Add(good[:len(good)-10])
	f.Add([]byte("IMHO\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHint(b)
		if err != nil {
			if h != nil {
				t.Fatal("hint returned with error")
			}
			return
		}
		again, err := h.Marshal()
		if err != nil {
			t.Fatalf("accepted hint does not re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatal("encoding not canonical")
		}
		if err := (HintValidator{}).Validate(h.Key(), b); err != nil {
			t.Fatalf("parsed hint refused under its own key: %v", err)
		}
	})
}
