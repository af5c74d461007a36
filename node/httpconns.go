package node

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/immense-p2p/immense/internal/netprefix"
	"github.com/immense-p2p/immense/internal/slots"
	"github.com/prometheus/client_golang/prometheus"
)

// capListener bounds the connections an HTTP server holds open, whatever
// they are doing (idle keep-alive, headers still arriving within
// ReadHeaderTimeout, SSE streams, hijacked WebSockets). Each takes a file
// descriptor and a goroutine, and before it nothing stopped anyone who
// reached the port from opening them until the process ran out of
// descriptors.
//
// Remote clients share Limits.HTTPMaxConns, at most HTTPMaxConnsPerIP
// from one machine (netprefix.Machine: an IPv4 address or IPv6 /56, the
// rule of Limits.MaxConnsPerIP) and HTTPMaxConnsPerNet from one network
// (netprefix.Network: a /24 or /48), so that one operator's block of
// addresses, a /48 tunnel's 256 /56s say, cannot take them all; private
// addresses have no network cap, only the machine's (a LAN's clients all
// share one prefix). Loopback clients (the operator's CLI and probes, a
// reverse proxy on the machine, devnets, load generators) have a pool of
// HTTPMaxConns of their own, not capped per address, as libp2p's resource
// manager exempts loopback from Limits.MaxConnsPerIP: a remote flood
// filling the remote pool never locks them out, and a local reverse proxy,
// through which every remote client then comes, gets as many as they
// would. The process holds at most twice HTTPMaxConns connections, half
// of them only from the machine itself (or from pages in its browser,
// which a browser limits to a few hundred sockets).
//
// A connection over a cap is accepted, answered 503 with Retry-After and
// closed at once. Blocking Accept at the global cap instead
// (netutil.LimitListener) would leave new connections waiting unanswered
// in the kernel's accept queue, the operator's own requests and the
// probes behind a flood's, until clients time out or the full queue drops
// them; refusing keeps the queue drained and tells a client when to come
// back, for a descriptor held a few microseconds. Refusals are counted by
// reason; each is also logged at debug level (off by default, where a
// flood would write a line per connection).
type capListener struct {
	net.Listener
	remote   *slots.Keyed[netip.Prefix] // keyed by machine and network
	loopback *slots.Keyed[netip.Prefix] // not keyed
	limits   Limits
	// local says which clients take the loopback pool, and grouped which
	// others are capped per network too: loopback, and public addresses,
	// in production; tests from 127.0.0.0/8 set their own.
	local, grouped func(netip.Addr) bool
	refused        *prometheus.CounterVec // by reason: total, per_ip, per_net, loopback
	log            *slog.Logger
}

func newCapListener(ln net.Listener, l Limits, refused *prometheus.CounterVec, log *slog.Logger) *capListener {
	perKey := func(p netip.Prefix) int {
		if p.Bits() == netprefix.MachineBits4 || p.Bits() == netprefix.MachineBits6 {
			return l.HTTPMaxConnsPerIP
		}
		return l.HTTPMaxConnsPerNet
	}
	return &capListener{
		Listener: ln,
		remote:   slots.NewPerKey(l.HTTPMaxConns, perKey),
		loopback: slots.New[netip.Prefix](l.HTTPMaxConns, 0),
		limits:   l,
		local:    netip.Addr.IsLoopback,
		grouped:  func(a netip.Addr) bool { return !netprefix.Exempt(a.AsSlice()) },
		refused:  refused,
		log:      log,
	}
}

// Accept returns the next connection there is a slot for, refusing the
// others on the way. The slot is given back when the connection is
// closed, by net/http or, once hijacked (a WebSocket), by its handler.
func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		pool, keys := l.pool(c.RemoteAddr())
		if release, ok := pool.Take(keys...); ok {
			return &slotConn{Conn: c, release: release}, nil
		}
		l.refuse(c, l.reason(pool, keys))
	}
}

// pool is the pool of a client at remote and its keys there: the
// loopback pool and none, or the remote pool and its machine, then its
// network unless it has none (or none at all if, which a TCP listener
// never gives, it is not at an IP address).
func (l *capListener) pool(remote net.Addr) (*slots.Keyed[netip.Prefix], []netip.Prefix) {
	ap, err := netip.ParseAddrPort(remote.String())
	if err != nil {
		return l.remote, nil
	}
	a := ap.Addr().Unmap()
	switch {
	case l.local(a):
		return l.loopback, nil
	case l.grouped(a):
		return l.remote, []netip.Prefix{netprefix.Machine(a), netprefix.Network(a)}
	}
	return l.remote, []netip.Prefix{netprefix.Machine(a)}
}

// reason is why pool refused a connection of keys: which of its caps
// was full, read just after the refusal (a connection closing in
// between may blur it).
func (l *capListener) reason(pool *slots.Keyed[netip.Prefix], keys []netip.Prefix) string {
	if pool == l.loopback {
		return "loopback"
	}
	var k netip.Prefix
	if len(keys) > 0 {
		k = keys[0]
	}
	switch total, ofMachine := pool.InUse(k); {
	case total >= l.limits.HTTPMaxConns || len(keys) == 0:
		return "total"
	case ofMachine >= l.limits.HTTPMaxConnsPerIP:
		return "per_ip"
	}
	return "per_net"
}

// refuse answers c 503 and closes it. The write goes to a fresh socket's
// empty send buffer, so it does not block; the deadline makes sure.
func (l *capListener) refuse(c net.Conn, reason string) {
	l.refused.WithLabelValues(reason).Inc()
	l.log.Debug("http connection refused", "remote", c.RemoteAddr().String(), "reason", reason)
	_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = c.Write(connsRefusedResponse[reason])
	_ = c.Close()
}

// connsRefusedResponse is what a refused connection is sent, by reason,
// before its request is read: the API's JSON error, to come back later.
var connsRefusedResponse = map[string][]byte{
	"total":    refusedResponse("too many open connections to this server"),
	"per_ip":   refusedResponse("too many open connections from your address"),
	"per_net":  refusedResponse("too many open connections from your network"),
	"loopback": refusedResponse("too many open connections to this server"),
}

func refusedResponse(msg string) []byte {
	body := fmt.Sprintf(`{"error":%q}`+"\n", msg)
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", retryAfterBusy, len(body), body)
}

// slotConn gives its slot back when it is closed: by net/http, which may
// close a connection twice (a slot's release runs once), or, once
// hijacked, by its handler.
type slotConn struct {
	net.Conn
	release func()
}

func (c *slotConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

// CloseWrite keeps net/http's half-close before it closes a connection
// with a request body unread (so the client reads the response rather
// than a reset), which it does only for connections that have it.
func (c *slotConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
