package node

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkLonePeerPublish measures the one-laptop deployment: a peer with
// no other peer, publishing to its own subscriber and waiting for each
// message before sending the next. "go" is Node.Publish to a Subscribe
// channel, the baseline; "http" is POST /v1/topics to an SSE stream, what
// README's curls and a browser-facing app do. Before publishes stopped
// waiting for discovery, each took 2 s (0.5/s).
func BenchmarkLonePeerPublish(b *testing.B) {
	n := loneNode(b, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msg := []byte(strings.Repeat("x", 100))

	b.Run("go", func(b *testing.B) {
		ch, err := n.Subscribe(ctx, "bench/go")
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := n.Publish(ctx, "bench/go", msg); err != nil {
				b.Fatal(err)
			}
			<-ch
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})

	b.Run("http", func(b *testing.B) {
		srv, err := n.StartHTTP("127.0.0.1:0", HTTPOptions{Topics: true})
		if err != nil {
			b.Fatal(err)
		}
		defer srv.Close()
		auth := "Bearer " + n.APIToken()
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL()+"/v1/topics/bench/http", nil)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		events := bufio.NewReader(resp.Body)
		if line, err := events.ReadString('\n'); err != nil || line != ": subscribed\n" {
			b.Fatalf("SSE opened with %q, %v", line, err)
		}
		for b.Loop() {
			preq, _ := http.NewRequest("POST", srv.URL()+"/v1/topics/bench/http", strings.NewReader(string(msg)))
			preq.Header.Set("Authorization", auth)
			pr, err := http.DefaultClient.Do(preq)
			if err != nil {
				b.Fatal(err)
			}
			body, _ := io.ReadAll(pr.Body)
			pr.Body.Close()
			if pr.StatusCode != http.StatusAccepted {
				b.Fatalf("publish: %s: %s", pr.Status, body)
			}
			for { // one event ends with a blank line
				line, err := events.ReadString('\n')
				if err != nil {
					b.Fatal(err)
				}
				if line == "\n" {
					break
				}
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

// loneNode starts a node on 127.0.0.1 with no other peer, closed when tb
// ends: the one-laptop deployment the benchmarks here measure. adjust,
// if set, changes its config first.
func loneNode(tb testing.TB, adjust func(*Config)) *Node {
	cfg := DefaultConfig()
	cfg.DataDir = tb.TempDir()
	cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.NAT.PortMap = false
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if adjust != nil {
		adjust(&cfg)
	}
	n, err := New(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { n.Close() })
	return n
}
