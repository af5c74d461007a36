package live

import (
	"context"
	"errors"
	"time"

	"github.com/immense-p2p/immense/node"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
)

var errInitiatorClosed = errors.New("live: initiator closed during the lookup")

// findKey has from look up target's key in the DHT (a Kademlia node lookup,
// kad-dht's GetClosestPeers) and reports whether target is among the peers
// found, and at which depth the lookup first heard of it: the peers from
// the initiator's own routing table are depth 1, peers named in a depth-d
// peer's answer depth d+1. Depth counts the overlay hops from the
// initiator to the target along the path the lookup discovered it by.
func findKey(ctx context.Context, from *node.Node, target peer.ID, timeout time.Duration) (found bool, hops int, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A lookup whose initiator is closed meanwhile is no outcome: stop it.
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-from.Done():
			cancel()
		case <-ctx.Done():
		}
	}()

	ectx, events := routing.RegisterForQueryEvents(ctx)
	depth := map[peer.ID]int{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range events {
			switch ev.Type {
			case routing.SendingQuery:
				if _, ok := depth[ev.ID]; !ok {
					depth[ev.ID] = 1
				}
			case routing.PeerResponse:
				d := max(depth[ev.ID], 1)
				for _, ai := range ev.Responses {
					if _, ok := depth[ai.ID]; !ok {
						depth[ai.ID] = d + 1
					}
				}
			}
		}
	}()
	peers, err := from.Overlay().DHT().GetClosestPeers(ectx, string(target))
	cancel() // closes the event channel and ends the watcher
	<-done
	<-watched
	select {
	case <-from.Done():
		return false, 0, errInitiatorClosed
	default:
	}
	for _, p := range peers {
		if p == target {
			found = true
		}
	}
	return found, depth[target], err
}
