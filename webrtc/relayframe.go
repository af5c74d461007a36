package webrtc

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"math"
)

// Relay frames (docs/browser-protocol.md, section 8): how a peer makes
// browsers relay a topic to each other. They share the frame header and
// the reader of frame.go; their own fields live in relayFields.

const (
	frameRelayReady  frameType = 10
	frameRelayInvite frameType = 11
	frameAttach      frameType = 12
	frameSignal      frameType = 13
	frameRecord      frameType = 14
	frameFrom        frameType = 15
	frameHead        frameType = 16
	frameReport      frameType = 17
	frameHello       frameType = 18
	frameProbe       frameType = 19
)

// CodeRelayRefused: relays are off on this peer, or a relay frame names a
// link or topic the session is no end of.
const CodeRelayRefused ErrorCode = 15

func init() {
	errorCodeNames[CodeRelayRefused] = "relay-refused"
}

// Signal kinds of a SIGNAL frame.
const (
	signalOffer     = 1
	signalAnswer    = 2
	signalCandidate = 3
	signalClose     = 4
)

// ReportReason says why a child left its relay (REPORT frame).
type ReportReason uint8

// Report reasons.
const (
	ReportGone    ReportReason = 1 // the relay's link closed
	ReportStalled ReportReason = 2 // the relay fell behind the peer's HEAD
	ReportDropped ReportReason = 3 // a record's sequence jumped
	ReportForged  ReportReason = 4 // a record's signature failed
	ReportRefused ReportReason = 5 // the relay refused or could not open the link
)

func (r ReportReason) String() string {
	switch r {
	case ReportGone:
		return "gone"
	case ReportStalled:
		return "stalled"
	case ReportDropped:
		return "dropped"
	case ReportForged:
		return "forged"
	case ReportRefused:
		return "refused"
	}
	return "unknown"
}

const (
	// maxSignalData caps a SIGNAL's SDP or candidate: an offer with a few
	// candidates is 1-4 KiB.
	maxSignalData = 16 << 10
	// relayFlagMetered is bit 0 of RELAY-READY's flags.
	relayFlagMetered = 1
	// probeFlagLast is bit 0 of RELAY-PROBE's flags: the probe's last
	// chunk.
	probeFlagLast = 1
	// maxProbeChunk caps one RELAY-PROBE's padding, and maxProbeBytes a
	// probe's: four chunks.
	maxProbeChunk = 16 << 10
	maxProbeBytes = 4 * maxProbeChunk
	// probeNonceSize is the nonce a peer answers a probe's start with,
	// which begins each of its chunks.
	probeNonceSize = 16
	// maxProbeFrame is the size of a RELAY-PROBE of maxProbeChunk: the
	// peer's MaxFrameSize must take it.
	maxProbeFrame = headerLen + 4 + 1 + 4 + maxProbeChunk
)

// relayFields are the fields of the relay frames beyond those of frame.
type relayFields struct {
	seq         uint64 // record, from (after), head, attach (from), hello (after)
	link        uint32 // attach, signal, report, hello
	kind        uint8  // signal
	flags       uint8  // relay-ready, relay-probe
	upload      uint32 // relay-ready (measured), relay-invite (cap); bytes/s
	maxChildren uint8  // relay-ready, relay-invite
	key         []byte // relay-invite, attach: the peer's relay key
	reason      ReportReason
	evidence    []byte // report
	data        string // signal
	probe       []byte // relay-probe: padding (peer → client: the nonce)
}

func isRelayFrame(t frameType) bool { return t >= frameRelayReady && t <= frameProbe }

func relayFrameName(t frameType) string {
	return [...]string{"relay-ready", "relay-invite", "attach", "signal", "record", "from", "head", "report", "hello", "relay-probe"}[t-frameRelayReady]
}

// appendRelayFrame appends the body of a relay frame (the header is
// written already).
func appendRelayFrame(dst []byte, f *frame) ([]byte, error) {
	r := f.relay
	if r == nil {
		r = &relayFields{}
	}
	if err := ValidateTopic(f.topic); err != nil && f.typ != frameRelayReady && f.typ != frameProbe {
		return nil, err
	}
	switch f.typ {
	case frameRelayReady:
		if r.flags > relayFlagMetered {
			return nil, fmt.Errorf("%w: relay flags %d", ErrBadFrame, r.flags)
		}
		dst = binary.BigEndian.AppendUint32(dst, f.req)
		dst = append(dst, r.flags)
		dst = binary.BigEndian.AppendUint32(dst, r.upload)
		dst = append(dst, r.maxChildren)
	case frameRelayInvite, frameAttach:
		if len(r.key) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: relay key of %d bytes", ErrBadFrame, len(r.key))
		}
		dst = appendStr8(dst, f.topic)
		if f.typ == frameRelayInvite {
			dst = append(dst, r.maxChildren)
			dst = binary.BigEndian.AppendUint32(dst, r.upload)
		} else {
			dst = binary.BigEndian.AppendUint32(dst, r.link)
			dst = binary.BigEndian.AppendUint64(dst, r.seq)
		}
		dst = append(dst, r.key...)
	case frameSignal:
		if r.kind < signalOffer || r.kind > signalClose || len(r.data) > maxSignalData || r.link == 0 {
			return nil, fmt.Errorf("%w: signal kind %d, link %d, %d bytes", ErrBadFrame, r.kind, r.link, len(r.data))
		}
		dst = binary.BigEndian.AppendUint32(dst, r.link)
		dst = append(dst, r.kind)
		dst = appendStr8(dst, f.topic)
		dst = appendStr16(dst, r.data)
	case frameRecord:
		if len(f.id) > math.MaxUint16 || len(f.from) > math.MaxUint16 || len(f.sig) != ed25519.SignatureSize {
			return nil, fmt.Errorf("%w: record id, publisher or signature of the wrong size", ErrBadFrame)
		}
		dst = appendStr8(dst, f.topic)
		dst = binary.BigEndian.AppendUint64(dst, r.seq)
		dst = appendStr16(dst, f.id)
		dst = appendStr16(dst, f.from)
		dst = binary.BigEndian.AppendUint64(dst, uint64(f.time))
		dst = appendBytes32(dst, f.payload)
		dst = append(dst, f.sig...)
	case frameFrom:
		dst = binary.BigEndian.AppendUint32(dst, f.req)
		dst = appendStr8(dst, f.topic)
		dst = binary.BigEndian.AppendUint64(dst, r.seq)
	case frameHead:
		dst = appendStr8(dst, f.topic)
		dst = binary.BigEndian.AppendUint64(dst, r.seq)
	case frameReport:
		if r.reason < ReportGone || r.reason > ReportRefused {
			return nil, fmt.Errorf("%w: report reason %d", ErrBadFrame, r.reason)
		}
		dst = binary.BigEndian.AppendUint32(dst, f.req)
		dst = appendStr8(dst, f.topic)
		dst = binary.BigEndian.AppendUint32(dst, r.link)
		dst = append(dst, byte(r.reason))
		dst = appendBytes32(dst, r.evidence)
	case frameHello:
		dst = appendStr8(dst, f.topic)
		dst = binary.BigEndian.AppendUint32(dst, r.link)
		dst = binary.BigEndian.AppendUint64(dst, r.seq)
	case frameProbe:
		if r.flags > probeFlagLast || len(r.probe) > maxProbeChunk {
			return nil, fmt.Errorf("%w: probe flags %d, %d bytes", ErrBadFrame, r.flags, len(r.probe))
		}
		dst = binary.BigEndian.AppendUint32(dst, f.req)
		dst = append(dst, r.flags)
		dst = appendBytes32(dst, r.probe)
	}
	return dst, nil
}

// decodeRelayFrame reads the body of a relay frame from r; the caller
// checks r.err, trailing bytes and the topic.
func decodeRelayFrame(f *frame, r *reader) error {
	rf := &relayFields{}
	f.relay = rf
	switch f.typ {
	case frameRelayReady:
		f.req = r.u32()
		if fl := r.take(1); fl != nil {
			rf.flags = fl[0]
		}
		rf.upload = r.u32()
		if n := r.take(1); n != nil {
			rf.maxChildren = n[0]
		}
		if rf.flags > relayFlagMetered {
			return fmt.Errorf("%w: relay flags %d", ErrBadFrame, rf.flags)
		}
	case frameRelayInvite, frameAttach:
		f.topic = r.str8()
		if f.typ == frameRelayInvite {
			if n := r.take(1); n != nil {
				rf.maxChildren = n[0]
			}
			rf.upload = r.u32()
		} else {
			rf.link = r.u32()
			rf.seq = r.u64()
		}
		rf.key = r.take(ed25519.PublicKeySize)
	case frameSignal:
		rf.link = r.u32()
		if k := r.take(1); k != nil {
			rf.kind = k[0]
		}
		f.topic = r.str8()
		rf.data = r.str16()
		if r.err == nil && (rf.kind < signalOffer || rf.kind > signalClose || len(rf.data) > maxSignalData || rf.link == 0) {
			return fmt.Errorf("%w: signal kind %d, link %d, %d bytes", ErrBadFrame, rf.kind, rf.link, len(rf.data))
		}
	case frameRecord:
		f.topic = r.str8()
		rf.seq = r.u64()
		f.id = r.str16()
		f.from = r.str16()
		f.time = int64(r.u64())
		f.payload = r.bytes32()
		f.sig = r.take(ed25519.SignatureSize)
	case frameFrom:
		f.req = r.u32()
		f.topic = r.str8()
		rf.seq = r.u64()
	case frameHead:
		f.topic = r.str8()
		rf.seq = r.u64()
	case frameReport:
		f.req = r.u32()
		f.topic = r.str8()
		rf.link = r.u32()
		if k := r.take(1); k != nil {
			rf.reason = ReportReason(k[0])
		}
		rf.evidence = r.bytes32()
		if r.err == nil && (rf.reason < ReportGone || rf.reason > ReportRefused) {
			return fmt.Errorf("%w: report reason %d", ErrBadFrame, rf.reason)
		}
	case frameHello:
		f.topic = r.str8()
		rf.link = r.u32()
		rf.seq = r.u64()
	case frameProbe:
		f.req = r.u32()
		if fl := r.take(1); fl != nil {
			rf.flags = fl[0]
		}
		rf.probe = r.bytes32()
		if r.err == nil && (rf.flags > probeFlagLast || len(rf.probe) > maxProbeChunk) {
			return fmt.Errorf("%w: probe flags %d, %d bytes", ErrBadFrame, rf.flags, len(rf.probe))
		}
	}
	return nil
}
