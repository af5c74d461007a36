// Package netprefix groups IP addresses by the network they are in, for
// the rules that bound what one network may take (the DHT routing table's
// diversity filter, shard placement): a /24 for IPv4, a /48 for IPv6, the
// blocks one operator typically gets. MachineOf groups them finer, by what
// one machine or home line has (an IPv4 address, an IPv6 /56), for the
// rules that bound what one machine with many identities may hold at once
// (connections, shard server slots). Loopback, private, link-local and
// unspecified addresses belong to no group: a devnet or a LAN runs all its
// peers there, and a stranger on the internet cannot appear with one.
package netprefix

import (
	"net"
	"net/netip"

	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Exempt reports whether ip belongs to no group (loopback, private,
// link-local or unspecified).
func Exempt(ip net.IP) bool {
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsUnspecified()
}

// Of returns ip's group, "a.b.c.0/24" or "x:y:z::/48", or "" when ip is
// exempt.
func Of(ip net.IP) string {
	if Exempt(ip) {
		return ""
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.Mask(net.CIDRMask(24, 32)).String() + "/24"
	}
	return ip.Mask(net.CIDRMask(48, 128)).String() + "/48"
}

// The prefix lengths of one machine's addresses: an IPv4 address, or the
// IPv6 /56 an ISP commonly gives one customer. node's connections per IP
// (libp2p's limit per subnet) count by them too.
const (
	MachineBits4 = 32
	MachineBits6 = 56
)

// MachineOf returns ip's machine, "a.b.c.d/32" or "x:y:z:w::/56", or ""
// when ip is exempt.
func MachineOf(ip net.IP) string {
	a, ok := netip.AddrFromSlice(ip)
	if !ok || Exempt(ip) {
		return ""
	}
	return Machine(a).String()
}

// Machine returns the prefix of a's machine, exempt or not, for rules that
// exempt less than Exempt does (the HTTP API's connections per address
// cap private addresses: a reverse proxy's clients all come from one).
func Machine(a netip.Addr) netip.Prefix {
	if a = a.Unmap(); a.Is4() {
		return netip.PrefixFrom(a, MachineBits4)
	}
	p, _ := a.Prefix(MachineBits6)
	return p
}

// OfAddr returns the group of a multiaddr's first IP address (for a relayed
// address, the relay's), or "" when it is exempt or has none.
func OfAddr(a ma.Multiaddr) string {
	ip, err := manet.ToIP(a)
	if err != nil {
		return ""
	}
	return Of(ip)
}
