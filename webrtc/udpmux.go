package webrtc

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/stun/v3"
)

// The server's UDP sockets, one per local address, shared by every browser
// session (an ICE UDP mux). It implements pion's ice.UDPMux, for sessions
// that run pion's ICE agent, and serves ICE-lite sessions (icelite.go) the
// same way. One goroutine per socket reads every packet and queues it for
// the session it belongs to: by the sender's address once the session has
// written to it, else, for a STUN check, by the server's ufrag in its
// USERNAME. pion's own mux does the same, but queues each packet in an
// 8 KiB buffer and watches each session's connection with a goroutine; a
// packet here takes a pooled buffer of its own size class (most are
// acknowledgements of under 100 bytes) and a session none.

// udpMuxBuffer is the socket buffer asked for the shared UDP sockets.
const udpMuxBuffer = 4 << 20

// listenUDPMux binds the server's UDP mux: one socket per local address
// (IPv4 loopback only with loopbackOnly), on the first port of the range
// that every address can bind.
func listenUDPMux(o transportOptions) (*udpMux, error) {
	ips, err := muxIPs(o.loopbackOnly)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, errors.New("browser UDP socket: no usable local address")
	}
	lo, hi := int(o.portMin), int(o.portMax)
	for port := lo; port <= hi; port++ {
		var socks []*net.UDPConn
		if socks, err = bindUDP(ips, port); err == nil {
			return newUDPMux(socks), nil
		}
	}
	if lo == hi {
		return nil, fmt.Errorf("browser UDP socket on port %d: %w", lo, err)
	}
	return nil, fmt.Errorf("browser UDP socket: no port of %d-%d is free: %w", lo, hi, err)
}

// muxIPs lists the local addresses the mux binds: IPv4 loopback ones with
// loopbackOnly, else the global unicast addresses of interfaces that are
// up. Not link-local addresses: no browser reaches the peer through one,
// and binding an IPv6 one fails while the address is still tentative
// (just after an interface comes up), which would fail the whole server.
func muxIPs(loopbackOnly bool) ([]net.IP, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("network interfaces: %w", err)
	}
	var ips []net.IP
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || (iface.Flags&net.FlagLoopback != 0) != loopbackOnly {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip := ipn.IP
			switch {
			case loopbackOnly && ip.IsLoopback() && ip.To4() != nil:
			case !loopbackOnly && ip.IsGlobalUnicast() && !fec0.Contains(ip):
			default:
				continue
			}
			ips = append(ips, ip)
		}
	}
	return ips, nil
}

// fec0 is IPv6's deprecated site-local prefix, which pion leaves out too.
var fec0 = &net.IPNet{IP: net.ParseIP("fec0::"), Mask: net.CIDRMask(10, 128)}

// bindUDP binds every address on port (0: each its own free port).
func bindUDP(ips []net.IP, port int) ([]*net.UDPConn, error) {
	var socks []*net.UDPConn
	for _, ip := range ips {
		network := "udp6"
		if ip.To4() != nil {
			network = "udp4"
		}
		s, err := net.ListenUDP(network, &net.UDPAddr{IP: ip, Port: port})
		if err != nil {
			for _, s := range socks {
				_ = s.Close()
			}
			return nil, err
		}
		// One socket takes every browser's acknowledgements and
		// handshakes. The kernel's default buffer (208 KiB on Linux)
		// overflows at a few hundred browsers, and lost handshake packets
		// fail connections. Linux caps this at net.core.rmem_max /
		// wmem_max (docs/operating.md).
		_ = s.SetReadBuffer(udpMuxBuffer)
		_ = s.SetWriteBuffer(udpMuxBuffer)
		socks = append(socks, s)
	}
	return socks, nil
}

// muxReadSize is the largest datagram the mux reads: pion's receive MTU.
const muxReadSize = 8192

// muxQueueLength bounds the packets queued for one session that its
// reader has not taken: beyond it packets are dropped, as a full socket
// buffer would, so a stuck session cannot hold the mux's memory.
const muxQueueLength = 256

// errMuxClosed: the mux or the session's connection is closed.
var errMuxClosed = errors.New("UDP mux closed")

// udpMux is the server's shared UDP sockets.
type udpMux struct {
	socks []*net.UDPConn
	addrs []net.Addr // socks[i].LocalAddr()
	wg    sync.WaitGroup

	mu      sync.Mutex
	byUfrag map[muxUfragKey]*muxConn
	byAddr  map[muxAddrKey]*muxConn
	closed  bool
}

type muxUfragKey struct {
	sock  int
	ufrag string
}

type muxAddrKey struct {
	sock int
	addr netip.AddrPort
}

// newUDPMux serves socks, which it owns from now on.
func newUDPMux(socks []*net.UDPConn) *udpMux {
	m := &udpMux{
		socks:   socks,
		byUfrag: make(map[muxUfragKey]*muxConn),
		byAddr:  make(map[muxAddrKey]*muxConn),
	}
	for i, s := range socks {
		m.addrs = append(m.addrs, s.LocalAddr())
		m.wg.Add(1)
		go m.readLoop(i)
	}
	return m
}

// GetListenAddresses returns the sockets' local addresses.
func (m *udpMux) GetListenAddresses() []net.Addr { return m.addrs }

// GetConn returns the connection of the session with the server-side
// ufrag on the socket bound to addr, making it if there is none.
func (m *udpMux) GetConn(ufrag string, addr net.Addr) (net.PacketConn, error) {
	sock := -1
	for i, a := range m.addrs {
		if a.String() == addr.String() {
			sock = i
			break
		}
	}
	if sock < 0 {
		return nil, fmt.Errorf("no UDP socket on %v", addr)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errMuxClosed
	}
	k := muxUfragKey{sock, ufrag}
	if c := m.byUfrag[k]; c != nil {
		return c, nil
	}
	c := &muxConn{mux: m, sock: sock, ufrag: ufrag, ready: make(chan struct{}, 1)}
	m.byUfrag[k] = c
	return c, nil
}

// RemoveConnByUfrag closes the session's connections on every socket.
func (m *udpMux) RemoveConnByUfrag(ufrag string) {
	m.mu.Lock()
	var conns []*muxConn
	for k, c := range m.byUfrag {
		if k.ufrag == ufrag {
			conns = append(conns, c)
		}
	}
	m.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// Close closes the sockets and every session's connection, and waits for
// the readers.
func (m *udpMux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	conns := make([]*muxConn, 0, len(m.byUfrag))
	for _, c := range m.byUfrag {
		conns = append(conns, c)
	}
	m.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	for _, s := range m.socks {
		_ = s.Close()
	}
	m.wg.Wait()
	return nil
}

// readLoop reads socket i until it closes.
func (m *udpMux) readLoop(i int) {
	defer m.wg.Done()
	buf := make([]byte, muxReadSize)
	var msg stun.Message
	for {
		n, from, err := m.socks[i].ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // an ICMP error reported on the socket: the next read goes on
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		m.mu.Lock()
		c := m.byAddr[muxAddrKey{i, from}]
		if c == nil && stun.IsMessage(buf[:n]) {
			// A check from an address not seen yet: USERNAME is the
			// server's ufrag, a colon, the browser's.
			msg.Raw = append(msg.Raw[:0], buf[:n]...)
			if msg.Decode() == nil {
				if user, err := msg.Get(stun.AttrUsername); err == nil {
					ufrag, _, _ := strings.Cut(string(user), ":")
					c = m.byUfrag[muxUfragKey{i, ufrag}]
				}
			}
		}
		m.mu.Unlock()
		if c != nil {
			c.push(buf[:n], from)
		}
	}
}

// muxConn is one session's connection on one socket.
type muxConn struct {
	mux   *udpMux
	sock  int
	ufrag string
	ready chan struct{} // a packet was queued or the connection closed

	mu     sync.Mutex
	queue  []muxPacket
	addrs  []netip.AddrPort // registered with the mux: written to
	closed bool
}

type muxPacket struct {
	buf  *[]byte // from muxBuffers
	n    int
	from netip.AddrPort
}

// muxBuffers pools packet buffers by size class: a queued packet keeps
// one only while its session has not read it.
var muxBuffers = [...]struct {
	size int
	pool sync.Pool
}{{size: 256}, {size: 1500}, {size: muxReadSize}}

func getMuxBuffer(n int) (*[]byte, int) {
	for i := range muxBuffers {
		if n <= muxBuffers[i].size {
			if b, ok := muxBuffers[i].pool.Get().(*[]byte); ok {
				return b, i
			}
			b := make([]byte, muxBuffers[i].size)
			return &b, i
		}
	}
	panic("UDP mux: packet larger than its read buffer")
}

func putMuxBuffer(b *[]byte) {
	for i := range muxBuffers {
		if len(*b) == muxBuffers[i].size {
			muxBuffers[i].pool.Put(b)
			return
		}
	}
}

// push queues a copy of p from the mux's reader.
func (c *muxConn) push(p []byte, from netip.AddrPort) {
	c.mu.Lock()
	if c.closed || len(c.queue) >= muxQueueLength {
		c.mu.Unlock()
		return
	}
	b, _ := getMuxBuffer(len(p))
	copy(*b, p)
	c.queue = append(c.queue, muxPacket{b, len(p), from})
	c.mu.Unlock()
	select {
	case c.ready <- struct{}{}:
	default:
	}
}

// ReadFrom returns the oldest queued packet, waiting for one.
func (c *muxConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		if len(c.queue) > 0 {
			p := c.queue[0]
			c.queue[0] = muxPacket{}
			c.queue = c.queue[1:]
			if len(c.queue) == 0 {
				c.queue = nil // let the backing array go
			}
			c.mu.Unlock()
			n := copy(b, (*p.buf)[:p.n])
			putMuxBuffer(p.buf)
			if n < p.n {
				return n, net.UDPAddrFromAddrPort(p.from), errors.New("UDP mux: read buffer too short")
			}
			return n, net.UDPAddrFromAddrPort(p.from), nil
		}
		if c.closed {
			c.mu.Unlock()
			return 0, nil, errMuxClosed
		}
		c.mu.Unlock()
		<-c.ready
	}
}

// WriteTo sends b to addr from the session's socket, and routes what addr
// sends from now on to this session.
func (c *muxConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("UDP mux: not a UDP address: %v", addr)
	}
	ap := ua.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, errMuxClosed
	}
	known := false
	for _, a := range c.addrs {
		if a == ap {
			known = true
			break
		}
	}
	if !known {
		c.addrs = append(c.addrs, ap)
	}
	c.mu.Unlock()
	if !known {
		m := c.mux
		m.mu.Lock()
		if old := m.byAddr[muxAddrKey{c.sock, ap}]; old != nil && old != c {
			old.forget(ap) // the address moved to another session
		}
		m.byAddr[muxAddrKey{c.sock, ap}] = c
		m.mu.Unlock()
	}
	return c.mux.socks[c.sock].WriteToUDPAddrPort(b, ap)
}

// forget drops ap from c's addresses. c.mux.mu is held.
func (c *muxConn) forget(ap netip.AddrPort) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, a := range c.addrs {
		if a == ap {
			c.addrs = append(c.addrs[:i], c.addrs[i+1:]...)
			return
		}
	}
}

// Close unregisters the connection and ends a blocked ReadFrom.
func (c *muxConn) Close() error {
	m := c.mux
	m.mu.Lock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		m.mu.Unlock()
		return nil
	}
	c.closed = true
	for _, p := range c.queue {
		putMuxBuffer(p.buf)
	}
	c.queue = nil
	addrs := c.addrs
	c.mu.Unlock()
	if k := (muxUfragKey{c.sock, c.ufrag}); m.byUfrag[k] == c {
		delete(m.byUfrag, k)
	}
	for _, a := range addrs {
		if k := (muxAddrKey{c.sock, a}); m.byAddr[k] == c {
			delete(m.byAddr, k)
		}
	}
	m.mu.Unlock()
	select {
	case c.ready <- struct{}{}:
	default:
	}
	return nil
}

func (c *muxConn) LocalAddr() net.Addr { return c.mux.addrs[c.sock] }

// The connections have no deadlines (pion's have none either): a reader
// is ended by Close.
func (c *muxConn) SetDeadline(time.Time) error      { return nil }
func (c *muxConn) SetReadDeadline(time.Time) error  { return nil }
func (c *muxConn) SetWriteDeadline(time.Time) error { return nil }
