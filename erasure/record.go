package erasure

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
)

// The small signed DHT records (handoff hints, delegations, repair hints)
// share one framing: magic [4] | format u8 | fields | signature [64],
// strictly parsed, with a size cap.

// sigLen is the size of the Ed25519 signature that ends every record.
const sigLen = 64

// openRecord checks the framing of a signed record b (at most maxLen
// bytes, at least minLen, starting with magic and format) and returns a
// reader over its fields and its signature.
func openRecord(b []byte, minLen, maxLen int, magic [4]byte, format byte) (*manifestReader, []byte, error) {
	if len(b) > maxLen {
		return nil, nil, fmt.Errorf("%d bytes, over %d", len(b), maxLen)
	}
	if len(b) < minLen+sigLen {
		return nil, nil, fmt.Errorf("%d bytes, too short", len(b))
	}
	r := &manifestReader{b: b[:len(b)-sigLen]}
	if !bytes.Equal(r.take(4), magic[:]) {
		return nil, nil, fmt.Errorf("bad magic")
	}
	if f := r.u8(); f != format {
		return nil, nil, fmt.Errorf("unknown format %d", f)
	}
	return r, bytes.Clone(b[len(b)-sigLen:]), nil
}

// time reads a u64 of Unix nanoseconds.
func (r *manifestReader) time() time.Time {
	v := r.u64()
	if v > math.MaxInt64 && r.err == nil {
		r.err = fmt.Errorf("time %d out of range", v)
	}
	return time.Unix(0, int64(v&math.MaxInt64)).UTC()
}

// peerID reads len u8 | peer id bytes.
func (r *manifestReader) peerID() peer.ID { return peer.ID(r.take(int(r.u8()))) }

// end reports the first read error, or bytes left over.
func (r *manifestReader) end() error {
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%d trailing bytes", len(r.b))
	}
	return nil
}

// u16 reads a big-endian u16.
func (r *manifestReader) u16() int {
	if v := r.take(2); v != nil {
		return int(binary.BigEndian.Uint16(v))
	}
	return 0
}

// appendPeerID appends len u8 | peer id bytes.
func appendPeerID(b []byte, p peer.ID) []byte { return append(append(b, byte(len(p))), p...) }

// getRecord gets the record under key from the DHT and validates it. The
// error wraps ErrNotFound when there is none; what kind names the record
// in errors.
func getRecord[T any](ctx context.Context, r Records, kind, key string, validate func(key string, b []byte) (T, error)) (T, []byte, error) {
	var zero T
	b, err := r.GetValue(ctx, key)
	if errors.Is(err, routing.ErrNotFound) {
		return zero, nil, fmt.Errorf("%s %s: %w", kind, key, ErrNotFound)
	}
	if err != nil {
		return zero, nil, fmt.Errorf("get %s %s: %w", kind, key, err)
	}
	v, err := validate(key, b)
	if err != nil {
		return zero, nil, fmt.Errorf("get %s %s: %w", kind, key, err)
	}
	return v, b, nil
}
