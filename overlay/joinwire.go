package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// The join protocol's messages (doc.go has the full description). A frame
// is a big-endian u16 length and that many bytes of body; every body starts
// with the version and the message type.
const (
	joinVersion = 1

	joinRequest = 1 // client: please admit me
	joinOK      = 2 // server: admitted
	joinBusy    = 3 // server: not now; retry-after and referrals follow

	// maxJoinFrame caps a message body. A busy answer with the most
	// referrals (8 peers of 4 addresses each) fits in about 1.5 KiB; the
	// encoder drops referrals rather than exceed the cap.
	maxJoinFrame = 4096
	// maxReferrals and maxReferralAddrs cap what a busy answer carries.
	maxReferrals     = 8
	maxReferralAddrs = 4
	// maxRetryHint is the largest retry-after the wire carries (u32 ms,
	// but no server has a reason to send more than an hour).
	maxRetryHint = time.Hour
)

var errBadJoin = errors.New("overlay: malformed join message")

// joinMessage is one decoded message of the join protocol.
type joinMessage struct {
	typ        byte
	retryAfter time.Duration   // busy only
	referrals  []peer.AddrInfo // busy only
}

// encode returns the message body. Referrals that would not fit (too many,
// too many addresses, an address over 255 bytes, or a body over
// maxJoinFrame) are trimmed, never sent broken.
func (m *joinMessage) encode() []byte {
	b := []byte{joinVersion, m.typ}
	if m.typ != joinBusy {
		return b
	}
	ms := min(m.retryAfter, maxRetryHint).Milliseconds()
	b = binary.BigEndian.AppendUint32(b, uint32(max(ms, 0)))
	countAt := len(b)
	b = append(b, 0)
	n := 0
	seen := make(map[peer.ID]bool, len(m.referrals))
	for _, ai := range m.referrals {
		if n == maxReferrals {
			break
		}
		id := []byte(ai.ID)
		if len(id) == 0 || len(id) > 255 || seen[ai.ID] {
			continue
		}
		r := append([]byte{byte(len(id))}, id...)
		addrsAt := len(r)
		r = append(r, 0)
		k := 0
		for _, a := range ai.Addrs {
			ab := a.Bytes()
			if k == maxReferralAddrs || len(ab) == 0 || len(ab) > 255 {
				continue
			}
			r = append(r, byte(len(ab)))
			r = append(r, ab...)
			k++
		}
		if k == 0 || len(b)+len(r) > maxJoinFrame {
			continue
		}
		r[addrsAt] = byte(k)
		b = append(b, r...)
		seen[ai.ID] = true
		n++
	}
	b[countAt] = byte(n)
	return b
}

// decodeJoin parses a message body strictly: known version and type, every
// length within its cap, valid peer IDs and multiaddrs, no trailing bytes.
// It does not judge whether referral addresses are worth dialling; the
// client does (referralAddrs).
func decodeJoin(b []byte) (joinMessage, error) {
	bad := func(format string, args ...any) (joinMessage, error) {
		return joinMessage{}, fmt.Errorf("%w: %s", errBadJoin, fmt.Sprintf(format, args...))
	}
	if len(b) > maxJoinFrame {
		return bad("%d bytes, over %d", len(b), maxJoinFrame)
	}
	if len(b) < 2 {
		return bad("%d bytes, header needs 2", len(b))
	}
	if b[0] != joinVersion {
		return bad("version %d, want %d", b[0], joinVersion)
	}
	m := joinMessage{typ: b[1]}
	b = b[2:]
	switch m.typ {
	case joinRequest, joinOK:
		if len(b) != 0 {
			return bad("%d trailing bytes", len(b))
		}
		return m, nil
	case joinBusy:
	default:
		return bad("unknown type %d", m.typ)
	}
	if len(b) < 5 {
		return bad("busy answer cut short")
	}
	ms := time.Duration(binary.BigEndian.Uint32(b)) * time.Millisecond
	if ms > maxRetryHint {
		return bad("retry-after %v over %v", ms, maxRetryHint)
	}
	m.retryAfter = ms
	n := int(b[4])
	b = b[5:]
	if n > maxReferrals {
		return bad("%d referrals, over %d", n, maxReferrals)
	}
	next := func() ([]byte, bool) {
		if len(b) < 1 || len(b) < 1+int(b[0]) {
			return nil, false
		}
		v := b[1 : 1+int(b[0])]
		b = b[1+int(b[0]):]
		return v, true
	}
	seen := make(map[peer.ID]bool, n)
	for i := range n {
		idb, ok := next()
		if !ok {
			return bad("referral %d cut short", i)
		}
		id, err := peer.IDFromBytes(idb)
		if err != nil {
			return bad("referral %d: peer id: %v", i, err)
		}
		if seen[id] {
			return bad("referral %d: peer %s twice", i, id)
		}
		seen[id] = true
		if len(b) < 1 {
			return bad("referral %d cut short", i)
		}
		k := int(b[0])
		b = b[1:]
		if k < 1 || k > maxReferralAddrs {
			return bad("referral %d: %d addresses, want 1 to %d", i, k, maxReferralAddrs)
		}
		ai := peer.AddrInfo{ID: id, Addrs: make([]multiaddr.Multiaddr, 0, k)}
		for j := range k {
			ab, ok := next()
			if !ok || len(ab) == 0 {
				return bad("referral %d address %d cut short", i, j)
			}
			a, err := multiaddr.NewMultiaddrBytes(ab)
			if err != nil {
				return bad("referral %d address %d: %v", i, j, err)
			}
			ai.Addrs = append(ai.Addrs, a)
		}
		m.referrals = append(m.referrals, ai)
	}
	if len(b) != 0 {
		return bad("%d trailing bytes", len(b))
	}
	return m, nil
}

// writeJoinFrame writes one frame.
func writeJoinFrame(w io.Writer, body []byte) error {
	f := make([]byte, 2, 2+len(body))
	binary.BigEndian.PutUint16(f, uint16(len(body)))
	_, err := w.Write(append(f, body...))
	return err
}

// readJoinFrame reads one frame of at most maxJoinFrame bytes.
func readJoinFrame(r io.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n > maxJoinFrame {
		return nil, fmt.Errorf("%w: frame of %d bytes, over %d", errBadJoin, n, maxJoinFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("join frame cut short: %w", err)
	}
	return b, nil
}
