package webrtc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/immense-p2p/immense/internal/hostname"
)

// OfferPath is where the node mounts the Server: browsers POST their SDP
// offer there.
const OfferPath = "/v1/webrtc/offer"

// offerRequest is the body of a POST to OfferPath.
type offerRequest struct {
	// Type, if present, must be "offer": it lets a browser send
	// {...pc.localDescription.toJSON(), token}.
	Type  string `json:"type,omitempty"`
	SDP   string `json:"sdp"`
	Token string `json:"token,omitempty"`
}

// offerResponse is the body of a successful answer; it can be passed to
// the browser's setRemoteDescription as is.
type offerResponse struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
}

type errorResponse struct {
	Error string `json:"error"`
}

var errRequestTooLarge = errors.New("request body too large")

// decodeOfferRequest reads and checks a signaling request body of at most
// max bytes.
func decodeOfferRequest(body io.Reader, max int) (offerRequest, error) {
	var req offerRequest
	b, err := io.ReadAll(io.LimitReader(body, int64(max)+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return req, errRequestTooLarge
		}
		return req, fmt.Errorf("read request: %w", err)
	}
	if len(b) > max {
		return req, errRequestTooLarge
	}
	if err := decodeStrictJSON(b, &req, []string{"type", "sdp", "token"}); err != nil {
		return req, fmt.Errorf("request is not a JSON object {\"sdp\", \"token\"}: %w", err)
	}
	if req.Type != "" && req.Type != "offer" {
		return req, fmt.Errorf("type %q, want \"offer\"", req.Type)
	}
	if !strings.HasPrefix(req.SDP, "v=0") {
		return req, errors.New("sdp is not a session description (must start with v=0)")
	}
	if !strings.Contains(req.SDP, "m=application") {
		return req, errors.New("sdp offers no data channel (m=application): create the data channel before the offer")
	}
	if len(req.Token) > MaxTokenSize {
		return req, fmt.Errorf("token of %d bytes, at most %d", len(req.Token), MaxTokenSize)
	}
	return req, nil
}

// ServeHTTP answers signaling: POST OfferPath with {"sdp", "token"} gets
// {"type": "answer", "sdp"} once the server's ICE candidates are all
// gathered (no trickle: one round trip, and no second endpoint to
// secure).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, ok := s.readOffer(w, r, func(result string) { s.metrics.offers.WithLabelValues(result).Inc() })
	if !ok {
		return
	}
	answer, err := s.Answer(r.Context(), req.SDP, req.Token, r.RemoteAddr)
	if err != nil {
		var oe *OfferError
		errors.As(err, &oe)
		switch oe.Status {
		case http.StatusUnauthorized:
			w.Header().Set("WWW-Authenticate", `Bearer realm="immense"`)
		case http.StatusServiceUnavailable:
			w.Header().Set("Retry-After", "5")
		}
		httpError(w, oe.Status, oe.Message)
		return
	}
	writeJSON(w, http.StatusOK, offerResponse{Type: "answer", SDP: answer})
}

// readOffer answers CORS preflights and other methods than POST,
// rate-limits r's address, and reads and checks the offer in its body. If
// it returns false, it has answered r, and counted a refusal with count
// (offerRateLimited or offerBadRequest).
func (s *Server) readOffer(w http.ResponseWriter, r *http.Request, count func(result string)) (offerRequest, bool) {
	// Refused, not just left without CORS headers: a text/plain POST
	// needs no preflight, and would otherwise open a session the page
	// merely cannot read the answer of.
	if err := s.originRefused(r); err != nil {
		count(offerUnauthorized)
		httpError(w, http.StatusForbidden, err.Error())
		return offerRequest{}, false
	}
	s.cors(w, r)
	switch r.Method {
	case http.MethodOptions:
		w.WriteHeader(http.StatusNoContent)
		return offerRequest{}, false
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		httpError(w, http.StatusMethodNotAllowed, "use POST")
		return offerRequest{}, false
	}
	if !s.offers.allow(r.RemoteAddr, s.now()) {
		count(offerRateLimited)
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusTooManyRequests, "too many offers from this address: slow down")
		return offerRequest{}, false
	}
	req, err := decodeOfferRequest(http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxOfferSize)), s.cfg.MaxOfferSize)
	if err != nil {
		count(offerBadRequest)
		if errors.Is(err, errRequestTooLarge) {
			httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request larger than %d bytes", s.cfg.MaxOfferSize))
			return offerRequest{}, false
		}
		httpError(w, http.StatusBadRequest, err.Error())
		return offerRequest{}, false
	}
	return req, true
}

// originRefused is the rule on which pages may connect browsers: a page
// whose origin is allowed (any, by default: tokens, not origins, say what
// a browser may do). And a peer that admits browsers without a token
// (InsecureNoAuth) gives whoever reaches it every topic, publishing as the
// peer itself, while a page on any web site can reach a peer on the
// visitor's loopback; so then only pages of this machine may: the Host
// must name this server (hostname.Served: localhost, a loopback or
// listening IP, or one of AllowedHosts, so a name an attacker's DNS
// rebinds to 127.0.0.1 fails), and an Origin, when the browser sends one,
// be the peer's own, another on localhost, a loopback address or an
// allowed host (an app's dev server), or one named in AllowedOrigins.
func (s *Server) originRefused(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if !s.cfg.InsecureNoAuth {
		if origin == "" || slices.Contains(s.cfg.AllowedOrigins, "*") || slices.Contains(s.cfg.AllowedOrigins, origin) {
			return nil
		}
		return fmt.Errorf("origin %q is not allowed", origin)
	}
	if !hostname.Served(r, s.cfg.AllowedHosts) {
		return fmt.Errorf("this peer admits browsers without a token (insecure-no-auth), so only by localhost, its IP address or a name of --http-allowed-hosts, not by %q", r.Host)
	}
	if origin == "" || slices.Contains(s.cfg.AllowedOrigins, origin) {
		return nil
	}
	if u, err := url.Parse(origin); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		oh := strings.ToLower(u.Hostname())
		ip := net.ParseIP(oh)
		if strings.EqualFold(u.Host, r.Host) || hostname.IsLocalhost(oh) || (ip != nil && ip.IsLoopback()) || slices.Contains(s.cfg.AllowedHosts, oh) {
			return nil
		}
	}
	return fmt.Errorf("this peer admits browsers without a token (insecure-no-auth), so only from pages of this machine or --browser-allowed-origins, not from %q", origin)
}

// OfferError is why Answer refused an offer: the HTTP status the offer
// endpoint answers with, and a message for the browser.
type OfferError struct {
	Status  int
	Message string
}

func (e *OfferError) Error() string { return e.Message }

// Answer admits a browser's offer (its SDP and token) as the offer
// endpoint does, and returns the SDP answer with every local candidate. It
// is the entry point for offers that arrive by other ways than this peer's
// own HTTP, such as relayed signaling (signalrelay.go); remote names the
// sender in logs. Every error is an *OfferError.
func (s *Server) Answer(ctx context.Context, offerSDP, token, remote string) (string, error) {
	claims, err := s.authorize(token)
	if err != nil {
		s.metrics.offers.WithLabelValues(offerUnauthorized).Inc()
		s.log.Debug("offer refused", "remote", remote, "err", err)
		return "", &OfferError{http.StatusUnauthorized, err.Error()}
	}
	sess, err := s.addSession(claims, s.budgetSubject(claims, token), remote)
	if err != nil {
		s.metrics.offers.WithLabelValues(offerFull).Inc()
		return "", &OfferError{http.StatusServiceUnavailable, err.Error()}
	}
	if !s.cfg.InsecureNoAuth {
		sess.token = token // verified above; relayed with its publishes
	}
	answer, status, err := sess.answer(ctx, offerSDP)
	if err != nil {
		s.metrics.offers.WithLabelValues(offerFailed).Inc()
		sess.close(closeFailed)
		s.log.Debug("offer failed", "remote", remote, "session", sess.id, "err", err)
		return "", &OfferError{status, err.Error()}
	}
	s.metrics.offers.WithLabelValues(offerAccepted).Inc()
	s.log.Debug("session answered", "remote", remote, "session", sess.id, "sub", claims.Subject)
	return answer, nil
}

// budgetSubject is what a session counts against for MaxSessionsPerSubject:
// the token's subject, or the token itself when it names none.
func (s *Server) budgetSubject(claims Claims, token string) string {
	switch {
	case s.cfg.InsecureNoAuth:
		return ""
	case claims.Subject != "":
		return "sub:" + claims.Subject
	}
	h := sha256.Sum256([]byte(token))
	return "token:" + hex.EncodeToString(h[:8])
}

// authorize turns a request's token into the session's claims.
func (s *Server) authorize(token string) (Claims, error) {
	if s.cfg.InsecureNoAuth {
		return Claims{Subject: "insecure-no-auth", Read: []string{"*"}, Write: []string{"*"}}, nil
	}
	if len(s.cfg.Secret) == 0 && len(s.cfg.PublicKeys) == 0 {
		return Claims{}, errors.New("this peer accepts no browsers: it has no app public key and no token secret")
	}
	if token == "" {
		return Claims{}, errors.New("token required")
	}
	return s.tokens.Verify(token, s.now())
}

func (s *Server) cors(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	switch {
	case slices.Contains(s.cfg.AllowedOrigins, "*"):
		h.Set("Access-Control-Allow-Origin", "*")
	case slices.Contains(s.cfg.AllowedOrigins, origin):
		h.Set("Access-Control-Allow-Origin", origin)
	default:
		return
	}
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Content-Type")
		h.Set("Access-Control-Max-Age", "600")
	}
}

// answer starts the session's link for the browser's offer and returns
// the SDP answer with every local candidate, or an HTTP status and error.
func (sess *session) answer(ctx context.Context, offer string) (string, int, error) {
	srv := sess.srv
	o, err := parseOffer(offer)
	if err != nil {
		return "", http.StatusBadRequest, fmt.Errorf("bad offer: %w", err)
	}
	link, answer, err := srv.stack.newLink(ctx, o, srv.cfg.GatherTimeout, func() { sess.close(closeFailed) })
	if err != nil {
		if ctx.Err() != nil {
			return "", http.StatusServiceUnavailable, err
		}
		return "", http.StatusInternalServerError, err
	}
	if !sess.setLink(link) {
		link.close()
		return "", http.StatusServiceUnavailable, ErrClosed
	}
	sess.startConnectTimer()
	return answer, 0, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func httpError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorResponse{Error: msg})
}
