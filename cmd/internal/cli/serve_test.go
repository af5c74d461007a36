package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/immense-p2p/immense/internal/simtest"
	"github.com/immense-p2p/immense/node"
)

// writerFunc is an io.Writer calling f: Serve's stdout, to act at the
// moment it prints the addresses, when the node is up.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// TestServeInfoFile: --info-file holds the running node's peer id and
// addresses, and is gone once the node has stopped, unless another process
// has written it since; a node that cannot write it does not run.
func TestServeInfoFile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := simtest.New(t, simtest.Config{})
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		dir := t.TempDir()
		start := func(i int) *node.Node {
			cfg := node.BootstrapConfig()
			cfg.DataDir = filepath.Join(dir, fmt.Sprint("node", i))
			cfg.ListenAddrs = []string{simtest.Addr(i)}
			cfg.NoTrafficMeters = true
			cfg.Logger = quiet
			cfg.HostOptions = net.HostOptions()
			n, err := node.New(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		// serve runs a node with infoFile until it prints its addresses,
		// then calls up (with the node's info as written) and stops it.
		serve := func(i int, infoFile string, up func(Info)) (int, string) {
			n := start(i)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var stderr bytes.Buffer
			stdout := writerFunc(func(b []byte) (int, error) {
				var info Info
				if data, err := os.ReadFile(infoFile); err != nil || json.Unmarshal(data, &info) != nil {
					t.Errorf("info file when the addresses are printed: %q %v", data, err)
				}
				up(info)
				cancel()
				return len(b), nil
			})
			return Serve(ctx, "bootstrap", n, "", node.HTTPOptions{}, infoFile, stdout, &stderr, quiet), stderr.String()
		}

		file := filepath.Join(dir, "info.json")
		code, _ := serve(0, file, func(info Info) {
			if info.PeerID == "" || len(info.Addrs) == 0 {
				t.Errorf("info file %+v: no peer id or addresses", info)
			}
		})
		if _, err := os.Stat(file); code != 0 || !os.IsNotExist(err) {
			t.Errorf("after a clean exit: code %d, info file %v; want 0 and no file", code, err)
		}

		// Another node took the file over while this one ran: it stays.
		other := []byte(`{"peer_id":"another node's"}`)
		serve(1, file, func(Info) {
			if err := os.WriteFile(file, other, 0o644); err != nil {
				t.Fatal(err)
			}
		})
		if b, err := os.ReadFile(file); err != nil || !bytes.Equal(b, other) {
			t.Errorf("info file another process wrote: %q %v after this node stopped", b, err)
		}

		// An info file that cannot be written: the node does not run.
		printed := false
		code, stderr := serve(2, filepath.Join(dir, "missing", "info.json"), func(Info) { printed = true })
		if code != 1 || printed || !strings.Contains(stderr, "bootstrap: --info-file:") {
			t.Errorf("unwritable info file: code %d, addresses printed %v, stderr %q; want 1, none and the error", code, printed, stderr)
		}
	})
}
