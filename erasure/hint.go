package erasure

import (
	"bytes"
	"encoding/binary"
	"fmt"
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
	b = appendPeerID(appendPeerID(b, h.Old), h.New)
	return b, nil
}

// Sign signs h with priv, which must be the identity key of h.Old, and
// returns the encoded hint.
func (h *Hint) Sign(priv crypto.PrivKey) ([]byte, error) {
	body, err := h.body()
	if err != nil {
		return nil, err
	}
	sig, err := signAsPeer(priv, h.Old, hintSigDomain, body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidHint, err)
	}
	h.Signature = sig
	return append(body, sig...), nil
}

// ParseHint decodes and verifies a hint: strictly parsed (no trailing
// bytes, at most MaxHintSize), consistent, and signed by the Ed25519 key
// inside its old holder's peer id. It does not check the DHT key: see
// HintValidator.
func ParseHint(b []byte) (*Hint, error) {
	r, sig, err := openRecord(b, hintHeaderLen+2, MaxHintSize, hintMagic, HintFormat)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidHint, err)
	}
	h := &Hint{Signature: sig}
	copy(h.Namespace[:], r.take(32))
	copy(h.Object[:], r.take(32))
	h.DataVersion = r.u64()
	h.Index = r.u16()
	h.Created = r.time()
	h.Old, h.New = r.peerID(), r.peerID()
	if err := r.end(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidHint, err)
	}
	if err := h.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidHint, err)
	}
	if err := verifyAsPeer(h.Old, hintSigDomain, b[:len(b)-sigLen], h.Signature); err != nil {
		return nil, fmt.Errorf("%w: old holder: %v", ErrInvalidHint, err)
	}
	return h, nil
}

// signAsPeer signs domain || body with priv, which must be the Ed25519
// identity key of peer id.
func signAsPeer(priv crypto.PrivKey, id peer.ID, domain string, body []byte) ([]byte, error) {
	if priv == nil || priv.Type() != pb.KeyType_Ed25519 {
		return nil, fmt.Errorf("not an Ed25519 peer key")
	}
	if got, err := peer.IDFromPrivateKey(priv); err != nil || got != id {
		return nil, fmt.Errorf("key of %s cannot sign for %s", got, id)
	}
	sig, err := priv.Sign(append([]byte(domain), body...))
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return sig, nil
}

// verifyAsPeer checks sig over domain || signed with the Ed25519 key
// inside peer id.
func verifyAsPeer(id peer.ID, domain string, signed, sig []byte) error {
	pub, err := id.ExtractPublicKey()
	if err != nil || pub.Type() != pb.KeyType_Ed25519 {
		return fmt.Errorf("%s has no Ed25519 key in its id", id)
	}
	if ok, err := pub.Verify(append([]byte(domain), signed...), sig); err != nil || !ok {
		return fmt.Errorf("bad signature")
	}
	return nil
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
