package webrtc

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
)

// Records: the messages of a relayed topic as the peer signs them, so
// that a child verifies each one without trusting the relay that
// forwarded it (docs/browser-protocol.md, section 8). immense.js builds
// the same bytes.

// recordContext separates a record signature from any other use of the
// peer's relay key.
const recordContext = "immense/relay-record/v1\x00"

// errRecordSignature says a record's signature does not match the peer's
// relay key: the record was forged or altered on its way.
var errRecordSignature = errors.New("record signature does not match the peer's relay key")

// recordSigned returns the bytes the peer signs for a record:
//
//	"immense/relay-record/v1" 0x00 topic 0x00 seq (u64) len(id) (u16) id
//	len(from) (u16) from time (i64 µs) payload
func recordSigned(topic string, seq uint64, id, from string, micros int64, payload []byte) []byte {
	b := make([]byte, 0, len(recordContext)+len(topic)+1+8+2+len(id)+2+len(from)+8+len(payload))
	b = append(b, recordContext...)
	b = append(b, topic...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = appendStr16(b, id)
	b = appendStr16(b, from)
	b = binary.BigEndian.AppendUint64(b, uint64(micros))
	return append(b, payload...)
}

// signRecord returns the RECORD frame of message m of topic at seq.
func signRecord(key ed25519.PrivateKey, seq uint64, m *Message) ([]byte, error) {
	from := m.From
	if m.Sender != "" {
		from = m.Sender
	}
	us := toMicros(m.Time)
	sig := ed25519.Sign(key, recordSigned(m.Topic, seq, m.ID, from, us, m.Data))
	return appendFrame(nil, &frame{typ: frameRecord, topic: m.Topic, id: m.ID, from: from, time: us,
		payload: m.Data, sig: sig, relay: &relayFields{seq: seq}})
}

// verifyRecord checks a decoded RECORD frame against the peer's key.
func verifyRecord(key ed25519.PublicKey, f *frame) error {
	if len(key) != ed25519.PublicKeySize || f.typ != frameRecord || f.relay == nil {
		return errRecordSignature
	}
	if !ed25519.Verify(key, recordSigned(f.topic, f.relay.seq, f.id, f.from, f.time, f.payload), f.sig) {
		return errRecordSignature
	}
	return nil
}
