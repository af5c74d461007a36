package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"
)

// The history protocol's messages (doc.go has the full description). A
// frame is a big-endian u32 length and that many bytes of body. The
// request and the answer's header start with the version and a type;
// each message after the header is one gossipsub message, protobuf as
// gossipsub sends it, with the publisher's signature.
const (
	historyVersion = 1

	historyRequest = 1
	historyAnswer  = 2

	// maxHistoryHead caps a request and an answer header (a topic of
	// 128 bytes and a peer id of at most 64).
	maxHistoryHead = 512
	// maxHistoryAnswer and maxHistoryAnswerBytes cap one answer: what a
	// requester reads and a server sends, whatever the windows hold.
	maxHistoryAnswer      = 1000
	maxHistoryAnswerBytes = 8 << 20
	// maxHistoryKey caps a public key carried in a message (an RSA key is
	// the largest libp2p allows; ours are ed25519, inlined in the id).
	maxHistoryKey = 1024
)

var errBadHistory = errors.New("overlay: malformed history message")

// historyReq asks for a topic's messages after since, at most max.
type historyReq struct {
	topic string
	since Position
	max   int
}

// historyHead starts an answer: the floor of what follows (every message
// of the answerer's window after it follows) and how many messages do.
type historyHead struct {
	floor Position
	count int
}

func appendPosition(b []byte, p Position) []byte {
	var ns int64
	if !p.Time.IsZero() {
		ns = p.Time.UnixNano()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(ns))
	b = binary.BigEndian.AppendUint64(b, p.Seq)
	b = append(b, byte(len(p.Publisher)))
	return append(b, p.Publisher...)
}

// readPosition parses a position from the front of b and returns the
// rest.
func readPosition(b []byte) (Position, []byte, error) {
	if len(b) < 17 {
		return Position{}, nil, fmt.Errorf("%w: position truncated", errBadHistory)
	}
	ns := int64(binary.BigEndian.Uint64(b))
	if ns < 0 {
		return Position{}, nil, fmt.Errorf("%w: negative time", errBadHistory)
	}
	p := Position{Seq: binary.BigEndian.Uint64(b[8:])}
	if ns > 0 {
		p.Time = time.Unix(0, ns)
	}
	n := int(b[16])
	b = b[17:]
	if len(b) < n {
		return Position{}, nil, fmt.Errorf("%w: publisher truncated", errBadHistory)
	}
	if n > 0 {
		id, err := peer.IDFromBytes(b[:n])
		if err != nil {
			return Position{}, nil, fmt.Errorf("%w: publisher: %v", errBadHistory, err)
		}
		p.Publisher = id
	}
	return p, b[n:], nil
}

func (q historyReq) encode() []byte {
	b := []byte{historyVersion, historyRequest, byte(len(q.topic))}
	b = append(b, q.topic...)
	b = appendPosition(b, q.since)
	return binary.BigEndian.AppendUint16(b, uint16(q.max))
}

// decodeHistoryReq parses a request strictly: a valid topic, a position,
// a count in [1, maxHistoryAnswer] and nothing more.
func decodeHistoryReq(b []byte) (historyReq, error) {
	if len(b) < 3 || b[0] != historyVersion || b[1] != historyRequest {
		return historyReq{}, fmt.Errorf("%w: not a version %d request", errBadHistory, historyVersion)
	}
	n := int(b[2])
	b = b[3:]
	if len(b) < n {
		return historyReq{}, fmt.Errorf("%w: topic truncated", errBadHistory)
	}
	q := historyReq{topic: string(b[:n])}
	if err := ValidateTopic(q.topic); err != nil {
		return historyReq{}, fmt.Errorf("%w: %v", errBadHistory, err)
	}
	var err error
	if q.since, b, err = readPosition(b[n:]); err != nil {
		return historyReq{}, err
	}
	if len(b) != 2 {
		return historyReq{}, fmt.Errorf("%w: %d bytes after the position, want 2", errBadHistory, len(b))
	}
	q.max = int(binary.BigEndian.Uint16(b))
	if q.max < 1 || q.max > maxHistoryAnswer {
		return historyReq{}, fmt.Errorf("%w: count %d out of [1, %d]", errBadHistory, q.max, maxHistoryAnswer)
	}
	return q, nil
}

func (h historyHead) encode() []byte {
	b := appendPosition([]byte{historyVersion, historyAnswer}, h.floor)
	return binary.BigEndian.AppendUint16(b, uint16(h.count))
}

func decodeHistoryHead(b []byte) (historyHead, error) {
	if len(b) < 2 || b[0] != historyVersion || b[1] != historyAnswer {
		return historyHead{}, fmt.Errorf("%w: not a version %d answer", errBadHistory, historyVersion)
	}
	floor, b, err := readPosition(b[2:])
	if err != nil {
		return historyHead{}, err
	}
	if len(b) != 2 {
		return historyHead{}, fmt.Errorf("%w: %d bytes after the floor, want 2", errBadHistory, len(b))
	}
	h := historyHead{floor: floor, count: int(binary.BigEndian.Uint16(b))}
	if h.count > maxHistoryAnswer {
		return historyHead{}, fmt.Errorf("%w: %d messages, at most %d", errBadHistory, h.count, maxHistoryAnswer)
	}
	return h, nil
}

// decodeHistoryMessage parses one message of an answer for the gossipsub
// topic wire and checks what gossipsub would: a publisher, an 8-byte
// sequence number, the topic, and the publisher's signature. The
// envelope and the right to publish are the caller's to check.
func decodeHistoryMessage(b []byte, wire string) (*pb.Message, Position, error) {
	var m pb.Message
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, Position{}, fmt.Errorf("%w: %v", errBadHistory, err)
	}
	if m.GetTopic() != wire {
		return nil, Position{}, fmt.Errorf("%w: topic %q, asked for %q", errBadHistory, m.GetTopic(), wire)
	}
	seq, ok := seqOf(m.Seqno)
	if !ok {
		return nil, Position{}, fmt.Errorf("%w: sequence number of %d bytes", errBadHistory, len(m.Seqno))
	}
	if len(m.Key) > maxHistoryKey {
		return nil, Position{}, fmt.Errorf("%w: key of %d bytes", errBadHistory, len(m.Key))
	}
	from, err := peer.IDFromBytes(m.From)
	if err != nil {
		return nil, Position{}, fmt.Errorf("%w: publisher: %v", errBadHistory, err)
	}
	env, err := decodeEnvelope(m.Data)
	if err != nil {
		return nil, Position{}, err
	}
	if err := verifySigned(&m, from); err != nil {
		return nil, Position{}, err
	}
	return &m, Position{Publisher: from, Seq: seq, Time: env.published}, nil
}

// verifySigned checks m's signature by from, as gossipsub's StrictSign
// does (go-libp2p-pubsub sign.go, which does not export it): over the
// message without signature and key, prefixed "libp2p-pubsub:".
func verifySigned(m *pb.Message, from peer.ID) error {
	var key crypto.PubKey
	var err error
	if m.Key == nil {
		key, err = from.ExtractPublicKey()
	} else if key, err = crypto.UnmarshalPublicKey(m.Key); err == nil && !from.MatchesPublicKey(key) {
		err = errors.New("key does not match the publisher")
	}
	if err != nil || key == nil {
		return fmt.Errorf("%w: no key for publisher %s: %v", errBadHistory, from, err)
	}
	unsigned := &pb.Message{From: m.From, Data: m.Data, Seqno: m.Seqno, Topic: m.Topic}
	b, err := proto.Marshal(unsigned)
	if err != nil {
		return fmt.Errorf("%w: %v", errBadHistory, err)
	}
	ok, err := key.Verify(append([]byte("libp2p-pubsub:"), b...), m.Signature)
	if err != nil || !ok {
		return fmt.Errorf("%w: bad signature of %s", errBadHistory, from)
	}
	return nil
}

// writeHistoryFrame and readHistoryFrame move one frame; readHistoryFrame
// refuses a body over max before reading it.
func writeHistoryFrame(w io.Writer, body []byte) error {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(body)), uint32(len(body)))
	_, err := w.Write(append(b, body...))
	return err
}

func readHistoryFrame(r io.Reader, max int) ([]byte, error) {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(l[:])
	if n > uint32(max) {
		return nil, fmt.Errorf("%w: frame of %d bytes, at most %d", errBadHistory, n, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}
