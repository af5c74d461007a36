package erasure

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/reedsolomon"
	"golang.org/x/crypto/chacha20poly1305"
)

// Codec limits. They are part of the manifest format: a manifest outside
// them is rejected, so changing them is a format change.
const (
	// DefaultSegmentSize bounds the memory one segment needs while it is
	// encoded or decoded: about SegmentSize*(k+m)/k bytes.
	DefaultSegmentSize = 1 << 20
	// MinSegmentSize keeps the per-segment overhead (nonce, tag, one hash
	// per shard in the manifest) small against the payload.
	MinSegmentSize = 1 << 10
	// MaxSegmentSize caps a shard (and so a shard protocol message) at
	// 16 MiB plus the AEAD overhead, reached when k = 1.
	MaxSegmentSize = 16 << 20
	// MaxShards caps k+m. Past 32 shards the manifest grows by a kilobyte per
	// segment and each extra shard buys almost no availability.
	MaxShards = 32
	// segmentOverhead is what AEAD adds to each segment: a 24-byte random
	// XChaCha20 nonce in front and a 16-byte Poly1305 tag behind.
	segmentOverhead = chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead
	// MaxShardSize is the largest shard any valid manifest can describe.
	MaxShardSize = MaxSegmentSize + segmentOverhead
)

// Hash is the SHA-256 of a shard's bytes: its content address. SHA-256 (not
// BLAKE3) because every platform we target, browsers' WebCrypto included,
// has it built in, and SHA-NI makes it cheap on servers.
type Hash [32]byte

// String returns the lowercase hex form used in file names and logs.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// HashShard returns the content hash of a shard.
func HashShard(b []byte) Hash { return sha256.Sum256(b) }

// ObjectCipher seals and opens the segments of one object version. It is
// made from an AppKey (see AppKey.ObjectCipher), so only app key holders
// have one.
type ObjectCipher struct {
	aead    cipher.AEAD
	ns      NamespaceID
	obj     ObjectID
	version uint64
}

// ObjectCipher returns the cipher for the object stored under key whose
// content was written at dataVersion. The key is derived with HKDF from the
// app secret, the namespace and the object key; the associated data of each
// segment binds namespace, object id, data version and segment index, so a
// segment cannot be replayed under another object, version or position.
func (k *AppKey) ObjectCipher(key string, dataVersion uint64) (*ObjectCipher, error) {
	sec := k.objectSecret(key)
	aead, err := chacha20poly1305.NewX(sec[:])
	if err != nil {
		return nil, err
	}
	return &ObjectCipher{aead: aead, ns: k.ns, obj: k.ObjectID(key), version: dataVersion}, nil
}

// ad builds the associated data of segment seg.
func (oc *ObjectCipher) ad(seg int) []byte {
	b := make([]byte, 0, 24+32+32+8+4)
	b = append(b, "immense-state v1 segment"...)
	b = append(b, oc.ns[:]...)
	b = append(b, oc.obj[:]...)
	b = binary.BigEndian.AppendUint64(b, oc.version)
	return binary.BigEndian.AppendUint32(b, uint32(seg))
}

// Params are the erasure coding parameters of one object.
type Params struct {
	DataShards   int // k: any k shards rebuild a segment
	ParityShards int // m: shards that may be lost
	SegmentSize  int // plaintext bytes per segment (the last may be shorter)
}

// Validate reports whether p is within the codec limits.
func (p Params) Validate() error {
	switch {
	case p.DataShards < 1:
		return fmt.Errorf("data shards %d: must be at least 1", p.DataShards)
	case p.ParityShards < 0:
		return fmt.Errorf("parity shards %d: must not be negative", p.ParityShards)
	case p.DataShards+p.ParityShards > MaxShards:
		return fmt.Errorf("k+m = %d: must be at most %d", p.DataShards+p.ParityShards, MaxShards)
	case p.SegmentSize < MinSegmentSize || p.SegmentSize > MaxSegmentSize:
		return fmt.Errorf("segment size %d: must be in [%d, %d]", p.SegmentSize, MinSegmentSize, MaxSegmentSize)
	}
	return nil
}

// Total returns k+m.
func (p Params) Total() int { return p.DataShards + p.ParityShards }

// Segments returns how many segments a value of size bytes has. An empty
// value still has one (empty) segment, so that it has shards, a hash and an
// authentication tag like any other value.
func (p Params) Segments(size int64) int {
	if size <= 0 {
		return 1
	}
	return int((size + int64(p.SegmentSize) - 1) / int64(p.SegmentSize))
}

// SegmentLen returns the plaintext length of segment seg of a value of size bytes.
func (p Params) SegmentLen(size int64, seg int) int {
	rest := size - int64(seg)*int64(p.SegmentSize)
	if rest > int64(p.SegmentSize) {
		return p.SegmentSize
	}
	return int(max(rest, 0))
}

// ShardSize returns the size of each shard of a segment of plainLen bytes.
func (p Params) ShardSize(plainLen int) int {
	return (plainLen + segmentOverhead + p.DataShards - 1) / p.DataShards
}

// Codec encrypts and erasure-codes segments with fixed Params. It is safe
// for concurrent use.
type Codec struct {
	p  Params
	rs reedsolomon.Encoder
}

// NewCodec returns a codec for p.
func NewCodec(p Params) (*Codec, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	c := &Codec{p: p}
	if p.ParityShards > 0 {
		rs, err := reedsolomon.New(p.DataShards, p.ParityShards)
		if err != nil {
			return nil, err
		}
		c.rs = rs
	}
	return c, nil
}

// Params returns the codec's parameters.
func (c *Codec) Params() Params { return c.p }

// EncodeSegment encrypts plain (at most SegmentSize bytes) as segment seg
// and returns its k+m shards and their hashes. All shards are slices of one
// allocation: the segment is sealed in place into the data shards, so the
// only copy is the one AEAD makes.
func (c *Codec) EncodeSegment(oc *ObjectCipher, seg int, plain []byte) ([][]byte, []Hash, error) {
	if len(plain) > c.p.SegmentSize {
		return nil, nil, fmt.Errorf("segment %d: %d bytes, over segment size %d", seg, len(plain), c.p.SegmentSize)
	}
	n := c.p.Total()
	size := c.p.ShardSize(len(plain))
	buf := make([]byte, size*n)
	nonce := buf[:chacha20poly1305.NonceSizeX]
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, err
	}
	oc.aead.Seal(buf[len(nonce):len(nonce)], nonce, plain, oc.ad(seg))
	// The tail of the last data shard past the ciphertext is zero padding,
	// already zero from make.
	shards := make([][]byte, n)
	for i := range shards {
		shards[i] = buf[i*size : (i+1)*size : (i+1)*size]
	}
	if c.rs != nil {
		if err := c.rs.Encode(shards); err != nil {
			return nil, nil, fmt.Errorf("segment %d: reed-solomon: %w", seg, err)
		}
	}
	return shards, hashShards(shards), nil
}

// parallelHashMin is the shard size from which hashShards spreads the work
// over the CPUs: hashing is most of the codec's cost (k+m shards of
// segment/k bytes each), and below 64 KiB goroutine start-up is not worth it.
const parallelHashMin = 64 << 10

// hashShards hashes every non-nil shard, in parallel when they are large.
func hashShards(shards [][]byte) []Hash {
	hashes := make([]Hash, len(shards))
	workers := min(runtime.GOMAXPROCS(0), len(shards))
	if workers < 2 || len(shards[0]) < parallelHashMin {
		for i, s := range shards {
			if s != nil {
				hashes[i] = HashShard(s)
			}
		}
		return hashes
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(shards); i += workers {
				if shards[i] != nil {
					hashes[i] = HashShard(shards[i])
				}
			}
		})
	}
	wg.Wait()
	return hashes
}

// verify drops (sets to nil) every shard of the wrong size or, when hashes
// is not nil, whose hash does not match, and returns how many are left.
func (c *Codec) verify(plainLen int, shards [][]byte, hashes []Hash) (int, error) {
	n := c.p.Total()
	if len(shards) != n || (hashes != nil && len(hashes) != n) {
		return 0, fmt.Errorf("want %d shards and hashes, got %d and %d", n, len(shards), len(hashes))
	}
	size := c.p.ShardSize(plainLen)
	for i, s := range shards {
		if s != nil && len(s) != size {
			shards[i] = nil
		}
	}
	var got []Hash
	if hashes != nil {
		got = hashShards(shards)
	}
	ok := 0
	for i, s := range shards {
		if s == nil {
			continue
		}
		if hashes != nil && got[i] != hashes[i] {
			shards[i] = nil
			continue
		}
		ok++
	}
	return ok, nil
}

// ReconstructSegment fills in the nil entries of shards (k+m entries of a
// segment whose plaintext is plainLen bytes long) from the others. Shards
// that fail verification against hashes are dropped first; hashes may be nil
// when the caller has verified every shard already. It needs no key: repair
// works on ciphertext, which is why a peer can rebuild shards it cannot read.
func (c *Codec) ReconstructSegment(plainLen int, shards [][]byte, hashes []Hash) error {
	ok, err := c.verify(plainLen, shards, hashes)
	if err != nil {
		return err
	}
	if ok < c.p.DataShards {
		return fmt.Errorf("%w: %d of %d needed", ErrNotEnoughShards, ok, c.p.DataShards)
	}
	if c.rs == nil || ok == len(shards) {
		return nil
	}
	return c.rs.Reconstruct(shards)
}

// DecodeSegment rebuilds and decrypts segment seg from any k of its shards
// (nil for a missing one). Shards that fail verification are discarded
// first; pass nil hashes only when every shard was verified on receipt.
// Missing data shards are rebuilt in the entries of shards.
func (c *Codec) DecodeSegment(oc *ObjectCipher, seg, plainLen int, shards [][]byte, hashes []Hash) ([]byte, error) {
	ok, err := c.verify(plainLen, shards, hashes)
	if err != nil {
		return nil, err
	}
	k := c.p.DataShards
	if ok < k {
		return nil, fmt.Errorf("segment %d: %w: %d of %d needed", seg, ErrNotEnoughShards, ok, k)
	}
	if c.rs != nil {
		if err := c.rs.ReconstructData(shards); err != nil {
			return nil, fmt.Errorf("segment %d: reed-solomon: %w", seg, err)
		}
	}
	ctLen := plainLen + segmentOverhead
	ct := make([]byte, 0, c.p.ShardSize(plainLen)*k)
	for _, s := range shards[:k] {
		ct = append(ct, s...)
	}
	ct = ct[:ctLen]
	nonce, sealed := ct[:chacha20poly1305.NonceSizeX], ct[chacha20poly1305.NonceSizeX:]
	plain, err := oc.aead.Open(sealed[:0], nonce, sealed, oc.ad(seg))
	if err != nil {
		return nil, fmt.Errorf("segment %d: %w", seg, ErrDecrypt)
	}
	return plain, nil
}

// Encoded is a whole value after encoding: Shards[seg][i] is shard i of
// segment seg and Hashes[seg][i] its hash.
type Encoded struct {
	Shards [][][]byte
	Hashes [][]Hash
}

// Encode encodes a whole value segment by segment.
func (c *Codec) Encode(oc *ObjectCipher, value []byte) (*Encoded, error) {
	nseg := c.p.Segments(int64(len(value)))
	e := &Encoded{Shards: make([][][]byte, nseg), Hashes: make([][]Hash, nseg)}
	for s := range nseg {
		l := c.p.SegmentLen(int64(len(value)), s)
		off := s * c.p.SegmentSize
		var err error
		e.Shards[s], e.Hashes[s], err = c.EncodeSegment(oc, s, value[off:off+l])
		if err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Decode decodes a whole value of size bytes from e (missing shards nil),
// verifying every shard against e.Hashes.
func (c *Codec) Decode(oc *ObjectCipher, size int64, e *Encoded) ([]byte, error) {
	nseg := c.p.Segments(size)
	if len(e.Shards) != nseg || len(e.Hashes) != nseg {
		return nil, fmt.Errorf("want %d segments, got %d", nseg, len(e.Shards))
	}
	out := make([]byte, 0, size)
	for s := range nseg {
		plain, err := c.DecodeSegment(oc, s, c.p.SegmentLen(size, s), e.Shards[s], e.Hashes[s])
		if err != nil {
			return nil, err
		}
		out = append(out, plain...)
	}
	return out, nil
}
