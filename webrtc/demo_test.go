package webrtc

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDemoHandler(t *testing.T) {
	hs := httptest.NewServer(DemoHandler())
	defer hs.Close()
	for path, want := range map[string]struct{ ctype, contains string }{
		"/":             {"text/html", `src="./app.js"`},
		"/app.js":       {"text/javascript", `from "./client.js"`},
		"/client.js":    {"text/javascript", "export function connect("},
		"/immense.d.ts": {"text/plain", "export declare function connect("},
	} {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), want.ctype) || !strings.Contains(string(body), want.contains) {
			t.Errorf("%s: %d %s, body has %q: %v", path, resp.StatusCode, resp.Header.Get("Content-Type"), want.contains, strings.Contains(string(body), want.contains))
		}
		// No other site may frame the page (a click on the relay opt-in
		// or the load generator spends the visitor's upload).
		if framed := resp.Header.Get("Content-Security-Policy") != "frame-ancestors 'none'" || resp.Header.Get("X-Frame-Options") != "DENY"; framed == (path == "/") {
			t.Errorf("%s: Content-Security-Policy %q, X-Frame-Options %q", path, resp.Header.Get("Content-Security-Policy"), resp.Header.Get("X-Frame-Options"))
		}
		// Revalidation with the ETag costs no body.
		req, _ := http.NewRequest(http.MethodGet, hs.URL+path, nil)
		req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
		resp2, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp2.Body.Close()
		if resp2.StatusCode != http.StatusNotModified {
			t.Errorf("%s: revalidation status %d", path, resp2.StatusCode)
		}
	}
	for _, path := range []string{"/index.html", "/demo/app.js", "/client/immense.js", "/x"} {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, resp.StatusCode)
		}
	}
}
