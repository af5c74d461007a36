package erasure

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"
)

// MaxShardRefs caps the refs one stored shard may carry. Several
// namespaces storing the same bytes is rare (the bytes are ciphertext
// under a per-object key), so the cap only bounds what a peer can make a
// holder keep about one file; a store beyond it is refused with
// ErrTooManyRefs and the writer places the shard elsewhere.
const MaxShardRefs = 16

// StoredRef is one ref of a stored shard and when the store accepted it.
// GC gives each ref its own minimum age: a ref added to an old file is
// as young as its own store request.
type StoredRef struct {
	ShardRef
	Added time.Time
}

// Refs file format. A shard stored under a single ref keeps it in its
// file header (format v1, unchanged). Once a second ref is added, the
// store writes a sidecar <hash>.refs beside the shard file holding the
// whole set, which from then on overrides the header's ref:
//
//	magic "IMSR" | version 1 | count (1 byte, 1..MaxShardRefs) |
//	count × (ref: namespace 32, object 32, version 8, segment 4, index 2 |
//	         added, Unix nanoseconds, 8) | CRC-32C of all before (4)
//
// Big-endian; refs are distinct. The file is written like a shard file
// (temp, fsync, rename, dir fsync), so a crash leaves the old set or the
// new one. A refs file whose shard file is missing is removed at open.
const (
	refsFileVersion = 1
	refsSuffix      = ".refs"
	storedRefLen    = refLen + 8
	refsHeaderLen   = 4 + 1 + 1
)

var refsMagic = [4]byte{'I', 'M', 'S', 'R'}

// refsFileLen is the size of a refs file holding n refs.
func refsFileLen(n int) int64 { return int64(refsHeaderLen + n*storedRefLen + 4) }

func encodeRefs(refs []StoredRef) []byte {
	b := make([]byte, 0, refsFileLen(len(refs)))
	b = append(b, refsMagic[:]...)
	b = append(b, refsFileVersion, byte(len(refs)))
	for _, r := range refs {
		b = appendRef(b, r.ShardRef)
		b = binary.BigEndian.AppendUint64(b, uint64(r.Added.UnixNano()))
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

// decodeRefs parses a refs file strictly: exact length, known version,
// 1..MaxShardRefs distinct refs, matching checksum.
func decodeRefs(b []byte) ([]StoredRef, error) {
	if len(b) < refsHeaderLen+4 {
		return nil, errors.New("refs file: short")
	}
	if !bytes.Equal(b[:4], refsMagic[:]) || b[4] != refsFileVersion {
		return nil, errors.New("refs file: bad magic or version")
	}
	n := int(b[5])
	if n < 1 || n > MaxShardRefs {
		return nil, fmt.Errorf("refs file: %d refs, want 1 to %d", n, MaxShardRefs)
	}
	if int64(len(b)) != refsFileLen(n) {
		return nil, fmt.Errorf("refs file: %d bytes for %d refs", len(b), n)
	}
	if crc32.Checksum(b[:len(b)-4], crcTable) != binary.BigEndian.Uint32(b[len(b)-4:]) {
		return nil, errors.New("refs file: checksum mismatch")
	}
	refs := make([]StoredRef, 0, n)
	for p := refsHeaderLen; len(refs) < n; p += storedRefLen {
		r := StoredRef{ShardRef: parseRef(b[p:]),
			Added: time.Unix(0, int64(binary.BigEndian.Uint64(b[p+refLen:])))}
		if refIndex(refs, r.ShardRef) >= 0 {
			return nil, errors.New("refs file: duplicate ref")
		}
		refs = append(refs, r)
	}
	return refs, nil
}

// refIndex returns the position of ref in refs, or -1.
func refIndex(refs []StoredRef, ref ShardRef) int {
	for i, r := range refs {
		if r.ShardRef == ref {
			return i
		}
	}
	return -1
}
