package overlay

import (
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/prometheus/client_golang/prometheus"
)

// DialGate is the connection gater a node's host is built with
// (libp2p.ConnectionGater), so that no stranger can turn the node into a
// scanner of its owner's network. Any peer can hand us addresses to dial:
// its provider records, which topic discovery dials (publish.go), the peers
// its DHT answers list, what it announces through identify. Dialled on its
// word, /ip4/192.168.1.1/tcp/80 and /ip4/127.0.0.1/tcp/22 reach the owner's
// router and the machine's own services, from a machine inside.
//
// The gate refuses outbound dials to addresses narrower than the internet
// (addrScope: loopback, link-local, private and carrier-grade NAT ranges,
// unroutable ones, and IPv6 addresses that lead to any of those through
// NAT64, 6to4 or Teredo) unless the node's own deployment (Deployment) is
// in that scope: one of its listen addresses or bootstrap addresses is. A
// devnet on 127.0.0.1 dials loopback, a deployment on a LAN (or a lab's
// 10.x network) dials the LAN but not link-local addresses such as a
// cloud's metadata service (169.254.169.254), a peer on the internet
// neither. Unspecified
// listen addresses (0.0.0.0, ::) say nothing of where the node is and
// count for none: a volunteer listening on every interface of a home
// machine must not dial its LAN on a stranger's word. dialPrivate
// (node.Config.DialPrivate) adds the private scope, for a deployment whose
// peers meet on a LAN but whose bootstrap nodes are named by DNS or on the
// internet. Inbound connections are never refused, and addresses that are
// not IP addresses (none reach the gate on TCP and QUIC, where the swarm
// resolves names first) pass.
//
// Refusals are counted in immense_overlay_dials_refused_total{scope}: the
// gate is a prometheus.Collector for the node to register.
type DialGate struct {
	allow   scopeSet
	refused *prometheus.CounterVec
}

var _ connmgr.ConnectionGater = (*DialGate)(nil)

// NewDialGate returns the gate of a node deployed in d, which also dials
// private addresses if dialPrivate.
func NewDialGate(d Deployment, dialPrivate bool) *DialGate {
	g := &DialGate{allow: d.scopes, refused: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "immense", Subsystem: "overlay", Name: "dials_refused_total",
		Help: "Outbound dials refused because the address is in a scope (loopback, link-local, private, unroutable) this node neither listens nor bootstraps in: addresses other peers gave, which would have this node probe its own network (DialPrivate allows private ones).",
	}, []string{"scope"})}
	g.allow[scopePublic] = true
	g.allow[scopePrivate] = g.allow[scopePrivate] || dialPrivate
	for s := scopeNone; s < scopePublic; s++ {
		g.refused.WithLabelValues(s.String()) // exported at 0 from the start
	}
	return g
}

// String lists the scopes the node dials, e.g. "loopback,public".
func (g *DialGate) String() string { return g.allow.String() }

// InterceptAddrDial refuses a to any peer if a's scope is not one of the
// node's.
func (g *DialGate) InterceptAddrDial(_ peer.ID, a multiaddr.Multiaddr) bool {
	if _, err := manet.ToIP(a); err != nil {
		return true
	}
	s := addrScope(a)
	if g.allow[s] {
		return true
	}
	g.refused.WithLabelValues(s.String()).Inc()
	return false
}

// InterceptPeerDial allows every peer: the gate judges addresses.
func (g *DialGate) InterceptPeerDial(peer.ID) bool { return true }

// InterceptAccept allows every inbound connection.
func (g *DialGate) InterceptAccept(network.ConnMultiaddrs) bool { return true }

// InterceptSecured allows every connection.
func (g *DialGate) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return true
}

// InterceptUpgraded allows every connection.
func (g *DialGate) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// Describe and Collect make the gate a prometheus.Collector of its refusals.
func (g *DialGate) Describe(ch chan<- *prometheus.Desc) { g.refused.Describe(ch) }

// Collect: see Describe.
func (g *DialGate) Collect(ch chan<- prometheus.Metric) { g.refused.Collect(ch) }
