package webrtc

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// TestCloseLeavesNoGoroutines: Server.Close and Client.Close stop every
// goroutine they started, pion's included.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	http.DefaultClient.CloseIdleConnections()
	before := runtime.NumGoroutine()

	cfg := testConfig(t)
	bus := newMemBus()
	srv, err := New(bus, cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok, _ := Mint(testSecret, Claims{ExpiresAt: time.Now().Add(time.Hour), Read: []string{"t"}, Write: []string{"t"}})
	var clients []*Client
	for range 3 {
		c, err := Dial(ctx, hs.URL+OfferPath, tok, WithLoopbackOnly())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Subscribe(ctx, "t"); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	if err := clients[0].Publish(ctx, "t", []byte("x")); err != nil {
		t.Fatal(err)
	}
	<-clients[1].Messages()
	clients[0].Close() // one client leaves first, the others with the server
	srv.Close()
	for _, c := range clients {
		c.Close()
	}
	hs.Close()
	http.DefaultClient.CloseIdleConnections()

	// Goroutines finish shortly after the calls that stopped them return
	// (a deferred Done runs last); allow them a moment.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		var sb strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&sb, 1)
		t.Fatalf("%d goroutines before, %d after Close:\n%s", before, n, sb.String())
	}
}
