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
	a, ok := netip.AddrFromSlice(ip)
	if !ok || Exempt(ip) {
		return ""
	}
	return Network(a).String()
}

// The prefix lengths of one network, Of's groups: the blocks one operator
// typically gets.
const (
	NetworkBits4 = 24
	NetworkBits6 = 48
)

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
	return prefix(a, MachineBits4, MachineBits6)
}

// Network returns the prefix of a's network, Of's group, exempt or not:
// the caller decides which addresses it exempts, as with Machine.
func Network(a netip.Addr) netip.Prefix {
	return prefix(a, NetworkBits4, NetworkBits6)
}

func prefix(a netip.Addr, bits4, bits6 int) netip.Prefix {
	bits := bits6
	if a = a.Unmap(); a.Is4() {
		bits = bits4
	}
	p, _ := a.Prefix(bits)
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
