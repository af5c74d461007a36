package webrtc

import (
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// WebSocketPath is where the node mounts WebSocketHandler: browsers that
// can reach a peer directly (a public peer, a peer on the same network)
// connect there and speak the same frames as over a data channel, at a
// fraction of a data channel's memory and CPU. Browsers of a NAT'd
// volunteer, which only WebRTC can reach, use OfferPath.
const WebSocketPath = "/v1/ws"

// The WebSocket handshake, after the HTTP upgrade: the browser's first
// message is a text message holding its token (empty on an
// insecure-no-auth peer); the server answers with an ACK frame (request 0)
// and the session is open, or closes with one of these codes and the
// reason. A browser that sends nothing within ConnectTimeout is closed.
const (
	// WebSocketUnauthorized: no token, or a token the peer refuses.
	WebSocketUnauthorized = 4401
	// WebSocketFull: the peer has no room for another session (or for
	// another of this token's subject).
	WebSocketFull = 4503
	// WebSocketBadHandshake: the first message was not a text message.
	WebSocketBadHandshake = 4400
)

const (
	// wsPingInterval is how often the server pings each WebSocket; a
	// browser answers pings by itself.
	wsPingInterval = 25 * time.Second
	// wsIdleTimeout closes a WebSocket from which nothing (not even a
	// pong) arrived for this long.
	wsIdleTimeout = 2*wsPingInterval + 10*time.Second
	// wsBufferSize is the read and write buffer of each connection. Frames
	// are usually small; the write buffers are pooled between connections,
	// so an idle browser holds none.
	wsBufferSize = 4 << 10
)

// wsWriteBuffers are shared by every connection's writes (gorilla takes
// one for the duration of a write).
var wsWriteBuffers sync.Pool

// WebSocketHandler returns the handler of WebSocketPath.
func (s *Server) WebSocketHandler() http.Handler {
	up := &websocket.Upgrader{
		HandshakeTimeout: s.cfg.ConnectTimeout,
		ReadBufferSize:   wsBufferSize,
		WriteBufferSize:  wsBufferSize,
		WriteBufferPool:  &wsWriteBuffers,
		CheckOrigin:      s.originAllowed,
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			httpError(w, status, reason.Error())
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.offers.allow(r.RemoteAddr, s.now()) {
			s.metrics.offers.WithLabelValues(offerRateLimited).Inc()
			w.Header().Set("Retry-After", "1")
			httpError(w, http.StatusTooManyRequests, "too many connections from this address: slow down")
			return
		}
		if !websocket.IsWebSocketUpgrade(r) {
			httpError(w, http.StatusBadRequest, "a WebSocket upgrade is expected here")
			return
		}
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			s.metrics.offers.WithLabelValues(offerBadRequest).Inc()
			return // the upgrader answered
		}
		s.acceptWebSocket(conn, r.RemoteAddr)
	})
}

// originAllowed is the WebSocket form of the offer endpoint's rule on
// pages (originRefused).
func (s *Server) originAllowed(r *http.Request) bool {
	if err := s.originRefused(r); err != nil {
		s.log.Debug("websocket refused", "remote", r.RemoteAddr, "reason", err)
		return false
	}
	return true
}

// acceptWebSocket reads the token, admits the session and starts it, or
// closes conn with the reason.
func (s *Server) acceptWebSocket(conn *websocket.Conn, remote string) {
	refuse := func(code int, label, reason string) {
		s.metrics.offers.WithLabelValues(label).Inc()
		s.log.Debug("websocket refused", "remote", remote, "reason", reason)
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
		_ = conn.Close()
	}
	conn.SetReadLimit(int64(max(s.cfg.MaxFrameSize, MaxTokenSize)))
	_ = conn.SetReadDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	typ, msg, err := conn.ReadMessage()
	if err != nil {
		_ = conn.Close()
		s.metrics.offers.WithLabelValues(offerBadRequest).Inc()
		return
	}
	if typ != websocket.TextMessage || len(msg) > MaxTokenSize {
		refuse(WebSocketBadHandshake, offerBadRequest, "the first message must be the token, as text")
		return
	}
	token := string(msg)
	claims, err := s.authorize(token)
	if err != nil {
		refuse(WebSocketUnauthorized, offerUnauthorized, err.Error())
		return
	}
	sess, err := s.addSession(claims, s.budgetSubject(claims, token), remote)
	if err != nil {
		refuse(WebSocketFull, offerFull, err.Error())
		return
	}
	if !s.cfg.InsecureNoAuth {
		sess.token = token
	}
	s.startPinger.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed {
			s.wg.Add(1)
			go s.pingWebSockets()
		}
	})
	if !sess.attachWebSocket(conn) {
		_ = conn.Close()
		return
	}
	s.metrics.offers.WithLabelValues(offerAccepted).Inc()
	s.log.Debug("websocket session open", "remote", remote, "session", sess.id, "sub", claims.Subject)
	hello, _ := appendFrame(nil, &frame{typ: frameAck}) // ACK 0: the browser may send frames
	sess.sendControl(hello)
}

// attachWebSocket makes conn the session's channel and starts its reader
// and writer; false if the session closed meanwhile.
func (s *session) attachWebSocket(conn *websocket.Conn) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.ch = wsChannel{conn: conn, stall: s.srv.cfg.StallTimeout}
	s.closeConn = func(reason string) {
		code := websocket.CloseNormalClosure
		if reason == closeServer {
			code = websocket.CloseGoingAway
		}
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(100*time.Millisecond))
		_ = conn.Close()
	}
	s.opened = true
	s.srv.wg.Add(1) // under s.mu, so that no Add races with Close's Wait
	s.mu.Unlock()
	s.srv.sessionOpened(s)
	go s.readWebSocket(conn)
	return true
}

// readWebSocket reads the browser's frames until the connection ends. The
// server's pinger (pingWebSockets) keeps the connection alive; anything
// from the browser, a pong included, extends its read deadline.
func (s *session) readWebSocket(conn *websocket.Conn) {
	defer s.srv.wg.Done()
	defer s.close(closeClient)
	conn.SetReadLimit(int64(s.srv.cfg.MaxFrameSize))
	alive := func() { _ = conn.SetReadDeadline(time.Now().Add(wsIdleTimeout)) }
	alive()
	conn.SetPongHandler(func(string) error { alive(); return nil })
	for {
		typ, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		alive()
		s.onMessage(data, typ == websocket.TextMessage)
	}
}

// pingWebSockets pings every WebSocket session each wsPingInterval, until
// the server closes: one goroutine for all of them.
func (s *Server) pingWebSockets() {
	defer s.wg.Done()
	t := time.NewTicker(wsPingInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.pingRound()
	}
}

// wsPingWait is the longest a ping waits for its session: for the
// session's writer (gorilla's WriteControl waits for a write in progress;
// a session whose browser stopped reading has one blocked until
// StallTimeout), then for the socket. A ping that times out on the socket
// ends the connection (gorilla marks it failed), so this is as long as one
// round had in all before. wsPingParallel pings are under way at once.
const (
	wsPingWait     = time.Second
	wsPingParallel = 16
)

// pingRound pings every WebSocket session once, each with its own
// deadline, wsPingParallel at a time: stalled sessions cost the round
// wsPingWait each, shared over the parallel pings, and the sessions after
// them are pinged all the same. (With one deadline for the round, a
// stalled session took all of it, and the idle sessions after it went
// unpinged until they timed out.)
func (s *Server) pingRound() {
	s.mu.Lock()
	var conns []*websocket.Conn
	for _, sess := range s.sessions {
		sess.mu.Lock()
		if ws, ok := sess.ch.(wsChannel); ok {
			conns = append(conns, ws.conn)
		}
		sess.mu.Unlock()
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	busy := make(chan struct{}, wsPingParallel)
	for _, c := range conns {
		busy <- struct{}{}
		wg.Go(func() {
			defer func() { <-busy }()
			_ = c.WriteControl(websocket.PingMessage, nil, time.Now().Add(wsPingWait))
		})
	}
	wg.Wait()
}
