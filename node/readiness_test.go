package node

import (
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/immense-p2p/immense/internal/simtest"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestReadyzAfterJoin: a peer whose bootstrap node is not up yet is alive
// but not ready, says why in /readyz and /v1/status, and turns ready once
// the bootstrap node comes up and admits it. The probes need no token but
// keep the Host check.
func TestReadyzAfterJoin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		keys := simtest.Keys(t, rand.NewChaCha8([32]byte{'r', 'e', 'a', 'd', 'y'}), 2)
		// Packets to the bootstrap node before it starts cannot be
		// routed: expected here, not a set-up bug worth simnet's log.
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		s := newSimNet(t, simtest.Config{Logger: quiet}, 2, keys, nil)
		bootID, err := peer.IDFromPrivateKey(keys[0])
		if err != nil {
			t.Fatal(err)
		}
		s.start(s.nodes[1], []string{simtest.Addr(0) + "/p2p/" + bootID.String()})
		nd := s.nodes[1].n
		h := nd.Handler(HTTPOptions{Topics: true})
		get := func(path string, token bool) (int, map[string]any) {
			r := httptest.NewRequest("GET", path, nil)
			r.Host = "127.0.0.1:8080"
			if token {
				r.Header.Set("Authorization", "Bearer "+nd.APIToken())
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			var body map[string]any
			b, _ := io.ReadAll(rec.Body)
			if err := json.Unmarshal(b, &body); err != nil {
				t.Fatalf("%s: not JSON: %q", path, b)
			}
			return rec.Code, body
		}

		// Let the first join round fail (the bootstrap node is down): in
		// virtual time, dials time out at once.
		for i := 0; nd.overlay.JoinState().NextTry.IsZero(); i++ {
			if i == 600 {
				t.Fatalf("no join round ended in 10 virtual minutes: %+v", nd.overlay.JoinState())
			}
			time.Sleep(time.Second)
		}
		if code, body := get("/healthz", false); code != http.StatusOK || body["status"] != "alive" {
			t.Errorf("/healthz before join: %d %v", code, body)
		}
		code, body := get("/readyz", false)
		if code != http.StatusServiceUnavailable || !strings.Contains(body["reason"].(string), "not joined") || len(body) != 2 {
			t.Errorf("/readyz before join: %d %v, want 503 saying not joined, and nothing else", code, body)
		}
		if _, st := get("/v1/status", true); st["joined"] != false || !strings.Contains(st["join_state"].(string), "not joined") {
			t.Errorf("/v1/status before join: joined %v, join_state %v", st["joined"], st["join_state"])
		}

		s.start(s.nodes[0], nil)
		<-nd.Joined()
		if code, body := get("/readyz", false); code != http.StatusOK || body["status"] != "ready" {
			t.Errorf("/readyz after join: %d %v", code, body)
		}
		if _, st := get("/v1/status", true); st["joined"] != true {
			t.Errorf("/v1/status after join: joined %v, join_state %v", st["joined"], st["join_state"])
		}

		r := httptest.NewRequest("GET", "/readyz", nil)
		r.Host = "evil.example"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusForbidden {
			t.Errorf("/readyz with a foreign Host: %d, want 403", rec.Code)
		}
	})
}

// TestHTTPErrors: what the API answers to requests it cannot serve: JSON
// errors with the right status, no internal names.
func TestHTTPErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, keyFile := appKeyFiles(t)
		// Node 0 is a volunteer: it checks the app's topics (--app-pub,
		// --open-topics 'demo/*') but holds no app key, and reads a state
		// namespace of its own. Node 1 is an app peer (--app-key).
		s := newStateNet(t, 2, func(i int, c *Config) {
			c.AppPubFiles = []string{AppPublicKeyFile(keyFile)}
			c.Overlay.Auth.OpenTopics = []string{"demo/*"}
			if i == 1 {
				c.AppKeyFile, c.AppPubFiles = keyFile, nil
			}
		})
		nd := s.nodes[0].n
		h := nd.Handler(HTTPOptions{Topics: true})
		for _, tc := range []struct {
			method, path string
			code         int
			want         string // in the error
			allow        string
		}{
			{"GET", "/v1/state/missing", http.StatusNotFound, `not found: no value stored under key "missing" in this peer's own namespace: it runs without --app-key, so it reads and writes a namespace of its own, not the app's`, ""},
			{"GET", "/v1/state/a/b", http.StatusBadRequest, `invalid key "a/b"`, ""},
			{"PUT", "/v1/state/a/b", http.StatusBadRequest, `invalid key "a/b"`, ""},
			{"GET", "/v1/state/a/b/health", http.StatusBadRequest, `invalid key "a/b/health"`, ""},
			{"GET", "/v1/state", http.StatusNotFound, "no key given", ""},
			{"PUT", "/v1/state/_history:abc", http.StatusForbidden, `reserved key "_history:abc": keys starting "_history:" hold durable history`, ""},
			{"DELETE", "/v1/state/_history:abc", http.StatusForbidden, `reserved key "_history:abc"`, ""},
			{"GET", "/v1/state/_history:abc", http.StatusNotFound, `no value stored under key "_history:abc"`, ""},
			{"POST", "/v1/state/x", http.StatusMethodNotAllowed, "method POST not allowed", "GET, HEAD, PUT, DELETE"},
			{"PUT", "/v1/status", http.StatusMethodNotAllowed, "method PUT not allowed", "GET, HEAD"},
			{"POST", "/v1/topics", http.StatusMethodNotAllowed, "method POST not allowed", "GET, HEAD"},
			{"GET", "/v1/nothing", http.StatusNotFound, "no such endpoint", ""},
			{"POST", "/v1/topics/chat/a", http.StatusForbidden, `not authorized to publish: this peer holds neither the app key nor a valid certificate, so it may publish only to open topics; "chat/a" is not one`, ""},
		} {
			r := controlReq(nd, tc.method, tc.path, "x")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			var body struct{ Error string }
			b, _ := io.ReadAll(rec.Body)
			if err := json.Unmarshal(b, &body); err != nil {
				t.Errorf("%s %s: %d, not JSON: %q", tc.method, tc.path, rec.Code, b)
				continue
			}
			if rec.Code != tc.code || !strings.Contains(body.Error, tc.want) || rec.Header().Get("Allow") != tc.allow {
				t.Errorf("%s %s: %d %q Allow %q; want %d %q Allow %q", tc.method, tc.path, rec.Code, body.Error, rec.Header().Get("Allow"), tc.code, tc.want, tc.allow)
			}
			if strings.Contains(body.Error, "immense-state") || strings.Contains(body.Error, "erasure:") {
				t.Errorf("%s %s: internal names in %q", tc.method, tc.path, body.Error)
			}
		}
		r := controlReq(nd, "GET", "/v1/topics", "")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("GET /v1/topics: %d %s", rec.Code, rec.Header().Get("Content-Type"))
		}
		// The app peer reads the app's namespace: a plain 404.
		app := s.nodes[1].n
		rec = httptest.NewRecorder()
		app.Handler(HTTPOptions{Topics: true}).ServeHTTP(rec, controlReq(app, "GET", "/v1/state/missing", ""))
		if want := `{"error":"not found: no value stored under key \"missing\""}`; rec.Code != http.StatusNotFound || strings.TrimSpace(rec.Body.String()) != want {
			t.Errorf("app peer, GET /v1/state/missing: %d %s, want 404 %s", rec.Code, rec.Body, want)
		}
	})
}

func TestTrimBuildPath(t *testing.T) {
	for in, want := range map[string]string{
		"/root/go/pkg/mod/github.com/libp2p/go-libp2p-pubsub/gossipsub.go-L708": "github.com/libp2p/go-libp2p-pubsub/gossipsub.go-L708",
		"/home/me/src/immense/node/node.go-L140":                                "node/node.go-L140",
	} {
		if got := trimBuildPath(in); got != want || !sourcePath.MatchString(in) {
			t.Errorf("trimBuildPath(%q) = %q, want %q", in, got, want)
		}
	}
	if sourcePath.MatchString("demo/chat") {
		t.Error("a topic name taken for a source path")
	}
}
