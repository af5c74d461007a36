package node

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/immense-p2p/immense/internal/netprefix"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestHTTPConnKeys: a client is counted under its IPv4 address (an IPv4
// address in IPv6 form too) or its IPv6 /56, as Limits.MaxConnsPerIP
// counts libp2p connections; loopback, in any form, under none (in all
// only), while private addresses are limited like any other.
func TestHTTPConnKeys(t *testing.T) {
	l := newCapListener(nil, 1, 1, netip.Addr.IsLoopback, nil, nil)
	for _, tc := range []struct{ remote, want string }{
		{"203.0.113.7:4000", "203.0.113.7/32"},
		{"[::ffff:203.0.113.7]:4000", "203.0.113.7/32"},
		{"10.1.2.3:80", "10.1.2.3/32"},
		{"[2001:db8:1:2ff::1]:443", "2001:db8:1:200::/56"},
		{"[2001:db8:1:2aa:5::9]:443", "2001:db8:1:200::/56"},
		{"[2001:db8:1:300::1]:443", "2001:db8:1:300::/56"},
		{"127.0.0.1:9", ""},
		{"127.3.4.5:9", ""},
		{"[::1]:9", ""},
		{"[::ffff:127.0.0.1]:9", ""},
	} {
		addr, err := net.ResolveTCPAddr("tcp", tc.remote)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if keys := l.keys(addr); len(keys) == 1 {
			got = keys[0].String()
		} else if len(keys) > 1 {
			t.Fatalf("%s: keys %v", tc.remote, keys)
		}
		if got != tc.want {
			t.Errorf("%s: counted under %q, want %q", tc.remote, got, tc.want)
		}
	}
}

// TestHTTPConnCaps: the HTTP server holds at most max connections and
// perIP from one client address. Over either, a connection is answered
// 503 with Retry-After and closed, counted by reason, while other clients
// are served; an exempt address (here 127.0.0.1; other loopback addresses
// stand for clients elsewhere) is counted in all only. A slot comes back
// when its connection closes: hijacked (a WebSocket) and closed twice by
// its handler, or closed by net/http when the client goes. Before, the
// server took every connection it was offered.
func TestHTTPConnCaps(t *testing.T) {
	const max, perIP = 6, 2
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	hijacked := make(chan net.Conn, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		hijacked <- c // the test closes it, as a WebSocket's handler does
	})
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "refused"}, []string{"reason"})
	self := netip.MustParseAddr("127.0.0.1")
	capped := newCapListener(inner, max, perIP, func(a netip.Addr) bool { return a == self }, refused, quiet)
	closed := make(chan struct{}, 4*max)
	srv := serveHTTP(closeSignal{capped, closed}, mux, quiet)
	defer srv.Close()

	dial := func(from string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second)) // a bound, not a wait
		return c
	}
	served := func(c net.Conn) {
		t.Helper()
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection from %v not served: %v", c.LocalAddr(), err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("connection from %v: %s", c.LocalAddr(), resp.Status)
		}
	}
	refusedWith := func(c net.Conn, msg string) {
		t.Helper()
		// Nothing sent: a refused connection is answered before its
		// request, and one taken would wait for it until the deadline.
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection from %v: %v, want 503", c.LocalAddr(), err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !resp.Close || !strings.Contains(string(body), msg) {
			t.Fatalf("connection from %v: %s, Retry-After %q, close %v, body %q; want 503 with Retry-After, closed, %q",
				c.LocalAddr(), resp.Status, resp.Header.Get("Retry-After"), resp.Close, body, msg)
		}
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("refused connection from %v: read %v after the 503, want EOF", c.LocalAddr(), err)
		}
	}
	inUse := func(from string) (total, ofClient int) {
		return capped.slots.InUse(netprefix.Machine(netip.MustParseAddr(from)))
	}

	a1, a2 := dial("127.0.0.2"), dial("127.0.0.2")
	served(a1)
	served(a2)
	refusedWith(dial("127.0.0.2"), "from your address")
	served(dial("127.0.0.3")) // another address beside it
	var own []net.Conn
	for range perIP + 1 { // the exempt address, beyond perIP
		c := dial("127.0.0.1")
		served(c)
		own = append(own, c)
	}
	refusedWith(dial("127.0.0.3"), "to this server") // max reached
	count := func(reason string) float64 {
		var m dto.Metric
		_ = refused.WithLabelValues(reason).Write(&m)
		return m.GetCounter().GetValue()
	}
	if p, all := count("per_ip"), count("total"); p != 1 || all != 1 {
		t.Errorf("refusals counted: per_ip %v, total %v; want 1 and 1", p, all)
	}

	// A hijacked connection's slot comes back when its handler closes it,
	// once however often it does.
	fmt.Fprint(a1, "GET /hijack HTTP/1.1\r\nHost: x\r\n\r\n")
	h := <-hijacked
	h.Close()
	h.Close()
	<-closed
	if total, of := inUse("127.0.0.2"); total != max-1 || of != 1 {
		t.Fatalf("after a hijacked connection closed twice: %d in use, %d of its address; want %d and 1", total, of, max-1)
	}
	served(dial("127.0.0.2"))

	// So does a connection its client closed, once net/http has seen it.
	own[0].Close()
	<-closed
	served(dial("127.0.0.3"))
	if total, _ := inUse("127.0.0.1"); total != max {
		t.Errorf("%d connections in use, want %d", total, max)
	}
}

// TestStartHTTPConnCap: a node's HTTP API takes Limits.HTTPMaxConns
// connections, loopback ones beyond HTTPMaxConnsPerIP, and refuses the
// next, counted in immense_http_conns_refused_total.
func TestStartHTTPConnCap(t *testing.T) {
	nd := loneNode(t, func(c *Config) { c.Limits.HTTPMaxConns, c.Limits.HTTPMaxConnsPerIP = 3, 1 })
	srv, err := nd.StartHTTP("127.0.0.1:0", HTTPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	get := func(send bool) (*http.Response, error) {
		c, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second)) // a bound, not a wait
		if send {
			fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", srv.Addr())
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	for i := range 3 {
		if resp, err := get(true); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("connection %d of 3: %v %v", i+1, resp, err)
		}
	}
	// Nothing sent: the 503 comes before the request.
	if resp, err := get(false); err != nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("connection 4 of 3: %v %v, want 503 with Retry-After", resp, err)
	}
	if got := metricSum(t, nd, "immense_http_conns_refused_total"); got != 1 {
		t.Errorf("immense_http_conns_refused_total %v, want 1", got)
	}
}

// closeSignal passes its listener's connections on, each sending on
// closed once it has been closed (and with it, its slot released).
type closeSignal struct {
	net.Listener
	closed chan<- struct{}
}

func (l closeSignal) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &signalConn{Conn: c, closed: l.closed}, nil
}

type signalConn struct {
	net.Conn
	once   sync.Once
	closed chan<- struct{}
}

func (c *signalConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.closed <- struct{}{} })
	return err
}
