package webrtc

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	pion "github.com/pion/webrtc/v4"
	"golang.org/x/time/rate"
)

// The Go client's part in relays (docs/browser-protocol.md, section 8):
// every Client can be fed a topic by a relay (a child), and a Client
// dialed WithRelay can relay topics its peer invites it to.

// relayLabel is the data channel between two browsers.
const relayLabel = "immense-relay"

const (
	// clientBacklog is how many records a relay keeps per topic to resume
	// a child that attaches from an earlier position.
	clientBacklog = 1024
	// linkTimeout bounds the opening of a link to a relay; a child then
	// reports it refused and is moved.
	linkTimeout = 10 * time.Second
	// stallHeads is how many HEAD intervals in a row a child behind the
	// peer's HEAD gets nothing before it reports its relay stalled: more
	// than one, so that an SCTP retransmission timeout (1 s and more) on
	// a loaded link is not taken for a stall.
	stallHeads = 2
	// probeChunks is how many RELAY-PROBE frames of maxProbeChunk bytes
	// an upload probe sends: 64 KiB, maxProbeBytes, the most a peer takes.
	probeChunks = 4
	// probeTimeout bounds an upload probe: a peer that predates probes
	// never answers the first frame with a request ID.
	probeTimeout = 10 * time.Second
	// maxChildBuffered is how far a child may fall behind (bytes not yet
	// acknowledged) before its relay closes its link.
	maxChildBuffered = 1 << 20
)

// RelayOptions is a user's consent to relay topics for other browsers of
// the same peer, and what the client can spare.
type RelayOptions struct {
	// MaxChildren is the most browsers this client feeds per topic (at
	// most 255).
	MaxChildren int
	// Upload is the upload, in bytes/s, the client can spare; it never
	// forwards faster than the smaller of this and its peer's cap.
	Upload uint32
	// Metered says the link is metered (mobile data): the peer records it
	// and never invites the client.
	Metered bool
}

// WithRelay opts the client in to relaying (the user's consent; the peer
// must allow relays too).
func WithRelay(o RelayOptions) ClientOption {
	return func(c *clientConfig) { c.relay = &o }
}

// relayBehaviour makes a relay misbehave, for tests of detection.
type relayBehaviour int

const (
	relayHonest relayBehaviour = iota
	relayForges                // alters each forwarded payload
	relayStalls                // forwards nothing
)

// clientRelays is a Client's relay state.
type clientRelays struct {
	c       *Client
	opts    *RelayOptions // nil: never relays
	misdoer relayBehaviour
	// probePace spaces the probe's chunks, for tests: a slow link.
	probePace  time.Duration
	abortStart context.CancelCauseFunc // ends the probe's start (onUncorrelated)

	forwarded atomic.Int64 // bytes forwarded to children

	mu      sync.Mutex
	topics  map[string]*relayTopic
	links   []*pion.PeerConnection // every link, closed with the client
	closed  bool
	pending sync.WaitGroup // link set-ups under way
}

// relayTopic is one topic fed through the relay protocol.
type relayTopic struct {
	key        ed25519.PublicKey
	last       uint64    // last sequence accepted (0: none yet)
	prevHead   uint64    // the last HEAD
	lastAtHead uint64    // last when it came
	stuck      int       // HEAD intervals without progress while behind
	feed       *feedLink // our relay; nil: the peer

	relaying    bool
	maxChildren int
	limiter     *rate.Limiter // the upload cap
	backlog     []record
	children    map[uint32]*childLink
}

// feedLink is a link to our relay.
type feedLink struct {
	id   uint32
	pc   *pion.PeerConnection
	open bool // HELLO sent: from then on it is judged by the HEADs
	got  bool // a record came through it
}

// childLink is a link to a child.
type childLink struct {
	pc    *pion.PeerConnection
	dc    *pion.DataChannel
	ready bool // HELLO received, backlog sent
}

func newClientRelays(c *Client, cfg *clientConfig) *clientRelays {
	return &clientRelays{c: c, opts: cfg.relay, misdoer: cfg.misdoer, probePace: cfg.probePace, topics: make(map[string]*relayTopic)}
}

// ready tells the peer the client may relay (Dial calls it), after an
// upload probe the peer measures it by.
func (r *clientRelays) ready(ctx context.Context) error {
	o := r.opts
	if o == nil {
		return nil
	}
	if err := r.probe(ctx); err != nil {
		// The peer will not invite it (or predates probes and needs
		// none): the READY still says the user agreed. A peer without
		// relays refuses the READY too, which Dial logs.
		var se *ServerError
		if errors.As(err, &se) && se.Code == CodeRelayRefused {
			r.c.log.Debug("upload probe refused", "err", err)
		} else {
			r.c.log.Info("upload probe failed", "err", err)
		}
	}
	var flags uint8
	if o.Metered {
		flags = relayFlagMetered
	}
	return r.c.request(ctx, &frame{typ: frameRelayReady, relay: &relayFields{flags: flags, upload: o.Upload, maxChildren: uint8(min(max(o.MaxChildren, 0), 255))}})
}

// probe runs the upload probe: a RELAY-PROBE asking for it, answered by
// the peer's nonce; then probeChunks chunks of maxProbeChunk bytes that
// begin with it, back to back, the last one acknowledged. The peer
// measures the client's upload by their arrival; a client that does not
// probe is never invited.
func (r *clientRelays) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	start, startDone := context.WithCancelCause(ctx)
	defer startDone(nil)
	r.mu.Lock()
	r.abortStart = startDone
	r.mu.Unlock()
	nonce, err := r.c.requestReply(start, &frame{typ: frameProbe, relay: &relayFields{}})
	r.mu.Lock()
	r.abortStart = nil
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("upload probe: %w", cmp.Or(context.Cause(start), err))
	}
	if nonce == nil || len(nonce.relay.probe) != probeNonceSize {
		return errors.New("upload probe: the peer answered without a nonce")
	}
	pad := make([]byte, maxProbeChunk)
	copy(pad, nonce.relay.probe)
	pace := func() error { // a slow link, for tests
		if r.probePace <= 0 {
			return nil
		}
		t := time.NewTimer(r.probePace)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	for range probeChunks - 1 {
		if err := pace(); err != nil {
			return err
		}
		b, err := appendFrame(nil, &frame{typ: frameProbe, relay: &relayFields{probe: pad}})
		if err != nil {
			return err
		}
		if err := r.c.sendRaw(b); err != nil {
			return fmt.Errorf("upload probe: %w", err)
		}
	}
	if err := pace(); err != nil {
		return err
	}
	if err := r.c.request(ctx, &frame{typ: frameProbe, relay: &relayFields{flags: probeFlagLast, probe: pad}}); err != nil {
		return fmt.Errorf("upload probe: %w", err)
	}
	return nil
}

// onUncorrelated takes an ERROR without a request ID: a peer that
// predates probes cannot read a RELAY-PROBE's ID and answers a bad-frame
// ERROR without one, which ends a probe's start at once rather than at
// probeTimeout.
func (r *clientRelays) onUncorrelated(err *ServerError) {
	if err.Code != CodeBadFrame {
		return
	}
	r.mu.Lock()
	abort := r.abortStart
	r.mu.Unlock()
	if abort != nil {
		abort(err)
	}
}

func (r *clientRelays) topic(name string) *relayTopic {
	t := r.topics[name]
	if t == nil {
		t = &relayTopic{children: make(map[uint32]*childLink)}
		r.topics[name] = t
	}
	return t
}

// onFrame handles a relay frame from the peer, on the read goroutine.
func (r *clientRelays) onFrame(f *frame) {
	rf := f.relay
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	t := r.topic(f.topic)
	switch f.typ {
	case frameRelayInvite:
		if r.opts == nil {
			return // never asked for
		}
		t.key = rf.key
		t.relaying = true
		t.maxChildren = min(int(rf.maxChildren), r.opts.MaxChildren)
		// A second's worth of burst; forward raises it to a record that
		// is larger, which could never pass otherwise.
		up := min(rf.upload, r.opts.Upload)
		t.limiter = rate.NewLimiter(rate.Limit(up), int(up))
	case frameAttach:
		t.key = rf.key
		t.last = max(t.last, rf.seq)
		t.prevHead = 0
		r.dropFeed(t)
		if rf.link == 0 {
			r.send(&frame{typ: frameFrom, topic: f.topic, relay: &relayFields{seq: t.last}})
			return
		}
		t.feed = &feedLink{id: rf.link}
		r.pending.Add(1)
		go r.openLink(f.topic, t.feed)
	case frameSignal:
		r.onSignal(f.topic, t, rf)
	case frameRecord:
		r.accept(f.topic, t, f, 0)
	case frameHead:
		// Stalled: behind the previous HEAD and nothing came since. A
		// relay that is slow but moving is left alone.
		switch {
		case t.feed == nil || !t.feed.open:
			t.prevHead = 0 // not judged before the link is open
			return
		case t.prevHead > 0 && t.last < t.prevHead && t.last == t.lastAtHead:
			if t.stuck++; t.stuck >= stallHeads {
				r.reportFeed(f.topic, t, ReportStalled, nil)
				t.stuck = 0
			}
		default:
			t.stuck = 0
		}
		t.prevHead, t.lastAtHead = rf.seq, t.last
	}
}

// onSignal handles an answer for our feed, or an offer from a would-be
// child. r.mu is held.
func (r *clientRelays) onSignal(topic string, t *relayTopic, rf *relayFields) {
	switch rf.kind {
	case signalAnswer:
		if t.feed != nil && t.feed.id == rf.link && t.feed.pc != nil {
			if err := t.feed.pc.SetRemoteDescription(pion.SessionDescription{Type: pion.SDPTypeAnswer, SDP: rf.data}); err != nil {
				r.reportFeed(topic, t, ReportRefused, nil)
			}
		}
	case signalClose:
		if t.feed != nil && t.feed.id == rf.link {
			r.reportFeed(topic, t, ReportRefused, nil)
		}
	case signalOffer:
		if !t.relaying || len(t.children) >= t.maxChildren {
			r.send(&frame{typ: frameSignal, topic: topic, relay: &relayFields{link: rf.link, kind: signalClose}})
			return
		}
		r.pending.Add(1)
		go r.answerLink(topic, rf.link, rf.data)
	}
}

// send sends a frame that wants no answer (the read goroutine must not
// wait for one).
func (r *clientRelays) send(f *frame) {
	b, err := appendFrame(nil, f)
	if err == nil {
		err = r.c.dc.Send(b)
	}
	if err != nil {
		r.c.log.Debug("relay frame not sent", "type", f.typ, "err", err)
	}
}

// reportFeed reports our relay to the peer and leaves it; the peer
// answers with an ATTACH. r.mu is held.
func (r *clientRelays) reportFeed(topic string, t *relayTopic, why ReportReason, evidence []byte) {
	if t.feed == nil {
		return
	}
	r.send(&frame{typ: frameReport, topic: topic, relay: &relayFields{link: t.feed.id, reason: why, evidence: evidence}})
	r.dropFeed(t)
}

// dropFeed closes the link to our relay. r.mu is held.
func (r *clientRelays) dropFeed(t *relayTopic) {
	if t.feed != nil && t.feed.pc != nil {
		r.goClose(t.feed.pc)
	}
	t.feed = nil
}

// accept checks a record from the peer (link 0) or our relay and, if it
// is the next one, delivers and forwards it. r.mu is held.
func (r *clientRelays) accept(topic string, t *relayTopic, f *frame, link uint32) {
	if link != 0 && (t.feed == nil || t.feed.id != link) {
		return // from a link we left
	}
	if f.topic != topic || verifyRecord(t.key, f) != nil {
		if link != 0 {
			evidence, _ := appendFrame(nil, f)
			r.reportFeed(topic, t, ReportForged, evidence)
		}
		return
	}
	seq := f.relay.seq
	switch {
	case t.last != 0 && seq <= t.last:
		return // already had it
	case t.last != 0 && seq > t.last+1 && link != 0:
		// A jump on a link's first record is a relay whose backlog does
		// not reach back to us (it relays since recently), not a drop.
		why := ReportDropped
		if !t.feed.got {
			why = ReportRefused
		}
		r.reportFeed(topic, t, why, nil)
		return
	}
	if link != 0 {
		t.feed.got = true
	}
	t.last = seq
	// Children first: an app slow to read its messages must not hold up
	// the browsers this one feeds (they would report it stalled).
	if t.relaying {
		if b, err := appendFrame(nil, f); err == nil {
			t.backlog = append(t.backlog, record{seq, b})
			if len(t.backlog) > 2*clientBacklog {
				t.backlog = append(t.backlog[:0:0], t.backlog[len(t.backlog)-clientBacklog:]...)
			}
			r.forward(t, b)
		}
	}
	m := Message{Topic: topic, ID: f.id, From: f.from, Time: fromMicros(f.time), Data: f.payload}
	select {
	case r.c.msgs <- m:
	case <-r.c.done:
	}
}

// forward sends one record to every ready child, within the upload cap.
// r.mu is held.
func (r *clientRelays) forward(t *relayTopic, b []byte) {
	if b = r.tamper(b); b == nil {
		return
	}
	for id, ch := range t.children {
		if !ch.ready {
			continue
		}
		if !t.allow(len(b)) || ch.dc.BufferedAmount() > maxChildBuffered {
			// Over the cap, or a child that does not keep up: close its
			// link rather than exceed; it reports us and is moved.
			delete(t.children, id)
			r.goClose(ch.pc)
			continue
		}
		if ch.dc.Send(b) == nil {
			r.forwarded.Add(int64(len(b)))
		}
	}
}

// allow takes n bytes from the upload cap. r.mu is held.
func (t *relayTopic) allow(n int) bool {
	if n > t.limiter.Burst() {
		t.limiter.SetBurst(n)
	}
	return t.limiter.AllowN(time.Now(), n)
}

// tamper is what a misbehaving relay (in tests) makes of a record it
// forwards: nil to drop it.
func (r *clientRelays) tamper(b []byte) []byte {
	switch r.misdoer {
	case relayStalls:
		return nil
	case relayForges:
		b = append([]byte(nil), b...)
		b[len(b)-ed25519.SignatureSize-1] ^= 0xff // the payload's last byte
	}
	return b
}

// openLink connects to the relay of link l (as the offerer) and sends
// HELLO once the channel opens.
func (r *clientRelays) openLink(topic string, l *feedLink) {
	defer r.pending.Done()
	fail := func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if t := r.topics[topic]; t != nil && t.feed == l {
			r.reportFeed(topic, t, ReportRefused, nil)
		}
	}
	pc, err := r.newPC()
	if err != nil {
		fail()
		return
	}
	dc, err := pc.CreateDataChannel(relayLabel, nil)
	if err != nil {
		fail()
		return
	}
	opened := make(chan struct{})
	dc.OnOpen(func() {
		close(opened)
		r.mu.Lock()
		defer r.mu.Unlock()
		t := r.topics[topic]
		if t == nil || t.feed != l {
			return
		}
		b, err := appendFrame(nil, &frame{typ: frameHello, topic: topic, relay: &relayFields{link: l.id, seq: t.last}})
		if err == nil && dc.Send(b) == nil {
			l.open = true
		}
	})
	dc.OnMessage(func(msg pion.DataChannelMessage) { r.onLinkMessage(topic, l, msg.Data) })
	dc.OnClose(func() { r.linkLost(topic, l) })
	pc.OnConnectionStateChange(func(st pion.PeerConnectionState) {
		if st == pion.PeerConnectionStateFailed || st == pion.PeerConnectionStateClosed {
			r.linkLost(topic, l)
		}
	})
	r.mu.Lock()
	t := r.topics[topic]
	if t == nil || t.feed != l {
		r.mu.Unlock()
		_ = pc.Close()
		return
	}
	l.pc = pc
	r.mu.Unlock()
	sdp, err := r.describe(pc, func() (pion.SessionDescription, error) { return pc.CreateOffer(nil) })
	if err != nil {
		fail()
		return
	}
	r.mu.Lock()
	r.send(&frame{typ: frameSignal, topic: topic, relay: &relayFields{link: l.id, kind: signalOffer, data: sdp}})
	r.mu.Unlock()
	timer := time.NewTimer(linkTimeout)
	defer timer.Stop()
	select {
	case <-opened:
	case <-timer.C:
		fail()
	case <-r.c.done:
	}
}

// linkLost handles the close of our feed link.
func (r *clientRelays) linkLost(topic string, l *feedLink) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t := r.topics[topic]; t != nil && t.feed == l && !r.closed {
		r.reportFeed(topic, t, ReportGone, nil)
	}
}

// onLinkMessage handles a frame from our relay.
func (r *clientRelays) onLinkMessage(topic string, l *feedLink, data []byte) {
	f, err := decodeFrame(data, r.c.maxIn)
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.topics[topic]
	if r.closed || t == nil || t.feed != l {
		return
	}
	items := []frame{f}
	if err == nil && f.typ == frameBatch {
		items = f.items
	}
	for i := range items {
		if err != nil || items[i].typ != frameRecord {
			r.reportFeed(topic, t, ReportForged, nil)
			return
		}
		r.accept(topic, t, &items[i], l.id)
		if t.feed != l {
			return // reported
		}
	}
}

// answerLink accepts a child's offer on link id.
func (r *clientRelays) answerLink(topic string, id uint32, offer string) {
	defer r.pending.Done()
	refuse := func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.send(&frame{typ: frameSignal, topic: topic, relay: &relayFields{link: id, kind: signalClose}})
	}
	pc, err := r.newPC()
	if err != nil {
		refuse()
		return
	}
	pc.OnDataChannel(func(dc *pion.DataChannel) {
		if dc.Label() != relayLabel {
			_ = dc.Close()
			return
		}
		dc.OnMessage(func(msg pion.DataChannelMessage) { r.onHello(topic, id, pc, dc, msg.Data) })
		dc.OnClose(func() { r.childLost(topic, id, pc) })
	})
	pc.OnConnectionStateChange(func(st pion.PeerConnectionState) {
		if st == pion.PeerConnectionStateFailed || st == pion.PeerConnectionStateClosed {
			r.childLost(topic, id, pc)
		}
	})
	if err := pc.SetRemoteDescription(pion.SessionDescription{Type: pion.SDPTypeOffer, SDP: offer}); err != nil {
		_ = pc.Close()
		refuse()
		return
	}
	sdp, err := r.describe(pc, func() (pion.SessionDescription, error) { return pc.CreateAnswer(nil) })
	if err != nil {
		refuse()
		return
	}
	r.mu.Lock()
	t := r.topics[topic]
	if r.closed || t == nil || !t.relaying || len(t.children) >= t.maxChildren {
		r.mu.Unlock()
		_ = pc.Close()
		refuse()
		return
	}
	t.children[id] = &childLink{pc: pc}
	r.send(&frame{typ: frameSignal, topic: topic, relay: &relayFields{link: id, kind: signalAnswer, data: sdp}})
	r.mu.Unlock()
}

// onHello handles a child's first frame: it sends the child the records
// after the position it names, then live ones.
func (r *clientRelays) onHello(topic string, id uint32, pc *pion.PeerConnection, dc *pion.DataChannel, data []byte) {
	f, err := decodeFrame(data, r.c.maxIn)
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.topics[topic]
	var ch *childLink
	if t != nil {
		ch = t.children[id]
	}
	if ch == nil || ch.pc != pc || ch.ready || err != nil || f.typ != frameHello || f.topic != topic || f.relay.link != id {
		if ch != nil && ch.pc == pc {
			delete(t.children, id)
		}
		r.goClose(pc)
		return
	}
	ch.dc, ch.ready = dc, true
	var records [][]byte
	for _, rec := range t.backlog {
		if b := r.tamper(rec.b); rec.seq > f.relay.seq && b != nil {
			records = append(records, b)
		}
	}
	for _, b := range batchFrames(records, r.c.maxOut) {
		if !t.allow(len(b)) {
			// The replay alone would exceed the cap: the child reports
			// the link gone and the peer, whose budget it is, replays.
			delete(t.children, id)
			r.goClose(pc)
			return
		}
		if dc.Send(b) == nil {
			r.forwarded.Add(int64(len(b)))
		}
	}
}

func (r *clientRelays) childLost(topic string, id uint32, pc *pion.PeerConnection) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t := r.topics[topic]; t != nil && t.children[id] != nil && t.children[id].pc == pc {
		delete(t.children, id)
	}
}

// newPC returns a peer connection for a link, registered to be closed
// with the client.
func (r *clientRelays) newPC() (*pion.PeerConnection, error) {
	pc, err := r.c.api.NewPeerConnection(pion.Configuration{ICEServers: r.c.iceServers})
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		_ = pc.Close()
		return nil, ErrClosed
	}
	r.links = append(r.links, pc)
	return pc, nil
}

// describe sets pc's local description (an offer or answer) and returns
// it once every candidate is gathered: no trickle, as with the peer.
func (r *clientRelays) describe(pc *pion.PeerConnection, create func() (pion.SessionDescription, error)) (string, error) {
	d, err := create()
	if err != nil {
		return "", err
	}
	gathered := pion.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(d); err != nil {
		return "", err
	}
	timer := time.NewTimer(linkTimeout)
	defer timer.Stop()
	select {
	case <-gathered:
	case <-timer.C:
		return "", errors.New("gathering candidates timed out")
	case <-r.c.done:
		return "", ErrClosed
	}
	sdp := pc.LocalDescription().SDP
	if len(sdp) > maxSignalData {
		return "", fmt.Errorf("description of %d bytes, at most %d", len(sdp), maxSignalData)
	}
	return sdp, nil
}

// goClose closes pc on a goroutine of its own (pion's Close waits for its
// callbacks, which take r.mu). r.mu is held.
func (r *clientRelays) goClose(pc *pion.PeerConnection) {
	if r.closed {
		return // close closes it
	}
	r.pending.Add(1)
	go func() {
		defer r.pending.Done()
		_ = pc.Close()
	}()
}

// close closes every link and waits for the set-ups under way. Not on a
// pion callback.
func (r *clientRelays) close() {
	r.mu.Lock()
	r.closed = true
	links := r.links
	r.links = nil
	r.mu.Unlock()
	r.pending.Wait()
	for _, pc := range links {
		_ = pc.Close()
	}
}

// RelayedBytes is how many bytes the client forwarded to its children.
func (c *Client) RelayedBytes() int64 { return c.relay.forwarded.Load() }
