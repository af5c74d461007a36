package webrtc

import (
	"context"
	"encoding/binary"
)

// Resume. A SUBSCRIBE may carry a position (the ID of the last message
// the browser got); the session then replays what the Bus's history
// holds after it and goes on live, without a gap or a duplicate:
//
//  1. the session marks the topic as resuming, so that live messages of
//     the topic are held for it, not sent (holdLive);
//  2. it joins the topic's feed, whose Bus subscription exists from then
//     on, and ACKs;
//  3. it asks the Bus for the history after the position (Resumer); a
//     message delivered to the feed from then on is either in that
//     replay or held in step 1;
//  4. under the session's lock, it queues a gap ERROR if the history did
//     not reach back to the position, then the replay, then the held
//     messages the Bus calls new, and lets live messages through again,
//     still filtered until the first new one: messages the feed had
//     queued but not fanned out yet may still be in the replay, and
//     come, in order, before any that is not.

// maxHeld caps the live messages held for one topic while its history
// is fetched; beyond it the oldest are dropped, counted like a full
// queue, and the browser is told it lost messages.
const maxHeld = 1024

// resumeState is a topic being resumed. Guarded by session.mu.
type resumeState struct {
	holding bool     // step 1-3: live messages are held
	held    [][]byte // their MESSAGE frames
	live    func(id string) bool
}

// holdLive starts holding topic's live messages. s.mu must be held.
func (s *session) holdLive(topic string) {
	if s.resume == nil {
		s.resume = make(map[string]*resumeState)
	}
	s.resume[topic] = &resumeState{holding: true}
}

// filterResumed holds or filters the live frames of a resuming topic and
// returns what may go to the browser now. s.mu must be held.
func (s *session) filterResumed(topic string, rs *resumeState, wire, frames [][]byte) ([][]byte, [][]byte) {
	if rs.holding {
		for _, b := range frames {
			if len(rs.held) == maxHeld {
				rs.held = rs.held[1:]
				s.dropped++
				s.srv.metrics.dropped.WithLabelValues(dropQueueFull).Inc()
			}
			rs.held = append(rs.held, b)
		}
		return nil, nil
	}
	kept := frames[:0:0]
	for i, b := range frames {
		if b[1] != byte(frameMessage) { // presence: never a replay
			kept = append(kept, b)
			continue
		}
		if rs.live == nil || rs.live(frameID(b)) {
			// From the first new message on, nothing can be a replay.
			delete(s.resume, topic)
			kept = append(kept, frames[i:]...)
			break
		}
	}
	if len(kept) == len(frames) {
		return wire, frames
	}
	return batchFrames(kept, s.srv.cfg.MaxFrameSize), kept
}

// replay is step 3 and 4 for topic from position since.
func (s *session) replay(topic, since string) {
	var (
		msgs      []Message
		recovered bool
		live      func(string) bool
	)
	if r, ok := s.srv.bus.(Resumer); ok {
		ctx, cancel := context.WithTimeout(s.ctx, s.srv.cfg.PublishTimeout)
		var err error
		msgs, recovered, live, err = r.Resume(ctx, s.subject, topic, since)
		cancel()
		if err != nil {
			s.log.Debug("resume", "topic", topic, "since", since, "err", err)
		}
	}
	frames := make([][]byte, 0, len(msgs))
	for i := range msgs {
		msgs[i].Topic = topic
		if b, err := encodeMessage(&msgs[i]); err == nil && len(b) <= s.srv.cfg.MaxFrameSize {
			frames = append(frames, b)
		}
	}
	s.mu.Lock()
	rs := s.resume[topic]
	if rs == nil || s.closed {
		s.mu.Unlock() // unsubscribed meanwhile
		return
	}
	// The replay goes through the session's queue, which the browser has
	// not begun to drain: keep its newest part that fits beside what is
	// queued and held, so that a long replay neither trips the slow-client
	// policy (a disconnect would loop: the client resumes from the same
	// point) nor drops messages silently. What is cut is a gap.
	if cut := s.replayOverflow(frames, rs.held); cut > 0 {
		frames = frames[cut:]
		recovered = false
	}
	if !recovered {
		if b, err := appendFrame(nil, &frame{typ: frameError, code: CodeGap, topic: topic, reason: "resumed from before what the peer could replay: messages were lost"}); err == nil {
			s.control = append(s.control, b)
			s.srv.metrics.rejected.WithLabelValues(CodeGap.String()).Inc()
		}
	}
	held := rs.held
	rs.holding, rs.held, rs.live = false, nil, live
	ok := true
	for _, b := range frames {
		ok = ok && s.push(b)
	}
	if _, held = s.filterResumed(topic, rs, nil, held); ok {
		for _, b := range held {
			ok = ok && s.push(b)
		}
	}
	s.mu.Unlock()
	if !ok {
		s.log.Info("closing slow session: its queue is full", "policy", s.srv.cfg.SlowPolicy)
		s.close(closeSlow)
		return
	}
	s.kick()
}

// replayOverflow is how many of the oldest replay frames must go so that
// the rest, the held live frames and what is queued fit in the session's
// queue (QueueLength, QueueBytes). s.mu must be held.
func (s *session) replayOverflow(frames, held [][]byte) int {
	cfg := &s.srv.cfg
	n, bytes := s.queue.n+len(held), s.queue.bytes
	for _, b := range held {
		bytes += len(b)
	}
	for _, b := range frames {
		bytes += len(b)
	}
	cut := 0
	for cut < len(frames) && (n+len(frames)-cut > cfg.QueueLength || bytes > cfg.QueueBytes) {
		bytes -= len(frames[cut])
		cut++
	}
	return cut
}

// frameID reads the id of an encoded MESSAGE frame: version, type, topic
// (str8), id (str16).
func frameID(b []byte) string {
	if len(b) < 3 {
		return ""
	}
	i := 3 + int(b[2])
	if len(b) < i+2 {
		return ""
	}
	n := int(binary.BigEndian.Uint16(b[i:]))
	if len(b) < i+2+n {
		return ""
	}
	return string(b[i+2 : i+2+n])
}
