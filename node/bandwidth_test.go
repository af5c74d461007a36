package node

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// A capped UDP socket keeps the options quic-go tunes (buffers, DF), and the
// caps still apply to its traffic.
func TestCappedUDPConnKeepsSocketOptions(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bw := newBandwidth(1<<20, 1<<20)
	pc := capPacketConn(c, bw)
	sock, ok := pc.(udpSocket)
	if !ok {
		t.Fatalf("capped UDP socket %T hides the socket options quic-go tunes", pc)
	}
	if _, ok := pc.(interface {
		ReadMsgUDP(b, oob []byte) (n, oobn, flags int, addr *net.UDPAddr, err error)
	}); ok {
		t.Fatal("capped UDP socket offers ReadMsgUDP: quic-go would read around the caps")
	}
	const want = 1 << 20
	if err := sock.SetReadBuffer(want); err != nil {
		t.Fatal(err)
	}
	raw, err := sock.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		got, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	// Linux doubles the value asked for, within net.core.rmem_max (the
	// default of which is about 208 KiB).
	if got < 2*min(want, 200<<10) {
		t.Fatalf("receive buffer is %d bytes after asking for %d", got, want)
	}
	// Traffic through the wrapper draws on the caps. TokensAt a time
	// before the write leaves out the refill since then.
	at := time.Now()
	before := bw.up.TokensAt(at)
	if _, err := pc.WriteTo(make([]byte, 1000), c.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if after := bw.up.TokensAt(at); before-after != 1000 {
		t.Fatalf("upload tokens %v -> %v after a 1000-byte datagram, want 1000 fewer", before, after)
	}
}

// A datagram socket that is not a real UDP socket (a simulated network's)
// is capped without claiming options it does not have: quic-go would fail
// to listen if SyscallConn returned an error.
func TestCappedPacketConnWithoutSocket(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc := capPacketConn(struct{ net.PacketConn }{c}, newBandwidth(1<<20, 0))
	if _, ok := pc.(udpSocket); ok {
		t.Fatalf("%T claims socket options its socket does not have", pc)
	}
}
