package node

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/immense-p2p/immense/webrtc"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// Relayed signaling (webrtc/signalrelay.go): a peer that serves browsers
// takes offers forwarded to it over webrtc.SignalProtocol (that is its
// opt-in, which identify tells the others), and forwards a browser's offer
// to such a peer when it is connected to it, directly or through a circuit
// relay. It never dials a peer for a browser: a web page cannot make it
// open connections.

// startSignalRelay sets up both sides; the node must serve browsers.
func (n *Node) startSignalRelay() error {
	if n.browsers == nil {
		return nil
	}
	r, err := webrtc.NewSignalRelay(n.browsers, webrtc.DefaultSignalRelayConfig())
	if err != nil {
		return fmt.Errorf("start relayed signaling: %w", err)
	}
	n.relay = r
	priv := n.host.Peerstore().PrivKey(n.host.ID())
	n.host.SetStreamHandler(webrtc.SignalProtocol, func(st network.Stream) {
		r.ServeStream(st, st.Conn().RemotePeer().String(), priv.Sign)
	})
	return nil
}

// dialSignal opens a signaling stream to a connected peer that takes
// relayed offers (webrtc.SignalDialer).
func (n *Node) dialSignal(ctx context.Context, id string) (webrtc.SignalStream, error) {
	p, err := peer.Decode(id)
	if err != nil {
		return nil, fmt.Errorf("%w: %q is not a peer ID", webrtc.ErrNoSignalPeer, id)
	}
	if !n.takesRelayedOffers(p) {
		return nil, fmt.Errorf("%w: %s", webrtc.ErrNoSignalPeer, p)
	}
	ctx = network.WithNoDial(ctx, "relayed signaling goes to connected peers only")
	ctx = network.WithAllowLimitedConn(ctx, "relayed signaling is a few KiB")
	st, err := n.host.NewStream(ctx, p, webrtc.SignalProtocol)
	if err != nil {
		return nil, fmt.Errorf("open signaling stream to %s: %w", p, err)
	}
	return st, nil
}

// takesRelayedOffers: p is connected (a relayed connection will do) and
// announced SignalProtocol.
func (n *Node) takesRelayedOffers(p peer.ID) bool {
	if p == n.host.ID() {
		return false
	}
	switch n.host.Network().Connectedness(p) {
	case network.Connected, network.Limited:
	default:
		return false
	}
	protos, err := n.host.Peerstore().SupportsProtocols(p, webrtc.SignalProtocol)
	return err == nil && len(protos) > 0
}

// signalPeers lists the connected peers that take relayed offers. A peer
// is "private" if it announces a circuit relay address (autorelay
// announces them only for a peer AutoNAT found unreachable) or we reach it
// only through a relay.
func (n *Node) signalPeers() []webrtc.SignalPeer {
	var out []webrtc.SignalPeer
	for _, p := range n.host.Network().Peers() {
		if !n.takesRelayedOffers(p) {
			continue
		}
		private := n.host.Network().Connectedness(p) == network.Limited ||
			slices.ContainsFunc(n.host.Peerstore().Addrs(p), func(a multiaddr.Multiaddr) bool {
				return strings.Contains(a.String(), "/p2p-circuit")
			})
		r := "public"
		if private {
			r = "private"
		}
		out = append(out, webrtc.SignalPeer{ID: p.String(), Reachability: r})
	}
	slices.SortFunc(out, func(a, b webrtc.SignalPeer) int { return strings.Compare(a.ID, b.ID) })
	return out
}
