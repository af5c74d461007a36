// Package cli holds what cmd/peer and cmd/bootstrap share: logging set-up,
// flag value types and graceful shutdown.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/immense-p2p/immense/internal/bytesize"
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

// List is a comma-separated list flag; it may also be repeated.
type List []string

func (l *List) String() string { return strings.Join(*l, ",") }

// Set appends the comma-separated values of s.
func (l *List) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// Size is a byte-count flag accepting units: 512MiB, 10GiB, 1.5GB, 4096.
type Size int64

func (s *Size) String() string { return fmt.Sprint(int64(*s)) }

// Set parses a size such as "10GiB", or a rate such as "2MiB/s".
func (s *Size) Set(v string) error {
	n, err := bytesize.Parse(strings.TrimSuffix(v, "/s"))
	if err != nil {
		return err
	}
	*s = Size(n)
	return nil
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
