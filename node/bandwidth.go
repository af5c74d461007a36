package node

import (
	"context"
	"net"
	"syscall"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/transport"
	manet "github.com/multiformats/go-multiaddr/net"
	"golang.org/x/time/rate"
)

// bandwidth caps a node's traffic at the socket: every TCP connection and
// every QUIC packet goes through the shared token buckets, so the caps hold
// for all protocols together (shards, gossip, DHT, relayed traffic).
// Writes wait for upload tokens; reads wait for download tokens after the
// fact, which stalls the reader and lets TCP flow control and QUIC's
// congestion control slow the sender down.
type bandwidth struct {
	up, down *rate.Limiter // nil: unlimited
}

// newBandwidth returns caps for the given bytes per second (0: unlimited).
// The burst is a tenth of a second of traffic, but at least 64 KiB so that
// one large write or datagram always fits.
func newBandwidth(up, down int64) *bandwidth {
	mk := func(bps int64) *rate.Limiter {
		if bps <= 0 {
			return nil
		}
		return rate.NewLimiter(rate.Limit(bps), int(max(bps/10, 64<<10)))
	}
	return &bandwidth{up: mk(up), down: mk(down)}
}

func (b *bandwidth) enabled() bool { return b.up != nil || b.down != nil }

// wait takes n tokens from l, in burst-sized pieces.
func wait(l *rate.Limiter, n int) error {
	if l == nil {
		return nil
	}
	for n > 0 {
		k := min(n, l.Burst())
		if err := l.WaitN(context.Background(), k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// cappedConn is a stream connection (TCP) under the caps.
type cappedConn struct {
	manet.Conn
	b *bandwidth
}

func (c *cappedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		wait(c.b.down, n)
	}
	return n, err
}

func (c *cappedConn) Write(p []byte) (int, error) {
	if err := wait(c.b.up, len(p)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// cappedListener caps every accepted connection.
type cappedListener struct {
	manet.Listener
	b *bandwidth
}

func (l *cappedListener) Accept() (manet.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &cappedConn{Conn: c, b: l.b}, nil
}

// cappedUpgrader wraps libp2p's upgrader so that the TCP transport's raw
// connections, inbound and outbound, are capped before security and
// multiplexing are layered on top.
type cappedUpgrader struct {
	transport.Upgrader
	b *bandwidth
}

func (u *cappedUpgrader) UpgradeListener(t transport.Transport, l manet.Listener) transport.Listener {
	return u.Upgrader.UpgradeListener(t, &cappedListener{Listener: l, b: u.b})
}

func (u *cappedUpgrader) GateMaListener(l manet.Listener) transport.GatedMaListener {
	return u.Upgrader.GateMaListener(&cappedListener{Listener: l, b: u.b})
}

func (u *cappedUpgrader) Upgrade(ctx context.Context, t transport.Transport, c manet.Conn, dir network.Direction, p peer.ID, scope network.ConnManagementScope) (transport.CapableConn, error) {
	if dir == network.DirOutbound {
		c = &cappedConn{Conn: c, b: u.b}
	}
	return u.Upgrader.Upgrade(ctx, t, c, dir, p, scope)
}

// cappedPacketConn is a datagram socket (QUIC) under the caps.
type cappedPacketConn struct {
	net.PacketConn
	b *bandwidth
}

func (c *cappedPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if n > 0 {
		wait(c.b.down, n)
	}
	return n, addr, err
}

func (c *cappedPacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if err := wait(c.b.up, len(p)); err != nil {
		return 0, err
	}
	return c.PacketConn.WriteTo(p, addr)
}

// udpSocket is what quic-go tunes on a real UDP socket when it can: larger
// receive and send buffers (without them, bursts overflow the kernel's
// default and are lost) and the don't-fragment bit for path MTU discovery.
type udpSocket interface {
	SetReadBuffer(int) error
	SetWriteBuffer(int) error
	SyscallConn() (syscall.RawConn, error)
}

// cappedUDPConn is a cappedPacketConn over a real UDP socket, exposing the
// socket options so that quic-go keeps its tuning on capped nodes. quic-go
// still reads and writes through ReadFrom and WriteTo, where the caps
// apply, because the wrapper offers neither ReadMsgUDP nor WriteMsgUDP.
type cappedUDPConn struct {
	cappedPacketConn
	sock udpSocket
}

func (c *cappedUDPConn) SetReadBuffer(n int) error             { return c.sock.SetReadBuffer(n) }
func (c *cappedUDPConn) SetWriteBuffer(n int) error            { return c.sock.SetWriteBuffer(n) }
func (c *cappedUDPConn) SyscallConn() (syscall.RawConn, error) { return c.sock.SyscallConn() }

// capPacketConn puts a datagram socket under the caps.
func capPacketConn(c net.PacketConn, b *bandwidth) net.PacketConn {
	pc := cappedPacketConn{PacketConn: c, b: b}
	if sock, ok := c.(udpSocket); ok {
		return &cappedUDPConn{cappedPacketConn: pc, sock: sock}
	}
	return &pc
}
