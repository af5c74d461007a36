package overlay

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// TestDeploymentDHTMode: DHT mode auto serves from the start on a
// deployment narrower than the internet (a devnet on loopback, a LAN lab),
// where AutoNAT cannot vouch for anyone, and stays auto wherever a listen
// or bootstrap address is on the internet: a home volunteer on every
// interface with a public bootstrap node stays a client until AutoNAT has
// seen it reachable. An explicit server or client mode is kept everywhere.
func TestDeploymentDHTMode(t *testing.T) {
	boot := func(addrs ...string) []peer.AddrInfo {
		ai := peer.AddrInfo{ID: testPeerID(t, 1)}
		for _, a := range addrs {
			ai.Addrs = append(ai.Addrs, multiaddr.StringCast(a))
		}
		return []peer.AddrInfo{ai}
	}
	everywhere := []string{"/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1", "/ip6/::/tcp/4001", "/ip6/::/udp/4001/quic-v1"}
	for _, c := range []struct {
		name      string
		listen    []string
		bootstrap []peer.AddrInfo
		scopes    string // String()
		auto      Mode   // what ModeAuto becomes
	}{
		{name: "devnet on loopback", listen: []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
			bootstrap: boot("/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/udp/4001/quic-v1"),
			scopes:    "loopback", auto: ModeServer},
		{name: "first node of a devnet", listen: []string{"/ip4/127.0.0.1/tcp/0"},
			scopes: "loopback", auto: ModeServer},
		{name: "every interface, bootstrap on loopback", listen: everywhere, bootstrap: boot("/ip4/127.0.0.1/tcp/4001"),
			scopes: "loopback", auto: ModeServer},
		{name: "devnet bootstrapping from localhost by name", listen: everywhere, bootstrap: boot("/dns4/localhost/tcp/4001", "/dns6/localhost/udp/4001/quic-v1", "/dns/boot.localhost/tcp/4001"),
			scopes: "loopback", auto: ModeServer},
		{name: "link-local network", listen: []string{"/ip4/169.254.7.2/tcp/4001"}, bootstrap: boot("/ip4/169.254.7.1/tcp/4001"),
			scopes: "link-local", auto: ModeServer},
		{name: "every interface, bootstrap named by mDNS", listen: everywhere, bootstrap: boot("/dns4/boot.local/tcp/4001"),
			scopes: "none", auto: ModeAuto},
		{name: "LAN lab", listen: []string{"/ip4/10.0.0.2/tcp/4001"}, bootstrap: boot("/ip4/10.0.0.1/tcp/4001"),
			scopes: "private", auto: ModeServer},
		{name: "every interface, bootstrap on the LAN", listen: everywhere, bootstrap: boot("/ip6/fd00::1/udp/4001/quic-v1"),
			scopes: "private", auto: ModeServer},
		{name: "home volunteer, public bootstrap", listen: everywhere, bootstrap: boot("/ip4/5.6.7.8/tcp/4001"),
			scopes: "public", auto: ModeAuto},
		{name: "home volunteer, bootstrap named by DNS", listen: everywhere, bootstrap: boot("/dns4/boot.example.org/tcp/4001"),
			scopes: "public", auto: ModeAuto},
		{name: "home volunteer on its LAN address, public bootstrap", listen: []string{"/ip4/192.168.1.2/tcp/4001"}, bootstrap: boot("/ip4/5.6.7.8/tcp/4001"),
			scopes: "private,public", auto: ModeAuto},
		{name: "bootstrap known by its LAN and public addresses", listen: everywhere, bootstrap: boot("/ip4/10.0.0.1/tcp/4001", "/ip4/5.6.7.8/tcp/4001"),
			scopes: "private,public", auto: ModeAuto},
		{name: "server with a public listen address", listen: []string{"/ip4/1.2.3.4/udp/4001/quic-v1"}, bootstrap: boot("/ip4/5.6.7.8/tcp/4001"),
			scopes: "public", auto: ModeAuto},
		{name: "every interface, no bootstrap", listen: everywhere,
			scopes: "none", auto: ModeAuto},
	} {
		t.Run(c.name, func(t *testing.T) {
			var listen []multiaddr.Multiaddr
			for _, a := range c.listen {
				listen = append(listen, multiaddr.StringCast(a))
			}
			d := NewDeployment(listen, c.bootstrap)
			if got := d.String(); got != c.scopes {
				t.Errorf("scopes %q, want %q", got, c.scopes)
			}
			if got := d.DHTMode(ModeAuto); got != c.auto {
				t.Errorf("auto runs as %v, want %v", got, c.auto)
			}
			if got := d.Local(); got != (c.auto == ModeServer) {
				t.Errorf("Local() = %v", got)
			}
			for _, m := range []Mode{ModeServer, ModeClient} {
				if got := d.DHTMode(m); got != m {
					t.Errorf("%v runs as %v", m, got)
				}
			}
		})
	}
}
