package overlay

import (
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// TestDialGate: addresses a stranger can hand a node (its provider
// records, DHT answers, identify) are dialled only in the scopes of the
// node's own listen and bootstrap addresses, besides the internet: a peer
// on the internet, or at home listening on every interface, dials neither
// its loopback nor its LAN (nor a relay there); a devnet dials loopback,
// a LAN lab its LAN, and DialPrivate adds the LAN. Every refusal is
// counted by scope; inbound connections are never refused.
func TestDialGate(t *testing.T) {
	boot := func(addrs ...string) []peer.AddrInfo {
		ai := peer.AddrInfo{ID: testPeerID(t, 1)}
		for _, a := range addrs {
			ai.Addrs = append(ai.Addrs, multiaddr.StringCast(a))
		}
		return []peer.AddrInfo{ai}
	}
	relay := "/p2p/" + testPeerID(t, 2).String() + "/p2p-circuit"
	const (
		public   = "/ip4/9.9.9.9/tcp/4001"
		loopback = "/ip4/127.0.0.1/tcp/22"
		lan      = "/ip4/192.168.1.1/tcp/80"
	)
	// Every address a node on the internet must not dial, by scope.
	refusedOnInternet := map[string]string{
		loopback:                         "loopback",
		"/ip6/::1/tcp/22":                "loopback",
		lan:                              "private",
		"/ip4/10.0.0.1/udp/53/quic-v1":   "private",
		"/ip4/172.16.0.1/tcp/443":        "private",
		"/ip4/169.254.169.254/tcp/80":    "link-local", // a cloud's metadata service
		"/ip6/fe80::1/tcp/80":            "link-local",
		"/ip6/fd00:ec2::254/tcp/80":      "link-local", // AWS's IPv6 metadata service
		"/ip4/100.100.100.200/tcp/80":    "link-local", // Alibaba's
		"/ip4/168.63.129.16/tcp/80":      "link-local", // Azure's host endpoint
		"/ip4/100.64.0.1/tcp/80":         "private",    // carrier-grade NAT: another customer's machine, or a tailnet's
		"/ip6/fd00::1/tcp/80":            "private",
		"/ip6/::ffff:192.168.1.1/tcp/80": "private",    // IPv4-mapped
		"/ip6/64:ff9b::c0a8:101/tcp/80":  "private",    // NAT64 (RFC 6052) of 192.168.1.1
		"/ip6/64:ff9b::a9fe:a9fe/tcp/80": "link-local", // NAT64 of the metadata service
		"/ip6/64:ff9b:1::a00:1/tcp/80":   "private",    // local-use NAT64 (RFC 8215)
		"/ip6/2002:c0a8:101::1/tcp/80":   "private",    // 6to4 of 192.168.1.1
		"/ip6/2001:0:4136:e378:8000:63bf:3f57:fefe/udp/80/quic-v1": "private", // Teredo: client 192.168.1.1
		"/ip4/224.0.0.251/udp/5353/quic-v1":                        "unroutable",
		"/ip4/127.0.0.1/tcp/4001" + relay:                          "loopback", // a relay on our loopback
	}
	privateAddrs := []string{lan, "/ip4/10.0.0.1/udp/53/quic-v1", "/ip4/172.16.0.1/tcp/443", "/ip4/100.64.0.1/tcp/80", "/ip6/fd00::1/tcp/80",
		"/ip6/::ffff:192.168.1.1/tcp/80", "/ip6/64:ff9b::c0a8:101/tcp/80", "/ip6/64:ff9b:1::a00:1/tcp/80", "/ip6/2002:c0a8:101::1/tcp/80",
		"/ip6/2001:0:4136:e378:8000:63bf:3f57:fefe/udp/80/quic-v1"}
	allowed := []string{public, "/ip6/2001:4860::8888/udp/443/quic-v1", "/ip4/9.9.9.9/tcp/4001" + relay, relay}

	for _, c := range []struct {
		name        string
		listen      []string
		bootstrap   []peer.AddrInfo
		dialPrivate bool
		dials       string   // String()
		allow       []string // of refusedOnInternet, the addresses this node dials
	}{
		{name: "server on the internet", listen: []string{"/ip4/1.2.3.4/udp/4001/quic-v1"}, bootstrap: boot("/ip4/5.6.7.8/tcp/4001"),
			dials: "public"},
		{name: "volunteer on every interface", listen: []string{"/ip4/0.0.0.0/tcp/4001", "/ip6/::/udp/4001/quic-v1"}, bootstrap: boot("/dns4/boot.example.org/tcp/4001"),
			dials: "public"},
		{name: "devnet", listen: []string{"/ip4/127.0.0.1/tcp/0"},
			dials: "loopback,public", allow: []string{loopback, "/ip6/::1/tcp/22", "/ip4/127.0.0.1/tcp/4001" + relay}},
		{name: "peer of a devnet's bootstrap node", listen: []string{"/ip4/0.0.0.0/tcp/4001"}, bootstrap: boot("/ip4/127.0.0.1/tcp/4001"),
			dials: "loopback,public", allow: []string{loopback, "/ip6/::1/tcp/22", "/ip4/127.0.0.1/tcp/4001" + relay}},
		{name: "devnet bootstrapping from localhost by name", listen: []string{"/ip4/0.0.0.0/tcp/4001"}, bootstrap: boot("/dns4/localhost/tcp/4001"),
			dials: "loopback,public", allow: []string{loopback, "/ip6/::1/tcp/22", "/ip4/127.0.0.1/tcp/4001" + relay}},
		{name: "bootstrap named by mDNS", listen: []string{"/ip4/0.0.0.0/tcp/4001"}, bootstrap: boot("/dns4/boot.local/tcp/4001"),
			dials: "public"},
		{name: "LAN lab", listen: []string{"/ip4/10.0.0.2/tcp/4001"}, bootstrap: boot("/ip4/10.0.0.1/tcp/4001"),
			dials: "private,public", allow: privateAddrs},
		{name: "DialPrivate", listen: []string{"/ip4/0.0.0.0/tcp/4001"}, bootstrap: boot("/dns4/boot/tcp/4001"), dialPrivate: true,
			dials: "private,public", allow: privateAddrs},
		{name: "link-local network", listen: []string{"/ip4/169.254.7.2/tcp/4001"}, bootstrap: boot("/ip4/169.254.7.1/tcp/4001"),
			dials: "link-local,public", allow: []string{"/ip4/169.254.169.254/tcp/80", "/ip6/fe80::1/tcp/80", "/ip6/64:ff9b::a9fe:a9fe/tcp/80",
				"/ip6/fd00:ec2::254/tcp/80", "/ip4/100.100.100.200/tcp/80", "/ip4/168.63.129.16/tcp/80"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var listen []multiaddr.Multiaddr
			for _, a := range c.listen {
				listen = append(listen, multiaddr.StringCast(a))
			}
			g := NewDialGate(NewDeployment(listen, c.bootstrap), c.dialPrivate)
			if got := g.String(); got != c.dials {
				t.Errorf("dials %q, want %q", got, c.dials)
			}
			p := testPeerID(t, 3)
			for _, a := range allowed {
				if !g.InterceptAddrDial(p, multiaddr.StringCast(a)) {
					t.Errorf("%s refused", a)
				}
			}
			want := map[string]float64{}
			for a, sc := range refusedOnInternet {
				ok := g.InterceptAddrDial(p, multiaddr.StringCast(a))
				if wantOK := slices.Contains(c.allow, a); ok != wantOK {
					t.Errorf("%s: dial allowed %v, want %v", a, ok, wantOK)
				}
				if !ok {
					want[sc]++
				}
				in := multiaddr.StringCast(a)
				if !g.InterceptAccept(connAddrs{in}) || !g.InterceptSecured(network.DirInbound, p, connAddrs{in}) {
					t.Errorf("inbound connection from %s refused", a)
				}
			}
			for _, sc := range []string{"unroutable", "loopback", "link-local", "private"} {
				if got := counterValue(t, g.refused.WithLabelValues(sc)); got != want[sc] {
					t.Errorf("refused_total{scope=%q} = %v, want %v", sc, got, want[sc])
				}
			}
		})
	}
}

// connAddrs is an inbound connection's addresses, as the gater sees them.
type connAddrs struct{ remote multiaddr.Multiaddr }

func (c connAddrs) LocalMultiaddr() multiaddr.Multiaddr {
	return multiaddr.StringCast("/ip4/1.2.3.4/tcp/4001")
}
func (c connAddrs) RemoteMultiaddr() multiaddr.Multiaddr { return c.remote }
