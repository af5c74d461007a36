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

// RecordNamespace is the DHT record namespace of manifests: their keys are
// "/immense-state/<namespace id hex>/<object id hex>" and the DHT must be
// given ManifestValidator for it.
const RecordNamespace = "immense-state"

// Manifest format limits.
const (
	// ManifestFormat is the format byte of manifests this package writes.
	ManifestFormat = 1
	// MaxManifestSize caps an encoded manifest. 64 KiB keeps a DHT record
	// small enough to replicate cheaply; with 8 shards per segment it
	// describes objects of up to ~230 segments (230 MiB at 1 MiB segments).
	MaxManifestSize = 64 << 10
	// maxPeerIDLen caps a placement entry; Ed25519 peer ids are 38 bytes,
	// RSA ones 34.
	maxPeerIDLen = 64
)

var manifestMagic = [4]byte{'I', 'M', 'M', 'F'}

// manifestSigDomain separates manifest signatures from every other thing
// the app key signs (delete requests).
const manifestSigDomain = "immense-state manifest v1\x00"

// flagTombstone marks a deleted object.
const flagTombstone = 1

// fixed part of the encoding: magic, format, flags, public key, object id,
// version, data version, created, size, k, m, segment size, segment count.
const manifestHeaderLen = 4 + 1 + 1 + 32 + 32 + 8 + 8 + 8 + 8 + 1 + 1 + 4 + 4

// Manifest is the signed, versioned record that describes one version of an
// object: how it was coded, the hash of every shard and which peer holds
// each shard index. Readers verify it (ParseManifest) before they trust any
// shard. A tombstone (Tombstone set, no shards) records a delete.
type Manifest struct {
	// PublicKey is the namespace owner's signing key; its SHA-256 is the
	// namespace id.
	PublicKey ed25519.PublicKey
	Object    ObjectID
	// Version orders the manifests of an object: the highest wins. Every
	// write, repair and delete increments it.
	Version uint64
	// DataVersion is the Version at which the content was encrypted; repair
	// moves shards without re-encrypting, so it changes the placement and
	// Version but keeps DataVersion (the AEAD associated data binds it).
	DataVersion uint64
	Created     time.Time
	Tombstone   bool
	Size        int64
	Params      Params
	// Hashes[seg][i] is the hash of shard i of segment seg.
	Hashes [][]Hash
	// Placement[i] holds shard i of every segment.
	Placement []peer.ID
	// Signature is the Ed25519 signature over the encoding before it.
	Signature []byte
}

// Namespace returns the id of the namespace the manifest belongs to.
func (m *Manifest) Namespace() NamespaceID { return NamespaceOf(m.PublicKey) }

// Key returns the DHT key the manifest is stored under.
func (m *Manifest) Key() string { return DHTKey(m.Namespace(), m.Object) }

// DHTKey returns the DHT key of an object's manifest.
func DHTKey(ns NamespaceID, obj ObjectID) string {
	return "/" + RecordNamespace + "/" + ns.String() + "/" + obj.String()
}

// ParseDHTKey splits a manifest DHT key into namespace and object id.
func ParseDHTKey(key string) (NamespaceID, ObjectID, error) {
	var ns NamespaceID
	var obj ObjectID
	parts := strings.Split(key, "/")
	if len(parts) != 4 || parts[0] != "" || parts[1] != RecordNamespace ||
		len(parts[2]) != 64 || len(parts[3]) != 64 {
		return ns, obj, fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	// Only lowercase hex, so that each object has exactly one key.
	if strings.ToLower(parts[2]) != parts[2] || strings.ToLower(parts[3]) != parts[3] {
		return ns, obj, fmt.Errorf("%w: %q: hex must be lowercase", ErrInvalidKey, key)
	}
	if _, err := hex.Decode(ns[:], []byte(parts[2])); err != nil {
		return ns, obj, fmt.Errorf("%w: %q: %v", ErrInvalidKey, key, err)
	}
	if _, err := hex.Decode(obj[:], []byte(parts[3])); err != nil {
		return ns, obj, fmt.Errorf("%w: %q: %v", ErrInvalidKey, key, err)
	}
	return ns, obj, nil
}

// check validates the fields of m other than the signature.
func (m *Manifest) check() error {
	if len(m.PublicKey) != ed25519.PublicKeySize {
		return fmt.Errorf("public key of %d bytes", len(m.PublicKey))
	}
	if m.Version == 0 {
		return fmt.Errorf("version 0")
	}
	if m.Tombstone {
		if m.DataVersion != 0 || m.Size != 0 || m.Params != (Params{}) || len(m.Hashes) != 0 || len(m.Placement) != 0 {
			return fmt.Errorf("tombstone with content")
		}
		return nil
	}
	if err := m.Params.Validate(); err != nil {
		return err
	}
	if m.DataVersion == 0 || m.DataVersion > m.Version {
		return fmt.Errorf("data version %d outside [1, version %d]", m.DataVersion, m.Version)
	}
	if m.Size < 0 {
		return fmt.Errorf("negative size")
	}
	if n := m.Params.Segments(m.Size); len(m.Hashes) != n {
		return fmt.Errorf("%d segments of hashes, size %d needs %d", len(m.Hashes), m.Size, n)
	}
	n := m.Params.Total()
	for s, hs := range m.Hashes {
		if len(hs) != n {
			return fmt.Errorf("segment %d: %d hashes, want %d", s, len(hs), n)
		}
	}
	if len(m.Placement) != n {
		return fmt.Errorf("%d placement entries, want %d", len(m.Placement), n)
	}
	for i, p := range m.Placement {
		if len(p) == 0 || len(p) > maxPeerIDLen {
			return fmt.Errorf("placement %d: peer id of %d bytes", i, len(p))
		}
		if _, err := peer.IDFromBytes([]byte(p)); err != nil {
			return fmt.Errorf("placement %d: %v", i, err)
		}
	}
	return nil
}

// body encodes everything the signature covers.
func (m *Manifest) body() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidManifest, err)
	}
	n := m.Params.Total()
	size := manifestHeaderLen + len(m.Hashes)*n*32
	for _, p := range m.Placement {
		size += 1 + len(p)
	}
	if size+ed25519.SignatureSize > MaxManifestSize {
		return nil, fmt.Errorf("%w: %d bytes, over %d", ErrInvalidManifest, size+ed25519.SignatureSize, MaxManifestSize)
	}
	b := make([]byte, 0, size+ed25519.SignatureSize)
	b = append(b, manifestMagic[:]...)
	b = append(b, ManifestFormat)
	var flags byte
	if m.Tombstone {
		flags |= flagTombstone
	}
	b = append(b, flags)
	b = append(b, m.PublicKey...)
	b = append(b, m.Object[:]...)
	b = binary.BigEndian.AppendUint64(b, m.Version)
	b = binary.BigEndian.AppendUint64(b, m.DataVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Created.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(m.Size))
	b = append(b, byte(m.Params.DataShards), byte(m.Params.ParityShards))
	b = binary.BigEndian.AppendUint32(b, uint32(m.Params.SegmentSize))
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Hashes)))
	for _, hs := range m.Hashes {
		for _, h := range hs {
			b = append(b, h[:]...)
		}
	}
	for _, p := range m.Placement {
		b = append(b, byte(len(p)))
		b = append(b, p...)
	}
	return b, nil
}

func signedMessage(body []byte) []byte {
	return append([]byte(manifestSigDomain), body...)
}

// Sign sets m.PublicKey to k's and signs m, returning the encoded manifest.
func (m *Manifest) Sign(k *AppKey) ([]byte, error) {
	m.PublicKey = k.PublicKey()
	m.Signature = nil
	body, err := m.body()
	if err != nil {
		return nil, err
	}
	m.Signature = k.Sign(signedMessage(body))
	return append(body, m.Signature...), nil
}

// Marshal encodes a signed manifest.
func (m *Manifest) Marshal() ([]byte, error) {
	if len(m.Signature) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: unsigned", ErrInvalidManifest)
	}
	body, err := m.body()
	if err != nil {
		return nil, err
	}
	return append(body, m.Signature...), nil
}

// manifestReader reads big-endian fields and remembers the first error.
type manifestReader struct {
	b   []byte
	err error
}

func (r *manifestReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b) < n {
		r.err = fmt.Errorf("truncated")
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *manifestReader) u8() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *manifestReader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *manifestReader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// ParseManifest decodes and verifies a manifest: the encoding must be
// exactly canonical (re-encoding gives the same bytes), within
// MaxManifestSize, internally consistent, and correctly signed by the key it
// carries. It does not say whose namespace it is: compare Namespace() with
// the one expected (ManifestValidator does this against the DHT key).
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%w: %d bytes, over %d", ErrInvalidManifest, len(b), MaxManifestSize)
	}
	if len(b) < manifestHeaderLen+ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: %d bytes, too short", ErrInvalidManifest, len(b))
	}
	r := &manifestReader{b: b[:len(b)-ed25519.SignatureSize]}
	if !bytes.Equal(r.take(4), manifestMagic[:]) {
		return nil, fmt.Errorf("%w: bad magic", ErrInvalidManifest)
	}
	if f := r.u8(); f != ManifestFormat {
		return nil, fmt.Errorf("%w: unknown format %d", ErrInvalidManifest, f)
	}
	flags := r.u8()
	if flags&^flagTombstone != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrInvalidManifest, flags)
	}
	m := &Manifest{Tombstone: flags&flagTombstone != 0}
	m.PublicKey = ed25519.PublicKey(bytes.Clone(r.take(32)))
	copy(m.Object[:], r.take(32))
	m.Version = r.u64()
	m.DataVersion = r.u64()
	m.Created = time.Unix(0, int64(r.u64())).UTC()
	size := r.u64()
	if size > 1<<62 {
		return nil, fmt.Errorf("%w: size %d", ErrInvalidManifest, size)
	}
	m.Size = int64(size)
	m.Params.DataShards = int(r.u8())
	m.Params.ParityShards = int(r.u8())
	m.Params.SegmentSize = int(r.u32())
	nseg := int(r.u32())
	n := m.Params.Total()
	// Bound the allocation by what is actually left, before allocating.
	if r.err == nil && nseg*max(n, 1)*32 > len(r.b) {
		return nil, fmt.Errorf("%w: %d segments of %d hashes do not fit", ErrInvalidManifest, nseg, n)
	}
	if nseg > 0 {
		m.Hashes = make([][]Hash, nseg)
		for s := range m.Hashes {
			m.Hashes[s] = make([]Hash, n)
			for i := range m.Hashes[s] {
				copy(m.Hashes[s][i][:], r.take(32))
			}
		}
	}
	if !m.Tombstone {
		m.Placement = make([]peer.ID, n)
		for i := range m.Placement {
			m.Placement[i] = peer.ID(r.take(int(r.u8())))
		}
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidManifest, r.err)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrInvalidManifest, len(r.b))
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidManifest, err)
	}
	m.Signature = bytes.Clone(b[len(b)-ed25519.SignatureSize:])
	if !ed25519.Verify(m.PublicKey, signedMessage(b[:len(b)-ed25519.SignatureSize]), m.Signature) {
		return nil, fmt.Errorf("%w: bad signature", ErrInvalidManifest)
	}
	return m, nil
}

// HasShard reports whether h is one of the manifest's shard hashes, and if so
// the segment and index it is at.
func (m *Manifest) HasShard(h Hash) (seg, idx int, ok bool) {
	for s, hs := range m.Hashes {
		for i, x := range hs {
			if x == h {
				return s, i, true
			}
		}
	}
	return 0, 0, false
}

// ManifestValidator is the DHT record validator of RecordNamespace. A
// record is valid when it parses and verifies (ParseManifest), its signer's
// public key hashes to the namespace id in the DHT key (only the namespace
// owner may write) and its object id is the one in the key. Select picks the
// highest version, so a lower version is refused by DHT servers that hold a
// higher one.
type ManifestValidator struct{}

// Validate implements record.Validator.
func (ManifestValidator) Validate(key string, value []byte) error {
	_, err := validateRecord(key, value)
	return err
}

func validateRecord(key string, value []byte) (*Manifest, error) {
	ns, obj, err := ParseDHTKey(key)
	if err != nil {
		return nil, err
	}
	m, err := ParseManifest(value)
	if err != nil {
		return nil, err
	}
	if m.Namespace() != ns {
		return nil, fmt.Errorf("%w: signed by %s, not the owner of namespace %s", ErrInvalidManifest, m.Namespace(), ns)
	}
	if m.Object != obj {
		return nil, fmt.Errorf("%w: object %s under key of object %s", ErrInvalidManifest, m.Object, obj)
	}
	return m, nil
}

// Select implements record.Validator: the valid record with the highest
// version wins. Equal versions (two app peers racing) are broken by the
// larger encoding, so that every DHT server picks the same record.
func (ManifestValidator) Select(key string, vals [][]byte) (int, error) {
	best := -1
	var bestVer uint64
	for i, v := range vals {
		m, err := validateRecord(key, v)
		if err != nil {
			continue
		}
		if best < 0 || m.Version > bestVer || (m.Version == bestVer && bytes.Compare(v, vals[best]) > 0) {
			best, bestVer = i, m.Version
		}
	}
	if best < 0 {
		return 0, fmt.Errorf("%w: no valid record among %d", ErrInvalidManifest, len(vals))
	}
	return best, nil
}
