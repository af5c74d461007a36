package overlay

import (
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Deployment is where a node runs, as far as its own configuration says:
// the scopes (addrScope) of the addresses it listens on and of its
// bootstrap peers' addresses. Unspecified listen addresses (0.0.0.0, ::)
// say nothing of where the node is and count for none, so a volunteer
// listening on every interface of a home machine, with a bootstrap node on
// the internet, is deployed on the internet alone. A bootstrap address
// named by DNS counts as the internet (manet.IsPublicAddr), as loopback if
// the name is localhost's, and for none if the name is for private use
// (boot.local, which mDNS resolves): a bootstrap address never makes the
// node dial unroutable addresses.
//
// The DialGate dials in the deployment's scopes, and DHTMode decides the
// DHT mode from it.
type Deployment struct {
	scopes scopeSet
}

// NewDeployment returns the deployment of a node that listens on listen
// and bootstraps from bootstrap.
func NewDeployment(listen []multiaddr.Multiaddr, bootstrap []peer.AddrInfo) Deployment {
	var d Deployment
	for _, a := range listen {
		if !manet.IsIPUnspecified(a) {
			d.scopes[addrScope(a)] = true
		}
	}
	for _, ai := range bootstrap {
		for _, a := range ai.Addrs {
			if s := addrScope(a); s != scopeNone {
				d.scopes[s] = true
			}
		}
	}
	return d
}

// Local reports whether the deployment is narrower than the internet: it
// counts a loopback, link-local or private scope and not the public one. A
// devnet on 127.0.0.1, or a LAN or lab network of 10.x addresses
// bootstrapping from a 10.x address, is local; a node with any public
// listen or bootstrap address, or with no specified address at all, is
// not.
func (d Deployment) Local() bool {
	return !d.scopes[scopePublic] && (d.scopes[scopeLoopback] || d.scopes[scopeLinkLocal] || d.scopes[scopePrivate])
}

// DHTMode returns the mode a node configured with m runs its DHT in on
// this deployment: ModeServer for ModeAuto on a local deployment, m
// otherwise. ModeAuto waits for AutoNAT to say the node is publicly
// reachable, which AutoNAT never says of a loopback or private address (it
// dials back only public ones), so on a devnet or a LAN every node would
// stay a DHT client: none would be in another's routing table, and state
// written there would stay on its writer. Its peers reach it on that
// network, so it serves from the start. On the internet ModeAuto stays: a
// home volunteer behind NAT is a client until AutoNAT has seen it
// reachable, and so never fills routing tables with a server nobody can
// dial.
func (d Deployment) DHTMode(m Mode) Mode {
	if m == ModeAuto && d.Local() {
		return ModeServer
	}
	return m
}

// String lists the deployment's scopes, e.g. "loopback", or "none".
func (d Deployment) String() string {
	if s := d.scopes.String(); s != "" {
		return s
	}
	return "none"
}

// scopeSet is a set of scopes.
type scopeSet [scopePublic + 1]bool

// String lists the scopes in the set, narrowest first, e.g.
// "loopback,public".
func (s scopeSet) String() string {
	var out []string
	for sc, ok := range s {
		if ok {
			out = append(out, scope(sc).String())
		}
	}
	return strings.Join(out, ",")
}
