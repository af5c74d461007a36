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

// capListener bounds the connections an HTTP server holds open: max in
// all and perIP from one client (its netprefix.Machine: an IPv4 address or
// IPv6 /56, the rule of Limits.MaxConnsPerIP), whatever they are doing
// (idle keep-alive, headers still arriving within ReadHeaderTimeout, SSE
// streams, hijacked WebSockets). Each takes a file descriptor and a
// goroutine, and before it nothing stopped anyone who reached the port
// from opening them until the process ran out of descriptors.
//
// A connection over either cap is accepted, answered 503 with
// Retry-After and closed at once. Blocking Accept at the global cap
// instead (netutil.LimitListener) would leave new connections waiting
// unanswered in the kernel's accept queue, the operator's own requests
// and the probes behind a flood's, until clients time out or the full
// queue drops them; refusing keeps the queue drained and tells a client
// when to come back, for a descriptor held a few microseconds. Refusals
// are counted; each is also logged at debug level (off by default, where
// a flood would write a line per connection).
type capListener struct {
	net.Listener
	slots *slots.Keyed[netip.Prefix]
	max   int
	// exempt says which clients perIP does not apply to: loopback in
	// production (a reverse proxy on the machine, devnets, load
	// generators), as libp2p's resource manager exempts it from
	// Limits.MaxConnsPerIP. They count against max all the same.
	exempt  func(netip.Addr) bool
	refused *prometheus.CounterVec // by reason: total, per_ip
	log     *slog.Logger
}

func newCapListener(ln net.Listener, max, perIP int, exempt func(netip.Addr) bool, refused *prometheus.CounterVec, log *slog.Logger) *capListener {
	return &capListener{Listener: ln, slots: slots.New[netip.Prefix](max, perIP), max: max, exempt: exempt, refused: refused, log: log}
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
		if release, ok := l.slots.Take(l.keys(c.RemoteAddr())...); ok {
			return &slotConn{Conn: c, release: release}, nil
		}
		reason := "total"
		if total, _ := l.slots.InUse(netip.Prefix{}); total < l.max {
			reason = "per_ip"
		}
		l.refuse(c, reason)
	}
}

// keys are the slots' keys of a client at remote: its machine, or
// none if it is exempt (or, which a TCP listener never gives, not at an
// IP address), to be counted in all only.
func (l *capListener) keys(remote net.Addr) []netip.Prefix {
	ap, err := netip.ParseAddrPort(remote.String())
	if err != nil || l.exempt(ap.Addr().Unmap()) {
		return nil
	}
	return []netip.Prefix{netprefix.Machine(ap.Addr())}
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
	"total":  refusedResponse("too many open connections to this server"),
	"per_ip": refusedResponse("too many open connections from your address"),
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
