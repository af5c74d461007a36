package erasure

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// RepairNamespace is the DHT record namespace of repair hints: their keys
// are "/immense-repair/<namespace id hex>/<object id hex>/<index>" and the
// DHT must be given RepairHintValidator for it.
const RepairNamespace = "immense-repair"

// Repair hint format limits.
const (
	// RepairHintFormat is the format byte of repair hints this package writes.
	RepairHintFormat = 1
	// MaxRepairHintSize caps an encoded repair hint (a real one, with its
	// delegation, is about 400 bytes).
	MaxRepairHintSize = 768
)

var repairHintMagic = [4]byte{'I', 'M', 'R', 'H'}

// repairHintSigDomain separates repair hint signatures from everything
// else a peer's libp2p key signs (handoff hints among them).
const repairHintSigDomain = "immense-state repair hint v1\x00"

// magic, format, object, data version, index, created.
const repairHintHeaderLen = 4 + 1 + 32 + 8 + 2 + 8

// RepairHint records that Signer, a volunteer acting under Delegation,
// regenerated shard Index of every segment of an object at DataVersion
// and stored it on Holder, because the holder the manifest names had lost
// it. Signer signs it with its libp2p identity key (Ed25519, inside the
// peer id). Like a handoff hint it moves no trust in content: readers
// verify every shard against the app-signed manifest's hashes; it only
// says where to look, and is followed only for an index whose manifest
// holder does not answer (see Service.acceptRepairHint for the rest).
type RepairHint struct {
	Object      ObjectID
	DataVersion uint64
	Index       int
	Created     time.Time
	Signer      peer.ID
	Holder      peer.ID
	// Delegation is the app's grant Signer acted under, carried whole so
	// that a reader verifies the hint without another lookup.
	Delegation *Delegation
	// delegation is Delegation's encoding.
	delegation []byte
	Signature  []byte
}

// Namespace returns the namespace of the object (the delegation's).
func (h *RepairHint) Namespace() NamespaceID { return h.Delegation.Namespace() }

// RepairHintKey returns the DHT key of the repair hint of shard index of
// an object.
func RepairHintKey(ns NamespaceID, obj ObjectID, index int) string {
	return "/" + RepairNamespace + "/" + ns.String() + "/" + obj.String() + "/" + strconv.Itoa(index)
}

// Key returns the DHT key the hint is stored under.
func (h *RepairHint) Key() string { return RepairHintKey(h.Namespace(), h.Object, h.Index) }

// ParseRepairHintKey splits a repair hint DHT key; every part must be
// canonical (lowercase hex, decimal index without leading zeros).
func ParseRepairHintKey(key string) (ns NamespaceID, obj ObjectID, index int, err error) {
	parts := strings.Split(key, "/")
	if len(parts) != 5 || parts[0] != "" || parts[1] != RepairNamespace {
		return ns, obj, 0, fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	ns, obj, err = ParseDHTKey("/" + RecordNamespace + "/" + parts[2] + "/" + parts[3])
	if err != nil {
		return ns, obj, 0, fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	index, err = strconv.Atoi(parts[4])
	if err != nil || index < 0 || index >= MaxShards || strconv.Itoa(index) != parts[4] {
		return ns, obj, 0, fmt.Errorf("%w: %q: bad shard index", ErrInvalidKey, key)
	}
	return ns, obj, index, nil
}

func (h *RepairHint) check() error {
	switch {
	case h.DataVersion == 0:
		return fmt.Errorf("data version 0")
	case h.Index < 0 || h.Index >= MaxShards:
		return fmt.Errorf("shard index %d outside [0, %d)", h.Index, MaxShards)
	case h.Signer == h.Holder:
		return fmt.Errorf("signer and holder are the same peer")
	case h.Created.UnixNano() < 0:
		return fmt.Errorf("created before 1970")
	case h.Delegation == nil:
		return fmt.Errorf("no delegation")
	}
	for _, p := range []peer.ID{h.Signer, h.Holder} {
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
//	"IMRH" | format u8 = 1 | object id [32] | data version u64 | index u16
//	created u64 (Unix ns) | len u8 | signer | len u8 | holder
//	len u16 | delegation (its full encoding, signature included)
func (h *RepairHint) body() ([]byte, error) {
	if err := h.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRepairHint, err)
	}
	if h.delegation == nil {
		body, err := h.Delegation.body()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidRepairHint, err)
		}
		h.delegation = append(body, h.Delegation.Signature...)
	}
	b := make([]byte, 0, repairHintHeaderLen+2+len(h.Signer)+len(h.Holder)+2+len(h.delegation)+64)
	b = append(b, repairHintMagic[:]...)
	b = append(b, RepairHintFormat)
	b = append(b, h.Object[:]...)
	b = binary.BigEndian.AppendUint64(b, h.DataVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(h.Index))
	b = binary.BigEndian.AppendUint64(b, uint64(h.Created.UnixNano()))
	b = appendPeerID(appendPeerID(b, h.Signer), h.Holder)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.delegation)))
	b = append(b, h.delegation...)
	return b, nil
}

// Sign signs h with priv, which must be the identity key of h.Signer, and
// returns the encoding.
func (h *RepairHint) Sign(priv crypto.PrivKey) ([]byte, error) {
	body, err := h.body()
	if err != nil {
		return nil, err
	}
	sig, err := signAsPeer(priv, h.Signer, repairHintSigDomain, body)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRepairHint, err)
	}
	h.Signature = sig
	return append(body, sig...), nil
}

// ParseRepairHint decodes and verifies a repair hint: strictly parsed, at
// most MaxRepairHintSize, signed by the Ed25519 key inside its signer's
// peer id, and carrying a delegation that verifies (ParseDelegation) and
// allows repair by the signer (a named delegate must be the signer). It
// checks neither the DHT key (RepairHintValidator) nor time and holders
// (Service.acceptRepairHint, against the current manifest).
func ParseRepairHint(b []byte) (*RepairHint, error) {
	r, sig, err := openRecord(b, repairHintHeaderLen+4, MaxRepairHintSize, repairHintMagic, RepairHintFormat)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRepairHint, err)
	}
	h := &RepairHint{Signature: sig}
	copy(h.Object[:], r.take(32))
	h.DataVersion = r.u64()
	h.Index = r.u16()
	h.Created = r.time()
	h.Signer, h.Holder = r.peerID(), r.peerID()
	h.delegation = bytes.Clone(r.take(r.u16()))
	if err := r.end(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRepairHint, err)
	}
	if h.Delegation, err = ParseDelegation(h.delegation); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRepairHint, err)
	}
	if err := h.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRepairHint, err)
	}
	if d := h.Delegation; d.Ops&OpRepair == 0 || (d.Delegate != "" && d.Delegate != h.Signer) {
		return nil, fmt.Errorf("%w: the delegation does not let %s repair", ErrInvalidRepairHint, h.Signer)
	}
	if err := verifyAsPeer(h.Signer, repairHintSigDomain, b[:len(b)-sigLen], h.Signature); err != nil {
		return nil, fmt.Errorf("%w: signer: %v", ErrInvalidRepairHint, err)
	}
	return h, nil
}

// RepairHintValidator is the DHT record validator of RepairNamespace: a
// record is valid when it verifies (ParseRepairHint) and its namespace
// (its delegation's), object and index are the ones in the key. Select
// picks the newest.
type RepairHintValidator struct{}

// Validate implements record.Validator.
func (RepairHintValidator) Validate(key string, value []byte) error {
	_, err := validateRepairHint(key, value)
	return err
}

func validateRepairHint(key string, value []byte) (*RepairHint, error) {
	ns, obj, index, err := ParseRepairHintKey(key)
	if err != nil {
		return nil, err
	}
	h, err := ParseRepairHint(value)
	if err != nil {
		return nil, err
	}
	if h.Namespace() != ns || h.Object != obj || h.Index != index {
		return nil, fmt.Errorf("%w: hint for %s under key %s", ErrInvalidRepairHint, h.Key(), key)
	}
	return h, nil
}

// Select implements record.Validator: the hint created last wins (ties:
// the larger encoding).
func (RepairHintValidator) Select(key string, vals [][]byte) (int, error) {
	return selectNewest(vals, func(v []byte) (time.Time, error) {
		h, err := validateRepairHint(key, v)
		if err != nil {
			return time.Time{}, err
		}
		return h.Created, nil
	}, ErrInvalidRepairHint)
}

// Marshal encodes a signed repair hint.
func (h *RepairHint) Marshal() ([]byte, error) {
	if len(h.Signature) != 64 {
		return nil, fmt.Errorf("%w: unsigned", ErrInvalidRepairHint)
	}
	body, err := h.body()
	if err != nil {
		return nil, err
	}
	return append(body, h.Signature...), nil
}
