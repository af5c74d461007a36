package webrtc

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
)

// signalRelayEnv is a volunteer (a Server with its Relay, answering streams) and
// a forwarder (another Server's Relay.Handler on httptest) whose dialer
// reaches the volunteer, under the ID "volunteer", over loopback TCP.
type signalRelayEnv struct {
	vol       *testEnv
	volRelay  *SignalRelay
	key       ed25519.PrivateKey // the volunteer's; signKey signs if set (under answerMu)
	signKey   ed25519.PrivateKey
	id        string // the volunteer's peer ID, from key
	url       string // the forwarder's SignalPath
	forwarder *SignalRelay
	wg        sync.WaitGroup
	// answer, if set (setAnswer), replaces the volunteer: it gets the
	// stream.
	answerMu sync.Mutex
	answer   func(SignalStream)
}

func (e *signalRelayEnv) setAnswer(f func(SignalStream)) {
	e.answerMu.Lock()
	defer e.answerMu.Unlock()
	e.answer = f
}

func (e *signalRelayEnv) answerer() func(SignalStream) {
	e.answerMu.Lock()
	defer e.answerMu.Unlock()
	return e.answer
}

func newSignalRelayEnv(t *testing.T, rc SignalRelayConfig) *signalRelayEnv {
	t.Helper()
	e := &signalRelayEnv{vol: newTestEnv(t, nil)}
	_, e.key, _ = ed25519.GenerateKey(nil)
	lk, err := crypto.UnmarshalEd25519PrivateKey(e.key)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := peer.IDFromPrivateKey(lk)
	if err != nil {
		t.Fatal(err)
	}
	e.id = pid.String()
	if e.volRelay, err = NewSignalRelay(e.vol.srv, rc); err != nil {
		t.Fatal(err)
	}
	fwd := newTestEnv(t, nil)
	if e.forwarder, err = NewSignalRelay(fwd.srv, rc); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dial := func(ctx context.Context, peer string) (SignalStream, error) {
		if peer != "volunteer" && peer != e.id {
			return nil, ErrNoSignalPeer
		}
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return nil, err
		}
		return c.(*net.TCPConn), nil
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				if answer := e.answerer(); answer != nil {
					answer(c.(*net.TCPConn))
					return
				}
				key := e.key
				e.answerMu.Lock()
				if e.signKey != nil {
					key = e.signKey
				}
				e.answerMu.Unlock()
				e.volRelay.ServeStream(c.(*net.TCPConn), "forwarder", func(b []byte) ([]byte, error) { return ed25519.Sign(key, b), nil })
			}()
		}
	}()
	hs := httptest.NewServer(e.forwarder.Handler(dial))
	e.url = hs.URL + SignalPath
	t.Cleanup(func() {
		hs.Close()
		ln.Close()
		e.wg.Wait()
	})
	return e
}

// TestRelayedSignaling: a client connects to a volunteer through a
// forwarder's SignalPath with the same Dial as direct signaling; the answer
// carries the volunteer's signature over the client's offer and the
// answer; the token is checked by the volunteer.
func TestRelayedSignaling(t *testing.T) {
	e := newSignalRelayEnv(t, DefaultSignalRelayConfig())
	ctx := testContext(t)
	tok := e.vol.token([]string{"room"}, []string{"room"})

	c, err := Dial(ctx, e.url+"?peer="+e.id, tok, WithLoopbackOnly())
	if err != nil {
		t.Fatalf("Dial through the relay: %v", err)
	}
	defer c.Close()
	if err := c.Subscribe(ctx, "room"); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, "room", []byte("relayed")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-c.Messages():
		if string(m.Data) != "relayed" {
			t.Fatalf("got %q", m.Data)
		}
	case <-ctx.Done():
		t.Fatal("no message over the relayed session")
	}
	if e.vol.srv.Sessions() != 1 || e.forwarder.srv.Sessions() != 0 {
		t.Fatalf("sessions: volunteer %d, forwarder %d; want 1 and 0", e.vol.srv.Sessions(), e.forwarder.srv.Sessions())
	}

	// The signature binds the answer to this offer and this volunteer.
	_, sdp := rawOffer(t)
	resp, body := postOffer(t, e.url+"?peer=volunteer", offerRequest{SDP: sdp, Token: tok})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("relayed offer: %d %s", resp.StatusCode, body)
	}
	var ans relayedAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(ans.Sig)
	pub := e.key.Public().(ed25519.PublicKey)
	if ans.Type != "answer" || ans.Peer != "volunteer" || !ed25519.Verify(pub, AnswerSignedBytes(sdp, ans.SDP), sig) {
		t.Fatalf("answer %+v does not verify", ans)
	}
	if ed25519.Verify(pub, AnswerSignedBytes(sdp+" ", ans.SDP), sig) {
		t.Fatal("the signature verifies for another offer")
	}
	if got := value(t, e.volRelay.results.WithLabelValues("serve", relayAnswered)); got != 2 {
		t.Errorf("volunteer counted %v answers, want 2", got)
	}
}

// TestRelayedSignalingVerified: the Go client, like the JS one, refuses a
// relayed answer not signed by the peer it asked for (a forwarder answering
// in the volunteer's place), and a peer parameter that names no Ed25519 key.
func TestRelayedSignalingVerified(t *testing.T) {
	e := newSignalRelayEnv(t, DefaultSignalRelayConfig())
	ctx := testContext(t)
	tok := e.vol.token([]string{"room"}, nil)
	_, signKey, _ := ed25519.GenerateKey(nil)
	e.answerMu.Lock()
	e.signKey = signKey
	e.answerMu.Unlock()
	if c, err := Dial(ctx, e.url+"?peer="+e.id, tok, WithLoopbackOnly()); err == nil || !strings.Contains(err.Error(), "not signed by the peer") {
		if c != nil {
			c.Close()
		}
		t.Fatalf("an answer signed by another key: %v, want refused", err)
	}
	if c, err := Dial(ctx, e.url+"?peer=volunteer", tok, WithLoopbackOnly()); err == nil || !strings.Contains(err.Error(), "not a peer ID") {
		if c != nil {
			c.Close()
		}
		t.Fatalf("a peer parameter that is no peer ID: %v, want refused", err)
	}
}

// TestRelayedSignalingRefusals: what the forwarder refuses before
// forwarding, and what the volunteer's refusals look like to the browser.
func TestRelayedSignalingRefusals(t *testing.T) {
	rc := DefaultSignalRelayConfig()
	rc.PerForwarderRate, rc.PerForwarderBurst = 0.001, 2
	rc.Timeout = 2 * time.Second
	e := newSignalRelayEnv(t, rc)
	_, sdp := rawOffer(t)
	tok := e.vol.token([]string{"room"}, nil)

	for name, tc := range map[string]struct {
		query string
		body  any
		want  int
	}{
		"no peer":      {"", offerRequest{SDP: sdp, Token: tok}, http.StatusBadRequest},
		"unknown peer": {"?peer=stranger", offerRequest{SDP: sdp, Token: tok}, http.StatusNotFound},
		"long peer":    {"?peer=" + strings.Repeat("p", 200), offerRequest{SDP: sdp, Token: tok}, http.StatusBadRequest},
		"not an offer": {"?peer=volunteer", `{"sdp":"hello"}`, http.StatusBadRequest},
		"too large":    {"?peer=volunteer", offerRequest{SDP: sdp + strings.Repeat("a", 70<<10), Token: tok}, http.StatusRequestEntityTooLarge},
		"bad token":    {"?peer=volunteer", offerRequest{SDP: sdp, Token: "x.y.z"}, http.StatusUnauthorized},
		"no token":     {"?peer=volunteer", offerRequest{SDP: sdp}, http.StatusUnauthorized},
	} {
		resp, body := postOffer(t, e.url+tc.query, tc.body)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d %s, want %d", name, resp.StatusCode, body, tc.want)
		}
	}
	// The two refused tokens used the forwarder's burst of 2 at the
	// volunteer: a third offer through it is refused there.
	resp, body := postOffer(t, e.url+"?peer=volunteer", offerRequest{SDP: sdp, Token: tok})
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("third offer through one forwarder: %d %s, want 429", resp.StatusCode, body)
	}
	if n := e.vol.srv.Sessions(); n != 0 {
		t.Errorf("refused offers left %d sessions", n)
	}

	// A volunteer that never answers: the forwarder gives up after its
	// Timeout (502), and a forged answer is refused the same way.
	for name, answer := range map[string]func(SignalStream){
		"silent": func(st SignalStream) { _, _ = st.Read(make([]byte, 1)); <-time.After(3 * time.Second); st.Close() },
		"forged": func(st SignalStream) {
			_, _ = st.Write([]byte("\x01{\"status\":200,\"sdp\":\"v=0\",\"sig\":\"short\"}"))
			st.Close()
		},
	} {
		e.setAnswer(answer)
		resp, body := postOffer(t, e.url+"?peer=volunteer", offerRequest{SDP: sdp, Token: tok})
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("%s volunteer: %d %s, want 502", name, resp.StatusCode, body)
		}
	}
}

// TestRelayBusy: offers beyond MaxForwards at once are refused with 503.
func TestRelayBusy(t *testing.T) {
	rc := DefaultSignalRelayConfig()
	rc.MaxForwards = 1
	e := newSignalRelayEnv(t, rc)
	release := make(chan struct{})
	held := make(chan struct{})
	e.setAnswer(func(st SignalStream) {
		close(held)
		<-release
		st.Close()
	})
	_, sdp := rawOffer(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, _ := http.Post(e.url+"?peer=volunteer", "application/json", strings.NewReader(mustJSON(offerRequest{SDP: sdp, Token: "x"})))
		if resp != nil {
			resp.Body.Close()
		}
	}()
	<-held
	resp, body := postOffer(t, e.url+"?peer=volunteer", offerRequest{SDP: sdp, Token: "x"})
	close(release)
	<-done
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second forward at once: %d %s, want 503", resp.StatusCode, body)
	}
}

// TestRelayServedPerForwarder: one forwarding peer holding its share of a
// volunteer's answer slots (a quarter of MaxServed) gets 503 for more,
// while another forwarder is still answered; and streams that send
// nothing hold no slot at all (the offer is read before one is taken:
// before, four throwaway forwarder identities with four silent streams
// each held every slot).
func TestRelayServedPerForwarder(t *testing.T) {
	vol := newTestEnv(t, nil)
	rc := DefaultSignalRelayConfig()
	rc.MaxServed = 4
	r, err := NewSignalRelay(vol.srv, rc)
	if err != nil {
		t.Fatal(err)
	}
	taken := make(chan string, 4)
	gate := make(chan struct{})
	var held atomic.Bool
	r.testHookServing = func(f string) {
		taken <- f
		if f == "f1" && held.CompareAndSwap(false, true) {
			<-gate // the first offer of f1 keeps its slot until the test lets go
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	// serve starts answering a stream from forwarder and returns the
	// forwarder's end.
	serve := func(forwarder string) *net.TCPConn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.ServeStream(sc.(*net.TCPConn), forwarder, func(b []byte) ([]byte, error) { return make([]byte, 64), nil })
		}()
		return c.(*net.TCPConn)
	}
	answer := func(c *net.TCPConn, send string) signalReply {
		t.Helper()
		c.Write([]byte(send))
		c.CloseWrite()
		a, err := decodeSignalAnswer(c, maxSignalAnswer)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	_, sdp := rawOffer(t)
	req := "\x01" + mustJSON(offerRequest{SDP: sdp, Token: "x.y.z"})
	// Silent streams from four forwarders take nothing.
	for i := range 4 {
		silent := serve(fmt.Sprintf("silent%d", i))
		defer silent.Close()
	}
	hold := serve("f1")
	defer hold.Close()
	hold.Write([]byte(req))
	hold.CloseWrite()
	if f := <-taken; f != "f1" {
		t.Fatalf("slot taken by %q", f)
	}
	if a := answer(serve("f1"), req); a.Status != http.StatusServiceUnavailable {
		t.Errorf("a second offer from f1 at once: %+v, want 503", a)
	}
	if a := answer(serve("f2"), req); a.Status != http.StatusUnauthorized {
		t.Errorf("an offer from f2 beside 4 silent streams and f1's: %+v, want the token check's 401", a)
	}
	close(gate)
	a, err := decodeSignalAnswer(hold, maxSignalAnswer)
	if err != nil || a.Status != http.StatusUnauthorized {
		t.Errorf("the held offer from f1: %+v, %v; want the token check's 401", a, err)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestNewRelayRegisters(t *testing.T) {
	cfg := testConfig(t)
	srv, err := New(newMemBus(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := NewSignalRelay(srv, SignalRelayConfig{}); err == nil {
		t.Error("a zero SignalRelayConfig was accepted")
	}
	if _, err := NewSignalRelay(srv, DefaultSignalRelayConfig()); err != nil {
		t.Fatal(err)
	}
	var are prometheus.AlreadyRegisteredError
	if _, err := NewSignalRelay(srv, DefaultSignalRelayConfig()); !errors.As(err, &are) {
		t.Errorf("a second relay on one registry: %v", err)
	}
}

func TestDecodeSignalAnswer(t *testing.T) {
	sig := base64.RawURLEncoding.EncodeToString(make([]byte, 64))
	good := []string{
		`{"status":200,"sdp":"v=0\r\n","sig":"` + sig + `"}`,
		`{"status":401,"error":"token required"}`,
	}
	for _, g := range good {
		if _, err := decodeSignalAnswer(strings.NewReader("\x01"+g), 1024); err != nil {
			t.Errorf("%s: %v", g, err)
		}
	}
	for name, b := range map[string]string{
		"empty":            "",
		"version":          "\x02" + good[0],
		"no sig":           "\x01" + `{"status":200,"sdp":"v=0"}`,
		"short sig":        "\x01" + `{"status":200,"sdp":"v=0","sig":"AAAA"}`,
		"not sdp":          "\x01" + `{"status":200,"sdp":"hello","sig":"` + sig + `"}`,
		"status 302":       "\x01" + `{"status":302,"error":"x"}`,
		"error no reason":  "\x01" + `{"status":500}`,
		"error with sdp":   "\x01" + `{"status":500,"error":"x","sdp":"v=0"}`,
		"twice":            "\x01" + `{"status":401,"status":200,"error":"x"}`,
		"too large":        "\x01" + `{"status":401,"error":"` + strings.Repeat("x", 2000) + `"}`,
		"trailing":         "\x01" + `{"status":401,"error":"x"}{}`,
		"not json":         "\x01garbage",
		"status as string": "\x01" + `{"status":"200","sdp":"v=0","sig":"` + sig + `"}`,
	} {
		if _, err := decodeSignalAnswer(strings.NewReader(b), 1024); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzDecodeSignalAnswer(f *testing.F) {
	// More seeds in testdata/fuzz/FuzzDecodeSignalAnswer.
	f.Add([]byte("\x01" + `{"status":200,"sdp":"v=0\r\n","sig":"` + base64.RawURLEncoding.EncodeToString(make([]byte, 64)) + `"}`))
	f.Add([]byte("\x01" + `{"status":503,"error":"busy"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := decodeSignalAnswer(bytes.NewReader(b), 4096)
		if err != nil {
			return
		}
		if len(b) > 4097 || b[0] != SignalVersion {
			t.Fatalf("accepted %d bytes of version %d", len(b), b[0])
		}
		sig, serr := base64.RawURLEncoding.DecodeString(a.Sig)
		ok200 := a.Status == 200 && strings.HasPrefix(a.SDP, "v=0") && serr == nil && len(sig) == 64 && a.Error == ""
		okErr := a.Status >= 400 && a.Status <= 599 && a.Error != "" && a.SDP == "" && a.Sig == ""
		if !ok200 && !okErr {
			t.Fatalf("accepted an invalid answer: %+v", a)
		}
	})
}

// TestRelayForwardsPerClient: one browser address, or offers to one
// peer, hold at most a quarter of MaxForwards at once; others are still
// forwarded. Before, one address with a target that never answers held
// all 32 slots for 20 s each, and every NAT'd volunteer behind this peer
// was unreachable.
func TestRelayForwardsPerClient(t *testing.T) {
	rc := DefaultSignalRelayConfig()
	rc.MaxForwards = 8 // 2 per address, 2 per target
	e := newSignalRelayEnv(t, rc)
	release := make(chan struct{})
	held := make(chan struct{}, 8)
	e.setAnswer(func(st SignalStream) {
		held <- struct{}{}
		<-release
		st.Close()
	})
	_, sdp := rawOffer(t)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			resp, body := postOffer(t, e.url+"?peer=volunteer", offerRequest{SDP: sdp, Token: "x"})
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("a held forward: %d %s, want 502 once let go", resp.StatusCode, body)
			}
		})
	}
	<-held
	<-held
	if resp, body := postOffer(t, e.url+"?peer="+e.id, offerRequest{SDP: sdp, Token: "x"}); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a third forward from one address at once: %d %s, want 503", resp.StatusCode, body)
	}
	if in, ofTarget := e.forwarder.forwards.InUse("peer volunteer"); in != 2 || ofTarget != 2 {
		t.Errorf("forwards in use %d, to the volunteer %d; want 2 and 2", in, ofTarget)
	}
	close(release)
	wg.Wait()
}
