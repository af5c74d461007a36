package webrtc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/immense-p2p/immense/internal/slots"
	"github.com/prometheus/client_golang/prometheus"
)

// Relayed signaling: a browser that cannot reach a peer's HTTP port (a
// volunteer behind NAT) posts its offer to a public peer, which forwards it
// over a libp2p stream to the volunteer and returns the volunteer's signed
// answer; ICE then runs between the browser and the volunteer directly
// (the volunteer's own checks open its NAT towards the browser).
//
//	browser --POST SignalPath?peer=<id> {sdp, token}--> public peer
//	public peer --SignalProtocol: request--> volunteer (Server.Answer)
//	volunteer --SignalProtocol: answer, signed--> public peer --200--> browser
//
// The stream carries one exchange. Request: the byte SignalVersion, then
// the offer endpoint's JSON body {"sdp", "token"}; the forwarder then
// closes its side. Answer: the byte SignalVersion, then a JSON object
// {"status": 200, "sdp", "sig"} or {"status": 4xx/5xx, "error"}; sig is
// the base64url Ed25519 signature by the volunteer's libp2p key over
// AnswerSignedBytes(offer, answer), which the browser checks against the
// peer ID it asked for, so that the forwarder can neither answer in the
// volunteer's place nor swap the DTLS fingerprint. The token is checked by
// the volunteer only: the forwarder sees it, as any peer a browser's
// messages pass through does.

const (
	// SignalPath is where a peer takes offers for other peers: POST
	// SignalPath?peer=<peer ID> with the offer endpoint's body.
	SignalPath = "/v1/webrtc/signal"
	// SignalPeersPath lists the peers a browser can reach through
	// SignalPath (the node serves it).
	SignalPeersPath = "/v1/webrtc/peers"
	// SignalProtocol is the libp2p protocol of the forward.
	SignalProtocol = "/immense/signal/1.0.0"
	// SignalVersion is the first byte of each message on SignalProtocol.
	SignalVersion = 1

	// maxSignalAnswer caps an answer read from a stream: an SDP answer
	// with its candidates is 1 to 3 KiB.
	maxSignalAnswer = 16 << 10
	// maxPeerParam caps the peer query parameter (a peer ID is 52 bytes).
	maxPeerParam = 128
	// signalReadTimeout bounds reading a forwarded request, which a
	// forwarder sends at once; and reading the rest of a refused one.
	signalReadTimeout = 5 * time.Second
	// answerDomain separates answer signatures from any other use of a
	// peer's key.
	answerDomain = "immense/signal-answer/v1"
)

// SignalStream is one stream of SignalProtocol (a libp2p network.Stream).
type SignalStream interface {
	io.ReadWriteCloser
	CloseWrite() error
	SetDeadline(time.Time) error
}

// SignalDialer opens a SignalProtocol stream to the peer whose ID is given,
// or returns an error wrapping ErrNoSignalPeer if this peer will not
// forward to it (not connected, or it does not take relayed offers).
type SignalDialer func(ctx context.Context, peer string) (SignalStream, error)

// ErrNoSignalPeer is returned by a SignalDialer for a peer it will not
// forward offers to.
var ErrNoSignalPeer = errors.New("webrtc: peer not reachable for relayed signaling")

// SignalRelayConfig bounds relayed signaling on both sides.
type SignalRelayConfig struct {
	// MaxForwards is how many offers this peer forwards at once, at most a
	// quarter of them from one browser address or to one peer (beyond,
	// 503); MaxServed how many relayed offers it answers at once.
	MaxForwards, MaxServed int
	// PerForwarderRate and PerForwarderBurst limit the relayed offers a
	// volunteer answers per forwarding peer. The forwarder limits each
	// browser address by the Server's OfferRate; one forwarder stands for
	// many browsers, hence a larger budget.
	PerForwarderRate  float64
	PerForwarderBurst int
	// Timeout bounds each hop of a forward: the forwarder's whole
	// exchange, and the volunteer's, each including ICE gathering.
	Timeout time.Duration
}

// DefaultSignalRelayConfig: 32 forwards and 16 answers at once (an answer holds
// a session slot and a gathering peer connection); 20 relayed offers/s per
// forwarder (burst 80), four times a browser address's; 20 s per hop, the
// gathering timeout (5 s) with room for a relayed connection's latency.
func DefaultSignalRelayConfig() SignalRelayConfig {
	return SignalRelayConfig{MaxForwards: 32, MaxServed: 16, PerForwarderRate: 20, PerForwarderBurst: 80, Timeout: 20 * time.Second}
}

// SignalRelay forwards browsers' offers to other peers (Handler) and answers
// offers forwarded to this peer (ServeStream), on behalf of a Server.
type SignalRelay struct {
	srv      *Server
	cfg      SignalRelayConfig
	log      *slog.Logger
	forwards *slots.Keyed[string] // by browser address and by target
	served   *slots.Keyed[string] // by forwarding peer
	perPeer  *offerLimiter

	// testHookServing, set by tests before use, is called when an offer
	// from forwarder has taken its slots.
	testHookServing func(forwarder string)
	results         *prometheus.CounterVec // side, result
}

// SignalRelay results (metric label values); Handler counts the offer
// endpoint's refusals under the same names.
const (
	relayAnswered    = "answered"
	relayRefused     = "refused" // the volunteer answered an error
	relayBadRequest  = offerBadRequest
	relayRateLimited = offerRateLimited
	relayBusy        = "busy"
	relayNoPeer      = "no_peer"
	relayFailed      = "failed"
)

// NewSignalRelay returns the relayed signaling of srv. Its metric,
// immense_webrtc_relayed_offers_total{side,result}, is registered with
// srv's Registerer.
func NewSignalRelay(srv *Server, cfg SignalRelayConfig) (*SignalRelay, error) {
	if cfg.MaxForwards <= 0 || cfg.MaxServed <= 0 || cfg.Timeout <= 0 || cfg.PerForwarderRate < 0 {
		return nil, errors.New("webrtc: SignalRelayConfig: MaxForwards, MaxServed and Timeout must be positive")
	}
	r := &SignalRelay{
		srv: srv, cfg: cfg, log: srv.log.With("component", "webrtc.relay"),
		forwards: slots.New[string](cfg.MaxForwards, max(cfg.MaxForwards/4, 1)),
		served:   slots.New[string](cfg.MaxServed, max(cfg.MaxServed/4, 1)),
		perPeer:  newOfferLimiter(cfg.PerForwarderRate, max(cfg.PerForwarderBurst, 1)),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "immense", Subsystem: "webrtc", Name: "relayed_offers_total",
			Help: "Relayed signaling offers, by side (forward: this peer forwarded a browser's offer; serve: this peer answered a forwarded one) and result."},
			[]string{"side", "result"}),
	}
	if reg := srv.cfg.Registerer; reg != nil {
		if err := reg.Register(r.results); err != nil {
			return nil, fmt.Errorf("webrtc: register relay metrics: %w", err)
		}
	}
	return r, nil
}

// signalReply is the volunteer's message on the stream.
type signalReply struct {
	Status int    `json:"status"`
	SDP    string `json:"sdp,omitempty"`
	Sig    string `json:"sig,omitempty"`
	Error  string `json:"error,omitempty"`
}

// relayedAnswer is the forwarder's 200 to the browser: an offerResponse
// with the volunteer's ID and signature.
type relayedAnswer struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
	Peer string `json:"peer"`
	Sig  string `json:"sig"`
}

// AnswerSignedBytes are the bytes a volunteer signs for a relayed answer:
// the domain, 0, SHA-256 of the offer SDP, then the answer SDP. The hash
// binds the answer to the browser's own offer, so an answer cannot be
// replayed to another browser.
func AnswerSignedBytes(offerSDP, answerSDP string) []byte {
	h := sha256.Sum256([]byte(offerSDP))
	b := make([]byte, 0, len(answerDomain)+1+len(h)+len(answerSDP))
	b = append(b, answerDomain...)
	b = append(b, 0)
	b = append(b, h[:]...)
	return append(b, answerSDP...)
}

// decodeSignalAnswer reads and checks a volunteer's answer of at most max
// bytes (after the version byte).
func decodeSignalAnswer(r io.Reader, max int) (signalReply, error) {
	var a signalReply
	b, err := io.ReadAll(io.LimitReader(r, int64(max)+2))
	if err != nil {
		return a, fmt.Errorf("read answer: %w", err)
	}
	if len(b) == 0 {
		return a, errors.New("empty answer")
	}
	if b[0] != SignalVersion {
		return a, fmt.Errorf("answer of version %d, want %d", b[0], SignalVersion)
	}
	if len(b) > max+1 {
		return a, fmt.Errorf("answer larger than %d bytes", max)
	}
	if err := decodeStrictJSON(b[1:], &a, []string{"status", "sdp", "sig", "error"}); err != nil {
		return a, fmt.Errorf("answer is not a JSON object {\"status\", ...}: %w", err)
	}
	switch {
	case a.Status == http.StatusOK:
		if !bytes.HasPrefix([]byte(a.SDP), []byte("v=0")) || a.Error != "" {
			return a, errors.New("answer of status 200 without a session description")
		}
		if sig, err := base64.RawURLEncoding.DecodeString(a.Sig); err != nil || len(sig) != 64 {
			return a, errors.New("answer without a 64-byte base64url signature")
		}
	case a.Status >= 400 && a.Status <= 599:
		if a.Error == "" || a.SDP != "" || a.Sig != "" || len(a.Error) > 1024 {
			return a, errors.New("error answer without a reason (or with an answer)")
		}
	default:
		return a, fmt.Errorf("answer of status %d", a.Status)
	}
	return a, nil
}

// writeSignal writes the version byte and v as JSON.
func writeSignal(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append([]byte{SignalVersion}, b...))
	return err
}

// Handler serves SignalPath: it forwards a browser's offer to the peer
// named by ?peer= through dial and returns its answer. The offer is
// checked (size, form) and the browser's address rate-limited (sharing
// the offer endpoint's budget) before anything is forwarded.
func (r *SignalRelay) Handler(dial SignalDialer) http.Handler {
	s := r.srv
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		count := func(result string) { r.results.WithLabelValues("forward", result).Inc() }
		offer, ok := s.readOffer(w, req, count) // offer results are relay results
		if !ok {
			return
		}
		target := req.URL.Query().Get("peer")
		if target == "" || len(target) > maxPeerParam {
			count(relayBadRequest)
			httpError(w, http.StatusBadRequest, "?peer=<peer ID> is required: the peer to send the offer to")
			return
		}
		release, ok := r.forwards.Take("client "+clientKey(req.RemoteAddr), "peer "+target)
		if !ok {
			count(relayBusy)
			w.Header().Set("Retry-After", "1")
			httpError(w, http.StatusServiceUnavailable, "this peer is forwarding too many offers (in all, from this address, or to that peer): retry")
			return
		}
		defer release()
		ctx, cancel := context.WithTimeout(req.Context(), r.cfg.Timeout)
		defer cancel()
		ans, err := r.forward(ctx, dial, target, offerRequest{SDP: offer.SDP, Token: offer.Token})
		switch {
		case errors.Is(err, ErrNoSignalPeer):
			count(relayNoPeer)
			httpError(w, http.StatusNotFound, "this peer cannot forward offers to that peer (not connected, or it takes no relayed offers)")
			return
		case err != nil:
			count(relayFailed)
			r.log.Debug("forward failed", "peer", target, "err", err)
			httpError(w, http.StatusBadGateway, "the peer did not answer the offer")
			return
		case ans.Status != http.StatusOK:
			count(relayRefused)
			if ans.Status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="immense"`)
			}
			httpError(w, ans.Status, ans.Error)
			return
		}
		count(relayAnswered)
		writeJSON(w, http.StatusOK, relayedAnswer{Type: "answer", SDP: ans.SDP, Peer: target, Sig: ans.Sig})
	})
}

// forward sends offer to target and reads its answer, within ctx.
func (r *SignalRelay) forward(ctx context.Context, dial SignalDialer, target string, offer offerRequest) (signalReply, error) {
	st, err := dial(ctx, target)
	if err != nil {
		return signalReply{}, err
	}
	defer st.Close()
	deadline, _ := ctx.Deadline()
	_ = st.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = st.Close() })
	defer stop()
	if err := writeSignal(st, offer); err != nil {
		return signalReply{}, fmt.Errorf("send offer: %w", err)
	}
	if err := st.CloseWrite(); err != nil {
		return signalReply{}, fmt.Errorf("send offer: %w", err)
	}
	return decodeSignalAnswer(st, maxSignalAnswer)
}

// ServeStream answers one offer forwarded by the peer from over st, as the
// offer endpoint would, and signs the answer with sign (this peer's libp2p
// key). It returns when the exchange is over, within the relay's Timeout.
func (r *SignalRelay) ServeStream(st SignalStream, from string, sign func([]byte) ([]byte, error)) {
	defer st.Close()
	s := r.srv
	count := func(result string) { r.results.WithLabelValues("serve", result).Inc() }
	_ = st.SetDeadline(time.Now().Add(r.cfg.Timeout))
	refuse := func(result string, status int, msg string) {
		count(result)
		_ = writeSignal(st, signalReply{Status: status, Error: msg})
		// Read what is left of the request (bounded in size and time)
		// so that closing does not reset the stream under the answer.
		_ = st.CloseWrite()
		_ = st.SetDeadline(time.Now().Add(signalReadTimeout))
		_, _ = io.Copy(io.Discard, io.LimitReader(st, int64(s.cfg.MaxOfferSize)+1))
	}
	if !r.perPeer.allow(from, s.now()) {
		refuse(relayRateLimited, http.StatusTooManyRequests, "too many offers through this forwarding peer: slow down")
		return
	}
	// The offer is read before a slot is taken: a stream that sends
	// nothing, or trickles, holds none (only its own goroutine, for
	// signalReadTimeout).
	_ = st.SetDeadline(time.Now().Add(signalReadTimeout))
	var v [1]byte
	if _, err := io.ReadFull(st, v[:]); err != nil || v[0] != SignalVersion {
		refuse(relayBadRequest, http.StatusBadRequest, fmt.Sprintf("signal version %d, want %d", v[0], SignalVersion))
		return
	}
	offer, err := decodeOfferRequest(st, s.cfg.MaxOfferSize)
	if err != nil {
		refuse(relayBadRequest, http.StatusBadRequest, err.Error())
		return
	}
	release, ok := r.served.Take(from)
	if !ok {
		refuse(relayBusy, http.StatusServiceUnavailable, "the peer is answering too many relayed offers (in all, or from this forwarding peer): retry")
		return
	}
	defer release()
	if r.testHookServing != nil {
		r.testHookServing(from)
	}
	_ = st.SetDeadline(time.Now().Add(r.cfg.Timeout))
	ctx, cancel := context.WithTimeout(s.ctx, r.cfg.Timeout)
	defer cancel()
	answer, err := s.Answer(ctx, offer.SDP, offer.Token, "relayed by "+from)
	if err != nil {
		var oe *OfferError
		errors.As(err, &oe)
		refuse(relayRefused, oe.Status, oe.Message)
		return
	}
	sig, err := sign(AnswerSignedBytes(offer.SDP, answer))
	if err != nil {
		refuse(relayFailed, http.StatusInternalServerError, "cannot sign the answer")
		return
	}
	count(relayAnswered)
	if err := writeSignal(st, signalReply{Status: http.StatusOK, SDP: answer, Sig: base64.RawURLEncoding.EncodeToString(sig)}); err != nil {
		r.log.Debug("relayed answer not delivered", "from", from, "err", err)
	}
}

// SignalPeer is a peer a browser can reach through SignalPath, as listed at
// SignalPeersPath.
type SignalPeer struct {
	ID string `json:"id"`
	// Reachability is "private" for a peer behind NAT (reachable through a
	// circuit relay; a browser reaches it with WebRTC only) or "public".
	Reachability string `json:"reachability"`
}

// maxSignalPeers caps the list at SignalPeersPath.
const maxSignalPeers = 256

// PeersHandler serves SignalPeersPath: GET answers {"peers": [...]}, the
// first maxSignalPeers of list().
func (r *SignalRelay) PeersHandler(list func() []SignalPeer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.srv.cors(w, req)
		peers := list()
		if len(peers) > maxSignalPeers {
			peers = peers[:maxSignalPeers]
		}
		if peers == nil {
			peers = []SignalPeer{}
		}
		writeJSON(w, http.StatusOK, struct {
			Peers []SignalPeer `json:"peers"`
		}{peers})
	})
}
