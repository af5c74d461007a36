package webrtc

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// FrameVersion is the version byte that starts every frame of this
// protocol. A peer refuses frames of any other version with an ERROR frame
// of code CodeUnsupportedVersion, so a future version can be detected
// rather than misparsed.
const FrameVersion = 1

// frameType is the second byte of a frame.
type frameType uint8

// Frame types. Subscribe, unsubscribe and publish go from client to
// server; the others from server to client. doc.go and
// docs/browser-protocol.md give the byte layout of each.
const (
	frameSubscribe   frameType = 1
	frameUnsubscribe frameType = 2
	framePublish     frameType = 3
	frameMessage     frameType = 4
	frameAck         frameType = 5
	frameError       frameType = 6
	frameBatch       frameType = 7
	// frameSignedPublish is a publish signed with the browser key its
	// token is bound to (Claims.Key).
	frameSignedPublish frameType = 8
	framePresence      frameType = 9
)

func (t frameType) String() string {
	switch t {
	case frameSubscribe:
		return "subscribe"
	case frameUnsubscribe:
		return "unsubscribe"
	case framePublish:
		return "publish"
	case frameMessage:
		return "message"
	case frameAck:
		return "ack"
	case frameError:
		return "error"
	case frameBatch:
		return "batch"
	case frameSignedPublish:
		return "signed-publish"
	case framePresence:
		return "presence"
	}
	if isRelayFrame(t) {
		return relayFrameName(t)
	}
	return "unknown"
}

// ErrorCode says why the server sent an ERROR frame.
type ErrorCode uint16

// Error codes of ERROR frames. Codes are stable: clients switch on them.
const (
	// CodeBadFrame: the frame did not decode (truncated, trailing bytes,
	// unknown type, bad length).
	CodeBadFrame ErrorCode = 1
	// CodeUnsupportedVersion: the frame's version byte is not FrameVersion.
	CodeUnsupportedVersion ErrorCode = 2
	// CodeFrameTooLarge: the frame is longer than the server's maximum.
	CodeFrameTooLarge ErrorCode = 3
	// CodeInvalidTopic: the topic breaks the rules of ValidateTopic.
	CodeInvalidTopic ErrorCode = 4
	// CodeForbidden: the session's token does not grant this topic.
	CodeForbidden ErrorCode = 5
	// CodeTooManySubscriptions: the session follows the maximum number of
	// topics already.
	CodeTooManySubscriptions ErrorCode = 6
	// CodeRateLimited: the session publishes faster than allowed.
	CodeRateLimited ErrorCode = 7
	// CodePublishFailed: the overlay refused or failed the publish.
	CodePublishFailed ErrorCode = 8
	// CodeUnexpectedFrame: a server-to-client frame type came from a client.
	CodeUnexpectedFrame ErrorCode = 9
	// CodeSubscriptionLost: the overlay ended the subscription to the
	// frame's topic; the client may subscribe again.
	CodeSubscriptionLost ErrorCode = 10
	// CodeTokenExpired: the session's token expired; the server closes the
	// session after this frame.
	CodeTokenExpired ErrorCode = 11
	// CodeMessagesDropped: the session did not keep up and the server
	// dropped messages for it (the reason says how many).
	CodeMessagesDropped ErrorCode = 12
	// CodeInternal: the server failed for reasons of its own.
	CodeInternal ErrorCode = 13
	// CodeGap: a subscription resumed from a position older than the
	// topic's history window (or on a peer that keeps none): messages
	// after that position were lost. Sent unsolicited, before the
	// messages the window still holds; the subscription goes on.
	CodeGap ErrorCode = 14
)

var errorCodeNames = map[ErrorCode]string{
	CodeBadFrame:             "bad-frame",
	CodeUnsupportedVersion:   "unsupported-version",
	CodeFrameTooLarge:        "frame-too-large",
	CodeInvalidTopic:         "invalid-topic",
	CodeForbidden:            "forbidden",
	CodeTooManySubscriptions: "too-many-subscriptions",
	CodeRateLimited:          "rate-limited",
	CodePublishFailed:        "publish-failed",
	CodeUnexpectedFrame:      "unexpected-frame",
	CodeSubscriptionLost:     "subscription-lost",
	CodeTokenExpired:         "token-expired",
	CodeMessagesDropped:      "messages-dropped",
	CodeInternal:             "internal",
	CodeGap:                  "gap",
}

func (c ErrorCode) String() string {
	if s, ok := errorCodeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code-%d", uint16(c))
}

// ServerError is an ERROR frame received by a Client.
type ServerError struct {
	Code ErrorCode
	// Topic is the topic the error concerns, if any.
	Topic string
	// Reason is a human-readable explanation.
	Reason string
}

func (e *ServerError) Error() string {
	if e.Topic != "" {
		return fmt.Sprintf("webrtc server: %s (topic %q): %s", e.Code, e.Topic, e.Reason)
	}
	return fmt.Sprintf("webrtc server: %s: %s", e.Code, e.Reason)
}

// frame is one decoded frame. Which fields are meaningful depends on typ.
type frame struct {
	typ frameType
	// req correlates a client request with its ACK or ERROR. Zero in a
	// request means "no ACK wanted"; zero in an ERROR means unsolicited.
	req     uint32
	topic   string
	payload []byte    // publish, message
	sig     []byte    // signed-publish: Ed25519 signature of the message (internal/browsersig)
	id      string    // message
	from    string    // message
	time    int64     // message: microseconds since the Unix epoch, 0 if unknown; signed-publish: milliseconds
	since   string    // subscribe: resume after this position, "" for live only
	joined  bool      // presence: a join (else a leave); id is the member, from its peer
	code    ErrorCode // error
	reason  string    // error
	batch   [][]byte  // batch to encode: the encoded inner frames
	items   []frame   // batch decoded: the inner frames

	relay *relayFields // relay frames (relayframe.go)
}

// Fixed parts of the encoding.
const (
	headerLen = 2 // version, type
	// maxBatchCount is the most frames one BATCH may carry (its count is a
	// uint16).
	maxBatchCount = math.MaxUint16
	// batchOverhead is the size of a BATCH frame's header and count.
	batchOverhead = headerLen + 2
	// batchItemOverhead is the length prefix of each frame in a BATCH.
	batchItemOverhead = 4
	// maxSince caps a SUBSCRIBE's resume position (a position's text is
	// under 160 bytes).
	maxSince = 256
)

// appendFrame appends the encoding of f to dst. It checks what the decoder
// checks, so that nothing this package sends can be refused by a peer
// running the same code.
func appendFrame(dst []byte, f *frame) ([]byte, error) {
	dst = append(dst, FrameVersion, byte(f.typ))
	switch f.typ {
	case frameSubscribe, frameUnsubscribe:
		if err := ValidateTopic(f.topic); err != nil {
			return nil, err
		}
		if len(f.since) > maxSince || (f.since != "" && f.typ != frameSubscribe) {
			return nil, fmt.Errorf("%w: resume position of %d bytes", ErrBadFrame, len(f.since))
		}
		dst = binary.BigEndian.AppendUint32(dst, f.req)
		dst = appendStr8(dst, f.topic)
		if f.since != "" {
			dst = appendStr16(dst, f.since)
		}
	case framePublish:
		if err := ValidateTopic(f.topic); err != nil {
			return nil, err
		}
		dst = binary.BigEndian.AppendUint32(dst, f.req)
		dst = appendStr8(dst, f.topic)
		dst = appendBytes32(dst, f.payload)
	case frameSignedPublish:
		if err := ValidateTopic(f.topic); err != nil {
			return nil, err
		}
		if len(f.sig) != ed25519.SignatureSize {
			return nil, fmt.Errorf("%w: signature of %d bytes, want %d", ErrBadFrame, len(f.sig), ed25519.SignatureSize)
		}
		dst = binary.BigEndian.AppendUint32(dst, f.req)
		dst = appendStr8(dst, f.topic)
		dst = binary.BigEndian.AppendUint64(dst, uint64(f.time))
		dst = append(dst, f.sig...)
		dst = appendBytes32(dst, f.payload)
	case frameMessage:
		if err := ValidateTopic(f.topic); err != nil {
			return nil, err
		}
		if len(f.id) > math.MaxUint16 || len(f.from) > math.MaxUint16 {
			return nil, fmt.Errorf("%w: message id or publisher longer than %d bytes", ErrBadFrame, math.MaxUint16)
		}
		dst = appendStr8(dst, f.topic)
		dst = appendStr16(dst, f.id)
		dst = appendStr16(dst, f.from)
		dst = binary.BigEndian.AppendUint64(dst, uint64(f.time))
		dst = appendBytes32(dst, f.payload)
	case framePresence:
		if err := ValidateTopic(f.topic); err != nil {
			return nil, err
		}
		if len(f.id) > math.MaxUint16 || len(f.from) > math.MaxUint16 {
			return nil, fmt.Errorf("%w: member or peer longer than %d bytes", ErrBadFrame, math.MaxUint16)
		}
		dst = appendStr8(dst, f.topic)
		dst = append(dst, boolByte(f.joined))
		dst = appendStr16(dst, f.id)
		dst = appendStr16(dst, f.from)
	case frameAck:
		dst = binary.BigEndian.AppendUint32(dst, f.req)
	case frameError:
		if f.topic != "" {
			if err := ValidateTopic(f.topic); err != nil {
				return nil, err
			}
		}
		reason := f.reason
		if len(reason) > math.MaxUint16 {
			reason = reason[:math.MaxUint16]
		}
		dst = binary.BigEndian.AppendUint32(dst, f.req)
		dst = binary.BigEndian.AppendUint16(dst, uint16(f.code))
		dst = appendStr8(dst, f.topic)
		dst = appendStr16(dst, reason)
	case frameBatch:
		if len(f.batch) == 0 || len(f.batch) > maxBatchCount {
			return nil, fmt.Errorf("%w: batch of %d frames", ErrBadFrame, len(f.batch))
		}
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(f.batch)))
		for _, inner := range f.batch {
			if len(inner) < headerLen || inner[1] == byte(frameBatch) {
				return nil, fmt.Errorf("%w: batch item is not a frame", ErrBadFrame)
			}
			dst = appendBytes32(dst, inner)
		}
	default:
		if isRelayFrame(f.typ) {
			return appendRelayFrame(dst, f)
		}
		return nil, fmt.Errorf("%w: unknown frame type %d", ErrBadFrame, f.typ)
	}
	return dst, nil
}

// encodeMessage encodes m as a MESSAGE frame.
func encodeMessage(m *Message) ([]byte, error) {
	from := m.From
	if m.Sender != "" {
		from = m.Sender
	}
	f := frame{typ: frameMessage, topic: m.Topic, id: m.ID, from: from, time: toMicros(m.Time), payload: m.Data}
	return appendFrame(make([]byte, 0, 2+1+len(m.Topic)+2+len(m.ID)+2+len(from)+8+4+len(m.Data)), &f)
}

// decodeFrame decodes b, which must hold exactly one frame of at most max
// bytes. Payloads alias b (strings are copies). On error the returned frame still
// carries the type and request ID when they could be read, so that the
// error reply can be correlated.
func decodeFrame(b []byte, max int) (frame, error) {
	return decodeFrameDepth(b, max, true)
}

func decodeFrameDepth(b []byte, max int, allowBatch bool) (frame, error) {
	var f frame
	if len(b) > max {
		return f, fmt.Errorf("%w: %d bytes, at most %d", ErrFrameTooLarge, len(b), max)
	}
	if len(b) < headerLen {
		return f, fmt.Errorf("%w: %d bytes, shorter than a header", ErrBadFrame, len(b))
	}
	f.typ = frameType(b[1])
	r := reader{b: b[headerLen:]}
	switch f.typ {
	case frameSubscribe, frameUnsubscribe, framePublish, frameSignedPublish, frameAck, frameError, frameRelayReady, frameFrom, frameReport, frameProbe:
		// The request ID comes first, so even a frame of another version
		// whose layout we cannot know gets a correlated reply.
		if len(r.b) >= 4 {
			f.req = binary.BigEndian.Uint32(r.b)
		}
	}
	if b[0] != FrameVersion {
		return f, fmt.Errorf("%w: version %d, this peer speaks %d", ErrUnsupportedVersion, b[0], FrameVersion)
	}
	switch f.typ {
	case frameSubscribe, frameUnsubscribe:
		f.req = r.u32()
		f.topic = r.str8()
		if f.typ == frameSubscribe && r.err == nil && len(r.b) > 0 {
			// Optional: a position to resume after (resume.go).
			if f.since = r.str16(); r.err == nil && (f.since == "" || len(f.since) > maxSince) {
				return f, fmt.Errorf("%w: resume position of %d bytes, want 1 to %d", ErrBadFrame, len(f.since), maxSince)
			}
		}
	case framePublish:
		f.req = r.u32()
		f.topic = r.str8()
		f.payload = r.bytes32()
	case frameSignedPublish:
		f.req = r.u32()
		f.topic = r.str8()
		f.time = int64(r.u64())
		f.sig = r.take(ed25519.SignatureSize)
		f.payload = r.bytes32()
	case frameMessage:
		f.topic = r.str8()
		f.id = r.str16()
		f.from = r.str16()
		f.time = int64(r.u64())
		f.payload = r.bytes32()
	case framePresence:
		f.topic = r.str8()
		switch j := r.take(1); {
		case j == nil:
		case j[0] > 1:
			return f, fmt.Errorf("%w: presence flag %d", ErrBadFrame, j[0])
		default:
			f.joined = j[0] == 1
		}
		f.id = r.str16()
		f.from = r.str16()
	case frameAck:
		f.req = r.u32()
	case frameError:
		f.req = r.u32()
		f.code = ErrorCode(r.u16())
		f.topic = r.str8()
		f.reason = r.str16()
	case frameBatch:
		if !allowBatch {
			return f, fmt.Errorf("%w: batch inside a batch", ErrBadFrame)
		}
		n := int(r.u16())
		if r.err == nil && n == 0 {
			return f, fmt.Errorf("%w: empty batch", ErrBadFrame)
		}
		// Each item needs at least its length prefix and a header, which
		// bounds the allocation by the frame's size, not by its claim.
		if r.err == nil && n > len(r.b)/(batchItemOverhead+headerLen) {
			return f, fmt.Errorf("%w: batch claims %d frames in %d bytes", ErrBadFrame, n, len(r.b))
		}
		f.items = make([]frame, 0, n)
		for i := 0; i < n && r.err == nil; i++ {
			inner := r.bytes32()
			if r.err != nil {
				break
			}
			item, err := decodeFrameDepth(inner, max, false)
			if err != nil {
				return f, fmt.Errorf("batch item %d: %w", i, err)
			}
			f.items = append(f.items, item)
		}
	default:
		if !isRelayFrame(f.typ) {
			return f, fmt.Errorf("%w: unknown frame type %d", ErrBadFrame, b[1])
		}
		if err := decodeRelayFrame(&f, &r); err != nil {
			return f, err
		}
	}
	if r.err != nil {
		return f, fmt.Errorf("%w: %s frame: %v", ErrBadFrame, f.typ, r.err)
	}
	if len(r.b) != 0 {
		return f, fmt.Errorf("%w: %s frame: %d trailing bytes", ErrBadFrame, f.typ, len(r.b))
	}
	switch f.typ {
	case frameSubscribe, frameUnsubscribe, framePublish, frameSignedPublish, frameMessage, framePresence,
		frameRelayInvite, frameAttach, frameSignal, frameRecord, frameFrom, frameHead, frameReport, frameHello:
		if err := ValidateTopic(f.topic); err != nil {
			return f, err
		}
	case frameError:
		if f.topic != "" {
			if err := ValidateTopic(f.topic); err != nil {
				return f, err
			}
		}
	}
	return f, nil
}

// codeFor maps a decoding error to the code of the ERROR frame answering it.
func codeFor(err error) ErrorCode {
	switch {
	case errors.Is(err, ErrUnsupportedVersion):
		return CodeUnsupportedVersion
	case errors.Is(err, ErrFrameTooLarge):
		return CodeFrameTooLarge
	case errors.Is(err, ErrInvalidTopic):
		return CodeInvalidTopic
	}
	return CodeBadFrame
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

func toMicros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us)
}

func appendStr8(dst []byte, s string) []byte {
	return append(append(dst, byte(len(s))), s...)
}

func appendStr16(dst []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(dst, uint16(len(s))), s...)
}

func appendBytes32(dst, b []byte) []byte {
	return append(binary.BigEndian.AppendUint32(dst, uint32(len(b))), b...)
}

// reader consumes big-endian fields, remembering the first error so that a
// decoder can read a whole layout and check once.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = fmt.Errorf("truncated: need %d bytes, have %d", n, len(r.b))
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *reader) str8() string {
	n := r.take(1)
	if n == nil {
		return ""
	}
	return string(r.take(int(n[0])))
}

func (r *reader) str16() string {
	return string(r.take(int(r.u16())))
}

func (r *reader) bytes32() []byte {
	n := r.u32()
	if r.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(r.b)) {
		r.err = fmt.Errorf("truncated: length %d, have %d bytes", n, len(r.b))
		return nil
	}
	return r.take(int(n))
}
