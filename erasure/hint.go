package erasure

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/crypto/pb"
	"github.com/libp2p/go-libp2p/core/peer"
)

// HandoffNamespace is the DHT record namespace of handoff hints: their
// keys are "/immense-handoff/<namespace id hex>/<object id hex>/<index>/<old
// holder peer id>" and the DHT must be given HintValidator for it.
const HandoffNamespace = "immense-handoff"

// Hint format limits.
const (
	// HintFormat is the format byte of hints this package writes.
	HintFormat = 1
	// MaxHintSize caps an encoded hint (a real one is about 260 bytes).
	MaxHintSize = 512
	// MaxHandoffChain is how many hints a reader follows from a manifest's
	// holder (A handed to B, B to C, C to D): a peer that received shards
	// by handoff may itself leave before the writer adopts them.
	MaxHandoffChain = 3
)

var hintMagic = [4]byte{'I', 'M', 'H', 'O'}

// hintSigDomain separates hint signatures from everything else a peer's
// libp2p key signs.
const hintSigDomain = "immense-state handoff v1\x00"

// magic, format, namespace, object, data version, index, created.
const hintHeaderLen = 4 + 1 + 32 + 32 + 8 + 2 + 8

// Hint records that Old, which held shard Index of every segment of an
// object at DataVersion, handed those shards to New before it left. Old
// signs it with its libp2p identity key (Ed25519; the public key is inside
// the peer id). A hint moves no trust: readers follow it only from the
// holder the signed manifest names (see Service.hintChain) and verify every
// shard against the manifest's hashes, so it can only say where to look.
type Hint struct {
	Namespace   NamespaceID
	Object      ObjectID
	DataVersion uint64
	Index       int
	Old, New    peer.ID
	Created     time.Time
	Signature   []byte
}

// HintKey returns the DHT key of the hint left by old for shard index of an
// object.
func HintKey(ns NamespaceID, obj ObjectID, index int, old peer.ID) string {
	return "/" + HandoffNamespace + "/" + ns.String() + "/" + obj.String() + "/" + strconv.Itoa(index) + "/" + old.String()
}

// Key returns the DHT key the hint is stored under.
func (h *Hint) Key() string { return HintKey(h.Namespace, h.Object, h.Index, h.Old) }

// ParseHintKey splits a hint DHT key. Every part must be in its canonical
// form (lowercase hex, decimal index without leading zeros, base58 peer
// id), so that each hint has exactly one key.
func ParseHintKey(key string) (ns NamespaceID, obj ObjectID, index int, old peer.ID, err error) {
	parts := strings.Split(key, "/")
	if len(parts) != 6 || parts[0] != "" || parts[1] != HandoffNamespace {
		return ns, obj, 0, "", fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	ns, obj, err = ParseDHTKey("/" + RecordNamespace + "/" + parts[2] + "/" + parts[3])
	if err != nil {
		return ns, obj, 0, "", fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	index, err = strconv.Atoi(parts[4])
	if err != nil || index < 0 || index >= MaxShards || strconv.Itoa(index) != parts[4] {
		return ns, obj, 0, "", fmt.Errorf("%w: %q: bad shard index", ErrInvalidKey, key)
	}
	old, err = peer.Decode(parts[5])
	if err != nil || old.String() != parts[5] {
		return ns, obj, 0, "", fmt.Errorf("%w: %q: bad peer id", ErrInvalidKey, key)
	}
	return ns, obj, index, old, nil
}

// check validates the fields of h other than the signature.
func (h *Hint) check() error {
	switch {
	case h.DataVersion == 0:
		return fmt.Errorf("data version 0")
	case h.Index < 0 || h.Index >= MaxShards:
		return fmt.Errorf("shard index %d outside [0, %d)", h.Index, MaxShards)
	case h.Old == h.New:
		return fmt.Errorf("old and new holder are the same peer")
	case h.Created.UnixNano() < 0:
		return fmt.Errorf("created before 1970")
	}
	for _, p := range []peer.ID{h.Old, h.New} {
		if len(p) == 0 || len(p) > maxPeerIDLen {
			return fmt.Errorf("peer id of %d bytes", len(p))
		}
		if _, err := peer.IDFromBytes([]byte(p)); err != nil {
			return err
		}
	}
	return nil
}

// body encodes everything the signature covers:
//
//	"IMHO" | format u8 = 1 | namespace [32] | object id [32] | data version u64
//	index u16 | created u64 (Unix ns) | len u8 | old holder | len u8 | new holder
func (h *Hint) body() ([]byte, error) {
	if err := h.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidHint, err)
	}
	b := make([]byte, 0, hintHeaderLen+2+len(h.Old)+len(h.New)+64)
	b = append(b, hintMagic[:]...)
	b = append(b, HintFormat)
	b = append(b, h.Namespace[:]...)
	b = append(b, h.Object[:]...)
	b = binary.BigEndian.AppendUint64(b, h.DataVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(h.Index))
	b = binary.BigEndian.AppendUint64(b, uint64(h.Created.UnixNano()))
	b = append(b, byte(len(h.Old)))
	b = append(b, h.Old...)
	b = append(b, byte(len(h.New)))
	b = append(b, h.New...)
	return b, nil
}

// Sign signs h with priv, which must be the identity key of h.Old, and
// returns the encoded hint.
func (h *Hint) Sign(priv crypto.PrivKey) ([]byte, error) {
	if priv == nil || priv.Type() != pb.KeyType_Ed25519 {
		return nil, fmt.Errorf("%w: hints are signed with an Ed25519 peer key", ErrInvalidHint)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil || id != h.Old {
		return nil, fmt.Errorf("%w: key of %s cannot sign for old holder %s", ErrInvalidHint, id, h.Old)
	}
	body, err := h.body()
	if err != nil {
		return nil, err
	}
	sig, err := priv.Sign(append([]byte(hintSigDomain), body...))
	if err != nil {
		return nil, fmt.Errorf("sign hint: %w", err)
	}
	h.Signature = sig
	return append(body, sig...), nil
}

// ParseHint decodes and verifies a hint: strictly parsed (no trailing
// bytes, at most MaxHintSize), consistent, and signed by the Ed25519 key
// inside its old holder's peer id. It does not check the DHT key: see
// HintValidator.
func ParseHint(b []byte) (*Hint, error) {
	const sigLen = 64
	if len(b) > MaxHintSize {
		return nil, fmt.Errorf("%w: %d bytes, over %d", ErrInvalidHint, len(b), MaxHintSize)
	}
	if len(b) < hintHeaderLen+2+sigLen {
		return nil, fmt.Errorf("%w: %d bytes, too short", ErrInvalidHint, len(b))
	}
	r := &manifestReader{b: b[:len(b)-sigLen]}
	if !bytes.Equal(r.take(4), hintMagic[:]) {
		return nil, fmt.Errorf("%w: bad magic", ErrInvalidHint)
	}
	if f := r.u8(); f != HintFormat {
		return nil, fmt.Errorf("%w: unknown format %d", ErrInvalidHint, f)
	}
	h := &Hint{}
	copy(h.Namespace[:], r.take(32))
	copy(h.Object[:], r.take(32))
	h.DataVersion = r.u64()
	if v := r.take(2); v != nil {
		h.Index = int(binary.BigEndian.Uint16(v))
	}
	created := r.u64()
	if created > math.MaxInt64 {
		return nil, fmt.Errorf("%w: created %d out of range", ErrInvalidHint, created)
	}
	h.Created = time.Unix(0, int64(created)).UTC()
	h.Old = peer.ID(r.take(int(r.u8())))
	h.New = peer.ID(r.take(int(r.u8())))
	if r.err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidHint, r.err)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrInvalidHint, len(r.b))
	}
	if err := h.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidHint, err)
	}
	pub, err := h.Old.ExtractPublicKey()
	if err != nil || pub.Type() != pb.KeyType_Ed25519 {
		return nil, fmt.Errorf("%w: old holder %s has no Ed25519 key in its id", ErrInvalidHint, h.Old)
	}
	h.Signature = bytes.Clone(b[len(b)-sigLen:])
	ok, err := pub.Verify(append([]byte(hintSigDomain), b[:len(b)-sigLen]...), h.Signature)
	if err != nil || !ok {
		return nil, fmt.Errorf("%w: bad signature", ErrInvalidHint)
	}
	return h, nil
}

// Marshal encodes a signed hint.
func (h *Hint) Marshal() ([]byte, error) {
	if len(h.Signature) != 64 {
		return nil, fmt.Errorf("%w: unsigned", ErrInvalidHint)
	}
	body, err := h.body()
	if err != nil {
		return nil, err
	}
	return append(body, h.Signature...), nil
}

// HintValidator is the DHT record validator of HandoffNamespace. A record
// is valid when it parses and verifies (ParseHint) and its namespace,
// object, index and old holder are the ones in the DHT key: only a holder
// can say where its own shards went. Select picks the newest.
type HintValidator struct{}

// Validate implements record.Validator.
func (HintValidator) Validate(key string, value []byte) error {
	_, err := validateHint(key, value)
	return err
}

func validateHint(key string, value []byte) (*Hint, error) {
	ns, obj, index, old, err := ParseHintKey(key)
	if err != nil {
		return nil, err
	}
	h, err := ParseHint(value)
	if err != nil {
		return nil, err
	}
	if h.Namespace != ns || h.Object != obj || h.Index != index || h.Old != old {
		return nil, fmt.Errorf("%w: hint for %s under key %s", ErrInvalidHint, h.Key(), key)
	}
	return h, nil
}

// Select implements record.Validator: the valid hint created last wins (a
// peer that held the same index again and left again); ties go to the
// larger encoding, so that every DHT server picks the same one.
func (HintValidator) Select(key string, vals [][]byte) (int, error) {
	best := -1
	var bestT time.Time
	for i, v := range vals {
		h, err := validateHint(key, v)
		if err != nil {
			continue
		}
		if best < 0 || h.Created.After(bestT) || (h.Created.Equal(bestT) && bytes.Compare(v, vals[best]) > 0) {
			best, bestT = i, h.Created
		}
	}
	if best < 0 {
		return 0, fmt.Errorf("%w: no valid record among %d", ErrInvalidHint, len(vals))
	}
	return best, nil
}
