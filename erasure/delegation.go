package erasure

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// DelegationNamespace is the DHT record namespace of repair delegations:
// their keys are "/immense-delegation/<namespace id hex>" and the DHT must
// be given DelegationValidator for it.
const DelegationNamespace = "immense-delegation"

// Delegation format limits.
const (
	// DelegationFormat is the format byte of delegations this package
	// writes.
	DelegationFormat = 1
	// MaxDelegationSize caps an encoded delegation (a real one is 160 to
	// 200 bytes).
	MaxDelegationSize = 256
	// DefaultDelegationBudget is how many shard indices of one object
	// version volunteers may place by repair hints before the app writes
	// the next manifest: enough to replace the parity of a typical object
	// (k=4, m up to 8) twice over, few enough that a delegated peer cannot
	// move most of an object.
	DefaultDelegationBudget = 8
)

// Operations a delegation allows (Delegation.Ops).
const (
	// OpRepair: regenerate lost shards onto new holders and publish repair
	// hints for them.
	OpRepair = 1 << iota
	opAll    = OpRepair
)

var delegationMagic = [4]byte{'I', 'M', 'D', 'G'}

// delegationSigDomain separates delegation signatures from the app key's
// manifest and delete signatures.
const delegationSigDomain = "immense-state delegation v1\x00"

// magic, format, public key, ops, created, expires, budget.
const delegationHeaderLen = 4 + 1 + 32 + 1 + 8 + 8 + 1

// Delegation is the app's signed grant that lets peers without the app key
// work on its objects: today, repair (OpRepair). It gives no key: the
// delegate regenerates ciphertext shards, verifies them against the hashes
// of the app-signed manifest and says where it put them in a RepairHint;
// the app folds the hints into its next manifest version when it is
// online. One delegation per namespace is in the DHT (the newest wins).
type Delegation struct {
	// PublicKey is the app's signing key; its SHA-256 is the namespace.
	PublicKey ed25519.PublicKey
	// Delegate is the one peer allowed to act; empty: any peer that the
	// current manifest of an object names as a holder of it.
	Delegate peer.ID
	// Ops is the set of operations allowed (OpRepair).
	Ops byte
	// Created and Expires bound the grant: a repair hint counts only while
	// the delegation it carries has not expired, so an app that stops
	// renewing stops volunteer repair within one lifetime.
	Created, Expires time.Time
	// Budget is how many shard indices of one object version repair hints
	// may place (1..MaxShards).
	Budget int
	// Signature is the app key's Ed25519 signature over the encoding before it.
	Signature []byte
}

// Namespace returns the namespace the delegation is for.
func (d *Delegation) Namespace() NamespaceID { return NamespaceOf(d.PublicKey) }

// DelegationKey returns the DHT key of a namespace's delegation.
func DelegationKey(ns NamespaceID) string { return "/" + DelegationNamespace + "/" + ns.String() }

// ParseDelegationKey returns the namespace of a delegation DHT key.
func ParseDelegationKey(key string) (NamespaceID, error) {
	var ns NamespaceID
	parts := strings.Split(key, "/")
	if len(parts) != 3 || parts[0] != "" || parts[1] != DelegationNamespace || len(parts[2]) != 64 ||
		strings.ToLower(parts[2]) != parts[2] {
		return ns, fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	if _, err := hex.Decode(ns[:], []byte(parts[2])); err != nil {
		return ns, fmt.Errorf("%w: %q: %v", ErrInvalidKey, key, err)
	}
	return ns, nil
}

// Allows reports whether the delegation lets peer p do op on an object
// whose current manifest is m, at time now: the app signed both, the
// delegation has not expired and p is its delegate (or, for an open
// delegation, a holder m names).
func (d *Delegation) Allows(op byte, p peer.ID, m *Manifest, now time.Time) error {
	switch {
	case !bytes.Equal(d.PublicKey, m.PublicKey):
		return fmt.Errorf("%w: delegation of another namespace", ErrUnauthorized)
	case d.Ops&op != op:
		return fmt.Errorf("%w: delegation does not allow this operation", ErrUnauthorized)
	case now.Before(d.Created) || now.After(d.Expires):
		return fmt.Errorf("%w: delegation valid %s to %s, not at %s", ErrUnauthorized,
			d.Created.Format(time.RFC3339), d.Expires.Format(time.RFC3339), now.Format(time.RFC3339))
	case d.Delegate != "" && d.Delegate != p:
		return fmt.Errorf("%w: %s is not the delegate", ErrUnauthorized, p)
	case d.Delegate == "" && !holds(m, p):
		return fmt.Errorf("%w: %s holds no shard of the object", ErrUnauthorized, p)
	}
	return nil
}

// holds reports whether m places a shard index on p.
func holds(m *Manifest, p peer.ID) bool {
	for _, h := range m.Placement {
		if h == p {
			return true
		}
	}
	return false
}

func (d *Delegation) check() error {
	switch {
	case len(d.PublicKey) != ed25519.PublicKeySize:
		return fmt.Errorf("public key of %d bytes", len(d.PublicKey))
	case d.Ops == 0 || d.Ops&^opAll != 0:
		return fmt.Errorf("operations %#x", d.Ops)
	case d.Created.UnixNano() <= 0 || !d.Expires.After(d.Created):
		return fmt.Errorf("validity %v to %v", d.Created, d.Expires)
	case d.Budget < 1 || d.Budget > MaxShards:
		return fmt.Errorf("budget %d outside [1, %d]", d.Budget, MaxShards)
	case len(d.Delegate) > maxPeerIDLen:
		return fmt.Errorf("delegate id of %d bytes", len(d.Delegate))
	}
	if d.Delegate != "" {
		if _, err := peer.IDFromBytes([]byte(d.Delegate)); err != nil {
			return fmt.Errorf("delegate: %v", err)
		}
	}
	return nil
}

// body encodes everything the signature covers:
//
//	"IMDG" | format u8 = 1 | public key [32] | ops u8 | created u64 | expires u64
//	budget u8 | len u8 | delegate peer id (len 0: any holder)
func (d *Delegation) body() ([]byte, error) {
	if err := d.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidDelegation, err)
	}
	b := make([]byte, 0, delegationHeaderLen+1+len(d.Delegate)+ed25519.SignatureSize)
	b = append(b, delegationMagic[:]...)
	b = append(b, DelegationFormat)
	b = append(b, d.PublicKey...)
	b = append(b, d.Ops)
	b = binary.BigEndian.AppendUint64(b, uint64(d.Created.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(d.Expires.UnixNano()))
	b = append(b, byte(d.Budget))
	b = appendPeerID(b, d.Delegate)
	return b, nil
}

// Sign sets d.PublicKey to k's, signs d and returns the encoding.
func (d *Delegation) Sign(k *AppKey) ([]byte, error) {
	d.PublicKey = k.PublicKey()
	body, err := d.body()
	if err != nil {
		return nil, err
	}
	d.Signature = k.Sign(append([]byte(delegationSigDomain), body...))
	return append(body, d.Signature...), nil
}

// ParseDelegation decodes and verifies a delegation: canonical, within
// MaxDelegationSize, consistent and signed by the app key it carries.
func ParseDelegation(b []byte) (*Delegation, error) {
	r, sig, err := openRecord(b, delegationHeaderLen+1, MaxDelegationSize, delegationMagic, DelegationFormat)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidDelegation, err)
	}
	d := &Delegation{PublicKey: ed25519.PublicKey(bytes.Clone(r.take(32))), Signature: sig}
	d.Ops = r.u8()
	d.Created, d.Expires = r.time(), r.time()
	d.Budget = int(r.u8())
	d.Delegate = r.peerID()
	if err := r.end(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidDelegation, err)
	}
	if err := d.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidDelegation, err)
	}
	if !ed25519.Verify(d.PublicKey, append([]byte(delegationSigDomain), b[:len(b)-sigLen]...), d.Signature) {
		return nil, fmt.Errorf("%w: bad signature", ErrInvalidDelegation)
	}
	return d, nil
}

// DelegationValidator is the DHT record validator of DelegationNamespace:
// a record is valid when it verifies (ParseDelegation) and its signer owns
// the namespace in the key. Select picks the newest (ties: the larger
// encoding), so the app replaces a delegation by signing a new one;
// expiry is checked by those who use it, not by the DHT.
type DelegationValidator struct{}

// Validate implements record.Validator.
func (DelegationValidator) Validate(key string, value []byte) error {
	_, err := validateDelegation(key, value)
	return err
}

func validateDelegation(key string, value []byte) (*Delegation, error) {
	ns, err := ParseDelegationKey(key)
	if err != nil {
		return nil, err
	}
	d, err := ParseDelegation(value)
	if err != nil {
		return nil, err
	}
	if d.Namespace() != ns {
		return nil, fmt.Errorf("%w: signed by the owner of %s, not of %s", ErrInvalidDelegation, d.Namespace(), ns)
	}
	return d, nil
}

// Select implements record.Validator.
func (DelegationValidator) Select(key string, vals [][]byte) (int, error) {
	return selectNewest(vals, func(v []byte) (time.Time, error) {
		d, err := validateDelegation(key, v)
		if err != nil {
			return time.Time{}, err
		}
		return d.Created, nil
	}, ErrInvalidDelegation)
}

// selectNewest returns the index of the valid value created last, ties
// going to the larger encoding so that every DHT server picks the same.
func selectNewest(vals [][]byte, created func([]byte) (time.Time, error), invalid error) (int, error) {
	best := -1
	var bestT time.Time
	for i, v := range vals {
		t, err := created(v)
		if err != nil {
			continue
		}
		if best < 0 || t.After(bestT) || (t.Equal(bestT) && bytes.Compare(v, vals[best]) > 0) {
			best, bestT = i, t
		}
	}
	if best < 0 {
		return 0, fmt.Errorf("%w: no valid record among %d", invalid, len(vals))
	}
	return best, nil
}

// Marshal encodes a signed delegation.
func (d *Delegation) Marshal() ([]byte, error) {
	if len(d.Signature) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: unsigned", ErrInvalidDelegation)
	}
	body, err := d.body()
	if err != nil {
		return nil, err
	}
	return append(body, d.Signature...), nil
}
