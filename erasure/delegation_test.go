package erasure

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

var delegationEpoch = time.Unix(1700000000, 0).UTC()

// testDelegation returns an open repair delegation of app key k, valid a
// week from delegationEpoch, and its encoding.
func testDelegation(t testing.TB, k *AppKey) (*Delegation, []byte) {
	t.Helper()
	d := &Delegation{Ops: OpRepair, Created: delegationEpoch, Expires: delegationEpoch.Add(7 * 24 * time.Hour), Budget: 2}
	b, err := d.Sign(k)
	if err != nil {
		t.Fatal(err)
	}
	return d, b
}

// testRepairHint returns a manifest of k whose holder of index 0 is the
// signer (key priv), and a repair hint of that signer for index 2 onto a
// new peer, made a day after delegationEpoch, with its encoding.
func testRepairHint(t testing.TB, k *AppKey) (*Manifest, *RepairHint, []byte, crypto.PrivKey) {
	t.Helper()
	priv, signer := testPeerKey(t, 1)
	_, holder := testPeerKey(t, 2)
	m := testManifest(t, k, 3)
	m.Placement[0] = signer
	if _, err := m.Sign(k); err != nil {
		t.Fatal(err)
	}
	d, drec := testDelegation(t, k)
	h := &RepairHint{Object: m.Object, DataVersion: m.DataVersion, Index: 2, Created: delegationEpoch.Add(24 * time.Hour),
		Signer: signer, Holder: holder, Delegation: d, delegation: drec}
	b, err := h.Sign(priv)
	if err != nil {
		t.Fatal(err)
	}
	return m, h, b, priv
}

func TestDelegationRoundTrip(t *testing.T) {
	k := newAppKey(make([]byte, 32), [32]byte{1})
	d, b := testDelegation(t, k)
	got, err := ParseDelegation(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Namespace() != k.Namespace() || got.Budget != 2 || got.Delegate != "" || !got.Expires.Equal(d.Expires) {
		t.Fatalf("round trip: %+v", got)
	}
	if err := (DelegationValidator{}).Validate(DelegationKey(k.Namespace()), b); err != nil {
		t.Fatal(err)
	}
	// A named delegate round-trips too.
	_, id := testPeerKey(t, 3)
	d2 := &Delegation{Ops: OpRepair, Created: delegationEpoch, Expires: delegationEpoch.Add(time.Hour), Budget: 1, Delegate: id}
	b2, err := d2.Sign(k)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ParseDelegation(b2); err != nil || got.Delegate != id {
		t.Fatalf("named delegate: %v %v", got, err)
	}
	// The newer one wins in the DHT.
	if i, err := (DelegationValidator{}).Select(DelegationKey(k.Namespace()), [][]byte{b, b2}); err != nil || i != 0 {
		t.Fatalf("select: %d %v", i, err)
	}
}

// TestDelegationForgery: a delegation signed by another key, one filed
// under another namespace, a tampered one and malformed ones are refused.
func TestDelegationForgery(t *testing.T) {
	k := newAppKey(make([]byte, 32), [32]byte{1})
	other := newAppKey(bytes.Repeat([]byte{9}, 32), [32]byte{2})
	_, good := testDelegation(t, k)
	_, foreign := testDelegation(t, other)
	tampered := bytes.Clone(good)
	tampered[4+1+32+1+8+8] = 32 // budget
	// other's key over k's body: the signature does not verify.
	swapped := append(bytes.Clone(good[:len(good)-64]), foreign[len(foreign)-64:]...)
	key := DelegationKey(k.Namespace())
	for name, tc := range map[string]struct {
		key string
		b   []byte
	}{
		"other namespace's":  {key, foreign},
		"tampered":           {key, tampered},
		"signature swapped":  {key, swapped},
		"truncated":          {key, good[:len(good)-1]},
		"trailing byte":      {key, append(bytes.Clone(good), 0)},
		"bad key":            {strings.ToUpper(key), good},
		"manifest namespace": {strings.Replace(key, DelegationNamespace, RecordNamespace, 1), good},
	} {
		if err := (DelegationValidator{}).Validate(tc.key, tc.b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, d := range map[string]*Delegation{
		"no ops":         {Ops: 0, Created: delegationEpoch, Expires: delegationEpoch.Add(time.Hour), Budget: 1},
		"unknown op":     {Ops: 2, Created: delegationEpoch, Expires: delegationEpoch.Add(time.Hour), Budget: 1},
		"expires first":  {Ops: OpRepair, Created: delegationEpoch, Expires: delegationEpoch, Budget: 1},
		"zero budget":    {Ops: OpRepair, Created: delegationEpoch, Expires: delegationEpoch.Add(time.Hour)},
		"budget too big": {Ops: OpRepair, Created: delegationEpoch, Expires: delegationEpoch.Add(time.Hour), Budget: MaxShards + 1},
	} {
		if _, err := d.Sign(k); !errors.Is(err, ErrInvalidDelegation) {
			t.Errorf("%s: signed (%v)", name, err)
		}
	}
}

// TestDelegationAllows: expiry, named delegate, open delegation limited to
// holders, foreign manifests.
func TestDelegationAllows(t *testing.T) {
	k := newAppKey(make([]byte, 32), [32]byte{1})
	m, _, _, _ := testRepairHint(t, k)
	d, _ := testDelegation(t, k)
	holder := m.Placement[0]
	_, outsider := testPeerKey(t, 7)
	during := delegationEpoch.Add(time.Hour)
	if err := d.Allows(OpRepair, holder, m, during); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		p   peer.ID
		now time.Time
	}{
		"expired":       {holder, d.Expires.Add(time.Second)},
		"not yet valid": {holder, delegationEpoch.Add(-time.Second)},
		"not a holder":  {outsider, during},
	} {
		if err := d.Allows(OpRepair, tc.p, m, tc.now); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("%s: %v", name, err)
		}
	}
	named := *d
	named.Delegate = outsider
	if err := named.Allows(OpRepair, outsider, m, during); err != nil {
		t.Errorf("named delegate: %v", err)
	}
	if err := named.Allows(OpRepair, holder, m, during); err == nil {
		t.Error("named delegation allowed another peer")
	}
	otherKey := newAppKey(bytes.Repeat([]byte{9}, 32), [32]byte{2})
	od, _ := testDelegation(t, otherKey)
	if err := od.Allows(OpRepair, holder, m, during); err == nil {
		t.Error("another app's delegation allowed repair of this app's object")
	}
}

func TestRepairHintRoundTrip(t *testing.T) {
	k := newAppKey(make([]byte, 32), [32]byte{1})
	m, h, b, _ := testRepairHint(t, k)
	if len(b) > MaxRepairHintSize {
		t.Fatalf("%d bytes", len(b))
	}
	got, err := ParseRepairHint(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Holder != h.Holder || got.Signer != h.Signer || got.Index != 2 || got.Namespace() != k.Namespace() {
		t.Fatalf("round trip: %+v", got)
	}
	if err := (RepairHintValidator{}).Validate(RepairHintKey(k.Namespace(), m.Object, 2), b); err != nil {
		t.Fatal(err)
	}
	if err := acceptRepairHint(m, got, delegationEpoch.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
}

// TestRepairHintForgery: hints that a reader must refuse, in the DHT
// validator or against the manifest.
func TestRepairHintForgery(t *testing.T) {
	k := newAppKey(make([]byte, 32), [32]byte{1})
	m, h, good, priv := testRepairHint(t, k)
	key := RepairHintKey(k.Namespace(), m.Object, 2)
	sign := func(h RepairHint, priv crypto.PrivKey) []byte {
		b, err := h.Sign(priv)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Signed by someone else than the signer it names.
	otherPriv, _ := testPeerKey(t, 5)
	forgedSig := bytes.Clone(good)
	forgedSig[len(forgedSig)-1] ^= 1
	if _, err := h.Sign(otherPriv); err == nil {
		t.Error("signed for another peer")
	}
	// A delegation the app did not sign: the signer's own key.
	fake := newAppKey(bytes.Repeat([]byte{3}, 32), [32]byte{3})
	fd, frec := testDelegation(t, fake)
	fh := *h
	fh.Delegation, fh.delegation = fd, frec
	fakeDeleg := sign(fh, priv)
	// A delegation naming another delegate.
	_, someone := testPeerKey(t, 6)
	nd := &Delegation{Ops: OpRepair, Created: delegationEpoch, Expires: delegationEpoch.Add(time.Hour), Budget: 1, Delegate: someone}
	nrec, err := nd.Sign(k)
	if err != nil {
		t.Fatal(err)
	}
	wh := *h
	wh.Delegation, wh.delegation = nd, nrec
	wrongDelegate := sign(wh, priv)
	for name, tc := range map[string]struct {
		key string
		b   []byte
	}{
		"bad signature":           {key, forgedSig},
		"other app's delegation":  {key, fakeDeleg},
		"another delegate":        {key, wrongDelegate},
		"other index's key":       {RepairHintKey(k.Namespace(), m.Object, 1), good},
		"truncated":               {key, good[:len(good)-1]},
		"oversized":               {key, append(bytes.Clone(good), make([]byte, MaxRepairHintSize)...)},
		"handoff namespace's key": {strings.Replace(key, RepairNamespace, HandoffNamespace, 1), good},
	} {
		if err := (RepairHintValidator{}).Validate(tc.key, tc.b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}

	// Valid records the manifest check must refuse.
	now := delegationEpoch.Add(48 * time.Hour)
	check := func(name string, h RepairHint, m *Manifest, now time.Time) {
		t.Helper()
		got, err := ParseRepairHint(sign(h, priv))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := acceptRepairHint(m, got, now); !errors.Is(err, ErrInvalidRepairHint) {
			t.Errorf("%s: %v", name, err)
		}
	}
	check("expired delegation", *h, m, h.Delegation.Expires.Add(time.Minute))
	old := *h
	old.DataVersion = 2
	check("other data version", old, m, now)
	onHolder := *h
	onHolder.Holder = m.Placement[1]
	check("holder already placed", onHolder, m, now)
	early := *h
	early.Created = delegationEpoch.Add(-time.Hour)
	check("made before its delegation", early, m, now)
	// The signer is no holder of a manifest that does not place it.
	m2 := *m
	m2.Placement = append([]peer.ID(nil), m.Placement...)
	_, m2.Placement[0] = testPeerKey(t, 8)
	check("signer holds nothing", *h, &m2, now)
}

func FuzzDelegationDecode(f *testing.F) {
	k := newAppKey(make([]byte, 32), [32]byte{1})
	_, good := testDelegation(f, k)
	f.Add(good)
	f.Add(good[:len(good)-10])
	f.Add([]byte("IMDG\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDelegation(b)
		if err != nil {
			if d != nil {
				t.Fatal("delegation returned with error")
			}
			return
		}
		again, err := d.Marshal()
		if err != nil {
			t.Fatalf("accepted delegation does not re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatal("encoding not canonical")
		}
		if err := (DelegationValidator{}).Validate(DelegationKey(d.Namespace()), b); err != nil {
			t.Fatalf("parsed delegation refused under its own key: %v", err)
		}
	})
}

func FuzzRepairHintDecode(f *testing.F) {
	k := newAppKey(make([]byte, 32), [32]byte{1})
	_, _, good, _ := testRepairHint(f, k)
	f.Add(good)
	f.Add(good[:len(good)-10])
	f.Add([]byte("IMRH\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseRepairHint(b)
		if err != nil {
			if h != nil {
				t.Fatal("repair hint returned with error")
			}
			return
		}
		again, err := h.Marshal()
		if err != nil {
			t.Fatalf("accepted repair hint does not re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatal("encoding not canonical")
		}
		if err := (RepairHintValidator{}).Validate(h.Key(), b); err != nil {
			t.Fatalf("parsed repair hint refused under its own key: %v", err)
		}
	})
}

// TestApplyRepairedBudget: health and repair checks count at most the
// delegation's budget of indices placed by repair hints, in index order.
func TestApplyRepairedBudget(t *testing.T) {
	ids := testPeerIDs(t, 5)
	out := make([]HolderStatus, 5)
	rep := make([]repairedStatus, 5)
	for i := range rep {
		out[i] = HolderStatus{Peer: ids[i]}
		if i > 0 {
			rep[i] = repairedStatus{st: HolderStatus{Peer: ids[i], Reachable: true, Complete: true, HandedOff: true}, budget: 2, ok: true}
		}
	}
	if used := applyRepaired(out, rep); used != 2 {
		t.Fatalf("used %d, want the budget 2", used)
	}
	for i, st := range out {
		if want := i == 1 || i == 2; st.HandedOff != want {
			t.Errorf("index %d: handed off %v, want %v", i, st.HandedOff, want)
		}
	}
}
