package erasure

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers test them with errors.Is; the package wraps them
// with context ("fetch shard 3 from 12D3...: %w").
var (
	// ErrClosed is returned by operations on a closed Service, Store or server.
	ErrClosed = errors.New("erasure: closed")
	// ErrNotFound is returned when an object, manifest or shard does not exist
	// (an object whose latest manifest is a tombstone does not exist either).
	ErrNotFound = errors.New("erasure: not found")
	// ErrQuotaExceeded is returned by a store (local or remote) that would go
	// over its configured quota by accepting a shard.
	ErrQuotaExceeded = errors.New("erasure: quota exceeded")
	// ErrTooManyRefs is returned by a store asked to add a ref to a shard
	// that already has MaxShardRefs. It is a quota refusal: the writer
	// places the shard elsewhere.
	ErrTooManyRefs = fmt.Errorf("%w: too many refs to one shard", ErrQuotaExceeded)
	// ErrHashMismatch is returned when shard bytes do not match their content hash.
	ErrHashMismatch = errors.New("erasure: shard hash mismatch")
	// ErrCorrupt is returned when a stored shard fails verification; the store
	// has removed it by the time the caller sees the error.
	ErrCorrupt = errors.New("erasure: corrupt shard")
	// ErrNotEnoughShards is returned when fewer than k verified shards of a
	// segment could be obtained.
	ErrNotEnoughShards = errors.New("erasure: not enough shards")
	// ErrNotEnoughPeers is returned when there are too few distinct peers
	// with free quota to hold every shard of an object.
	ErrNotEnoughPeers = errors.New("erasure: not enough storage peers")
	// ErrDecrypt is returned when a segment fails authentication: wrong app
	// key, or shards that verify individually but do not belong together.
	ErrDecrypt = errors.New("erasure: segment authentication failed")
	// ErrInvalidManifest is returned for a manifest that is malformed,
	// oversized, unsigned, badly signed, or signed by someone other than the
	// owner of its namespace.
	ErrInvalidManifest = errors.New("erasure: invalid manifest")
	// ErrInvalidHint is returned for a handoff hint that is malformed,
	// oversized, badly signed, or not signed by the old holder it names.
	ErrInvalidHint = errors.New("erasure: invalid handoff hint")
	// ErrStaleManifest is returned when a manifest is not newer than the one
	// already stored (the highest version wins).
	ErrStaleManifest = errors.New("erasure: stale manifest version")
	// ErrRolledBack is returned when the DHT serves a manifest older than
	// one this service verified or published before: a replayed old
	// record, e.g. after the current one expired. Readers refuse it rather
	// than return stale data or bring back a deleted object.
	ErrRolledBack = errors.New("erasure: manifest older than one verified before")
	// ErrInvalidKey is returned for an object key ValidateKey refuses, or a
	// DHT key that is not of the form /immense-state/<namespace>/<object>.
	ErrInvalidKey = errors.New("erasure: invalid key")
	// ErrValueTooLarge is returned by Put for values over Config.MaxValueSize.
	ErrValueTooLarge = errors.New("erasure: value too large")
	// ErrInvalidAppKey is returned for an app key file that cannot be parsed.
	ErrInvalidAppKey = errors.New("erasure: invalid app key")
	// ErrUnauthorized is returned by a shard server for a delete request that
	// is not signed by the owner of the shard's namespace.
	ErrUnauthorized = errors.New("erasure: unauthorized")
	// ErrBadMessage is returned for a shard protocol message that is
	// malformed, of an unknown version or type, or over its size cap.
	ErrBadMessage = errors.New("erasure: bad protocol message")
	// ErrRemote is returned when a remote shard server reports an internal error.
	ErrRemote = errors.New("erasure: remote error")
	// ErrBusy is returned by a shard server that is at its concurrency limit.
	ErrBusy = errors.New("erasure: server busy")
	// ErrInvalidDelegation is returned for a repair delegation that is
	// malformed, oversized or not signed by the owner of its namespace.
	ErrInvalidDelegation = errors.New("erasure: invalid delegation")
	// ErrInvalidRepairHint is returned for a repair hint that is
	// malformed, oversized, badly signed, or carries an invalid delegation.
	ErrInvalidRepairHint = errors.New("erasure: invalid repair hint")
)
