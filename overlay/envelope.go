package overlay

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Every gossipsub payload we send is an envelope:
//
//	byte 0       version, currently 2 (1 is still read: no credential)
//	bytes 1-8    publication time, Unix nanoseconds, big-endian int64
//	byte 9       credential kind: 0 none, 1 peer certificate, 2 browser token,
//	             3 browser token bound to a key, with the browser's signature
//	bytes 10-11  credential length, big-endian u16, at most maxCredential
//	             (0 exactly when the kind is none)
//	credential   kind 1: the publisher's certificate (authorize.go);
//	             kind 2: the browser's token, a JWT in ASCII;
//	             kind 3: the browser's Ed25519 signature (64 bytes) of the
//	             message (BrowserSigned), then its token (browserproof.go)
//	payload      the application's bytes
//
// Version 1 was byte 0 and the time, then the payload.
//
// The envelope lives inside the gossipsub message, so the publisher's
// signature covers the time and the credential too. The time lets every
// receiver (and the browsers behind it) measure publish-to-deliver latency;
// the credential lets every receiver check the publisher's right to the
// topic (authorize.go).
const (
	envelopeV1         = 1
	envelopeVersion    = 2
	envelopeV1Header   = 9
	envelopeHeaderSize = 12
	// maxToken is the longest token relayed (webrtc.MaxTokenSize).
	maxToken = 4096
	// maxCredential bounds a credential: a certificate is 73 bytes, a
	// token at most maxToken, a signed one 64 more.
	maxCredential = maxToken + ed25519.SignatureSize
)

// credKind says what a message's credential is.
type credKind uint8

const (
	credNone  credKind = 0
	credPeer  credKind = 1
	credToken credKind = 2
	// credBoundToken is a signature and a token bound to the signing key.
	credBoundToken credKind = 3
)

var errBadEnvelope = errors.New("overlay: malformed envelope")

// envelope is a decoded envelope. cred and payload alias the bytes it was
// decoded from.
type envelope struct {
	published time.Time
	kind      credKind
	cred      []byte
	payload   []byte
}

func encodeEnvelope(t time.Time, kind credKind, cred, payload []byte) []byte {
	b := make([]byte, envelopeHeaderSize+len(cred)+len(payload))
	b[0] = envelopeVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(t.UnixNano()))
	b[9] = byte(kind)
	binary.BigEndian.PutUint16(b[10:12], uint16(len(cred)))
	n := copy(b[envelopeHeaderSize:], cred)
	copy(b[envelopeHeaderSize+n:], payload)
	return b
}

// decodeEnvelope parses b strictly: a known version and credential kind, a
// credential length that fits and agrees with the kind.
func decodeEnvelope(b []byte) (envelope, error) {
	if len(b) < 1 {
		return envelope{}, fmt.Errorf("%w: empty", errBadEnvelope)
	}
	switch b[0] {
	case envelopeV1:
		if len(b) < envelopeV1Header {
			return envelope{}, fmt.Errorf("%w: %d bytes, header needs %d", errBadEnvelope, len(b), envelopeV1Header)
		}
		ns := int64(binary.BigEndian.Uint64(b[1:9]))
		return envelope{published: time.Unix(0, ns), payload: b[envelopeV1Header:]}, nil
	case envelopeVersion:
	default:
		return envelope{}, fmt.Errorf("%w: version %d, want %d", errBadEnvelope, b[0], envelopeVersion)
	}
	if len(b) < envelopeHeaderSize {
		return envelope{}, fmt.Errorf("%w: %d bytes, header needs %d", errBadEnvelope, len(b), envelopeHeaderSize)
	}
	e := envelope{published: time.Unix(0, int64(binary.BigEndian.Uint64(b[1:9]))), kind: credKind(b[9])}
	n := int(binary.BigEndian.Uint16(b[10:12]))
	switch {
	case e.kind > credBoundToken:
		return envelope{}, fmt.Errorf("%w: credential kind %d unknown", errBadEnvelope, e.kind)
	case n > maxCredential:
		return envelope{}, fmt.Errorf("%w: credential of %d bytes, at most %d", errBadEnvelope, n, maxCredential)
	case (e.kind == credNone) != (n == 0):
		return envelope{}, fmt.Errorf("%w: credential kind %d with %d bytes", errBadEnvelope, e.kind, n)
	case e.kind == credBoundToken && n <= ed25519.SignatureSize:
		return envelope{}, fmt.Errorf("%w: signed token credential of %d bytes", errBadEnvelope, n)
	case len(b) < envelopeHeaderSize+n:
		return envelope{}, fmt.Errorf("%w: credential of %d bytes, %d left", errBadEnvelope, n, len(b)-envelopeHeaderSize)
	}
	e.cred = b[envelopeHeaderSize : envelopeHeaderSize+n]
	e.payload = b[envelopeHeaderSize+n:]
	return e, nil
}
