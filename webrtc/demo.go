package webrtc

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"time"
)

//go:embed demo/index.html demo/app.js client/immense.js client/immense.d.ts
var assets embed.FS

const demoHTML = "text/html; charset=utf-8"

// demoAssets maps the paths DemoHandler serves to embedded files.
var demoAssets = map[string]struct{ file, contentType string }{
	"/":             {"demo/index.html", demoHTML},
	"/app.js":       {"demo/app.js", "text/javascript; charset=utf-8"},
	"/client.js":    {"client/immense.js", "text/javascript; charset=utf-8"},
	"/immense.d.ts": {"client/immense.d.ts", "text/plain; charset=utf-8"},
}

// DemoHandler serves the demo page (a chat room and a live message rate)
// at "/", its script at "/app.js", the browser client at "/client.js" and
// its TypeScript types at "/immense.d.ts". Other paths get 404, so the
// handler can be mounted at "/" beside an API.
func DemoHandler() http.Handler {
	type asset struct {
		body        []byte
		contentType string
		etag        string
	}
	files := make(map[string]asset, len(demoAssets))
	for path, a := range demoAssets {
		b, err := assets.ReadFile(a.file)
		if err != nil {
			panic("webrtc: embedded asset missing: " + a.file) // a build error, not a runtime one
		}
		sum := sha256.Sum256(b)
		files[path] = asset{b, a.contentType, `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "use GET", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("X-Content-Type-Options", "nosniff")
		// Revalidate every time: the files change with the peer's version,
		// and the ETag makes revalidation cheap.
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		if a.contentType == demoHTML {
			// No other site may frame the page and have its visitor click
			// the relay opt-in or the load generator (their upload).
			h.Set("Content-Security-Policy", "frame-ancestors 'none'")
			h.Set("X-Frame-Options", "DENY")
		}
		if r.URL.Path == "/client.js" || r.URL.Path == "/immense.d.ts" {
			// Apps on other origins may import the client from a peer.
			h.Set("Access-Control-Allow-Origin", "*")
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}
