package webrtc

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Server relays topics between a Bus (the overlay) and browsers connected
// over WebRTC data channels. It is an http.Handler for the signaling
// endpoint (mount it at OfferPath).
type Server struct {
	cfg         Config
	bus         Bus
	log         *slog.Logger
	stack       *dcStack  // the sessions' shared UDP sockets and certificate
	startPinger sync.Once // pingWebSockets, from the first WebSocket on
	metrics     *metrics
	bridge      *bridge
	relays      *relays // relays.go
	now         func() time.Time
	tokens      *Verifier

	// ctx ends when the server closes; every session and feed derives
	// from it.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts every goroutine the server starts. Every Add happens
	// under a lock that Close takes before it waits (the session's, the
	// bridge's), or in session.close before the session leaves the
	// sessions map, so no Add can race with Close's Wait.
	wg sync.WaitGroup

	offers *offerLimiter // nil: offers not rate-limited

	mu        sync.Mutex
	sessions  map[uint64]*session
	pending   map[uint64]string // sessions not yet open, with their client key
	pendingBy map[string]int    // pending sessions by client key
	bySubject map[string]int    // sessions per token subject
	nextID    uint64
	closed    bool

	closeOnce sync.Once

	// testHookClosed, set by tests before any session exists, is called
	// with the reason of every session close.
	testHookClosed func(reason string)
}

// New returns a Server relaying between bus and browsers.
func New(bus Bus, cfg Config) (*Server, error) {
	if bus == nil {
		return nil, errors.New("webrtc: nil Bus")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "webrtc")
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	// Copy what callers might mutate after New returns.
	cfg.Secret = append([]byte(nil), cfg.Secret...)
	cfg.PublicKeys = append([]ed25519.PublicKey(nil), cfg.PublicKeys...)
	tokens, err := NewVerifier(cfg.Secret, cfg.PublicKeys, cfg.MaxTokenTTL, cfg.RevokedTokens)
	if err != nil {
		return nil, err
	}
	stack, err := newDCStack(transportOptions{
		loopbackOnly:   cfg.LoopbackOnly,
		portMin:        cfg.UDPPortMin,
		portMax:        cfg.UDPPortMax,
		publicIPs:      cfg.PublicIPs,
		maxMessageSize: cfg.MaxFrameSize,
		// A browser's frames are small and one at a time: the buffer
		// need only hold two of the largest (a message larger than the
		// buffer could never be reassembled), not pion's 1 MiB.
		receiveBufferSize: uint32(max(2*cfg.MaxFrameSize, 64<<10)),
		iceLite:           cfg.ICELite,
		log:               log,
	}, cfg.ICEServers)
	if err != nil {
		return nil, err
	}
	cfg.AllowedOrigins = append([]string(nil), cfg.AllowedOrigins...)
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:       cfg,
		bus:       bus,
		log:       log,
		stack:     stack,
		metrics:   m,
		now:       now,
		tokens:    tokens,
		ctx:       ctx,
		cancel:    cancel,
		sessions:  make(map[uint64]*session),
		pending:   make(map[uint64]string),
		pendingBy: make(map[string]int),
		bySubject: make(map[string]int),
		offers:    newOfferLimiter(cfg.OfferRate, cfg.OfferBurst),
	}
	s.bridge = newBridge(s)
	if s.relays, err = newRelays(s); err != nil {
		s.stack.close()
		cancel()
		return nil, err
	}
	s.relays.start()
	switch {
	case cfg.InsecureNoAuth:
		log.Warn("browsers are admitted without a token and may read and write every topic (insecure-no-auth); never do this outside a devnet")
	case len(cfg.Secret) == 0 && len(cfg.PublicKeys) == 0:
		log.Warn("no app public key or token secret configured: every browser will be refused")
	}
	return s, nil
}

// Sessions returns the number of sessions open or connecting.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Close disconnects every browser, drops the overlay subscriptions and
// waits for the server's goroutines. It is idempotent and always returns
// nil.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		sessions := make([]*session, 0, len(s.sessions))
		for _, sess := range s.sessions {
			sessions = append(sessions, sess)
		}
		s.mu.Unlock()
		for _, sess := range sessions {
			sess.close(closeServer)
		}
		s.bridge.close()
		s.cancel()
		s.wg.Wait()
		s.stack.close()
	})
	return nil
}

// addSession registers a new session for claims, counted against subject
// ("" for none) and, while it connects, against its client's address
// (remote, counted by clientKey), or reports why not.
func (s *Server) addSession(claims Claims, subject, remote string) (*session, error) {
	client := clientKey(remote)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if len(s.sessions) >= s.cfg.MaxSessions {
		return nil, errFull
	}
	if max := s.cfg.MaxPendingSessions; max > 0 && len(s.pending) >= max {
		return nil, fmt.Errorf("%w: %d sessions are still connecting", errFull, len(s.pending))
	}
	if max := s.cfg.MaxPendingPerClient; max > 0 && s.pendingBy[client] >= max {
		return nil, fmt.Errorf("%w: %d sessions from this address are still connecting", errFull, max)
	}
	if max := s.cfg.MaxSessionsPerSubject; max > 0 && subject != "" && s.bySubject[subject] >= max {
		return nil, fmt.Errorf("%w: this token's subject already has %d sessions", errSubjectFull, max)
	}
	s.nextID++
	sess := newSession(s, s.nextID, claims)
	sess.subject = subject
	s.sessions[sess.id] = sess
	s.pending[sess.id] = client
	s.pendingBy[client]++
	if subject != "" {
		s.bySubject[subject]++
	}
	s.metrics.sessions.Inc()
	return sess, nil
}

// sessionOpened takes sess off the connecting count.
func (s *Server) sessionOpened(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unpend(sess.id)
}

// unpend takes session id off the connecting counts, if it is on them.
// s.mu is held.
func (s *Server) unpend(id uint64) {
	client, ok := s.pending[id]
	if !ok {
		return
	}
	delete(s.pending, id)
	if s.pendingBy[client]--; s.pendingBy[client] <= 0 {
		delete(s.pendingBy, client)
	}
}

func (s *Server) removeSession(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[sess.id]; ok {
		delete(s.sessions, sess.id)
		s.unpend(sess.id)
		if sess.subject != "" {
			if s.bySubject[sess.subject]--; s.bySubject[sess.subject] <= 0 {
				delete(s.bySubject, sess.subject)
			}
		}
		s.metrics.sessions.Dec()
	}
}

var (
	errFull        = errors.New("webrtc: too many sessions")
	errSubjectFull = errors.New("webrtc: too many sessions for one token")
)
