package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/immense-p2p/immense/internal/durable"
	"github.com/immense-p2p/immense/node"
)

// Serve runs a started node until ctx ends, the way both commands do: it
// serves the node's HTTP API on httpAddr (none if empty), writes infoFile
// (if set; a node that cannot write it does not run), prints the node's
// multiaddrs to stdout one per line, and when ctx ends hands the node's
// shards to other peers (Node.Handoff, at most its HandoffTimeout; a
// second SIGINT or SIGTERM cuts it short), closes everything within 5 s
// more and removes infoFile, if it still holds what Serve wrote, so that
// no script reads a stopped node's addresses. The addresses are printed
// last: a supervisor that has read them knows the node, its HTTP API and
// its info file are all up. It returns the process exit code.
func Serve(ctx context.Context, name string, n *node.Node, httpAddr string, opts node.HTTPOptions, infoFile string, stdout, stderr io.Writer, log *slog.Logger) int {
	var srv *node.HTTPServer
	if httpAddr != "" {
		var err error
		srv, err = n.StartHTTP(httpAddr, opts)
		if err != nil {
			n.Close()
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return 1
		}
		log.Info("HTTP API listening", "url", srv.URL(), "token_file", n.APITokenFile(), "note", "the control API needs Authorization: Bearer <the token in token_file>")
		log.Info("dashboard", "url", srv.URL()+node.DashboardPath+"#token=<the token in token_file>")
	}
	info := Info{PeerID: n.ID().String()}
	for _, a := range n.Addrs() {
		info.Addrs = append(info.Addrs, a.String())
	}
	if srv != nil {
		info.HTTP = srv.URL()
	}
	var written []byte
	if infoFile != "" {
		written, _ = json.Marshal(info)
		if err := durable.WriteFile(infoFile, written, 0o644); err != nil {
			if srv != nil {
				srv.Close()
			}
			n.Close()
			fmt.Fprintf(stderr, "%s: --info-file: %v\n", name, err)
			return 1
		}
		defer removeInfoFile(infoFile, written, log)
	}
	fmt.Fprintln(stdout, strings.Join(info.Addrs, "\n"))

	<-ctx.Done()
	log.Info("shutting down")
	handoff := n.HandoffTimeout()
	err := ShutdownWithin(handoff+5*time.Second, log, func() error {
		if handoff > 0 {
			handOff(n, log)
		}
		if srv != nil {
			srv.Close()
		}
		return n.Close()
	})
	if err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	return 0
}

// removeInfoFile removes the info file Serve wrote, unless another process
// (a node started since with the same --info-file) has replaced it.
func removeInfoFile(path string, written []byte, log *slog.Logger) {
	if b, err := os.ReadFile(path); err != nil || !bytes.Equal(b, written) {
		return
	}
	if err := os.Remove(path); err != nil {
		log.Warn("remove --info-file", "err", err)
	}
}

// handOff runs n's handoff until it finishes, its timeout passes or a
// second SIGINT or SIGTERM arrives (the first ended ctx).
func handOff(n *node.Node, log *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	log.Info("handing shards off before exit; a second SIGINT or SIGTERM cuts it short", "timeout", n.HandoffTimeout())
	go func() {
		select {
		case <-sig:
			log.Warn("second signal: cutting the handoff short")
			cancel()
		case <-ctx.Done():
		}
	}()
	if _, err := n.Handoff(ctx); err != nil {
		log.Warn("handoff stopped before the end", "err", err)
	}
}
