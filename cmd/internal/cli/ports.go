package cli

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"syscall"

	"github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// CheckPorts fails if one of the fixed ports the node would listen on is
// taken, naming the flag and the address. libp2p binds its TCP and QUIC
// ports with SO_REUSEPORT, so a second peer on a taken port would start
// without a word and share the port's traffic with the first; a plain
// bind, which SO_REUSEPORT does not let in, tells. Port 0 is not checked.
func CheckPorts(httpAddr string, listen []string) error {
	if httpAddr != "" {
		if _, port, err := net.SplitHostPort(httpAddr); err == nil && port != "0" {
			ln, err := net.Listen("tcp", httpAddr)
			if err != nil {
				return fmt.Errorf("--http %s: %w", httpAddr, portErr(err))
			}
			ln.Close()
		}
	}
	for _, s := range listen {
		ma, err := multiaddr.NewMultiaddr(s)
		if err != nil {
			continue // validation reports it
		}
		a, err := manet.ToNetAddr(ma)
		if err != nil {
			continue
		}
		if err := bindFree(a); err != nil {
			return fmt.Errorf("--listen %s: %w", s, portErr(err))
		}
	}
	return nil
}

// CheckDevnetPorts is CheckPorts for the HTTP ports of a devnet, whose
// peers take httpAddr's port and the next ones, peers in all. A devnet
// still running is their usual holder (killing `go run` leaves the program
// it built running), so the error says how to get past it. Port 0 (free
// ports) is not checked, nor an address StartDevnet will refuse anyway.
func CheckDevnetPorts(httpAddr string, peers int) error {
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return nil
	}
	base, err := strconv.Atoi(port)
	if err != nil || base == 0 {
		return nil
	}
	for i := range peers {
		addr := net.JoinHostPort(host, strconv.Itoa(base+i))
		ln, err := net.Listen("tcp", addr)
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("HTTP port %s of peer %d: address already in use: another devnet may still be running (stop it with Ctrl-C; killing `go run` leaves the program it built running) or another program holds it; stop it, or pass --http 127.0.0.1:0 for free ports", addr, i+1)
		}
		if err != nil {
			return fmt.Errorf("HTTP port %s of peer %d: %w", addr, i+1, err)
		}
		ln.Close()
	}
	return nil
}

// bindFree binds a fixed TCP or UDP address without SO_REUSEPORT and
// lets it go: an error says another process holds it.
func bindFree(a net.Addr) error {
	var c io.Closer
	var err error
	switch a := a.(type) {
	case *net.TCPAddr:
		if a.Port != 0 {
			c, err = net.ListenTCP("tcp", a)
		}
	case *net.UDPAddr:
		if a.Port != 0 {
			c, err = net.ListenUDP("udp", a)
		}
	}
	if err != nil {
		return err
	}
	if c != nil {
		c.Close()
	}
	return nil
}

func portErr(err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return errors.New("address already in use: another process (another peer?) listens there; stop it or choose another port")
	}
	return err
}
