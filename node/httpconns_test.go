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

// TestHTTPConnKeys: a remote client is counted under its IPv4 address (an
// IPv4 address in IPv6 form too) or its IPv6 /56, and under its /24 or
// /48 unless its address is private, which is limited per address only;
// loopback, in any form, takes the loopback pool, under no key. So the
// /56s of one /48 share its network's cap.
func TestHTTPConnKeys(t *testing.T) {
	l := newCapListener(nil, Limits{HTTPMaxConns: 1, HTTPMaxConnsPerIP: 1, HTTPMaxConnsPerNet: 1}, nil, nil)
	for _, tc := range []struct{ remote, want string }{
		{"203.0.113.7:4000", "203.0.113.7/32 203.0.113.0/24"},
		{"[::ffff:203.0.113.7]:4000", "203.0.113.7/32 203.0.113.0/24"},
		{"10.1.2.3:80", "10.1.2.3/32"},
		{"192.168.1.20:80", "192.168.1.20/32"},
		{"[2001:db8:1:2ff::1]:443", "2001:db8:1:200::/56 2001:db8:1::/48"},
		{"[2001:db8:1:2aa:5::9]:443", "2001:db8:1:200::/56 2001:db8:1::/48"},
		{"[2001:db8:1:300::1]:443", "2001:db8:1:300::/56 2001:db8:1::/48"},
		{"[fd00:1:2:3::1]:443", "fd00:1:2::/56"},
		// Behind a NAT64 gateway or SIIT translator IPv4 clients show in
		// one /96: each counts as its own IPv4 host.
		{"[64:ff9b::cb00:7107]:443", "203.0.113.7/32 203.0.113.0/24"},
		{"[64:ff9b::c633:6401]:443", "198.51.100.1/32 198.51.100.0/24"},
		{"[2002:cb00:7107::1]:443", "203.0.113.7/32 203.0.113.0/24"}, // 6to4
		{"127.0.0.1:9", "loopback"},
		{"127.3.4.5:9", "loopback"},
		{"[::1]:9", "loopback"},
		{"[::ffff:127.0.0.1]:9", "loopback"},
	} {
		addr, err := net.ResolveTCPAddr("tcp", tc.remote)
		if err != nil {
			t.Fatal(err)
		}
		pool, keys := l.pool(addr)
		var got []string
		for _, k := range keys {
			got = append(got, k.String())
		}
		switch {
		case pool == l.loopback && len(keys) == 0:
			got = []string{"loopback"}
		case pool == l.loopback:
			t.Errorf("%s: loopback pool with keys %v", tc.remote, keys)
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("%s: counted under %q, want %q", tc.remote, g, tc.want)
		}
	}
}

// TestHTTPConnCaps: the HTTP server holds at most HTTPMaxConns connections
// from other machines, HTTPMaxConnsPerIP from one client address and
// HTTPMaxConnsPerNet from one network, and as many again from loopback.
// Over a cap, a connection is answered 503 with Retry-After and closed,
// counted by reason, while other clients are served. Here 127.0.0.1
// stands for loopback and other addresses of 127.0.0.0/8 for clients
// elsewhere, their /24s for networks. Remote clients filling every slot
// no longer refuse loopback (the operator's own requests, a reverse
// proxy on the machine), and the machines of one network, each within
// its own cap (the /56s of a /48), no longer take every slot. A slot
// comes back when its connection closes: hijacked (a WebSocket) and
// closed twice by its handler, or closed by net/http when the client
// goes. Before, the server took every connection it was offered.
func TestHTTPConnCaps(t *testing.T) {
	const max, perIP, perNet = 6, 2, 3
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
	capped := newCapListener(inner, Limits{HTTPMaxConns: max, HTTPMaxConnsPerIP: perIP, HTTPMaxConnsPerNet: perNet}, refused, quiet)
	self := netip.MustParseAddr("127.0.0.1")
	capped.local = func(a netip.Addr) bool { return a == self }
	capped.grouped = func(netip.Addr) bool { return true }
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

	// One machine, then its network.
	a1, a2 := dial("127.0.0.2"), dial("127.0.0.2")
	served(a1)
	served(a2)
	refusedWith(dial("127.0.0.2"), "from your address")
	b := dial("127.0.0.3") // another machine of the network
	served(b)
	refusedWith(dial("127.0.0.4"), "from your network") // a third, the network full
	for _, from := range []string{"127.0.1.2", "127.0.1.2", "127.0.1.3"} {
		served(dial(from)) // another network beside it
	}
	refusedWith(dial("127.0.2.2"), "to this server") // every remote slot taken
	// Loopback has its pool, as large, not capped per address.
	var own []net.Conn
	for range max {
		c := dial("127.0.0.1")
		served(c)
		own = append(own, c)
	}
	refusedWith(dial("127.0.0.1"), "to this server")
	for _, reason := range []string{"per_ip", "per_net", "total", "loopback"} {
		if got := refusals(refused, reason); got != 1 {
			t.Errorf("refusals counted with reason %s: %v, want 1", reason, got)
		}
	}

	// A hijacked connection's slot comes back when its handler closes it,
	// once however often it does.
	fmt.Fprint(a1, "GET /hijack HTTP/1.1\r\nHost: x\r\n\r\n")
	h := <-hijacked
	h.Close()
	h.Close()
	<-closed
	if total, of := capped.remote.InUse(netprefix.Machine(netip.MustParseAddr("127.0.0.2"))); total != max-1 || of != 1 {
		t.Fatalf("after a hijacked connection closed twice: %d in use, %d of its address; want %d and 1", total, of, max-1)
	}
	served(dial("127.0.0.2"))

	// So does a connection its client closed, once net/http has seen it:
	// to its network and pool.
	b.Close()
	<-closed
	if _, of := capped.remote.InUse(netprefix.Network(netip.MustParseAddr("127.0.0.3"))); of != perNet-1 {
		t.Fatalf("after a connection closed: its network holds %d, want %d", of, perNet-1)
	}
	served(dial("127.0.0.4"))
	own[0].Close()
	<-closed
	served(dial("127.0.0.1"))
	if remote, _ := capped.remote.InUse(netip.Prefix{}); remote != max {
		t.Errorf("%d remote connections in use, want %d", remote, max)
	}
	if local, _ := capped.loopback.InUse(netip.Prefix{}); local != max {
		t.Errorf("%d loopback connections in use, want %d", local, max)
	}
}

// TestStartHTTPConnCap: a node's HTTP API takes Limits.HTTPMaxConns
// loopback connections, beyond HTTPMaxConnsPerIP, in the loopback pool,
// and refuses the next, counted in
// immense_http_conns_refused_total{reason="loopback"}.
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
	if all, got := metricSum(t, nd, "immense_http_conns_refused_total"), refusals(nd.httpConnsRefused, "loopback"); all != 1 || got != 1 {
		t.Errorf("immense_http_conns_refused_total %v, with reason loopback %v; want 1 and 1", all, got)
	}
}

// refusals is the count of refused connections with reason.
func refusals(refused *prometheus.CounterVec, reason string) float64 {
	var m dto.Metric
	_ = refused.WithLabelValues(reason).Write(&m)
	return m.GetCounter().GetValue()
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
