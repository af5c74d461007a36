package overlay

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// bootstrapLoop keeps the node joined: whenever it has no connection (at
// start, after a network outage, after every bootstrap node restarted) it
// dials the bootstrap peers, backing off exponentially with full jitter while
// none answers, then refreshes the routing table.
func (o *Overlay) bootstrapLoop() {
	defer o.wg.Done()
	if len(o.cfg.Bootstrap) == 0 {
		close(o.joined)
		return
	}
	backoff := o.cfg.BootstrapBackoffMin
	joined := false
	check := time.NewTimer(0)
	defer check.Stop()
	for {
		select {
		case <-o.ctx.Done():
			return
		case <-check.C:
		}
		connected := len(o.host.Network().Peers()) > 0
		if connected && o.RoutingTableSize() > 0 {
			if !joined {
				joined = true
				close(o.joined)
				o.log.Info("joined overlay", "peers", len(o.host.Network().Peers()), "routing_table", o.RoutingTableSize())
			}
			backoff = o.cfg.BootstrapBackoffMin
			check.Reset(o.cfg.BootstrapCheckInterval)
			continue
		}
		if !connected && o.dialBootstrap() == 0 {
			// Full jitter: wait uniformly in [0, backoff) so that peers
			// that lost the bootstrap at the same moment spread out.
			wait := time.Duration(rand.Int64N(int64(backoff))) + time.Millisecond
			o.log.Debug("no bootstrap peer reachable", "retry_in", wait)
			backoff = min(2*backoff, o.cfg.BootstrapBackoffMax)
			check.Reset(wait)
			continue
		}
		// Connected, but the routing table is empty: either we just dialled
		// (identify has not told the DHT yet which peers speak it) or our
		// peers do not serve the DHT. Refresh and look again shortly.
		o.refresh()
		check.Reset(o.cfg.BootstrapBackoffMin)
	}
}

// dialBootstrap dials every bootstrap peer in parallel and returns how many
// answered.
func (o *Overlay) dialBootstrap() int {
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		ok int
	)
	for _, ai := range o.cfg.Bootstrap {
		if ai.ID == o.host.ID() {
			continue
		}
		wg.Add(1)
		go func(ai peer.AddrInfo) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(o.ctx, o.cfg.DialTimeout)
			defer cancel()
			if err := o.host.Connect(ctx, ai); err != nil {
				o.log.Debug("bootstrap dial failed", "peer", ai.ID, "err", err)
				return
			}
			mu.Lock()
			ok++
			mu.Unlock()
		}(ai)
	}
	wg.Wait()
	return ok
}

// refresh fills the routing table through the peers we just reached.
func (o *Overlay) refresh() {
	ctx, cancel := context.WithTimeout(o.ctx, time.Minute)
	defer cancel()
	select {
	case err := <-o.dht.ForceRefresh():
		if err != nil && ctx.Err() == nil {
			o.log.Debug("routing table refresh", "err", err)
		}
	case <-ctx.Done():
	}
}
