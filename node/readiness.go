package node

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/immense-p2p/immense/internal/hostname"
)

// Probes for supervisors and load balancers, unauthenticated (they carry
// no token) but behind the same Host check as the control API, and
// revealing nothing but what they answer:
//
//	GET /healthz   200 {"status":"alive"} while the process serves HTTP
//	GET /readyz    200 {"status":"ready"} once the node listens, has joined
//	               the overlay and can write its storage; 503 with
//	               {"status":"not ready","reason":"..."} before

// Ready reports whether the node can do its work: it listens, it has
// joined the overlay (a node without bootstrap peers counts as joined: it
// is the first of its network), and its storage directory takes writes.
// The error says what is missing.
func (n *Node) Ready() error {
	if len(n.host.Network().ListenAddresses()) == 0 {
		return errors.New("not listening")
	}
	if js := n.overlay.JoinState(); !js.Joined {
		return errors.New(js.Reason)
	}
	if n.state != nil {
		if err := writable(filepath.Join(n.cfg.DataDir, shardDir)); err != nil {
			return fmt.Errorf("storage not writable: %w", err)
		}
	}
	return nil
}

// writable checks that a file can be created in dir.
func writable(dir string) error {
	f, err := os.CreateTemp(dir, ".readyz-*")
	if err != nil {
		return errors.Unwrap(err) // without the temporary file's name
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// probe wraps a probe handler in the control API's Host check only.
func (a *api) probe(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !hostname.Served(r, a.opts.AllowedHosts) {
			a.refused.WithLabelValues("host").Inc()
			writeError(w, http.StatusForbidden, fmt.Errorf("%w (Host %q)", errAPIHost, r.Host))
			return
		}
		next(w, r)
	}
}

func (a *api) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
}

func (a *api) readyz(w http.ResponseWriter, _ *http.Request) {
	if err := a.n.Ready(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
