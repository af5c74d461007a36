// Package browsersig is the one definition of what a browser signs when it
// publishes with a token bound to its key (webrtc.Claims.Key): the peer it
// is connected to checks the signature before relaying, and every peer that
// receives the message checks it again (overlay/browserproof.go). The JS
// client (webrtc/client/immense.js) builds the same bytes.
package browsersig

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// context separates a browser's message signature from any other use of
// its key.
const context = "immense/browser-publish/v1\x00"

// ErrBadSignature says a signature does not match the message and key.
var ErrBadSignature = errors.New("the browser's signature does not match the message and the key its token is bound to")

// Signed returns the bytes a browser signs to publish payload on topic at
// time t, in whole milliseconds since the Unix epoch (JavaScript's
// Date.now()):
//
//	"immense/browser-publish/v1" 0x00 topic 0x00 t (int64, big-endian) payload
func Signed(topic string, t time.Time, payload []byte) []byte {
	b := make([]byte, 0, len(context)+len(topic)+1+8+len(payload))
	b = append(b, context...)
	b = append(b, topic...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(t.UnixMilli()))
	return append(b, payload...)
}

// Sign signs a message with a browser's key: what the JS client does with
// WebCrypto, for Go clients and tests.
func Sign(key ed25519.PrivateKey, topic string, t time.Time, payload []byte) []byte {
	return ed25519.Sign(key, Signed(topic, t, payload))
}

// Verify checks sig over a message with the browser's key.
func Verify(key ed25519.PublicKey, topic string, t time.Time, payload, sig []byte) error {
	if len(key) != ed25519.PublicKeySize {
		return fmt.Errorf("browser key of %d bytes, want %d", len(key), ed25519.PublicKeySize)
	}
	if len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("browser signature of %d bytes, want %d", len(sig), ed25519.SignatureSize)
	}
	if !ed25519.Verify(key, Signed(topic, t, payload), sig) {
		return ErrBadSignature
	}
	return nil
}
