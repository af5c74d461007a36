package node

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBodyDeadline: a request that announces a body and never sends it is
// cut off within the body's budget, whether the handler reads the body or
// not (net/http drains an unread one), and a handler that read its body
// to the end keeps its context past the budget. Before, only the headers
// had a timeout: such connections, and their goroutines, were held for
// ever, on every route, with no rate limit.
func TestBodyDeadline(t *testing.T) {
	const budget = 200 * time.Millisecond
	slowDone := make(chan error, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("/ignore", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusUnauthorized)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		time.Sleep(3 * budget) // work after the body, longer than its budget
		slowDone <- r.Context().Err()
	})
	hs := httptest.NewServer(withBodyDeadline(mux, func(int64) time.Duration { return budget }))
	defer hs.Close()

	for _, path := range []string{"/read", "/ignore"} {
		c, err := net.Dial("tcp", hs.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n{", path)
		start := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(io.Discard, c) // until the server closes
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%s: connection still open after 10 s with 1 of 60,000 body bytes sent", path)
		} else if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: closed after %v, want about %v", path, d, budget)
		}
		c.Close()
	}

	resp, err := http.Post(hs.URL+"/slow", "text/plain", strings.NewReader("a body"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := <-slowDone; err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("a handler working past its body's budget: context %v, status %d; want neither cancelled nor failed", err, resp.StatusCode)
	}
}
