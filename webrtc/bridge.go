package webrtc

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// bridge holds one Bus subscription per topic that at least one session
// follows, and fans each message out to those sessions. A message is
// encoded once, and the same bytes are queued for every session.
type bridge struct {
	srv *Server

	mu     sync.Mutex
	feeds  map[string]*feed
	closed bool
}

// feed is the overlay subscription of one topic.
type feed struct {
	topic  string
	ctx    context.Context
	cancel context.CancelFunc
	// subs is replaced, never modified, under bridge.mu (setSubs), so the
	// fan-out reads it without a lock.
	subs atomic.Pointer[subscribers]

	// presence is on for the topic (presence.go); members is the
	// topic's membership as the Bus reported it, guarded by mu.
	presence bool
	mu       sync.Mutex
	members  map[[2]string]struct{}
	// shown are the sessions reported to the Bus as members. presMu
	// orders each session's Present(true) and Present(false) calls, so a
	// session that leaves while it joins is never left behind as a
	// member (the Bus counts them).
	presMu sync.Mutex
	shown  map[*session]bool
}

// subscribers are a topic's sessions, all of them and split by how the
// fan-out feeds them, so that a round visits only the sessions it writes
// to. A session's kind is known before it subscribes: its data channel
// is open (it sent the SUBSCRIBE over it) or it is a WebSocket one.
type subscribers struct {
	all   []*session
	paced []*session // data channel sessions, whose rounds are paced
	other []*session // fed every round at once
}

// setSubs replaces f's subscribers with all. b.mu is held.
func (f *feed) setSubs(all []*session) {
	sub := &subscribers{all: all}
	for _, s := range all {
		if s.paced {
			sub.paced = append(sub.paced, s)
		} else {
			sub.other = append(sub.other, s)
		}
	}
	f.subs.Store(sub)
}

func newBridge(srv *Server) *bridge {
	return &bridge{srv: srv, feeds: make(map[string]*feed)}
}

// join adds s to topic's subscribers, subscribing to the overlay if s is
// the first.
func (b *bridge) join(topic string, s *session) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	f, ok := b.feeds[topic]
	if !ok {
		ctx, cancel := context.WithCancel(b.srv.ctx)
		sub, err := b.srv.bus.Subscribe(ctx, topic)
		if err != nil {
			cancel()
			return err
		}
		f = &feed{topic: topic, ctx: ctx, cancel: cancel}
		f.setSubs(nil)
		b.feeds[topic] = f
		b.srv.metrics.topics.Inc()
		b.srv.wg.Add(1)
		go b.run(f, sub)
		b.watchPresence(f)
	}
	// A session that closed meanwhile has already left its topics; it
	// must not be added back behind its close.
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		b.dropIfEmpty(f)
		return ErrClosed
	}
	subs := f.subs.Load().all
	if !slices.Contains(subs, s) {
		f.setSubs(append(slices.Clip(subs), s))
	}
	return nil
}

// leave removes s from topic's subscribers, dropping the overlay
// subscription when the last one leaves.
func (b *bridge) leave(topic string, s *session) {
	b.mu.Lock()
	f, ok := b.feeds[topic]
	if !ok {
		b.mu.Unlock()
		return
	}
	subs := f.subs.Load().all
	i := slices.Index(subs, s)
	if i >= 0 {
		f.setSubs(slices.Delete(slices.Clone(subs), i, i+1))
	}
	b.dropIfEmpty(f)
	b.mu.Unlock()
	if i >= 0 && f.presence {
		f.presMu.Lock()
		if f.shown[s] {
			delete(f.shown, s)
			b.srv.bus.(Presencer).Present(topic, s.member(), false)
		}
		f.presMu.Unlock()
	}
}

// dropIfEmpty ends f if nobody follows it. b.mu must be held.
func (b *bridge) dropIfEmpty(f *feed) {
	if len(f.subs.Load().all) > 0 || b.feeds[f.topic] != f {
		return
	}
	delete(b.feeds, f.topic)
	f.cancel()
	b.srv.metrics.topics.Dec()
}

// close ends every feed and refuses new ones. Sessions are closed first,
// so normally there are none left.
func (b *bridge) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for _, f := range b.feeds {
		f.setSubs(nil)
		b.dropIfEmpty(f)
	}
}

// maxDrain bounds how many waiting messages one fan-out round takes from
// the overlay subscription.
const maxDrain = 256

// run fans the messages of f's overlay subscription out to its sessions.
// Delivering never blocks, so one slow browser cannot hold up the others.
//
// Data channel sessions get rounds paced by the topic's load (pacing.go):
// a message goes out at once unless the last round to them was less than
// the pacer's gap ago, which grows with their number; then it is held for
// the rest of the gap. WebSocket sessions get every round at once: a write
// there is one system call, not a packet through SCTP and DTLS with an
// acknowledgement to read. And when the fan-out falls behind (the overlay
// delivers faster than it writes), messages wait in the subscription's
// queue. Either way, each round takes all of them and sends them as one
// BATCH to every idle session, so the cost per delivery falls as the load
// rises instead of latency growing.
func (b *bridge) run(f *feed, sub Subscription) {
	defer b.srv.wg.Done()
	defer sub.Close()
	p := pacer{maxHold: b.srv.cfg.FanoutInterval, packetRate: b.srv.cfg.FanoutPacketRate}
	var (
		frames [][]byte
		msgs   []Message
		held   [][]byte  // for the data channel sessions' next round
		due    time.Time // of the held messages
	)
	for {
		ctx, cancel := f.ctx, context.CancelFunc(nil)
		if len(held) > 0 {
			ctx, cancel = context.WithDeadline(f.ctx, due)
		}
		msg, err := sub.Next(ctx)
		if cancel != nil {
			cancel()
		}
		switch {
		case err != nil && f.ctx.Err() != nil:
			return
		case err != nil && ctx.Err() != nil:
			// The gap is over: the held messages go out.
			b.fanOut(f, held, true)
			held = held[:0]
			p.sent(time.Now())
			continue
		case err != nil:
			b.lost(f)
			return
		}
		frames, msgs = frames[:0], msgs[:0]
		for ok := true; ok; msg, ok = sub.TryNext() {
			if frame := b.encode(f, &msg); frame != nil {
				frames = append(frames, frame)
				msgs = append(msgs, msg)
			}
			if len(frames) >= maxDrain {
				break
			}
		}
		if len(frames) == 0 {
			continue
		}
		if t := b.srv.relays.treeOf(f.topic); t != nil {
			// A relayed topic is not paced: its records are stamped and
			// sent in one step under the tree's lock, which orders them
			// with members' moves (relayfeed.go). Messages held from
			// before the tree go out first, as they would have.
			if len(held) > 0 {
				b.fanOut(f, held, true)
				held = held[:0]
			}
			b.fanOutRelayed(t, f, msgs, frames)
			p.sent(time.Now())
			continue
		}
		b.fanOut(f, frames, false)
		switch k, now := f.pacedCount(), time.Now(); {
		case len(held) == 0 && p.ready(now, k):
			b.fanOut(f, frames, true) // the topic's load allows a round now
			p.sent(now)
		case len(held)+len(frames) > maxDrain:
			b.fanOut(f, append(held, frames...), true)
			held = held[:0]
			p.sent(now)
		case len(held) == 0:
			held = append(held, frames...)
			due = p.due(k)
		default:
			held = append(held, frames...)
		}
	}
}

// pacedCount is the number of f's data channel sessions.
func (f *feed) pacedCount() int { return len(f.subs.Load().paced) }

// fanOut delivers frames to f's data channel sessions (dataChannels) or
// to its other sessions.
func (b *bridge) fanOut(f *feed, frames [][]byte, dataChannels bool) {
	subs := f.subs.Load().other
	if dataChannels {
		subs = f.subs.Load().paced
	}
	if len(subs) == 0 {
		return
	}
	wire := batchFrames(frames, b.srv.cfg.MaxFrameSize)
	for _, s := range subs {
		s.deliver(f.topic, wire, frames)
	}
}

// encode encodes msg for browsers, or returns nil (counted as dropped) if
// it cannot be sent to them.
func (b *bridge) encode(f *feed, msg *Message) []byte {
	msg.Topic = f.topic
	frame, err := encodeMessage(msg)
	if err == nil && len(frame) > b.srv.cfg.MaxFrameSize {
		err = ErrFrameTooLarge
	}
	if err != nil {
		b.srv.metrics.dropped.WithLabelValues(dropTooLarge).Add(float64(len(f.subs.Load().all)))
		b.srv.log.Debug("message not relayed to browsers", "topic", f.topic, "id", msg.ID, "bytes", len(msg.Data), "err", err)
		return nil
	}
	return frame
}

// batchFrames packs frames, in order, into as few data channel messages of
// at most max bytes as it can: a lone frame as is, several as BATCH frames.
func batchFrames(frames [][]byte, max int) [][]byte {
	if len(frames) == 1 {
		return [][]byte{frames[0]}
	}
	var wire [][]byte
	for i := 0; i < len(frames); {
		size, n := batchOverhead, 0
		for i+n < len(frames) && n < maxBatchCount && (n == 0 || size+batchItemOverhead+len(frames[i+n]) <= max) {
			size += batchItemOverhead + len(frames[i+n])
			n++
		}
		if n == 1 {
			wire = append(wire, frames[i])
		} else {
			b, _ := appendFrame(make([]byte, 0, size), &frame{typ: frameBatch, batch: frames[i : i+n]})
			wire = append(wire, b)
		}
		i += n
	}
	return wire
}

// lost handles an overlay subscription that ended on its own: its
// sessions are told, and may subscribe again.
func (b *bridge) lost(f *feed) {
	b.mu.Lock()
	subs := f.subs.Load().all
	f.setSubs(nil)
	b.dropIfEmpty(f)
	b.mu.Unlock()
	b.srv.log.Warn("overlay ended a topic subscription held for browsers", "topic", f.topic, "sessions", len(subs))
	for _, s := range subs {
		s.lostTopic(f.topic)
	}
}
