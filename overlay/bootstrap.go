package overlay

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// JoinState says whether the node is joined to the overlay (connected, with
// a peer in its routing table that has not refused it a join since it was
// last joined) and, while it is not, why.
type JoinState struct {
	Joined bool
	// Reason says, while not joined, what the last attempt found; when
	// joined without bootstrap peers, that the node runs alone.
	Reason string
	// NextTry is, while not joined, when the next attempt starts (zero
	// during one).
	NextTry time.Time
}

// JoinState reports whether the node is joined now, and why not.
func (o *Overlay) JoinState() JoinState {
	if s := o.joinState.Load(); s != nil {
		return *s
	}
	return JoinState{Reason: "joining: asking the bootstrap peers"}
}

func (o *Overlay) setJoinState(s JoinState) { o.joinState.Store(&s) }

// bootstrapLoop keeps the node joined: whenever it has no connection (at
// start, after a network outage, after every bootstrap node restarted), or
// none of its connections gives it a routing table, it asks the bootstrap
// peers to admit it (joinRound), then refreshes the routing table.
//
// Between rounds that reached nobody it backs off exponentially with full
// jitter. When a peer answered busy it waits the retry-after that peer
// asked for, plus jitter, instead: the server has spread its refused
// newcomers over time, and the jitter keeps those given nearby slots from
// returning in step.
func (o *Overlay) bootstrapLoop() {
	defer o.wg.Done()
	if len(o.cfg.Bootstrap) == 0 {
		o.setJoinState(JoinState{Joined: true, Reason: "no bootstrap peers configured: the first node of its network, joined by those that dial it"})
		close(o.joined)
		return
	}
	backoff := o.cfg.BootstrapBackoffMin
	joined := false
	var admittedAt time.Time
	check := time.NewTimer(0)
	defer check.Stop()
	for {
		select {
		case <-o.ctx.Done():
			return
		case <-check.C:
		}
		connected := len(o.host.Network().Peers()) > 0
		if connected && o.avoided.joinedThrough(o.dht.RoutingTable().ListPeers()) {
			o.setJoinState(JoinState{Joined: true})
			if !joined {
				joined = true
				close(o.joined)
				o.log.Info("joined overlay", "peers", len(o.host.Network().Peers()), "routing_table", o.RoutingTableSize())
			}
			backoff = o.cfg.BootstrapBackoffMin
			check.Reset(o.cfg.BootstrapCheckInterval)
			continue
		}
		if connected && time.Since(admittedAt) < o.cfg.BootstrapCheckInterval {
			// Admitted a moment ago, but the routing table is still empty:
			// identify has not yet told the DHT which peers speak it.
			// Refresh and look again shortly.
			o.refresh()
			check.Reset(o.cfg.BootstrapBackoffMin)
			continue
		}
		if !connected {
			o.setJoinState(JoinState{Reason: "joining: asking the bootstrap peers"})
		}
		r := o.joinRound()
		if r.admitted > 0 {
			admittedAt = time.Now()
			if r.referred != "" {
				o.log.Info("bootstrap busy: joining through a referral", "referral", r.referred, "busy_answers", r.busy)
			}
			o.refresh()
			check.Reset(o.cfg.BootstrapBackoffMin)
			continue
		}
		var wait time.Duration
		if r.busy > 0 {
			hint := min(max(r.retryAfter, o.cfg.BootstrapBackoffMin), o.cfg.JoinRetryMax)
			wait = hint + jitter(max(hint/4, o.cfg.BootstrapBackoffMin))
			o.log.Info("bootstrap busy: retrying later", "retry_in", wait.Round(time.Millisecond).String(),
				"busy_answers", r.busy, "referrals_tried", r.tried)
			o.setJoinState(JoinState{Reason: fmt.Sprintf("not joined: %d bootstrap peers busy", r.busy), NextTry: time.Now().Add(wait)})
		} else {
			// Full jitter: wait uniformly in [0, backoff) so that peers
			// that lost the bootstrap at the same moment spread out.
			wait = jitter(backoff)
			next := time.Now().Add(wait)
			o.log.Warn("no bootstrap peer answered: not joined; retrying", "next_try", next.Format(time.TimeOnly),
				"retry_in", wait.Round(time.Millisecond).String(), "bootstrap_peers", len(o.cfg.Bootstrap), "last_err", r.lastErr)
			o.setJoinState(JoinState{Reason: "not joined: no bootstrap peer answered", NextTry: next})
		}
		backoff = min(2*backoff, o.cfg.BootstrapBackoffMax)
		check.Reset(wait)
	}
}

// jitter returns a random duration in [1 ms, d + 1 ms).
func jitter(d time.Duration) time.Duration {
	return time.Duration(rand.Int64N(int64(max(d, 1)))) + time.Millisecond
}

// refresh fills the routing table through the peers we just reached.
//
// It first has the DHT look again at every connected peer (Bootstrap:
// kad-dht's fixLowPeers, which runs while the table is nearly empty). The
// DHT considers a peer when identify reports it, and leaves it out while
// we avoid it; a connection that outlived our avoiding it (made while the
// peer had us wait, then admitted on) would otherwise never enter the
// table, and the node would wait for the next round to be joined.
func (o *Overlay) refresh() {
	ctx, cancel := context.WithTimeout(o.ctx, time.Minute)
	defer cancel()
	_ = o.dht.Bootstrap(ctx)
	select {
	case err := <-o.dht.ForceRefresh():
		if err != nil && ctx.Err() == nil {
			o.log.Debug("routing table refresh", "err", err)
		}
	case <-ctx.Done():
	}
}
