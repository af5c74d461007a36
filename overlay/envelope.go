package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Every gossipsub payload we send is an envelope:
//
//	byte 0     version, currently 1
//	bytes 1-8  publication time, Unix nanoseconds, big-endian int64
//	bytes 9-   application payload
//
// The envelope lives inside the gossipsub message, so the publisher's
// signature covers the time too. It lets every receiver (and the browsers
// behind it) measure publish-to-deliver latency.
const (
	envelopeVersion    = 1
	envelopeHeaderSize = 9
)

var errBadEnvelope = errors.New("overlay: malformed envelope")

func encodeEnvelope(t time.Time, payload []byte) []byte {
	b := make([]byte, envelopeHeaderSize+len(payload))
	b[0] = envelopeVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(t.UnixNano()))
	copy(b[envelopeHeaderSize:], payload)
	return b
}

// decodeEnvelope splits b into publication time and payload. The payload
// aliases b.
func decodeEnvelope(b []byte) (time.Time, []byte, error) {
	if len(b) < envelopeHeaderSize {
		return time.Time{}, nil, fmt.Errorf("%w: %d bytes, header needs %d", errBadEnvelope, len(b), envelopeHeaderSize)
	}
	if b[0] != envelopeVersion {
		return time.Time{}, nil, fmt.Errorf("%w: version %d, want %d", errBadEnvelope, b[0], envelopeVersion)
	}
	ns := int64(binary.BigEndian.Uint64(b[1:9]))
	return time.Unix(0, ns), b[envelopeHeaderSize:], nil
}
