package node

import (
	"context"
	"slices"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// relayHop is the circuit relay v2 protocol a relay serves.
const relayHop = protocol.ID("/libp2p/circuit/relay/0.2.0/hop")

// relayCandidates feeds autorelay: peers known to serve circuit relay v2
// (learned through identify from everyone we have met: bootstrap nodes,
// DHT neighbours), then the bootstrap peers, which relay by default.
func relayCandidates(ref *atomic.Pointer[host.Host], bootstrap []peer.AddrInfo) func(context.Context, int) <-chan peer.AddrInfo {
	return func(ctx context.Context, num int) <-chan peer.AddrInfo {
		out := make(chan peer.AddrInfo, num)
		defer close(out)
		h := ref.Load()
		if h == nil {
			return out
		}
		hst := *h
		seen := map[peer.ID]bool{hst.ID(): true}
		add := func(ai peer.AddrInfo) bool {
			if seen[ai.ID] || len(out) == num {
				return len(out) < num
			}
			seen[ai.ID] = true
			out <- ai
			return len(out) < num
		}
		for _, p := range hst.Peerstore().PeersWithAddrs() {
			protos, err := hst.Peerstore().GetProtocols(p)
			if err != nil || !slices.Contains(protos, relayHop) {
				continue
			}
			if !add(hst.Peerstore().PeerInfo(p)) {
				return out
			}
		}
		for _, ai := range bootstrap {
			if !add(ai) {
				return out
			}
		}
		return out
	}
}
