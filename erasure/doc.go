// Package erasure keeps application state alive on peers that are mostly
// offline: values are encrypted, erasure-coded into shards spread over
// distinct peers, described by a signed manifest in the DHT, and repaired
// when holders go away. docs/state.md is the design document; this comment
// is the reference for the formats.
//
// # Pieces
//
//   - AppKey (appkey.go): an Ed25519 signing key and a 32-byte secret. The
//     namespace id is SHA-256 of the public key. Peers with the key read and
//     write the namespace; peers without it only store shards.
//   - Codec (codec.go): value -> segments of SegmentSize bytes -> each sealed
//     with XChaCha20-Poly1305 -> Reed-Solomon k data + m parity shards, each
//     named by its SHA-256.
//   - Manifest (manifest.go): the signed, versioned record of one object
//     version, and ManifestValidator for the DHT namespace "immense-state".
//   - Hint (hint.go): the signed record of a planned departure, and
//     HintValidator for the DHT namespace "immense-handoff".
//   - Delegation (delegation.go) and RepairHint (repairhint.go): the
//     app's signed grant that lets holders repair its objects, and a
//     volunteer's signed record of where it regenerated a shard, with
//     their validators for "immense-delegation" and "immense-repair";
//     volunteerrepair.go is the work (Service.VolunteerRepair).
//   - Store (store.go): shard files on disk with a quota.
//   - ShardServer and Client (protocol.go, wire.go): the shard protocol.
//   - Pure policy, no I/O, injected clocks (availability.go, redundancy.go,
//     placement.go, repair.go): the simulator calls these directly.
//   - Service: Put, Get, Delete, Health, repair, GC and Handoff for one
//     node, built from the pieces above and small interfaces (Records,
//     Peers) that node/ implements over the overlay. One file per concern:
//     service.go (construction, manifest lookup, candidates), put.go,
//     get.go, delete.go, health.go, repairloop.go, gc.go, handoff.go,
//     requests.go and peerbook.go (what requests to peers teach the service
//     about them), keys.go (ValidateKey, the one rule for object keys,
//     and the durable list of the keys the service repairs, with their
//     version floors and tombstones), versions.go (versions never go
//     back: the readers' memory of versions, the writers' next version,
//     tombstone republication) and refs.go (the refs a stored shard
//     carries).
//
// # Keys and encryption
//
// For an object key K in the namespace of app key (seed, secret):
//
//	namespace id  N = SHA-256(Ed25519 public key)
//	object id     O = HMAC-SHA256(HKDF-SHA256(secret, salt=N, info="immense-state v1 object-id"), K)
//	object secret   = HKDF-SHA256(secret, salt=N, info="immense-state v1 object-key" || len(K) as u64 BE || K)
//	DHT key         = "/immense-state/" + hex(N) + "/" + hex(O)
//
// Segment s (0-based) of a value written at data version V is sealed as
//
//	nonce (24 random bytes) || XChaCha20-Poly1305(object secret, nonce, plaintext,
//	    ad = "immense-state v1 segment" || N || O || V as u64 BE || s as u32 BE)
//
// and the resulting segment-length+40 bytes are zero-padded to a multiple of
// k and split into k data shards, from which Reed-Solomon (klauspost/
// reedsolomon, Vandermonde-derived systematic matrix) computes m parity
// shards. A value of size 0 still has one segment.
//
// # Manifest encoding (format 1)
//
// All integers big-endian. The encoding is canonical and strictly parsed:
// no trailing bytes, no unknown flags, every length consistent, at most
// MaxManifestSize (64 KiB).
//
//	"IMMF" | format u8 = 1 | flags u8 (bit 0: tombstone)
//	public key [32] | object id [32]
//	version u64 | data version u64 | created u64 (Unix ns) | size u64
//	k u8 | m u8 | segment size u32 | segment count u32
//	segment count * (k+m) shard hashes [32]   (segment-major)
//	(k+m) * (len u8 | peer id bytes)           (placement; absent for tombstones)
//	signature [64] = Ed25519(key, "immense-state manifest v1\x00" || everything before it)
//
// A tombstone has k = m = segment size = segment count = size = data
// version = 0 and no placement. The DHT validator accepts a record only if
// it parses, its signature verifies, SHA-256 of its public key is the
// namespace id in the DHT key and its object id is the one in the key;
// Select prefers the highest version (ties: the larger encoding).
//
// Versions never go back. A writer publishes above the highest version it
// published of the key (kept in its key list, below, across restarts and
// after a Delete), the highest it verified, and the DHT's: a record that
// expired from the DHT does not restart the key at version 1. A reader
// remembers the highest version it verified per object (an LRU of
// 16384 objects), with that version's signed record when it is at most
// 16 KiB (8 MiB of them in all). Served an older manifest (a signed old
// one put back after expiry, or, under churn, what the online peers still
// hold while those that took the newer one are offline), it reads the
// newer one it kept and puts it back in the DHT; without it, it refuses
// with ErrRolledBack. Either way the older one is not served as current
// (immense_state_rollbacks_refused_total counts them). The writer republishes a deleted
// key's tombstone every RepublishInterval until GCMissingGrace has passed.
//
// # Handoff hints (format 1)
//
// A peer leaving on purpose (Service.Handoff) sends the shards of each index
// it holds to a new peer, then publishes under
//
//	DHT key = "/immense-handoff/" + hex(N) + "/" + hex(O) + "/" + index (decimal) + "/" + old holder (base58 peer id)
//
// the record (integers big-endian, canonical, no trailing bytes, at most
// MaxHintSize = 512 bytes)
//
//	"IMHO" | format u8 = 1 | namespace [32] | object id [32] | data version u64
//	index u16 | created u64 (Unix ns) | len u8 | old holder id | len u8 | new holder id
//	signature [64] = Ed25519(old holder's libp2p key, "immense-state handoff v1\x00" || everything before it)
//
// The old holder's id must embed an Ed25519 public key (identity multihash),
// which verifies the signature; old and new differ; index < 32. The DHT
// validator also requires namespace, object, index and old holder to be the
// ones in the key; Select prefers the latest created (ties: the larger
// encoding). Readers follow a hint only from the holder the current manifest
// names for that index, for the manifest's data version, then from each new
// holder in turn (at most MaxHandoffChain = 3 hops, no peer twice), and
// verify every shard against the manifest as always. Repair adopts a hinted
// holder that has every shard by writing the next manifest version with it
// in the placement (same data version and hashes).
//
// # Repair delegations and repair hints (format 1)
//
// An app lets the holders of its shards repair its objects while its own
// peers are away (docs/state.md, "Repair by volunteers"). It publishes
// under DHT key "/immense-delegation/" + hex(N) the delegation (integers
// big-endian, canonical, at most MaxDelegationSize = 256 bytes)
//
//	"IMDG" | format u8 = 1 | public key [32] | ops u8 (bit 0: repair) | created u64 | expires u64 (Unix ns)
//	budget u8 (1..32) | len u8 | delegate peer id (len 0: any holder the current manifest names)
//	signature [64] = Ed25519(app key, "immense-state delegation v1\x00" || everything before it)
//
// valid when SHA-256 of the public key is N; the newest created wins. A
// volunteer that regenerated index i of object O onto a new holder
// publishes under "/immense-repair/" + hex(N) + "/" + hex(O) + "/" + i
// (decimal) the repair hint (at most MaxRepairHintSize = 768 bytes)
//
//	"IMRH" | format u8 = 1 | object id [32] | data version u64 | index u16 | created u64 (Unix ns)
//	len u8 | signer peer id | len u8 | holder peer id | len u16 | delegation (its whole encoding)
//	signature [64] = Ed25519(signer's libp2p key, "immense-state repair hint v1\x00" || everything before it)
//
// valid when the signer's id embeds an Ed25519 key that verifies it, the
// delegation verifies, allows repair and names the signer (or nobody), and
// its namespace, the object and the index are the key's; the newest
// created wins. Readers accept one only against the current manifest (see
// acceptRepairHint): same data version, the delegation unexpired now and
// at the hint's creation, an open delegation's signer a holder the
// manifest names, the new holder none of them.
//
// # Shard protocol /immense/shard/1.0.0
//
// One request and one response per stream. The client writes a frame and
// closes its write side; the server answers with one frame and closes.
// Both sides set a deadline on the stream (server: ServerConfig.
// RequestTimeout; client: Config.RequestTimeout, also enforced by the
// context). A frame is
//
//	length u32 BE | body (length bytes, at most 16 MiB + 409: the largest shard plus headers)
//
// and every body starts with version u8 = 1 and a type u8. Requests:
//
//	1 store:  hash [32] | ref | shard bytes (rest of the body)
//	2 fetch:  hash [32]
//	3 check:  flags u8 (bit 0: verify, i.e. read and hash) | count u16 (<= 1024; <= 4 with verify) | count * hash [32]
//	4 delete: hash [32] | public key [32] | signature [64]
//	          signature = Ed25519("immense-state delete v1\x00" || hash)
//
//	ref = namespace [32] | object id [32] | data version u64 | segment u32 | index u16
//
// Responses carry the request type with bit 7 set:
//
//	type u8 | status u8 | message length u8 | message (UTF-8, for humans)
//	then, only when status = 0 (OK):
//	  fetch: ref | shard bytes
//	  check: count u16 | count * (present u8 (0/1) | size u64)
//	  store, delete: nothing
//
// Status codes: 0 OK, 1 not found, 2 quota exceeded, 3 bad request, 4 hash
// mismatch, 5 unauthorized, 6 internal error, 7 busy. Clients map them to
// ErrNotFound, ErrQuotaExceeded, ErrBadMessage, ErrHashMismatch,
// ErrUnauthorized, ErrRemote and ErrBusy. A server answers busy while its
// request slots (ServerConfig.MaxConcurrent, held from a request's header
// to the end of its answer), or those it gives one peer (MaxPerPeer), or
// those it gives one machine (MaxPerAddr: the peers whose connections come
// from one IPv4 address or IPv6 /56, and all relayed peers together;
// loopback and private addresses are not capped), are taken; a client
// sends a busy request again up to 3 times, 50 ms apart and doubling, with
// jitter.
//
// A server stores a shard only if it hashes to the hash given and fits in
// its quota (reserved before the write, so concurrent stores never exceed
// it), and refuses every store with busy once a handoff has started (the
// peer is about to leave). A store of a shard already held adds the
// request's ref to the shard's refs (at most MaxShardRefs = 16; beyond,
// quota exceeded), so that the same bytes stored under several namespaces
// keep a ref for each. A delete request signed by a key whose SHA-256 is
// one of those namespaces removes that namespace's refs only, and the
// shard with the last ref; one signed by anyone else is refused
// (unauthorized). Garbage collection (Service.CollectGarbage) removes the rest once
// their manifest is a tombstone, no longer places the shard here (and no
// trusted hint chain ends here while the manifest's holder lacks it), or
// has been missing for a week. A client verifies every fetched shard
// against the hash it asked for.
//
// # Shard files
//
// Store keeps each shard in Dir/shards/<first 2 hex>/<64 hex of its hash>:
//
//	"IMSH" | version u8 = 1 | ref (78 bytes) | CRC-32C of the preceding bytes u32 | shard bytes
//
// written to Dir/tmp, fsynced, renamed into place, directory fsynced.
// OpenStore deletes everything in Dir/tmp and every shard file that fails
// verification. The header's ref is the shard's only ref until a second
// one is added; then Dir/shards/<2 hex>/<64 hex>.refs, written the same
// way, holds the whole set and overrides the header:
//
//	"IMSR" | version u8 = 1 | count u8 (1..16) |
//	count * (ref (78 bytes) | added u64 (Unix ns)) | CRC-32C of the preceding bytes u32
//
// Refs are distinct. A shard's quota cost is its file plus its refs file.
// OpenStore removes a refs file without a shard file (a removal cut short:
// the shard file goes first) and one that fails to parse (the shard keeps
// its header's ref). GC decides on each ref, by the ref's own age; the
// shard goes when no ref is left.
//
// # Key list
//
// Deps.KeysFile (node/: <data-dir>/state-keys.json) is JSON, written
// durably before the manifest or tombstone it records is published:
//
//	{"format": 2, "keys": [{"key": K, "version": V, "tracked": true},
//	  {"key": K2, "version": V2, "deleted": RFC 3339 time, "tombstone": base64 record}]}
//
// version is the highest the service published for the key; tracked keys
// are repaired; a tombstone is republished until GCMissingGrace after
// deleted, then dropped (the version stays). A JSON array of key names
// (format 1, written by node/ before) loads as those keys tracked.
//
// # Kept records
//
// Deps.RecordsDir (node/: <data-dir>/state-records/) holds one file per
// object of the service's namespace that the key list keeps,
// "<object id hex>.rec": the newest signed manifest record (or tombstone)
// the service published or read of it, as put in the DHT (the manifest
// format above). A publication writes it durably before the DHT put and
// restores the previous file if the DHT refuses. latest and Delete fall
// back on the newest of it, the key list's tombstone and the verified
// versions in memory when the DHT has no manifest, or an older one than
// kept, and put it back (ownrecords.go), except while the object is being
// published; an older one than published with none newer kept is refused
// (ErrRolledBack). A kept record is never replaced by an older one.
// Files of keys the list no longer keeps, and anything else in the
// directory, are removed at start and after each GC pass.
//
// # Fuzzing
//
// FuzzWireDecode, FuzzManifestDecode, FuzzHandoffDecode, FuzzRefsDecode,
// FuzzKeyFileDecode, FuzzDelegationDecode and FuzzRepairHintDecode have
// seed corpora in
// testdata/fuzz. Run them with, e.g.,
//
//	go test ./erasure -run XXX -fuzz FuzzWireDecode -fuzztime 60s -fuzzminimizetime 2s
//
// (the default minimisation time of 60 s makes the run look stalled).
package erasure
