package webrtc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func postOffer(t *testing.T, url string, body any) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case string:
		r = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		r = bytes.NewReader(j)
	}
	resp, err := http.Post(url, "application/json", r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	return resp, rb
}

func TestSignalingAuth(t *testing.T) {
	e := newTestEnv(t, nil)
	_, sdp := rawOffer(t)
	good := e.token([]string{"a"}, nil)
	expired, _ := Mint(testSecret, Claims{IssuedAt: time.Now().Add(-3 * time.Hour), ExpiresAt: time.Now().Add(-2 * time.Hour)})
	forged, _ := Mint(otherSecret, Claims{ExpiresAt: time.Now().Add(time.Hour), Read: []string{"*"}})
	for name, tok := range map[string]string{"missing": "", "garbage": "x.y.z", "expired": expired, "wrong secret": forged} {
		resp, body := postOffer(t, e.url, offerRequest{SDP: sdp, Token: tok})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s token: status %d %s, want 401", name, resp.StatusCode, body)
		}
	}
	if n := e.srv.Sessions(); n != 0 {
		t.Fatalf("refused offers left %d sessions", n)
	}

	resp, body := postOffer(t, e.url, offerRequest{Type: "offer", SDP: sdp, Token: good})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("good token: status %d %s", resp.StatusCode, body)
	}
	var ans offerResponse
	if err := json.Unmarshal(body, &ans); err != nil || ans.Type != "answer" || !strings.HasPrefix(ans.SDP, "v=0") {
		t.Fatalf("answer %s: %v", body, err)
	}
	// Non-trickle: the answer carries the candidates, all on loopback.
	if !strings.Contains(ans.SDP, "a=candidate:") || !strings.Contains(ans.SDP, "127.0.0.1") {
		t.Fatalf("answer has no loopback candidate:\n%s", ans.SDP)
	}
	for _, line := range strings.Split(ans.SDP, "\n") {
		if strings.HasPrefix(line, "a=candidate:") && !strings.Contains(line, " 127.") {
			t.Fatalf("non-loopback candidate in LoopbackOnly mode: %s", line)
		}
	}
	if n := e.srv.Sessions(); n != 1 {
		t.Fatalf("%d sessions after one accepted offer", n)
	}
	if got := value(t, e.srv.metrics.offers.WithLabelValues(offerUnauthorized)); got != 4 {
		t.Fatalf("unauthorized offers counted %v, want 4", got)
	}
}

func TestSignalingNoSecretRefusesAll(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.Secret = nil })
	_, sdp := rawOffer(t)
	tok, _ := Mint(testSecret, Claims{ExpiresAt: time.Now().Add(time.Hour), Read: []string{"*"}})
	resp, body := postOffer(t, e.url, offerRequest{SDP: sdp, Token: tok})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "no token secret") {
		t.Fatalf("status %d %s, want 401", resp.StatusCode, body)
	}
}

func TestSignalingInsecureNoAuth(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.Secret = nil; c.InsecureNoAuth = true })
	ctx := testContext(t)
	c := e.dial(ctx, "")
	if err := c.Subscribe(ctx, "anything"); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, "anything", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if m := <-c.Messages(); string(m.Data) != "x" {
		t.Fatalf("got %q", m.Data)
	}
}

func TestSignalingBadRequests(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.MaxOfferSize = 4096; c.MaxSessions = 1 })
	_, sdp := rawOffer(t)
	tok := e.token([]string{"a"}, nil)
	for name, tc := range map[string]struct {
		body   any
		status int
	}{
		"not JSON":       {"hello", http.StatusBadRequest},
		"trailing data":  {`{"sdp":"v=0 m=application"} {}`, http.StatusBadRequest},
		"no sdp":         {offerRequest{Token: tok}, http.StatusBadRequest},
		"not an offer":   {offerRequest{Type: "answer", SDP: sdp, Token: tok}, http.StatusBadRequest},
		"no datachannel": {offerRequest{SDP: "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n", Token: tok}, http.StatusBadRequest},
		"bad sdp":        {offerRequest{SDP: "v=0\r\nm=application nonsense", Token: tok}, http.StatusBadRequest},
		"too large":      {offerRequest{SDP: sdp + strings.Repeat("a=x\r\n", 1000), Token: tok}, http.StatusRequestEntityTooLarge},
	} {
		resp, body := postOffer(t, e.url, tc.body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d %s, want %d", name, resp.StatusCode, body, tc.status)
		}
		var er errorResponse
		if json.Unmarshal(body, &er) != nil || er.Error == "" {
			t.Errorf("%s: error body %q is not {\"error\": ...}", name, body)
		}
	}
	resp, err := http.Get(e.url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d", resp.StatusCode)
	}
	// A bad SDP must not leave a session behind: MaxSessions is 1, so a
	// leaked session would make this offer fail with 503.
	if resp, body := postOffer(t, e.url, offerRequest{SDP: sdp, Token: tok}); resp.StatusCode != http.StatusOK {
		t.Fatalf("good offer after bad ones: %d %s", resp.StatusCode, body)
	}
	_, sdp2 := rawOffer(t)
	if resp, body := postOffer(t, e.url, offerRequest{SDP: sdp2, Token: tok}); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("offer beyond MaxSessions: %d %s, want 503", resp.StatusCode, body)
	}
}

func TestSignalingCORS(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.AllowedOrigins = []string{"https://app.example"} })
	req, _ := http.NewRequest(http.MethodOptions, e.url, nil)
	req.Header.Set("Origin", "https://app.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	req.Header.Set("Origin", "https://evil.example")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("origin not in AllowedOrigins was allowed")
	}
	// A POST from a page of another origin needs no preflight when it is
	// text/plain: it is refused, not served with its answer hidden (which
	// opened a session and took a pending slot).
	_, sdp := rawOffer(t)
	body, _ := json.Marshal(offerRequest{SDP: sdp, Token: e.token([]string{"a"}, nil)})
	req, _ = http.NewRequest(http.MethodPost, e.url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Origin", "https://evil.example")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || e.srv.Sessions() != 0 {
		t.Fatalf("offer from a foreign origin: status %d, %d sessions; want 403 and none", resp.StatusCode, e.srv.Sessions())
	}
}

func TestConnectTimeout(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.ConnectTimeout = 200 * time.Millisecond })
	_, sdp := rawOffer(t) // its answer is never applied: ICE never starts
	if resp, body := postOffer(t, e.url, offerRequest{SDP: sdp, Token: e.token(nil, nil)}); resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if r := e.waitClose(testContext(t)); r != closeConnectTimeout {
		t.Fatalf("closed for %q, want %q", r, closeConnectTimeout)
	}
	if n := e.srv.Sessions(); n != 0 {
		t.Fatalf("%d sessions left", n)
	}
}

func TestDialUnauthorized(t *testing.T) {
	e := newTestEnv(t, nil)
	_, err := Dial(testContext(t), e.url, "", WithLoopbackOnly())
	var se *SignalingError
	if !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized {
		t.Fatalf("Dial without token: %v, want a 401 SignalingError", err)
	}
}

func TestDecodeOfferRequest(t *testing.T) {
	const sdp = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
	ok, _ := json.Marshal(offerRequest{SDP: sdp, Token: "t", Type: "offer"})
	if r, err := decodeOfferRequest(bytes.NewReader(ok), 1024); err != nil || r.SDP != sdp || r.Token != "t" {
		t.Fatalf("%+v %v", r, err)
	}
	// Unknown fields are allowed, so newer clients can add some.
	if _, err := decodeOfferRequest(strings.NewReader(`{"sdp":"v=0 m=application","extra":1}`), 1024); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"empty":       "",
		"array":       `[]`,
		"sdp number":  `{"sdp": 5}`,
		"two objects": `{"sdp":"v=0 m=application"}{"sdp":"v=0 m=application"}`,
		"long token":  `{"sdp":"v=0 m=application","token":"` + strings.Repeat("a", MaxTokenSize+1) + `"}`,
		"too large":   `{"sdp":"v=0 m=application` + strings.Repeat(" ", 1024) + `"}`,
	} {
		if _, err := decodeOfferRequest(strings.NewReader(body), 1024); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzDecodeOfferRequest(f *testing.F) {
	// More seeds in testdata/fuzz/FuzzDecodeOfferRequest.
	f.Add([]byte(`{"sdp":"v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n","token":"a.b.c"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeOfferRequest(bytes.NewReader(b), 4096)
		if err != nil {
			return
		}
		if len(b) > 4096 || !strings.HasPrefix(r.SDP, "v=0") || len(r.Token) > MaxTokenSize || (r.Type != "" && r.Type != "offer") {
			t.Fatalf("accepted an invalid request: %q", b)
		}
	})
}

func TestUDPPortRange(t *testing.T) {
	// A range starting at a port the OS just handed out, so it is very
	// likely free; the test checks that candidates stay inside it.
	l, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lo := uint16(l.LocalAddr().(*net.UDPAddr).Port)
	l.Close()
	hi := lo + 20
	if hi < lo {
		hi = 65535
	}
	e := newTestEnv(t, func(c *Config) { c.UDPPortMin, c.UDPPortMax = lo, hi })
	_, sdp := rawOffer(t)
	resp, body := postOffer(t, e.url, offerRequest{SDP: sdp, Token: e.token(nil, nil)})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var ans offerResponse
	if err := json.Unmarshal(body, &ans); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(ans.SDP, "\n") {
		f := strings.Fields(strings.TrimPrefix(line, "a=candidate:"))
		if !strings.HasPrefix(line, "a=candidate:") || len(f) < 6 {
			continue
		}
		port, err := strconv.Atoi(f[5])
		if err != nil || port < int(lo) || port > int(hi) {
			t.Fatalf("candidate port outside %d-%d: %s", lo, hi, line)
		}
		n++
	}
	if n == 0 {
		t.Fatalf("no candidates in answer:\n%s", ans.SDP)
	}
}

func subjectToken(t *testing.T, sub string) string {
	t.Helper()
	now := time.Now()
	tok, err := Mint(testSecret, Claims{Subject: sub, IssuedAt: now, ExpiresAt: now.Add(time.Hour), Read: []string{"*"}, Write: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestSessionBudgets: one token holder cannot take every session slot,
// handshakes that never finish cannot crowd out open sessions, and a
// session already open keeps working beside the flood.
func TestSessionBudgets(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.MaxSessionsPerSubject = 2; c.MaxPendingSessions = 3 })
	ctx := testContext(t)
	bob := e.dial(ctx, subjectToken(t, "bob"))
	if err := bob.Subscribe(ctx, "room"); err != nil {
		t.Fatal(err)
	}

	offer := func(tok string) (int, string) {
		_, sdp := rawOffer(t) // never connects: stays pending
		resp, body := postOffer(t, e.url, offerRequest{SDP: sdp, Token: tok})
		return resp.StatusCode, string(body)
	}
	alice := subjectToken(t, "alice")
	for i := range 2 {
		if code, body := offer(alice); code != http.StatusOK {
			t.Fatalf("alice's offer %d: %d %s", i, code, body)
		}
	}
	if code, body := offer(alice); code != http.StatusServiceUnavailable || !strings.Contains(body, "one token") {
		t.Errorf("alice's third session: %d %s, want 503 for her token", code, body)
	}
	if code, body := offer(subjectToken(t, "carol")); code != http.StatusOK {
		t.Fatalf("carol: %d %s", code, body)
	}
	// Three handshakes are under way: the pending cap is reached.
	if code, body := offer(subjectToken(t, "dave")); code != http.StatusServiceUnavailable || !strings.Contains(body, "still connecting") {
		t.Errorf("a fourth pending session: %d %s, want 503", code, body)
	}
	// A token without sub counts as itself.
	now := time.Now()
	anon, _ := Mint(testSecret, Claims{IssuedAt: now, ExpiresAt: now.Add(time.Hour), Read: []string{"*"}})
	if got := e.srv.budgetSubject(Claims{}, anon); !strings.HasPrefix(got, "token:") {
		t.Errorf("budget subject of a token without sub: %q", got)
	}

	// Bob's open session is unaffected.
	if err := e.bus.Publish(ctx, "room", []byte("still here"), "", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-bob.Messages():
		if string(m.Data) != "still here" {
			t.Fatalf("bob got %q", m.Data)
		}
	case <-ctx.Done():
		t.Fatal("bob's session stopped receiving during the flood")
	}
}

// TestPendingPerClient: one client address holds at most
// MaxPendingPerClient of the MaxPendingSessions slots with handshakes it
// never finishes; another address still gets a session. Before, one
// address with a few tokens took all 64, and every other browser got 503.
func TestPendingPerClient(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.MaxPendingSessions, c.MaxPendingPerClient = 10, 2 })
	ctx := testContext(t)
	offer := func(remote string) error {
		_, sdp := rawOffer(t) // never connects: stays pending
		_, err := e.srv.Answer(ctx, sdp, subjectToken(t, remote), remote)
		return err
	}
	for i := range 2 {
		if err := offer("192.0.2.7:1000"); err != nil {
			t.Fatalf("offer %d: %v", i, err)
		}
	}
	var oe *OfferError
	if err := offer("192.0.2.7:1001"); !errors.As(err, &oe) || oe.Status != http.StatusServiceUnavailable || !strings.Contains(oe.Message, "from this address") {
		t.Fatalf("a third pending session from one address: %v, want 503", err)
	}
	if err := offer("198.51.100.1:1000"); err != nil {
		t.Fatalf("another address: %v", err)
	}
}

// TestOfferRateLimit: offers from one address beyond its burst get 429
// with a Retry-After, and are counted.
func TestOfferRateLimit(t *testing.T) {
	frozen := time.Now()
	e := newTestEnv(t, func(c *Config) {
		c.OfferRate, c.OfferBurst = 1, 2
		c.Now = func() time.Time { return frozen } // no refill during the test
	})
	tok := e.token([]string{"a"}, nil)
	for i := range 2 {
		if resp, body := postOffer(t, e.url, offerRequest{SDP: "not an offer", Token: tok}); resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("offer %d within the burst: %d %s", i, resp.StatusCode, body)
		}
	}
	resp, body := postOffer(t, e.url, offerRequest{SDP: "not an offer", Token: tok})
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("offer beyond the burst: %d %s, want 429 with Retry-After", resp.StatusCode, body)
	}
	if got := value(t, e.srv.metrics.offers.WithLabelValues(offerRateLimited)); got != 1 {
		t.Errorf("rate-limited offers counted %v, want 1", got)
	}
}

func TestOfferLimiterClients(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.7:5000":             "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:443": "2001:db8:1:2::/64",
		"[::ffff:192.0.2.7]:80":      "192.0.2.7",
		"not an address":             "not an address",
	} {
		if got := clientKey(remote); got != want {
			t.Errorf("clientKey(%q) = %q, want %q", remote, got, want)
		}
	}
	// Idle clients whose bucket has refilled are forgotten when the table
	// is full; while none has, new addresses are refused
	// (internal/ratelimit's TestKeyedRefuseNew covers the table).
	l := newOfferLimiter(1, 1)
	now := time.Now()
	for i := range maxTrackedClients {
		if !l.allow(fmt.Sprintf("10.%d.%d.%d:1", i>>16, (i>>8)&255, i&255), now) {
			t.Fatalf("client %d refused", i)
		}
	}
	if l.allow("192.0.2.1:1", now) {
		t.Error("a new address was tracked beyond maxTrackedClients")
	}
	if !l.allow("192.0.2.1:1", now.Add(2*time.Second)) || l.keys.Len() != maxTrackedClients {
		t.Errorf("after refill: refused, or %d clients tracked", l.keys.Len())
	}
}
