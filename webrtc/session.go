package webrtc

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	pion "github.com/pion/webrtc/v4"
	"golang.org/x/time/rate"
)

const (
	// maxControlFrames bounds the ACK and ERROR frames waiting for a
	// session. They are never dropped (a lost ACK would hang a client's
	// request), so a client that keeps sending requests without reading
	// the answers is disconnected instead.
	maxControlFrames = 256
	// closeGrace is how long a session that must end (token expiry) waits
	// for its final ERROR frame to be written before it closes anyway.
	closeGrace = 2 * time.Second
)

// session is one browser: its peer connection, its data channel, the
// topics it follows and the queue of frames waiting for the channel.
//
// Frames from the browser are handled on pion's read goroutine for the
// channel, one at a time, so a browser's publishes are throttled by its
// own publish latency and never by other sessions. Messages to a browser
// that keeps up are written by the topic's fan-out goroutine directly
// (pion's Send does not block); a browser that is behind has them queued
// for its writer goroutine, the only place that waits for the browser.
// ACK and ERROR frames always go through the writer.
type session struct {
	srv     *Server
	id      uint64
	claims  Claims
	log     *slog.Logger
	limiter *rate.Limiter // nil: unlimited

	ctx    context.Context
	cancel context.CancelFunc

	// wake tells the writer there is something to send; low tells it the
	// data channel's buffer drained below the low threshold. Both hold at
	// most one pending signal.
	wake chan struct{}
	low  chan struct{}

	mu           sync.Mutex
	pc           *pion.PeerConnection
	dc           *pion.DataChannel
	opened       bool
	closed       bool
	busy         bool // the writer or a fan-out is writing to dc
	topics       map[string]struct{}
	control      [][]byte // ACK and ERROR frames, written before messages
	queue        ring     // encoded MESSAGE frames, shared between sessions
	dropped      int      // messages dropped since the browser was last told
	closeAfter   string   // close with this reason once control is written
	connectTimer *time.Timer
	expiryTimer  *time.Timer

	closeOnce sync.Once
}

func newSession(srv *Server, id uint64, claims Claims) *session {
	ctx, cancel := context.WithCancel(srv.ctx)
	s := &session{
		srv:    srv,
		id:     id,
		claims: claims,
		log:    srv.log.With("session", id),
		ctx:    ctx,
		cancel: cancel,
		wake:   make(chan struct{}, 1),
		low:    make(chan struct{}, 1),
		topics: make(map[string]struct{}),
	}
	if claims.Subject != "" {
		s.log = s.log.With("sub", claims.Subject)
	}
	if srv.cfg.PublishRate > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(srv.cfg.PublishRate), srv.cfg.PublishBurst)
	}
	if !claims.ExpiresAt.IsZero() {
		// A session lives no longer than its token.
		s.expiryTimer = time.AfterFunc(claims.ExpiresAt.Add(ClockSkew).Sub(srv.now()), s.expire)
	}
	return s
}

// setPeerConnection gives the session its peer connection; false if the
// session closed meanwhile, in which case the caller closes pc.
func (s *session) setPeerConnection(pc *pion.PeerConnection) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.pc = pc
	return true
}

// startConnectTimer closes the session if its data channel does not open
// within ConnectTimeout of the answer.
func (s *session) startConnectTimer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.opened {
		return
	}
	s.connectTimer = time.AfterFunc(s.srv.cfg.ConnectTimeout, func() {
		s.mu.Lock()
		opened := s.opened
		s.mu.Unlock()
		if !opened {
			s.close(closeConnectTimeout)
		}
	})
}

func (s *session) onDataChannel(dc *pion.DataChannel) {
	reliable := dc.Ordered() && dc.MaxRetransmits() == nil && dc.MaxPacketLifeTime() == nil
	s.mu.Lock()
	if s.closed || s.dc != nil || dc.Label() != dataChannelLabel || !reliable {
		s.mu.Unlock()
		s.log.Debug("refusing data channel", "label", dc.Label(), "reliable", reliable)
		_ = dc.Close()
		return
	}
	s.dc = dc
	s.mu.Unlock()

	// Writing resumes at a quarter of the high-water mark, so each wakeup
	// has room for a good batch rather than one frame.
	dc.SetBufferedAmountLowThreshold(uint64(s.srv.cfg.MaxBufferedAmount / 4))
	dc.OnBufferedAmountLow(func() { signal(s.low) })
	dc.OnOpen(func() {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		s.opened = true
		if s.connectTimer != nil {
			s.connectTimer.Stop()
		}
		s.srv.wg.Add(1)
		s.mu.Unlock()
		s.log.Debug("data channel open")
		go s.writeLoop(dc)
	})
	dc.OnMessage(s.onMessage)
	dc.OnClose(func() { s.close(closeClient) })
}

// onMessage handles one frame from the browser. Whatever the bytes, the
// session survives: a bad frame gets an ERROR frame.
func (s *session) onMessage(msg pion.DataChannelMessage) {
	if s.ctx.Err() != nil {
		return
	}
	if msg.IsString {
		s.reject(0, CodeBadFrame, "", "text message: frames are binary")
		return
	}
	f, err := decodeFrame(msg.Data, s.srv.cfg.MaxFrameSize)
	if err != nil {
		s.reject(f.req, codeFor(err), "", err.Error())
		return
	}
	s.srv.metrics.framesIn.WithLabelValues(f.typ.String()).Inc()
	if s.tokenExpired() {
		s.expire()
		return
	}
	switch f.typ {
	case frameSubscribe:
		s.subscribe(&f)
	case frameUnsubscribe:
		s.unsubscribe(&f)
	case framePublish:
		s.publish(&f)
	default:
		s.reject(f.req, CodeUnexpectedFrame, "", fmt.Sprintf("%s frames go from server to client", f.typ))
	}
}

func (s *session) subscribe(f *frame) {
	if !s.claims.CanRead(f.topic) {
		s.reject(f.req, CodeForbidden, f.topic, "token does not allow reading this topic")
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if _, ok := s.topics[f.topic]; ok {
		s.mu.Unlock()
		s.ack(f.req) // idempotent: the client may retry after a lost ACK
		return
	}
	if len(s.topics) >= s.srv.cfg.MaxSubscriptions {
		s.mu.Unlock()
		s.reject(f.req, CodeTooManySubscriptions, f.topic, fmt.Sprintf("at most %d topics per session", s.srv.cfg.MaxSubscriptions))
		return
	}
	s.topics[f.topic] = struct{}{}
	s.mu.Unlock()
	if err := s.srv.bridge.join(f.topic, s); err != nil {
		s.mu.Lock()
		delete(s.topics, f.topic)
		s.mu.Unlock()
		s.log.Warn("overlay subscription failed", "topic", f.topic, "err", err)
		s.reject(f.req, CodeInternal, f.topic, "cannot subscribe: "+err.Error())
		return
	}
	s.ack(f.req)
}

func (s *session) unsubscribe(f *frame) {
	s.mu.Lock()
	_, ok := s.topics[f.topic]
	delete(s.topics, f.topic)
	s.mu.Unlock()
	if ok {
		s.srv.bridge.leave(f.topic, s)
	}
	s.ack(f.req)
}

func (s *session) publish(f *frame) {
	m := s.srv.metrics
	if !s.claims.CanWrite(f.topic) {
		m.publishes.WithLabelValues(publishForbidden).Inc()
		s.reject(f.req, CodeForbidden, f.topic, "token does not allow publishing to this topic")
		return
	}
	if s.limiter != nil && !s.limiter.Allow() {
		m.publishes.WithLabelValues(publishRateLimited).Inc()
		s.reject(f.req, CodeRateLimited, f.topic, fmt.Sprintf("more than %g publishes per second", s.srv.cfg.PublishRate))
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.srv.cfg.PublishTimeout)
	defer cancel()
	// The payload aliases a buffer pion allocated for this message alone,
	// so the bus may keep it.
	if err := s.srv.bus.Publish(ctx, f.topic, f.payload); err != nil {
		if s.ctx.Err() != nil {
			return
		}
		m.publishes.WithLabelValues(publishFailed).Inc()
		s.reject(f.req, CodePublishFailed, f.topic, err.Error())
		return
	}
	m.publishes.WithLabelValues(publishOK).Inc()
	s.ack(f.req)
}

func (s *session) tokenExpired() bool {
	exp := s.claims.ExpiresAt
	return !exp.IsZero() && !s.srv.now().Before(exp.Add(ClockSkew))
}

// expire ends a session whose token expired, telling the browser why.
func (s *session) expire() {
	b, _ := appendFrame(nil, &frame{typ: frameError, code: CodeTokenExpired, reason: "token expired; reconnect with a fresh token"})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if !s.opened {
		s.mu.Unlock()
		s.close(closeTokenExpired)
		return
	}
	s.closeAfter = closeTokenExpired
	s.control = append(s.control, b)
	s.mu.Unlock()
	signal(s.wake)
	// The writer closes the session once the frame is out; this is in
	// case it cannot (a stalled channel).
	time.AfterFunc(2*closeGrace, func() { s.close(closeTokenExpired) })
}

func (s *session) ack(req uint32) {
	if req == 0 {
		return // the client asked for no ACK
	}
	b, _ := appendFrame(nil, &frame{typ: frameAck, req: req})
	s.sendControl(b)
}

func (s *session) reject(req uint32, code ErrorCode, topic, reason string) {
	s.srv.metrics.rejected.WithLabelValues(code.String()).Inc()
	if ValidateTopic(topic) != nil {
		topic = ""
	}
	b, err := appendFrame(nil, &frame{typ: frameError, req: req, code: code, topic: topic, reason: reason})
	if err != nil {
		s.log.Error("cannot encode error frame", "err", err)
		return
	}
	s.sendControl(b)
}

func (s *session) sendControl(b []byte) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if len(s.control) >= maxControlFrames {
		s.mu.Unlock()
		s.log.Info("closing session: it sends requests without reading the answers")
		s.close(closeSlow)
		return
	}
	s.control = append(s.control, b)
	s.mu.Unlock()
	signal(s.wake)
}

// deliver hands the session messages of topic: frames are the encoded
// MESSAGE frames, and wire the same messages as data channel messages,
// encoded once for every session (a BATCH when there are several). It
// never blocks on the browser: it runs on the topic's fan-out goroutine,
// shared with every other browser.
//
// An idle session (nothing queued, nothing being written, room in the
// data channel) gets wire written at once, as a bare fan-out would; only a
// session that is behind queues, and its writer then coalesces.
func (s *session) deliver(topic string, wire, frames [][]byte) {
	s.mu.Lock()
	if _, ok := s.topics[topic]; !ok || s.closed {
		// Unsubscribed after the fan-out took its snapshot, or closing.
		s.mu.Unlock()
		return
	}
	if s.idle() && s.dc.BufferedAmount() <= uint64(s.srv.cfg.MaxBufferedAmount) {
		s.busy = true
		dc := s.dc
		s.mu.Unlock()
		s.writeDirect(dc, wire, len(frames))
		return
	}
	for _, b := range frames {
		if !s.push(b) {
			s.mu.Unlock()
			s.log.Info("closing slow session: its queue is full", "policy", s.srv.cfg.SlowPolicy)
			s.close(closeSlow)
			return
		}
	}
	s.mu.Unlock()
	signal(s.wake)
}

// idle reports whether the fan-out may write to the data channel itself.
// s.mu must be held.
func (s *session) idle() bool {
	return s.opened && !s.busy && s.queue.n == 0 && len(s.control) == 0 && s.dropped == 0 && s.closeAfter == ""
}

// writeDirect writes wire on the fan-out goroutine; s.busy is set, which
// keeps the writer (and other topics' fan-outs) off the channel meanwhile,
// so messages of a topic stay in order.
func (s *session) writeDirect(dc *pion.DataChannel, wire [][]byte, msgs int) {
	var err error
	for _, b := range wire {
		if err = dc.Send(b); err != nil {
			break
		}
		s.srv.metrics.sends.Inc()
		s.srv.metrics.batchSize.Observe(float64(max(1, msgs/len(wire))))
	}
	if err == nil {
		s.srv.metrics.delivered.Add(float64(msgs))
	}
	s.mu.Lock()
	s.busy = false
	more := !s.idle() && !s.closed
	s.mu.Unlock()
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Debug("data channel send failed", "err", err)
			s.close(closeFailed)
		}
		return
	}
	if more {
		signal(s.wake) // queued while we were writing
	}
}

// push queues one MESSAGE frame under the slow-consumer policy; false
// means the policy is Disconnect and the queue is full. s.mu must be held.
func (s *session) push(b []byte) bool {
	cfg := &s.srv.cfg
	for s.queue.n > 0 && (s.queue.n >= cfg.QueueLength || s.queue.bytes+len(b) > cfg.QueueBytes) {
		s.srv.metrics.dropped.WithLabelValues(dropQueueFull).Inc()
		if cfg.SlowPolicy == Disconnect {
			return false
		}
		s.queue.pop()
		s.dropped++
	}
	s.queue.push(b)
	return true
}

// lostTopic is called by the bridge when the overlay ended a topic's
// subscription.
func (s *session) lostTopic(topic string) {
	s.mu.Lock()
	_, ok := s.topics[topic]
	delete(s.topics, topic)
	s.mu.Unlock()
	if ok {
		s.reject(0, CodeSubscriptionLost, topic, "the overlay ended the subscription")
	}
}

// writeLoop writes queued frames to the data channel, batching whatever
// accumulated while the channel was busy into one data channel message.
// It is the only goroutine that waits for the browser.
func (s *session) writeLoop(dc *pion.DataChannel) {
	defer s.srv.wg.Done()
	m := s.srv.metrics
	var buf []byte // reused for batches; pion copies what it sends
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
		}
		for {
			if !s.waitDrained(dc) {
				return
			}
			out, frames, msgs, built, closeReason := s.take(buf[:0])
			if frames == 0 {
				if closeReason != "" {
					s.close(closeReason)
					return
				}
				break
			}
			err := dc.Send(out)
			s.mu.Lock()
			s.busy = false
			s.mu.Unlock()
			if err != nil {
				if s.ctx.Err() == nil {
					s.log.Debug("data channel send failed", "err", err)
					s.close(closeFailed)
				}
				return
			}
			if built {
				buf = out
			}
			m.sends.Inc()
			m.batchSize.Observe(float64(frames))
			if msgs > 0 {
				m.delivered.Add(float64(msgs))
			}
			if closeReason != "" {
				s.waitFlushed(dc)
				s.close(closeReason)
				return
			}
		}
	}
}

// waitFlushed waits, at most closeGrace, until the browser has
// acknowledged everything written, so that a final ERROR frame is not lost
// when the connection closes right after it. It polls: it runs once per
// session at most, and pion signals only a threshold crossing, not empty.
func (s *session) waitFlushed(dc *pion.DataChannel) {
	deadline := time.NewTimer(closeGrace)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for dc.BufferedAmount() > 0 {
		select {
		case <-tick.C:
		case <-deadline.C:
			return
		case <-s.ctx.Done():
			return
		}
	}
}

// waitDrained blocks while the data channel holds more than
// MaxBufferedAmount unacknowledged bytes, until it drains below the low
// threshold. It returns false if the session ended, or stalled for
// StallTimeout (and was closed).
func (s *session) waitDrained(dc *pion.DataChannel) bool {
	cfg := &s.srv.cfg
	if dc.BufferedAmount() <= uint64(cfg.MaxBufferedAmount) {
		return true
	}
	stall := time.NewTimer(cfg.StallTimeout)
	defer stall.Stop()
	// A stale signal from an earlier drain is harmless: the loop checks the
	// amount again. A drain between the check and the select is not lost:
	// it leaves a signal in s.low.
	for dc.BufferedAmount() > uint64(cfg.MaxBufferedAmount/4) {
		select {
		case <-s.low:
		case <-s.ctx.Done():
			return false
		case <-stall.C:
			s.log.Info("closing stalled session: its data channel did not drain", "timeout", cfg.StallTimeout, "buffered", dc.BufferedAmount())
			s.close(closeStalled)
			return false
		}
	}
	return true
}

// take dequeues what fits in one data channel message: control frames
// first, then a drop notice if messages were dropped, then messages. A
// single frame is returned as is (not copied); several are wrapped in a
// BATCH frame built in buf. closeReason is set when the session must close
// once this is written. When it returns frames it sets s.busy, which the
// writer clears after the write.
func (s *session) take(buf []byte) (out []byte, frames, msgs int, built bool, closeReason string) {
	max := s.srv.cfg.MaxFrameSize
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.busy {
		// A fan-out is writing; it wakes the writer when done if anything
		// is left.
		return nil, 0, 0, false, ""
	}
	if s.dropped > 0 {
		b, _ := appendFrame(nil, &frame{typ: frameError, code: CodeMessagesDropped,
			reason: fmt.Sprintf("%d messages dropped: this client reads slower than its topics publish", s.dropped)})
		s.control = append(s.control, b)
		s.dropped = 0
	}
	// Gather the frames that fit, counting a batch's overhead once there is
	// more than one.
	var first []byte
	size := batchOverhead
	add := func(b []byte) bool {
		if frames > 0 && (size+batchItemOverhead+len(b) > max || frames == maxBatchCount) {
			return false
		}
		if frames == 0 {
			first = b
		} else {
			if frames == 1 {
				buf = append(buf, FrameVersion, byte(frameBatch), 0, 0)
				buf = appendBytes32(buf, first)
			}
			buf = appendBytes32(buf, b)
		}
		size += batchItemOverhead + len(b)
		frames++
		return true
	}
	nControl := 0
	for _, b := range s.control {
		if !add(b) {
			break
		}
		nControl++
	}
	clear(s.control[:nControl])
	s.control = s.control[nControl:]
	if len(s.control) == 0 {
		s.control = nil
		closeReason = s.closeAfter
	}
	for closeReason == "" && s.queue.n > 0 && add(s.queue.peek()) {
		s.queue.pop()
		msgs++
	}
	switch frames {
	case 0:
		return nil, 0, 0, false, closeReason
	case 1:
		s.busy = true
		return first, 1, msgs, false, closeReason
	}
	s.busy = true
	buf[2], buf[3] = byte(frames>>8), byte(frames)
	return buf, frames, msgs, true, closeReason
}

// close ends the session once; later calls wait for the first to finish.
func (s *session) close(reason string) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		topics := make([]string, 0, len(s.topics))
		for t := range s.topics {
			topics = append(topics, t)
		}
		s.topics = nil
		s.queue = ring{}
		s.control = nil
		pc := s.pc
		for _, t := range []*time.Timer{s.connectTimer, s.expiryTimer} {
			if t != nil {
				t.Stop()
			}
		}
		s.mu.Unlock()
		s.cancel()
		for _, t := range topics {
			s.srv.bridge.leave(t, s)
		}
		if pc != nil {
			// GracefulClose waits for pion's goroutines, our callbacks
			// among them, so it must not run on one of them.
			s.srv.wg.Add(1)
			go func() {
				defer s.srv.wg.Done()
				_ = pc.GracefulClose()
			}()
		}
		// Last: until the session leaves the map, Server.Close finds it
		// and waits (in closeOnce) for the wg.Add above, which must come
		// before its wg.Wait.
		s.srv.removeSession(s)
		s.srv.metrics.closed.WithLabelValues(reason).Inc()
		s.log.Debug("session closed", "reason", reason)
		if h := s.srv.testHookClosed; h != nil {
			h(reason)
		}
	})
}

// signal leaves a pending signal in ch without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// ring is a FIFO of encoded frames that grows as needed, up to the queue
// bounds the session enforces, so an idle session costs nothing.
type ring struct {
	buf   [][]byte
	head  int
	n     int
	bytes int
}

func (r *ring) push(b []byte) {
	if r.n == len(r.buf) {
		grown := make([][]byte, max(8, 2*len(r.buf)))
		for i := 0; i < r.n; i++ {
			grown[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = grown, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = b
	r.n++
	r.bytes += len(b)
}

func (r *ring) peek() []byte { return r.buf[r.head] }

func (r *ring) pop() []byte {
	b := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	r.bytes -= len(b)
	return b
}
