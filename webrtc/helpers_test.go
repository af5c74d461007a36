package webrtc

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	pion "github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// testEnv is a Server on loopback, backed by a memBus, behind an
// httptest server on 127.0.0.1 with an OS-chosen port.
type testEnv struct {
	t      testing.TB
	bus    *memBus
	srv    *Server
	url    string // the offer URL
	closes chan string
}

func testConfig(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.Secret = testSecret
	cfg.LoopbackOnly = true
	// Tests dial many clients with one token from one address; the
	// budgets on that have tests of their own (TestSessionBudgets).
	cfg.MaxSessionsPerSubject, cfg.OfferRate, cfg.MaxPendingPerClient = 0, 0, 0
	cfg.Registerer = prometheus.NewRegistry()
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	return cfg
}

func newTestEnv(t testing.TB, mutate func(*Config)) *testEnv {
	t.Helper()
	cfg := testConfig(t)
	if mutate != nil {
		mutate(&cfg)
	}
	bus := newMemBus()
	srv, err := New(bus, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e := &testEnv{t: t, bus: bus, srv: srv, closes: make(chan string, 1024)}
	srv.testHookClosed = func(reason string) {
		select {
		case e.closes <- reason:
		default:
		}
	}
	hs := httptest.NewServer(srv)
	e.url = hs.URL + OfferPath
	t.Cleanup(func() {
		hs.Close()
		srv.Close()
	})
	return e
}

// token mints a token valid for an hour granting read and write.
func (e *testEnv) token(read, write []string) string {
	e.t.Helper()
	now := time.Now()
	tok, err := Mint(testSecret, Claims{Subject: "test", IssuedAt: now, ExpiresAt: now.Add(time.Hour), Read: read, Write: write})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func (e *testEnv) dial(ctx context.Context, token string, opts ...ClientOption) *Client {
	e.t.Helper()
	c, err := Dial(ctx, e.url, token, append([]ClientOption{WithLoopbackOnly()}, opts...)...)
	if err != nil {
		e.t.Fatalf("Dial: %v", err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// dialMany dials n clients, a few at a time to spare the machine.
func (e *testEnv) dialMany(ctx context.Context, n int, token string, opts ...ClientOption) []*Client {
	e.t.Helper()
	clients := make([]*Client, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			clients[i], errs[i] = Dial(ctx, e.url, token, append([]ClientOption{WithLoopbackOnly()}, opts...)...)
		}()
	}
	wg.Wait()
	for i, c := range clients {
		if c != nil {
			e.t.Cleanup(func() { c.Close() })
		}
		if errs[i] != nil {
			e.t.Fatalf("Dial client %d: %v", i, errs[i])
		}
	}
	return clients
}

// waitClose waits for a session to close and returns the reason.
func (e *testEnv) waitClose(ctx context.Context) string {
	e.t.Helper()
	select {
	case r := <-e.closes:
		return r
	case <-ctx.Done():
		e.t.Fatal("no session closed")
		return ""
	}
}

// value reads a counter or gauge.
func value(t testing.TB, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatal("not a counter or gauge")
	return 0
}

// rawOffer returns the SDP offer of a loopback peer connection with a data
// channel, for tests that speak HTTP to the signaling endpoint directly.
func rawOffer(t testing.TB) (*pion.PeerConnection, string) {
	t.Helper()
	api, err := newAPI(transportOptions{loopbackOnly: true, log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(pion.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	if _, err := pc.CreateDataChannel(dataChannelLabel, nil); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := pion.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return pc, pc.LocalDescription().SDP
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
