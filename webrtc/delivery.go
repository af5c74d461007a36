package webrtc

import (
	"errors"
	"fmt"
	"time"
)

// Delivery: how messages and answers get from the server to one browser's
// data channel, and what happens when the browser is slower than its
// topics (the backpressure policy of doc.go).

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
	if rs := s.resume[topic]; rs != nil {
		if wire, frames = s.filterResumed(topic, rs, wire, frames); len(frames) == 0 {
			s.mu.Unlock()
			return
		}
	}
	if s.idle() && s.ch.direct() && s.ch.buffered() <= uint64(s.srv.cfg.MaxBufferedAmount) {
		s.busy = true
		ch := s.ch
		s.mu.Unlock()
		s.writeDirect(ch, wire, len(frames))
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
	s.startWriter()
	s.mu.Unlock()
}

// idle reports whether the fan-out may write to the data channel itself.
// s.mu must be held.
func (s *session) idle() bool {
	return s.opened && !s.busy && s.queue.n == 0 && len(s.control) == 0 && s.dropped == 0 && s.closeAfter == ""
}

// writeDirect writes wire on the fan-out goroutine; s.busy is set, which
// keeps the writer (and other topics' fan-outs) off the channel meanwhile,
// so messages of a topic stay in order.
func (s *session) writeDirect(ch channel, wire [][]byte, msgs int) {
	var err error
	for _, b := range wire {
		if err = ch.send(b); err != nil {
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
	if err == nil && !s.idle() {
		s.startWriter() // queued while we were writing
	}
	s.mu.Unlock()
	if err != nil {
		s.sendFailed(err)
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

// kick starts a writer for what was queued, unless one runs.
func (s *session) kick() {
	s.mu.Lock()
	s.startWriter()
	s.mu.Unlock()
}

// startWriter starts a writer goroutine unless one runs, the channel is
// not open yet or the session closed. A writer runs only while the
// session has something queued: it takes everything queued before it
// ends (take clears s.writing under s.mu once nothing is left), so a
// frame queued and followed by startWriter is never left behind, and an
// idle session costs no goroutine. s.mu must be held.
func (s *session) startWriter() {
	if s.writing || s.closed || !s.opened {
		return
	}
	s.writing = true
	s.srv.wg.Add(1) // under s.mu, so that no Add races with Close's Wait
	go s.writeLoop()
}

// writeLoop writes queued frames to the channel, batching whatever
// accumulated while the channel was busy into one data channel message,
// until nothing is left. It is the only goroutine that waits for the
// browser.
func (s *session) writeLoop() {
	defer s.srv.wg.Done()
	s.mu.Lock()
	ch := s.ch
	s.mu.Unlock()
	m := s.srv.metrics
	var buf []byte // reused for batches; pion copies what it sends
	for {
		if !s.waitDrained(ch) {
			return
		}
		out, frames, msgs, built, closeReason := s.take(buf[:0])
		if frames == 0 {
			if closeReason != "" {
				s.close(closeReason)
			}
			return
		}
		err := ch.send(out)
		s.mu.Lock()
		s.busy = false
		s.mu.Unlock()
		if err != nil {
			s.sendFailed(err)
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
			s.waitFlushed(ch)
			s.close(closeReason)
			return
		}
	}
}

// sendFailed ends the session after a failed write: stalled if a
// WebSocket write timed out, failed otherwise.
func (s *session) sendFailed(err error) {
	if s.ctx.Err() != nil {
		return
	}
	if errors.Is(err, errStalled) {
		s.log.Info("closing stalled session: the browser did not read", "timeout", s.srv.cfg.StallTimeout)
		s.close(closeStalled)
		return
	}
	s.log.Debug("send failed", "err", err)
	s.close(closeFailed)
}

// waitFlushed waits, at most closeGrace, until the browser has
// acknowledged everything written, so that a final ERROR frame is not lost
// when the connection closes right after it. It polls: it runs once per
// session at most, and pion signals only a threshold crossing, not empty.
func (s *session) waitFlushed(ch channel) {
	deadline := time.NewTimer(closeGrace)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for ch.buffered() > 0 {
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
func (s *session) waitDrained(ch channel) bool {
	cfg := &s.srv.cfg
	if ch.buffered() <= uint64(cfg.MaxBufferedAmount) {
		return true
	}
	stall := time.NewTimer(cfg.StallTimeout)
	defer stall.Stop()
	// A stale signal from an earlier drain is harmless: the loop checks the
	// amount again. A drain between the check and the select is not lost:
	// it leaves a signal in s.low.
	for ch.buffered() > uint64(cfg.MaxBufferedAmount/4) {
		select {
		case <-s.low:
		case <-s.ctx.Done():
			return false
		case <-stall.C:
			s.log.Info("closing stalled session: its data channel did not drain", "timeout", cfg.StallTimeout, "buffered", ch.buffered())
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
		// A fan-out is writing; it starts a writer when done if anything
		// is left.
		s.writing = false
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
		s.writing = closeReason != "" // a writer that closes the session is the last
		return nil, 0, 0, false, closeReason
	case 1:
		s.busy = true
		return first, 1, msgs, false, closeReason
	}
	s.busy = true
	buf[2], buf[3] = byte(frames>>8), byte(frames)
	return buf, frames, msgs, true, closeReason
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
