package cli

import (
	"errors"
	"fmt"
	"io"
	"net"
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
