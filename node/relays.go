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

// relaySource feeds autorelay: peers known to serve circuit relay v2
// (learned through identify from everyone we have met: bootstrap nodes,
// DHT neighbours), then the bootstrap peers, which relay by default. It
// leaves out peers that answered our join request busy and asked us to
// stay away for now: during a mass return a bootstrap node sheds joins,
// and a relay reservation would load it all the same. Autorelay asks for
// candidates only after the host exists; the node sets host, then avoid,
// once it has built them.
type relaySource struct {
	bootstrap []peer.AddrInfo
	host      atomic.Pointer[host.Host]
	avoid     atomic.Pointer[func(peer.ID) bool]
}

func (s *relaySource) candidates(ctx context.Context, num int) <-chan peer.AddrInfo {
	out := make(chan peer.AddrInfo, num)
	defer close(out)
	h := s.host.Load()
	if h == nil {
		return out
	}
	hst := *h
	avoid := func(peer.ID) bool { return false }
	if f := s.avoid.Load(); f != nil {
		avoid = *f
	}
	seen := map[peer.ID]bool{hst.ID(): true}
	add := func(ai peer.AddrInfo) bool {
		if seen[ai.ID] || avoid(ai.ID) {
			return len(out) < num
		}
		seen[ai.ID] = true
		out <- ai
		return len(out) < num
	}
	if num <= 0 {
		return out
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
	for _, ai := range s.bootstrap {
		if !add(ai) {
			return out
		}
	}
	return out
}
