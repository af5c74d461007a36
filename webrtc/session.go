package webrtc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/immense-p2p/immense/internal/browsersig"
	"github.com/pion/datachannel"
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

// session is one browser: its link (ICE, DTLS, SCTP), its data channel,
// the topics it follows and the queue of frames waiting for the channel.
//
// Frames from the browser are handled on the session's read goroutine
// (the one that connected the link), one at a time, so a browser's publishes are throttled by its
// own publish latency and never by other sessions. Messages to a browser
// that keeps up are written by the topic's fan-out goroutine directly
// (a data channel write does not block); a browser that is behind has them queued
// for its writer goroutine, the only place that waits for the browser.
// ACK and ERROR frames always go through the writer.
type session struct {
	srv     *Server
	id      uint64
	claims  Claims
	subject string // what the session counts against (Server.bySubject)
	token   string // the browser's token, relayed with its publishes; "" with InsecureNoAuth
	log     *slog.Logger
	limiter *rate.Limiter // nil: unlimited

	ctx    context.Context
	cancel context.CancelFunc

	// paced: a data channel session, which gets its topics' fan-out
	// rounds at most every FanoutInterval (bridge.run). Set before the
	// session joins any topic, and never changed.
	paced bool

	// low tells the writer the data channel's buffer drained below the
	// low threshold. It holds at most one pending signal.
	low chan struct{}

	mu           sync.Mutex
	link         *dcLink
	closeConn    func(reason string) // closes a WebSocket session's connection
	ch           channel             // nil until the data channel opens or the WebSocket is accepted
	opened       bool
	closed       bool
	busy         bool // the writer or a fan-out is writing to ch
	writing      bool // a writer goroutine runs (writeLoop)
	topics       map[string]struct{}
	resume       map[string]*resumeState // topics being resumed (resume.go)
	control      [][]byte                // ACK and ERROR frames, written before messages
	queue        ring                    // encoded MESSAGE frames, shared between sessions
	dropped      int                     // messages dropped since the browser was last told
	closeAfter   string                  // close with this reason once control is written
	connectTimer *time.Timer
	expiryTimer  *time.Timer
	flushTimer   *time.Timer // closes an expired session its writer cannot

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

// setLink gives the session its link and starts the goroutine that
// connects it and then reads the browser's frames; false if the session
// closed meanwhile, in which case the caller closes l.
func (s *session) setLink(l *dcLink) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.link = l
	s.srv.wg.Add(1) // under s.mu, so that no Add races with Close's Wait
	go s.connect(l)
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

// connect connects the link (closing the session, which closes the link,
// ends it), starts the writer once the data channel is open, and becomes
// the session's reader.
func (s *session) connect(l *dcLink) {
	defer s.srv.wg.Done()
	dc, err := l.connect(s.ctx, s.acceptChannel)
	if err != nil {
		s.log.Debug("browser did not connect", "err", err)
		s.close(closeFailed)
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.ch = dataChannel{dc}
	s.paced = true
	s.opened = true
	if s.connectTimer != nil {
		s.connectTimer.Stop()
	}
	s.mu.Unlock()
	// Writing resumes at a quarter of the high-water mark, so each wakeup
	// has room for a good batch rather than one frame.
	dc.SetBufferedAmountLowThreshold(uint64(s.srv.cfg.MaxBufferedAmount / 4))
	dc.OnBufferedAmountLow(func() { signal(s.low) })
	s.srv.sessionOpened(s)
	s.log.Debug("data channel open")
	s.readLoop(dc)
}

// acceptChannel takes the browser's data channel: the one labelled
// dataChannelLabel, reliable and ordered. Others are refused.
func (s *session) acceptChannel(dc *datachannel.DataChannel) bool {
	c := dc.Config
	reliable := c.ChannelType == datachannel.ChannelTypeReliable
	if c.Label != dataChannelLabel || !reliable {
		s.log.Debug("refusing data channel", "label", c.Label, "reliable", reliable)
		return false
	}
	return true
}

// readBufferSize is what a session reads browser frames into: enough for
// the usual subscribe or small publish. A larger frame gets a buffer of its
// own (the SCTP stream keeps a message that did not fit), so a quiet
// session holds 2 KiB rather than pion's 64 KiB.
const readBufferSize = 2 << 10

// readLoop reads the browser's frames until the data channel closes.
func (s *session) readLoop(raw datachannel.ReadWriteCloser) {
	defer s.close(closeClient)
	buf := make([]byte, readBufferSize)
	for {
		n, isString, err := raw.ReadDataChannel(buf)
		var data []byte
		switch {
		case errors.Is(err, io.ErrShortBuffer):
			// The SCTP stream keeps a message that did not fit, but the
			// data channel layer reports no size: read it again into a
			// buffer of the largest size the browser may send (the
			// a=max-message-size it was given).
			data = make([]byte, s.srv.cfg.MaxFrameSize)
			if n, isString, err = raw.ReadDataChannel(data); err != nil {
				return
			}
		case err != nil:
			// io.EOF, a closed connection, or a message over MaxFrameSize
			// (which a browser honouring a=max-message-size never sends).
			return
		default:
			// The frame's payload may be kept by the bus: a copy of its own.
			data = append([]byte(nil), buf[:n]...)
		}
		s.onMessage(data[:n], isString)
	}
}

// onMessage handles one frame from the browser. Whatever the bytes, the
// session survives: a bad frame gets an ERROR frame.
func (s *session) onMessage(data []byte, isString bool) {
	if s.ctx.Err() != nil {
		return
	}
	if isString {
		s.reject(0, CodeBadFrame, "", "text message: frames are binary")
		return
	}
	f, err := decodeFrame(data, s.srv.cfg.MaxFrameSize)
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
	case framePublish, frameSignedPublish:
		s.publish(&f)
	default:
		if isRelayFrame(f.typ) {
			s.srv.relays.onFrame(s, &f) // relays.go
			return
		}
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
	if f.since != "" {
		s.holdLive(f.topic)
	}
	s.mu.Unlock()
	if err := s.srv.bridge.join(f.topic, s); err != nil {
		s.mu.Lock()
		delete(s.topics, f.topic)
		delete(s.resume, f.topic)
		s.mu.Unlock()
		s.log.Warn("overlay subscription failed", "topic", f.topic, "err", err)
		s.reject(f.req, CodeInternal, f.topic, "cannot subscribe: "+err.Error())
		return
	}
	s.ack(f.req)
	s.srv.bridge.present(f.topic, s)
	if f.since != "" {
		s.replay(f.topic, f.since)
	}
}

func (s *session) unsubscribe(f *frame) {
	s.mu.Lock()
	_, ok := s.topics[f.topic]
	delete(s.topics, f.topic)
	delete(s.resume, f.topic)
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
	proof, err := s.proof(f)
	if err != nil {
		m.publishes.WithLabelValues(publishForbidden).Inc()
		s.reject(f.req, CodeForbidden, f.topic, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.srv.cfg.PublishTimeout)
	defer cancel()
	// The payload aliases a buffer readLoop allocated for this message alone,
	// so the bus may keep it.
	if err := s.srv.bus.Publish(ctx, f.topic, f.payload, s.token, proof); err != nil {
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

// proof checks a publish's signature against the key the session's token
// is bound to: a bound token's publishes must be signed (so that the peers
// it is relayed through cannot publish with the token alone), a bearer
// token's must not. The overlay checks it again, as every receiver does;
// checking here too answers the browser with the reason, and keeps a bad
// signature from leaving this peer (whose score would pay for it).
func (s *session) proof(f *frame) (*Proof, error) {
	key := s.claims.Key
	switch {
	case f.typ == framePublish && key != nil:
		return nil, errors.New("the token is bound to a browser key: publishes must be signed (signed-publish frame)")
	case f.typ == framePublish:
		return nil, nil
	case key == nil:
		return nil, errors.New("a signed publish, but the token is bound to no key")
	}
	t := time.UnixMilli(f.time)
	if d := s.srv.now().Sub(t); d > ClockSkew || d < -ClockSkew {
		return nil, fmt.Errorf("signed at %s, more than %v from this peer's clock", t.UTC().Format(time.RFC3339Nano), ClockSkew)
	}
	if err := browsersig.Verify(key, f.topic, t, f.payload, f.sig); err != nil {
		return nil, err
	}
	return &Proof{Time: t, Sig: f.sig}, nil
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
	// The writer closes the session once the frame is out; this is in
	// case it cannot (a stalled channel). close stops it.
	s.flushTimer = time.AfterFunc(2*closeGrace, func() { s.close(closeTokenExpired) })
	s.mu.Unlock()
	s.kick()
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
	s.startWriter()
	s.mu.Unlock()
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
		link, closeConn := s.link, s.closeConn
		for _, t := range []*time.Timer{s.connectTimer, s.expiryTimer, s.flushTimer} {
			if t != nil {
				t.Stop()
			}
		}
		s.mu.Unlock()
		s.cancel()
		for _, t := range topics {
			s.srv.bridge.leave(t, s)
		}
		if closeConn != nil {
			closeConn(reason) // ends the WebSocket reader, and a writer blocked in a write
		}
		if link != nil {
			// Closing waits for pion's goroutines, our callbacks among
			// them, so it must not run on one of them.
			s.srv.wg.Add(1)
			go func() {
				defer s.srv.wg.Done()
				link.close()
			}()
		}
		// Last: until the session leaves the map, Server.Close finds it
		// and waits (in closeOnce) for the wg.Add above, which must come
		// before its wg.Wait.
		s.srv.removeSession(s)
		s.srv.relays.sessionGone(s)
		s.srv.metrics.closed.WithLabelValues(reason).Inc()
		s.log.Debug("session closed", "reason", reason)
		if h := s.srv.testHookClosed; h != nil {
			h(reason)
		}
	})
}
