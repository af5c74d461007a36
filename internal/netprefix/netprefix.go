// Package netprefix groups IP addresses by the network they are in, for
// the rules that bound what one network may take (the DHT routing table's
// diversity filter, shard placement): a /24 for IPv4, a /48 for IPv6, the
// blocks one operator typically gets. MachineOf groups them finer, by what
// one machine or home line has (an IPv4 address, an IPv6 /56), for the
// rules that bound what one machine with many identities may hold at once
// (connections, shard server slots). Loopback, private, link-local and
// unspecified addresses belong to no group: a devnet or a LAN runs all its
// peers there, and a stranger on the internet cannot appear with one. An
// IPv6 address that carries an IPv4 one (Carried: NAT64, 6to4, Teredo,
// IPv4-mapped) is grouped as that IPv4 host.
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

// prefix groups a by its prefix of bits4 or bits6, an IPv6 address that
// carries an IPv4 one (Carried) by that IPv4 address: behind a NAT64
// gateway or a SIIT translator every IPv4 client shows in one /96, and
// would otherwise share one machine's or network's budget.
func prefix(a netip.Addr, bits4, bits6 int) netip.Prefix {
	if v4 := Carried(a); len(v4) > 0 {
		a = v4[len(v4)-1]
	}
	bits := bits6
	if a.Is4() {
		bits = bits4
	}
	p, _ := a.Prefix(bits)
	return p
}

// IPv6 prefixes whose addresses lead to an IPv4 address they carry.
var (
	nat64Prefix     = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052: the last 32 bits
	sixToFourPrefix = netip.MustParsePrefix("2002::/16")    // RFC 3056: bits 16 to 47
	teredoPrefix    = netip.MustParsePrefix("2001::/32")    // RFC 4380: server bits 32 to 63, client bits 96 to 127 inverted
	v4CompatPrefix  = netip.MustParsePrefix("::/96")        // RFC 4291, deprecated: the last 32 bits
)

// Carried returns the IPv4 addresses the packets to IPv6 address ip go
// to, if it carries any: a dual-stack socket sends to an IPv4-mapped
// address over IPv4, a NAT64 gateway and a 6to4 relay to the address they
// embed, and Teredo to both the peer's server and its client address (in
// that order). The dial gate scopes such an address by them; the
// groupings here count it as its IPv4 host (the last).
func Carried(ip netip.Addr) []netip.Addr {
	b := ip.As16()
	at := func(i int) netip.Addr { return netip.AddrFrom4([4]byte(b[i : i+4])) }
	switch {
	case !ip.Is6():
		return nil
	case ip.Is4In6(), nat64Prefix.Contains(ip):
		return []netip.Addr{at(12)}
	case v4CompatPrefix.Contains(ip):
		if ip == netip.IPv6Unspecified() || ip == netip.IPv6Loopback() {
			return nil
		}
		return []netip.Addr{at(12)}
	case sixToFourPrefix.Contains(ip):
		return []netip.Addr{at(2)}
	case teredoPrefix.Contains(ip):
		client := at(12).As4()
		for i := range client {
			client[i] ^= 0xff
		}
		return []netip.Addr{at(4), netip.AddrFrom4(client)}
	}
	return nil
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
