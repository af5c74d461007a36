package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// HTTPServer serves an http.Handler until closed.
type HTTPServer struct {
	srv    *http.Server
	ln     net.Listener
	cancel context.CancelFunc
	done   chan struct{}
}

// StartHTTP listens on addr (host:port; port 0 picks a free one) and
// serves n.Handler(opts) in the background, holding at most
// Limits.HTTPMaxConns connections open from other machines,
// HTTPMaxConnsPerIP of them from one address and HTTPMaxConnsPerNet from
// one public network, and as many again from loopback (httpconns.go).
// Streams in flight (SSE) see their request context cancelled when the
// server closes.
func (n *Node) StartHTTP(addr string, opts HTTPOptions) (*HTTPServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	log := n.plog.With("component", "node.http")
	capped := newCapListener(ln, n.cfg.Limits, n.httpConnsRefused, log)
	return serveHTTP(capped, n.Handler(opts), log), nil
}

// serveHTTP serves h on ln in the background.
func serveHTTP(ln net.Listener, h http.Handler, log *slog.Logger) *HTTPServer {
	ctx, cancel := context.WithCancel(context.Background())
	s := &HTTPServer{
		srv: &http.Server{
			Handler:           withBodyDeadline(h, transferTime),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			BaseContext:       func(net.Listener) context.Context { return ctx },
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		ln:     ln,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return s
}

// Addr returns the address the server listens on.
func (s *HTTPServer) Addr() string { return s.ln.Addr().String() }

// URL returns http://<addr>.
func (s *HTTPServer) URL() string { return "http://" + s.Addr() }

// Close stops accepting requests, ends open streams and waits up to 3 s for
// requests in flight.
func (s *HTTPServer) Close() error {
	s.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = s.srv.Close()
	}
	<-s.done
	return err
}

// chunkedBodyBudget is the size a body of unknown length (chunked) is
// given time for; a handler that takes more sets its own deadline.
const chunkedBodyBudget = 1 << 20

// withBodyDeadline gives every request with a body a read deadline of
// budget(its length): a client that announces a body and trickles it, or
// never sends it, is cut off, on every route, whether or not the handler
// reads the body (net/http drains an unread body after the handler, and
// had no deadline to stop at). ReadHeaderTimeout covers only the headers,
// and a server-wide ReadTimeout would end SSE streams. Handlers that read
// more (publish, state PUT) set their own deadline. net/http lifts the
// deadline when the body has been read to its end (its background read
// for the next request starts then), so a handler working longer than
// the budget after reading its body keeps its context.
func withBodyDeadline(h http.Handler, budget func(n int64) time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			n := r.ContentLength
			if n < 0 {
				n = chunkedBodyBudget
			}
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(budget(n)))
		}
		h.ServeHTTP(w, r)
	})
}
