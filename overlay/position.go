package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Stream positions. Every message on a topic has a position: its
// publisher (the gossipsub From, a peer), the publisher's sequence number
// and the publication time from its envelope. The sequence number is
// gossipsub's own: 8 bytes, covered by the publisher's signature, counted
// up by one per message from the publisher's clock (Unix nanoseconds) at
// start, so a publisher that restarts continues above where it was. The
// envelope therefore needed no new field and its version is unchanged.
//
// Positions are totally ordered by (time, publisher, sequence), an order
// every peer computes alike from the message alone, whatever order the
// messages reached it in. History is kept and replayed in that order, and
// a resume point is a position: everything after it is replayed. Each
// publisher's messages are in sequence order as long as its clock does
// not step back while it publishes.

// Position is where a message stands in its topic's stream.
type Position struct {
	Publisher peer.ID
	Seq       uint64
	Time      time.Time
}

// maxPositionText bounds a position in text (a peer id is at most about
// 60 characters in base58).
const maxPositionText = 160

var errBadPosition = errors.New("overlay: malformed stream position")

// String is the position as text, which ParsePosition reads back:
// "<unix nanoseconds>-<sequence>-<publisher>". Text of a bare time (a
// resume point with no publisher) is "<unix nanoseconds>-0-".
func (p Position) String() string {
	return strconv.FormatInt(p.Time.UnixNano(), 10) + "-" + strconv.FormatUint(p.Seq, 10) + "-" + p.Publisher.String()
}

// IsZero reports whether p is the zero position, before every message.
func (p Position) IsZero() bool { return p.Time.IsZero() && p.Publisher == "" && p.Seq == 0 }

// Compare orders positions by time, then publisher, then sequence.
func (p Position) Compare(q Position) int {
	a, b := p.Time.UnixNano(), q.Time.UnixNano()
	if p.Time.IsZero() {
		a = 0
	}
	if q.Time.IsZero() {
		b = 0
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	case p.Publisher < q.Publisher:
		return -1
	case p.Publisher > q.Publisher:
		return 1
	case p.Seq < q.Seq:
		return -1
	case p.Seq > q.Seq:
		return 1
	}
	return 0
}

// ParsePosition reads a position written by Position.String, or, for
// convenience at the edges (SSE ?since=), an RFC 3339 time, which stands
// for the position just before the first message published at or after
// it.
func ParsePosition(s string) (Position, error) {
	if len(s) > maxPositionText {
		return Position{}, fmt.Errorf("%w: %d characters, at most %d", errBadPosition, len(s), maxPositionText)
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return Position{Time: t.Add(-1)}, nil
	}
	parts := strings.SplitN(s, "-", 3)
	if len(parts) != 3 {
		return Position{}, fmt.Errorf("%w: want <time>-<sequence>-<publisher> or an RFC 3339 time", errBadPosition)
	}
	ns, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || ns <= 0 {
		return Position{}, fmt.Errorf("%w: time %q", errBadPosition, parts[0])
	}
	seq, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil {
		return Position{}, fmt.Errorf("%w: sequence %q", errBadPosition, parts[1])
	}
	p := Position{Seq: seq, Time: time.Unix(0, ns)}
	if parts[2] != "" {
		if p.Publisher, err = peer.Decode(parts[2]); err != nil {
			return Position{}, fmt.Errorf("%w: publisher: %v", errBadPosition, err)
		}
	}
	return p, nil
}

// seqOf reads gossipsub's 8-byte sequence number; ok is false for any
// other length.
func seqOf(b []byte) (uint64, bool) {
	if len(b) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}
