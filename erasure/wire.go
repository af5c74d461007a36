package erasure

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Shard protocol wire format (see doc.go for the full description). Every
// message is a frame: a 4-byte big-endian body length, then the body. A body
// starts with the protocol version and the message type.
const (
	wireVersion = 1

	msgStore  = 1
	msgFetch  = 2
	msgCheck  = 3
	msgDelete = 4
	// A response carries its request's type with the high bit set.
	msgResponse = 0x80

	// MaxCheckHashes caps the hashes one check request may ask about: 1024
	// hashes are 32 KiB, enough for every segment a holder has of the
	// largest manifest.
	MaxCheckHashes = 1024
	// MaxVerifyHashes caps the hashes of a check request with verify set:
	// each has the holder read and hash a whole shard (up to 16 MiB), so a
	// 32 KiB request must not buy 16 GiB of disk reads.
	MaxVerifyHashes = 4

	refLen        = 32 + 32 + 8 + 4 + 2
	maxMessageLen = 255
	// maxFrame caps any frame, request or response: a store request or a
	// fetch response with the largest possible shard, plus headers.
	maxFrame = 2 + 1 + 1 + maxMessageLen + 32 + refLen + MaxShardSize
)

// deleteSigDomain separates delete-request signatures from manifests.
const deleteSigDomain = "immense-state delete v1\x00"

// Response status codes.
const (
	StatusOK            = 0
	StatusNotFound      = 1
	StatusQuotaExceeded = 2
	StatusBadRequest    = 3
	StatusHashMismatch  = 4
	StatusUnauthorized  = 5
	StatusInternal      = 6
	StatusBusy          = 7
)

// statusErrors maps status codes to the sentinels clients return.
var statusErrors = map[byte]error{
	StatusNotFound:      ErrNotFound,
	StatusQuotaExceeded: ErrQuotaExceeded,
	StatusBadRequest:    ErrBadMessage,
	StatusHashMismatch:  ErrHashMismatch,
	StatusUnauthorized:  ErrUnauthorized,
	StatusInternal:      ErrRemote,
	StatusBusy:          ErrBusy,
}

// statusOf maps an error from the store to the status a server sends.
func statusOf(err error) byte {
	for code, sentinel := range statusErrors {
		if errors.Is(err, sentinel) {
			return code
		}
	}
	if errors.Is(err, ErrCorrupt) {
		return StatusNotFound
	}
	return StatusInternal
}

// request is a decoded request. Only the fields of its type are set.
type request struct {
	typ    byte
	hash   Hash              // store, fetch, delete
	ref    ShardRef          // store
	data   []byte            // store
	verify bool              // check
	hashes []Hash            // check
	pub    ed25519.PublicKey // delete
	sig    []byte            // delete
}

// CheckResult answers a check for one hash.
type CheckResult struct {
	Present bool
	Size    int64 // shard bytes, when present
}

// response is a decoded response.
type response struct {
	typ    byte // the request type, without msgResponse
	status byte
	msg    string
	ref    ShardRef      // fetch
	data   []byte        // fetch
	checks []CheckResult // check
}

// err turns a non-OK response into an error wrapping the sentinel.
func (r *response) err() error {
	if r.status == StatusOK {
		return nil
	}
	sentinel, ok := statusErrors[r.status]
	if !ok {
		sentinel = ErrRemote
	}
	if r.msg == "" {
		return sentinel
	}
	return fmt.Errorf("%w: %s", sentinel, r.msg)
}

func appendRef(b []byte, r ShardRef) []byte {
	b = append(b, r.Namespace[:]...)
	b = append(b, r.Object[:]...)
	b = binary.BigEndian.AppendUint64(b, r.Version)
	b = binary.BigEndian.AppendUint32(b, r.Segment)
	return binary.BigEndian.AppendUint16(b, r.Index)
}

func parseRef(b []byte) ShardRef {
	var r ShardRef
	copy(r.Namespace[:], b[0:32])
	copy(r.Object[:], b[32:64])
	r.Version = binary.BigEndian.Uint64(b[64:72])
	r.Segment = binary.BigEndian.Uint32(b[72:76])
	r.Index = binary.BigEndian.Uint16(b[76:78])
	return r
}

func deleteMessage(h Hash) []byte { return append([]byte(deleteSigDomain), h[:]...) }

// encode returns the body of a request.
func (q *request) encode() []byte {
	b := []byte{wireVersion, q.typ}
	switch q.typ {
	case msgStore:
		b = append(b, q.hash[:]...)
		b = appendRef(b, q.ref)
		b = append(b, q.data...)
	case msgFetch:
		b = append(b, q.hash[:]...)
	case msgCheck:
		var flags byte
		if q.verify {
			flags = 1
		}
		b = append(b, flags)
		b = binary.BigEndian.AppendUint16(b, uint16(len(q.hashes)))
		for _, h := range q.hashes {
			b = append(b, h[:]...)
		}
	case msgDelete:
		b = append(b, q.hash[:]...)
		b = append(b, q.pub...)
		b = append(b, q.sig...)
	}
	return b
}

func badf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadMessage, fmt.Sprintf(format, a...))
}

// decodeRequest parses a request body strictly: exact lengths, known
// version and type, sizes within their caps.
func decodeRequest(b []byte) (*request, error) {
	if len(b) < 2 {
		return nil, badf("short request")
	}
	if b[0] != wireVersion {
		return nil, badf("unsupported version %d", b[0])
	}
	q := &request{typ: b[1]}
	b = b[2:]
	switch q.typ {
	case msgStore:
		if len(b) < 32+refLen {
			return nil, badf("short store request")
		}
		copy(q.hash[:], b)
		q.ref = parseRef(b[32:])
		q.data = b[32+refLen:]
		if len(q.data) > MaxShardSize {
			return nil, badf("shard of %d bytes, over %d", len(q.data), MaxShardSize)
		}
	case msgFetch:
		if len(b) != 32 {
			return nil, badf("fetch request of %d bytes", len(b))
		}
		copy(q.hash[:], b)
	case msgCheck:
		if len(b) < 3 {
			return nil, badf("short check request")
		}
		if b[0]&^1 != 0 {
			return nil, badf("unknown check flags %#x", b[0])
		}
		q.verify = b[0] == 1
		n := int(binary.BigEndian.Uint16(b[1:3]))
		if n > MaxCheckHashes {
			return nil, badf("check of %d hashes, over %d", n, MaxCheckHashes)
		}
		if q.verify && n > MaxVerifyHashes {
			return nil, badf("verified check of %d hashes, over %d", n, MaxVerifyHashes)
		}
		if len(b) != 3+32*n {
			return nil, badf("check request length mismatch")
		}
		q.hashes = make([]Hash, n)
		for i := range q.hashes {
			copy(q.hashes[i][:], b[3+32*i:])
		}
	case msgDelete:
		if len(b) != 32+ed25519.PublicKeySize+ed25519.SignatureSize {
			return nil, badf("delete request of %d bytes", len(b))
		}
		copy(q.hash[:], b)
		q.pub = ed25519.PublicKey(b[32 : 32+ed25519.PublicKeySize])
		q.sig = b[32+ed25519.PublicKeySize:]
	default:
		return nil, badf("unknown request type %d", q.typ)
	}
	return q, nil
}

// encode returns the body of a response.
func (r *response) encode() []byte {
	msg := r.msg
	if len(msg) > maxMessageLen {
		msg = msg[:maxMessageLen]
	}
	b := []byte{wireVersion, r.typ | msgResponse, r.status, byte(len(msg))}
	b = append(b, msg...)
	if r.status != StatusOK {
		return b
	}
	switch r.typ {
	case msgFetch:
		b = appendRef(b, r.ref)
		b = append(b, r.data...)
	case msgCheck:
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.checks)))
		for _, c := range r.checks {
			if c.Present {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
			b = binary.BigEndian.AppendUint64(b, uint64(c.Size))
		}
	}
	return b
}

// decodeResponse parses a response body strictly. want is the request type
// the response must answer.
func decodeResponse(b []byte, want byte) (*response, error) {
	if len(b) < 4 {
		return nil, badf("short response")
	}
	if b[0] != wireVersion {
		return nil, badf("unsupported version %d", b[0])
	}
	if b[1] != want|msgResponse {
		return nil, badf("response type %#x to request %d", b[1], want)
	}
	r := &response{typ: want, status: b[2]}
	if _, ok := statusErrors[r.status]; !ok && r.status != StatusOK {
		return nil, badf("unknown status %d", r.status)
	}
	n := int(b[3])
	if len(b) < 4+n {
		return nil, badf("truncated message")
	}
	r.msg = string(b[4 : 4+n])
	b = b[4+n:]
	if r.status != StatusOK {
		if len(b) != 0 {
			return nil, badf("payload in an error response")
		}
		return r, nil
	}
	switch want {
	case msgFetch:
		if len(b) < refLen {
			return nil, badf("short fetch response")
		}
		r.ref = parseRef(b)
		r.data = b[refLen:]
		if len(r.data) > MaxShardSize {
			return nil, badf("shard of %d bytes, over %d", len(r.data), MaxShardSize)
		}
	case msgCheck:
		if len(b) < 2 {
			return nil, badf("short check response")
		}
		n := int(binary.BigEndian.Uint16(b))
		if n > MaxCheckHashes || len(b) != 2+9*n {
			return nil, badf("check response length mismatch")
		}
		r.checks = make([]CheckResult, n)
		for i := range r.checks {
			e := b[2+9*i:]
			if e[0] > 1 {
				return nil, badf("bad presence byte %d", e[0])
			}
			size := binary.BigEndian.Uint64(e[1:9])
			if size > MaxShardSize || (e[0] == 0 && size != 0) {
				return nil, badf("bad size %d", size)
			}
			r.checks[i] = CheckResult{Present: e[0] == 1, Size: int64(size)}
		}
	case msgStore, msgDelete:
		if len(b) != 0 {
			return nil, badf("unexpected payload")
		}
	default:
		return nil, badf("unknown request type %d", want)
	}
	return r, nil
}

// writeFrame writes one length-prefixed frame.
func writeFrame(w io.Writer, body []byte) error {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}

// readFrame reads one frame of at most max bytes. The buffer grows with the
// bytes that actually arrive, so a peer that announces a large frame and
// sends nothing costs no memory.
func readFrame(r io.Reader, max int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int64(binary.BigEndian.Uint32(hdr[:]))
	if n > int64(max) {
		return nil, badf("frame of %d bytes, over %d", n, max)
	}
	b, err := io.ReadAll(io.LimitReader(r, n))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != n {
		return nil, fmt.Errorf("%w: frame cut short (%d of %d bytes)", io.ErrUnexpectedEOF, len(b), n)
	}
	return b, nil
}
