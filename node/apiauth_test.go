package node

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// controlReq is a request an operator's curl on this machine would send:
// to 127.0.0.1, with the node's API token.
func controlReq(n *Node, method, path, body string) *http.Request {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	r.Host = "127.0.0.1:8080"
	r.Header.Set("Authorization", "Bearer "+n.APIToken())
	return r
}

// TestControlAPIRefusesWebPages: the control API answers the operator
// (loopback Host, its token) and refuses what a web page or a stranger can
// send: a rebound DNS name, a foreign Origin, a cross-site fetch without an
// Origin, no or a wrong token. A refused publish publishes nothing, and the
// refusals are counted. The endpoints meant for browsers stay open.
func TestControlAPIRefusesWebPages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nd := simNetwork(t, 1, nil)[0]
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		msgs, err := nd.Subscribe(ctx, "victim")
		if err != nil {
			t.Fatal(err)
		}
		h := nd.Handler(HTTPOptions{Topics: true, AllowedHosts: []string{"Peer.Example"}})
		do := func(r *http.Request) (int, string) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			b, _ := io.ReadAll(rec.Body)
			return rec.Code, string(b)
		}
		refused := []struct {
			name string
			req  func() *http.Request
			code int
		}{
			{"rebound DNS name", func() *http.Request {
				r := controlReq(nd, "POST", "/v1/topics/victim", "evil")
				r.Host = "evil.example:8080"
				return r
			}, http.StatusForbidden},
			{"foreign Origin", func() *http.Request {
				r := controlReq(nd, "POST", "/v1/topics/victim", "evil")
				r.Header.Set("Origin", "http://evil.example")
				return r
			}, http.StatusForbidden},
			{"text/plain form from a page", func() *http.Request {
				r := controlReq(nd, "POST", "/v1/topics/victim", "evil")
				r.Header.Del("Authorization")
				r.Header.Set("Content-Type", "text/plain")
				r.Header.Set("Origin", "null")
				return r
			}, http.StatusForbidden},
			{"cross-site without Origin", func() *http.Request {
				r := controlReq(nd, "GET", "/v1/status", "")
				r.Header.Set("Sec-Fetch-Site", "cross-site")
				return r
			}, http.StatusForbidden},
			{"no token", func() *http.Request {
				r := controlReq(nd, "POST", "/v1/topics/victim", "evil")
				r.Header.Del("Authorization")
				return r
			}, http.StatusUnauthorized},
			{"wrong token", func() *http.Request {
				r := controlReq(nd, "POST", "/v1/topics/victim", "evil")
				r.Header.Set("Authorization", "Bearer "+strings.Repeat("0", 64))
				return r
			}, http.StatusUnauthorized},
			{"state without token", func() *http.Request {
				r := controlReq(nd, "GET", "/v1/state/secret", "")
				r.Header.Del("Authorization")
				return r
			}, http.StatusUnauthorized},
			{"metrics from a rebound name", func() *http.Request {
				r := controlReq(nd, "GET", "/metrics", "")
				r.Host = "evil.example"
				return r
			}, http.StatusForbidden},
		}
		for _, tc := range refused {
			if code, body := do(tc.req()); code != tc.code || !strings.Contains(body, `"error"`) {
				t.Errorf("%s: %d %s, want %d with an error", tc.name, code, body, tc.code)
			}
		}
		if got := metricSum(t, nd, "immense_http_control_refused_total"); got != float64(len(refused)) {
			t.Errorf("refusals counted %v, want %d", got, len(refused))
		}

		for name, r := range map[string]*http.Request{
			"operator":        controlReq(nd, "POST", "/v1/topics/victim", "honest"),
			"localhost":       func() *http.Request { r := controlReq(nd, "GET", "/v1/status", ""); r.Host = "localhost:9"; return r }(),
			"configured host": func() *http.Request { r := controlReq(nd, "GET", "/v1/status", ""); r.Host = "peer.example"; return r }(),
			"same-origin page": func() *http.Request {
				r := controlReq(nd, "GET", "/v1/status", "")
				r.Header.Set("Origin", "http://127.0.0.1:8080")
				return r
			}(),
			"user typed the URL": func() *http.Request {
				r := controlReq(nd, "GET", "/v1/status", "")
				r.Header.Set("Sec-Fetch-Site", "none")
				return r
			}(),
			"IPv6 loopback literal": func() *http.Request { r := controlReq(nd, "GET", "/v1/status", ""); r.Host = "[::1]:8080"; return r }(),
		} {
			if code, body := do(r); code >= 300 {
				t.Errorf("%s: %d %s", name, code, body)
			}
		}
		if m := <-msgs; string(m.Data) != "honest" {
			t.Fatalf("first message on the topic: %q, want the operator's", m.Data)
		}

		// Web pages may load the demo page and the client from anywhere.
		r := httptest.NewRequest("GET", "/client.js", nil)
		r.Host = "evil.example"
		if code, _ := do(r); code != http.StatusNotFound && code != http.StatusOK {
			t.Errorf("client.js: %d", code)
		}

		// Without the token requirement, Host and Origin are still checked.
		open := nd.Handler(HTTPOptions{Topics: true, NoAPIToken: true})
		rec := httptest.NewRecorder()
		r = controlReq(nd, "GET", "/v1/status", "")
		r.Header.Del("Authorization")
		open.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			t.Errorf("NoAPIToken, no token: %d", rec.Code)
		}
		rec = httptest.NewRecorder()
		r.Host = "evil.example"
		open.ServeHTTP(rec, r)
		if rec.Code != http.StatusForbidden {
			t.Errorf("NoAPIToken, rebound name: %d, want 403", rec.Code)
		}
	})
}

// TestAPITokenFile: the token is made once, mode 0600, kept across
// restarts, and refused when other users can read it.
func TestAPITokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), apiTokenFile)
	tok, err := loadOrCreateAPIToken(path)
	if err != nil || len(tok) != 2*apiTokenSize {
		t.Fatalf("create: %q, %v", tok, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o, want 0600", st.Mode().Perm())
	}
	again, err := loadOrCreateAPIToken(path)
	if err != nil || again != tok {
		t.Fatalf("reload: %q, %v; want %q", again, err, tok)
	}
	os.Chmod(path, 0o644)
	if _, err := loadOrCreateAPIToken(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("mode 0644: %v", err)
	}
	os.WriteFile(path, []byte("short\n"), 0o600)
	if _, err := loadOrCreateAPIToken(path); err == nil {
		t.Error("a 5-character token accepted")
	}
}

// TestHTTPBudgets: one client cannot take every SSE stream, and state
// writes reserve their body's bytes before reading it.
func TestHTTPBudgets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nd := simNetwork(t, 1, nil)[0]
		a := nd.newAPI(HTTPOptions{Topics: true, MaxStreams: 3, MaxStreamsPerClient: 2})
		r1, err1 := a.openStream("10.0.0.1:1000")
		_, err2 := a.openStream("10.0.0.1:1001")
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if _, err := a.openStream("10.0.0.1:1002"); err == nil || !strings.Contains(err.Error(), "from 10.0.0.1") {
			t.Errorf("third stream from one client: %v", err)
		}
		if _, err := a.openStream("10.0.0.2:1000"); err != nil {
			t.Errorf("another client: %v", err)
		}
		if _, err := a.openStream("10.0.0.3:1000"); err == nil {
			t.Error("a stream beyond MaxStreams was opened")
		}
		r1()
		if _, err := a.openStream("10.0.0.1:1003"); err != nil {
			t.Errorf("after one closed: %v", err)
		}

		if a.puts == nil {
			t.Skip("no state on this node")
		}
		if !a.puts.TryAcquire(a.putBudget()) {
			t.Fatal("budget not free")
		}
		rec := httptest.NewRecorder()
		a.routes().ServeHTTP(rec, controlReq(nd, "PUT", "/v1/state/k", "value"))
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
			t.Errorf("PUT with the budget taken: %d %q", rec.Code, rec.Body)
		}
		a.puts.Release(a.putBudget())
	})
}

// TestHTTPTopicBudgets: a full topic table answers 503 with Retry-After
// (it was 500 for a publish), on publish and on subscribe, and a publisher
// over its own rate gets 429 with Retry-After, while publishing to a
// subscribed topic goes on.
func TestHTTPTopicBudgets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Node 1 has a neighbour (node 0), so its own publishes count
		// against its publisher rate (a lone node's do not).
		nd := simNetwork(t, 2, func(_ int, c *Config) {
			c.Overlay.MaxTopics, c.Overlay.MaxPublishTopics = 2, 1
			c.Overlay.PublisherMessageRate, c.Overlay.PublisherMessageBurst = 1, 2
		})[1]
		<-nd.Joined()
		for _, topic := range []string{"a", "b"} {
			sub, err := nd.overlay.Subscribe(topic)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Cancel()
		}
		a := nd.newAPI(HTTPOptions{Topics: true})
		for _, req := range []*http.Request{
			controlReq(nd, "POST", "/v1/topics/fresh", "x"),
			controlReq(nd, "GET", "/v1/topics/fresh", ""),
		} {
			rec := httptest.NewRecorder()
			a.routes().ServeHTTP(rec, req)
			if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
				t.Errorf("%s with the topic table full: %d %q (Retry-After %q), want 503 with Retry-After",
					req.Method, rec.Code, rec.Body, rec.Header().Get("Retry-After"))
			}
		}
		time.Sleep(2 * time.Second) // the publish budget refills
		codes := []int{}
		for range 2 {
			rec := httptest.NewRecorder()
			a.routes().ServeHTTP(rec, controlReq(nd, "POST", "/v1/topics/a", "x"))
			codes = append(codes, rec.Code)
			if rec.Code == http.StatusTooManyRequests && rec.Header().Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		}
		if codes[0] != http.StatusAccepted || codes[1] != http.StatusTooManyRequests {
			t.Errorf("two publishes at once with a burst of 1: %v, want [202 429]", codes)
		}
	})
}
