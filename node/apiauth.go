package node

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/immense-p2p/immense/internal/durable"
	"github.com/immense-p2p/immense/internal/hostname"
)

// The control API (publish, subscribe, state, status, metrics) lets its
// caller act as the node's operator. It listens on the same port as the
// endpoints meant for web pages (WebRTC signaling, the demo page, the
// client library), and that port often sits on a machine whose owner
// browses the web, so every control request must pass three checks:
//
//   - Host is the listener's own name (localhost, a loopback or listening
//     IP, or one of HTTPOptions.AllowedHosts): a page that rebinds its own
//     DNS name to 127.0.0.1 sends its own name and is refused.
//   - Origin, when a browser sends one, is the API's own origin: a page
//     elsewhere can neither post a form to it nor read from it.
//   - Authorization: Bearer <the token in <data-dir>/api-token>, written at
//     first start with mode 0600: a page cannot read it, nor can other users
//     of the machine; an operator's curl and scripts can.
const apiTokenFile = "api-token"

// apiTokenSize is the token's entropy in bytes (written as hex).
const apiTokenSize = 32

// Errors of the control API's checks, for tests and logs.
var (
	errAPIHost   = errors.New("this host name is not served (a DNS rebinding page?): use 127.0.0.1, localhost, or add it with --http-allowed-hosts")
	errAPIOrigin = errors.New("cross-origin requests to the control API are refused")
	errAPIToken  = errors.New("the control API needs Authorization: Bearer <token>, with the token in the data dir's api-token file")
)

// loadOrCreateAPIToken returns the control API token stored at path,
// creating it if there is none.
func loadOrCreateAPIToken(path string) (string, error) {
	b, err := durable.ReadPrivate(path, 4<<10)
	switch {
	case err == nil:
		tok := string(bytes.TrimSpace(b))
		if len(tok) < 2*16 {
			return "", fmt.Errorf("API token %s is %d characters, at least 32 required: delete it to generate a new one", path, len(tok))
		}
		return tok, nil
	case errors.Is(err, fs.ErrNotExist):
	default:
		return "", fmt.Errorf("read API token: %w", err)
	}
	raw := make([]byte, apiTokenSize)
	rand.Read(raw)
	tok := hex.EncodeToString(raw)
	if err := durable.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write API token: %w", err)
	}
	return tok, nil
}

// APIToken returns the bearer token the control API requires.
func (n *Node) APIToken() string { return n.apiToken }

// APITokenFile returns the path of the file holding APIToken.
func (n *Node) APITokenFile() string { return filepath.Join(n.cfg.DataDir, apiTokenFile) }

// guard wraps a control API handler in the checks above.
func (a *api) guard(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := a.checkControl(r); err != nil {
			code := http.StatusForbidden
			if errors.Is(err, errAPIToken) {
				code = http.StatusUnauthorized
				w.Header().Set("WWW-Authenticate", `Bearer realm="immense"`)
			}
			a.refused.WithLabelValues(refusalReason(err)).Inc()
			a.log.Debug("control request refused", "method", r.Method, "path", r.URL.Path, "host", r.Host,
				"origin", r.Header.Get("Origin"), "remote", r.RemoteAddr, "err", err)
			writeError(w, code, err)
			return
		}
		next(w, r)
	}
}

func refusalReason(err error) string {
	switch {
	case errors.Is(err, errAPIHost):
		return "host"
	case errors.Is(err, errAPIOrigin):
		return "origin"
	}
	return "token"
}

func (a *api) checkControl(r *http.Request) error {
	if !hostname.Served(r, a.opts.AllowedHosts) {
		return fmt.Errorf("%w (Host %q)", errAPIHost, r.Host)
	}
	if origin := r.Header.Get("Origin"); origin != "" && !a.sameOrigin(origin, r.Host) {
		return fmt.Errorf("%w (Origin %q)", errAPIOrigin, origin)
	}
	// Browsers also say so without an Origin (a no-cors GET, an <img>).
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return fmt.Errorf("%w (Sec-Fetch-Site %q)", errAPIOrigin, site)
	}
	if a.opts.NoAPIToken {
		return nil
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(a.n.apiToken)) != 1 {
		return errAPIToken
	}
	return nil
}

// sameOrigin reports whether origin is http(s)://host, host being the
// request's (already allowed) Host.
func (a *api) sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return strings.EqualFold(u.Host, host)
}
