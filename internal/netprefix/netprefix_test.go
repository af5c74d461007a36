package netprefix

import (
	"net"
	"net/netip"
	"testing"

	ma "github.com/multiformats/go-multiaddr"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"/ip4/1.2.3.4/udp/4001/quic-v1", "1.2.3.0/24"},
		{"/ip4/1.2.3.250/tcp/4001", "1.2.3.0/24"},
		{"/ip4/1.2.4.1/tcp/4001", "1.2.4.0/24"},
		{"/ip6/2001:db8:1:2::1/tcp/4001", "2001:db8:1::/48"},
		{"/ip6/64:ff9b::102:304/tcp/4001", "1.2.3.0/24"}, // NAT64 of 1.2.3.4: its IPv4 network
		{"/ip6/2002:102:304::1/tcp/4001", "1.2.3.0/24"},  // 6to4
		// Teredo: the client's address (the last 32 bits, inverted), not the server's.
		{"/ip6/2001:0:4136:e378:8000:63bf:fefd:fcfb/udp/4001/quic-v1", "1.2.3.0/24"},
		{"/ip4/127.0.0.1/tcp/4001", ""},
		{"/ip4/10.0.0.1/tcp/4001", ""},
		{"/ip4/192.168.1.1/tcp/4001", ""},
		{"/ip4/169.254.1.1/tcp/4001", ""},
		{"/ip6/::1/tcp/4001", ""},
		{"/ip6/fd00::1/tcp/4001", ""},
		// A relayed address counts in the relay's network.
		{"/ip4/5.6.7.8/udp/4001/quic-v1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit", "5.6.7.0/24"},
		{"/dns4/example.org/tcp/4001", ""},
	} {
		if got := OfAddr(ma.StringCast(tc.addr)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.addr, got, tc.want)
		}
	}
	for _, tc := range []struct{ ip, want string }{
		{"1.2.3.4", "1.2.3.4/32"},
		{"::ffff:1.2.3.4", "1.2.3.4/32"},
		{"2001:db8:1:2ff::1", "2001:db8:1:200::/56"},
		{"2001:db8:1:3ff::1", "2001:db8:1:300::/56"},
		{"127.0.0.1", ""},
		{"10.1.2.3", ""},
		{"fe80::1", ""},
	} {
		if got := MachineOf(net.ParseIP(tc.ip)); got != tc.want {
			t.Errorf("MachineOf(%s): %q, want %q", tc.ip, got, tc.want)
		}
	}
	for _, tc := range []struct{ ip, want string }{
		{"1.2.3.4", "1.2.3.0/24"},
		{"::ffff:1.2.3.4", "1.2.3.0/24"},
		{"2001:db8:1:2ff::1", "2001:db8:1::/48"},
		{"10.1.2.3", "10.1.2.0/24"}, // exempt from Of, not from Network
	} {
		if got := Network(netip.MustParseAddr(tc.ip)).String(); got != tc.want {
			t.Errorf("Network(%s): %q, want %q", tc.ip, got, tc.want)
		}
	}
	if !Exempt(net.IPv4zero) || Exempt(net.ParseIP("8.8.8.8")) {
		t.Error("Exempt")
	}
}
