package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDashboardProcess: a running peer process logs where its dashboard
// is, serves the page without a token, and its data endpoints (status,
// peers, storage, metrics) answer with the token and refuse without it or
// with a wrong one.
func TestDashboardProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	peerBin, bootBin := binaries(t)
	boot := start(t, "bootstrap", bootBin, append([]string{"--data-dir", t.TempDir()}, loopback...)...)
	dir := t.TempDir()
	p := start(t, "peer", peerBin, append([]string{"--data-dir", dir, "--bootstrap", boot.info.Addrs[0]}, loopback...)...)
	p.waitLog("dashboard", 10*time.Second)
	p.waitLog("joined overlay", 60*time.Second)
	b, err := os.ReadFile(filepath.Join(dir, "api-token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(b))

	plain := &http.Client{Transport: http.DefaultTransport}
	get := func(path, auth string) (int, string, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", p.info.HTTP+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		// Not the default client, which adds the node's token (TestMain).
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header.Get("Content-Type"), body
	}
	code, ctype, page := get("/dashboard/", "")
	if code != http.StatusOK || !strings.HasPrefix(ctype, "text/html") || !strings.Contains(string(page), `src="dashboard.js"`) {
		t.Errorf("GET /dashboard/ without a token: %d %s, want 200 and the page", code, ctype)
	}
	if code, _, _ := get("/dashboard/dashboard.js", ""); code != http.StatusOK {
		t.Errorf("GET /dashboard/dashboard.js: %d", code)
	}
	for _, path := range []string{"/v1/status", "/v1/peers", "/v1/storage", "/metrics"} {
		for _, auth := range []string{"", "Bearer " + strings.Repeat("0", 64)} {
			if code, _, _ := get(path, auth); code != http.StatusUnauthorized {
				t.Errorf("GET %s with Authorization %q: %d, want 401", path, auth, code)
			}
		}
		code, ctype, body := get(path, "Bearer "+token)
		if code != http.StatusOK {
			t.Errorf("GET %s with the token: %d %s", path, code, body)
			continue
		}
		if path == "/metrics" {
			if !strings.Contains(string(body), "immense_overlay_messages_published_total") && !strings.Contains(string(body), "immense_overlay_connected_peers") {
				t.Errorf("GET /metrics: no immense_overlay series")
			}
			continue
		}
		var v map[string]any
		if !strings.HasPrefix(ctype, "application/json") || json.Unmarshal(body, &v) != nil {
			t.Errorf("GET %s: %s, not a JSON object: %.200s", path, ctype, body)
		}
		if path == "/v1/peers" && v["total"].(float64) < 1 {
			t.Errorf("GET /v1/peers: %s, want the bootstrap node", body)
		}
	}
	p.stop()
	boot.stop()
}
