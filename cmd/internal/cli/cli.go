// Package cli holds what cmd/peer and cmd/bootstrap share: the flag
// binder (flags.go) and node.Config's flag table (nodeflags.go), logging
// set-up, and serving a node until a graceful shutdown (serve.go).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewLogger returns a slog logger writing to w in "text" or "json" at level
// "debug", "info", "warn" or "error".
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors, for a process that runs one node.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// SignalContext returns a context cancelled on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// ShutdownWithin runs stop and exits the process with status 1 if it has not
// returned within d: an operator's Ctrl-C or systemd's SIGTERM must always
// end the process promptly.
func ShutdownWithin(d time.Duration, log *slog.Logger, stop func() error) error {
	done := make(chan error, 1)
	go func() { done <- stop() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		log.Error("shutdown took too long; exiting", "limit", d)
		os.Exit(1)
		return errors.New("unreachable")
	}
}

// Info is what --info-file holds: enough for a supervisor or a test to find
// a running node.
type Info struct {
	PeerID string   `json:"peer_id"`
	Addrs  []string `json:"addrs"`
	HTTP   string   `json:"http,omitempty"`
}
