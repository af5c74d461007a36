package webrtc

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// wsEnv serves a test server's WebSocket endpoint.
func wsEnv(t *testing.T, mutate func(*Config)) (*testEnv, string) {
	t.Helper()
	e := newTestEnv(t, mutate)
	hs := httptest.NewServer(e.srv.WebSocketHandler())
	t.Cleanup(hs.Close)
	return e, "ws" + strings.TrimPrefix(hs.URL, "http")
}

// wsDial connects, sends token, and returns the connection once the
// server's ACK arrived, or the close error.
func wsDial(t *testing.T, url, token string, header http.Header) (*websocket.Conn, error) {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(url, header)
	if err != nil {
		if resp != nil {
			return nil, &SignalingError{StatusCode: resp.StatusCode}
		}
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	if err := c.WriteMessage(websocket.TextMessage, []byte(token)); err != nil {
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		return nil, err
	}
	if f, err := decodeFrame(b, 1<<20); err != nil || f.typ != frameAck || f.req != 0 {
		t.Fatalf("first frame %+v, %v; want ACK 0", f, err)
	}
	return c, nil
}

// wsRequest sends frame f and returns the next frame.
func wsRequest(t *testing.T, c *websocket.Conn, f frame) frame {
	t.Helper()
	b, err := appendFrame(nil, &f)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(websocket.BinaryMessage, b); err != nil {
		t.Fatal(err)
	}
	return wsNext(t, c)
}

// wsPending holds the rest of a BATCH read from a connection.
var wsPending = map[*websocket.Conn][]frame{}

// wsNext returns the next frame from c, taking BATCH frames apart.
func wsNext(t *testing.T, c *websocket.Conn) frame {
	t.Helper()
	if p := wsPending[c]; len(p) > 0 {
		wsPending[c] = p[1:]
		return p[0]
	}
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	f, err := decodeFrame(b, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if f.typ == frameBatch {
		wsPending[c] = f.items[1:]
		return f.items[0]
	}
	return f
}

// TestWebSocket: a browser's WebSocket speaks the data channel's frames:
// subscribe, receive what the overlay delivers (in order), publish with
// the session's token, per-frame authorization; a bad token, a foreign
// origin and a binary first message are refused with their codes.
func TestWebSocket(t *testing.T) {
	e, url := wsEnv(t, func(c *Config) { c.AllowedOrigins = []string{"https://app.example"} })
	ctx := testContext(t)
	c, err := wsDial(t, url, e.token([]string{"a"}, []string{"a"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if f := wsRequest(t, c, frame{typ: frameSubscribe, req: 1, topic: "a"}); f.typ != frameAck || f.req != 1 {
		t.Fatalf("subscribe answered %+v", f)
	}
	for i := range 100 {
		if err := e.bus.Publish(ctx, "a", seqPayload(i, 50), "", nil); err != nil {
			t.Fatal(err)
		}
	}
	for want := range 100 {
		if m := wsNext(t, c); m.typ != frameMessage || payloadSeq(m.payload) != want {
			t.Fatalf("got %s seq %d, want message %d", m.typ, payloadSeq(m.payload), want)
		}
	}
	// Publish to a (allowed: an ACK and the message itself come back, in
	// either order), then to b (refused).
	f := wsRequest(t, c, frame{typ: framePublish, req: 2, topic: "a", payload: []byte("hi")})
	g := wsNext(t, c)
	if min(f.typ, g.typ) != frameMessage || max(f.typ, g.typ) != frameAck {
		t.Fatalf("publish to a answered %s and %s, want a message and an ACK", f.typ, g.typ)
	}
	if f := wsRequest(t, c, frame{typ: framePublish, req: 3, topic: "b", payload: []byte("x")}); f.typ != frameError || f.code != CodeForbidden || f.req != 3 {
		t.Fatalf("publish to b: %+v, want forbidden", f)
	}
	e.bus.mu.Lock()
	tokens := e.bus.tokens
	e.bus.mu.Unlock()
	if len(tokens) == 0 || tokens[len(tokens)-1] == "" {
		t.Error("the publish went to the overlay without the session's token")
	}

	var ce *websocket.CloseError
	if _, err := wsDial(t, url, "not-a-token", nil); !errors.As(err, &ce) || ce.Code != WebSocketUnauthorized {
		t.Errorf("bad token: %v, want close %d", err, WebSocketUnauthorized)
	}
	var se *SignalingError
	if _, err := wsDial(t, url, e.token([]string{"a"}, nil), http.Header{"Origin": {"https://evil.example"}}); !errors.As(err, &se) || se.StatusCode != http.StatusForbidden {
		t.Errorf("foreign origin: %v, want 403", err)
	}
	if _, err := wsDial(t, url, e.token([]string{"a"}, nil), http.Header{"Origin": {"https://app.example"}}); err != nil {
		t.Errorf("allowed origin: %v", err)
	}
	raw, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.WriteMessage(websocket.BinaryMessage, []byte{1, 2})
	if _, _, err := raw.ReadMessage(); !errors.As(err, &ce) || ce.Code != WebSocketBadHandshake {
		t.Errorf("binary first message: %v, want close %d", err, WebSocketBadHandshake)
	}
}

// TestWebSocketStalled: a browser that stops reading is closed after
// StallTimeout (its writes block, and only its own writer waits), while
// another session on the same topic keeps receiving.
func TestWebSocketStalled(t *testing.T) {
	e, url := wsEnv(t, func(c *Config) {
		c.StallTimeout = 2 * time.Second
		c.SlowPolicy = DropOldest
	})
	ctx := testContext(t)
	tok := e.token([]string{"a"}, nil)
	stuck, err := wsDial(t, url, tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	live, err := wsDial(t, url, tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*websocket.Conn{stuck, live} {
		if f := wsRequest(t, c, frame{typ: frameSubscribe, req: 1, topic: "a"}); f.typ != frameAck {
			t.Fatalf("subscribe: %+v", f)
		}
	}
	// Publish until the stuck session is closed; the live one reads all
	// the while. Large payloads fill the kernel's buffers quickly.
	done := make(chan string, 1)
	go func() { done <- e.waitClose(ctx) }()
	for i := 0; ; i++ {
		select {
		case r := <-done:
			if r != closeStalled {
				t.Fatalf("session closed as %q, want %q", r, closeStalled)
			}
			return
		default:
		}
		if err := e.bus.Publish(ctx, "a", seqPayload(i, 32<<10), "", nil); err != nil {
			t.Fatal(err)
		}
		wsNext(t, live)
	}
}

// TestInsecureNoAuthOwnPagesOnly: a peer that admits browsers without a
// token (a devnet) gives them every topic as the peer itself, so only
// pages of this machine may connect: a page on another site (its Origin)
// and a page reached through a name (DNS rebinding to 127.0.0.1) are
// refused on the WebSocket and the offer endpoint alike, while the peer's
// own page, an app's dev server on localhost, or a client that sends no
// Origin, still get in. With tokens, origins stay
// open (AllowedOrigins "*"): the token says what a browser may do. Before,
// any web site the owner visited could publish as the devnet's app peer.
func TestInsecureNoAuthLocalPagesOnly(t *testing.T) {
	e, url := wsEnv(t, func(c *Config) { c.Secret = nil; c.InsecureNoAuth = true; c.AllowedHosts = []string{"devbox"} })
	host := strings.TrimPrefix(url, "ws://")
	for name, tc := range map[string]struct {
		header http.Header
		ok     bool
	}{
		"no Origin":         {nil, true},
		"its own page":      {http.Header{"Origin": {"http://" + host}}, true},
		"a local dev page":  {http.Header{"Origin": {"http://localhost:3000"}}, true},
		"another site":      {http.Header{"Origin": {"https://evil.example"}}, false},
		"a rebound name":    {http.Header{"Host": {"evil.example:" + strings.Split(host, ":")[1]}}, false},
		"rebound, same one": {http.Header{"Host": {"evil.example"}, "Origin": {"http://evil.example"}}, false},
		"an allowed name":   {http.Header{"Host": {"devbox:" + strings.Split(host, ":")[1]}, "Origin": {"http://devbox:3000"}}, true},
	} {
		_, err := wsDial(t, url, "", tc.header)
		if tc.ok != (err == nil) {
			t.Errorf("WebSocket, %s: %v, want allowed %v", name, err, tc.ok)
		}
		req, _ := http.NewRequest(http.MethodPost, e.url, strings.NewReader("{}"))
		for k, v := range tc.header {
			req.Header[k] = v
		}
		if h := tc.header.Get("Host"); h != "" {
			req.Host = h
		}
		if tc.header.Get("Origin") == "http://"+host {
			req.Header.Set("Origin", strings.TrimSuffix(e.url, OfferPath)) // the offer endpoint's own page
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if refused := resp.StatusCode == http.StatusForbidden; refused == tc.ok {
			t.Errorf("offer, %s: status %d, want allowed %v", name, resp.StatusCode, tc.ok)
		}
	}

	e, url = wsEnv(t, nil)
	if _, err := wsDial(t, url, e.token([]string{"*"}, nil), http.Header{"Origin": {"https://app.example"}}); err != nil {
		t.Errorf("with tokens, a page on another origin: %v, want admitted", err)
	}
}

// TestWebSocketPingsPastStalled: a ping round reaches every idle session
// though sessions before it in the round have a write blocked (their
// browsers stopped reading a busy topic): each ping waits at most
// wsPingWait for its own session's writer. Before, one deadline for the
// round went to the first stalled session, every later idle session got no
// ping, and was closed for it after wsIdleTimeout.
func TestWebSocketPingsPastStalled(t *testing.T) {
	e, url := wsEnv(t, func(c *Config) { c.StallTimeout = 3 * time.Minute })
	ctx := testContext(t)
	tok := e.token([]string{"a", "b"}, nil)
	for range 4 {
		stuck, err := wsDial(t, url, tok, nil)
		if err != nil {
			t.Fatal(err)
		}
		if f := wsRequest(t, stuck, frame{typ: frameSubscribe, req: 1, topic: "a"}); f.typ != frameAck {
			t.Fatalf("subscribe: %+v", f)
		}
	}
	for i := range 400 { // 12 MiB: fills the stalled sessions' buffers
		if err := e.bus.Publish(ctx, "a", seqPayload(i, 32<<10), "", nil); err != nil {
			t.Fatal(err)
		}
	}
	pinged := make(chan int, 64)
	for i := range 8 {
		c, err := wsDial(t, url, tok, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.SetPingHandler(func(string) error {
			pinged <- i
			return nil
		})
		go func() {
			_ = c.SetReadDeadline(time.Time{})
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}()
	}
	e.srv.pingRound()
	got := map[int]bool{}
	for len(got) < 8 {
		select {
		case i := <-pinged:
			got[i] = true
		case <-ctx.Done():
			t.Fatalf("%d of 8 idle sessions pinged in a round beside 4 stalled ones", len(got))
		}
	}
}
