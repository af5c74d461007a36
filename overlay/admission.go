package overlay

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// admission decides whether this node admits a peer that asks to join
// through it. It is pure policy: the caller passes the time and the number
// of connected peers, so tests and the simulator drive it with any clock.
//
// Two limits apply: a token bucket on admitted joins (rate per second, with
// a burst), and a cap on connected peers (above the connection manager's
// high-water mark an admitted peer would only push another one out).
//
// A refused peer is told when to come back. Refusals are handed successive
// slots of a virtual queue that drains at the admission rate, so a crowd
// refused at the same instant comes back spread out at the pace the bucket
// refills, instead of all at once after the same delay.
type admission struct {
	limiter  *rate.Limiter // nil: no rate limit
	maxPeers int           // 0: no cap
	slot     time.Duration // spacing of retry slots: 1/rate
	minRetry time.Duration
	maxRetry time.Duration

	mu       sync.Mutex
	queueEnd time.Time // the next free retry slot
}

// newAdmission returns the policy for joins at most perSecond per second
// with the given burst (perSecond 0: no rate limit), at most maxPeers
// connected peers (0: no cap), and retry hints in [minRetry, maxRetry].
func newAdmission(perSecond float64, burst, maxPeers int, minRetry, maxRetry time.Duration) *admission {
	a := &admission{maxPeers: maxPeers, minRetry: minRetry, maxRetry: maxRetry}
	if perSecond > 0 {
		a.limiter = rate.NewLimiter(rate.Limit(perSecond), burst)
		a.slot = time.Duration(math.Ceil(float64(time.Second) / perSecond))
	} else {
		// Refused only for the peer cap: space the returns by the
		// minimum hint so they still do not come back in one instant.
		a.slot = minRetry
	}
	a.slot = max(a.slot, time.Millisecond)
	return a
}

// admit decides on one join request at now, with peers connected peers
// (the requester included). A refusal comes with the time after which to
// ask again.
func (a *admission) admit(now time.Time, peers int) (ok bool, retryAfter time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	full := a.maxPeers > 0 && peers > a.maxPeers
	if !full && (a.limiter == nil || a.limiter.AllowN(now, 1)) {
		return true, 0
	}
	start := now.Add(a.minRetry)
	if a.queueEnd.After(start) {
		start = a.queueEnd
	}
	if limit := now.Add(a.maxRetry); start.After(limit) {
		// The queue is longer than the longest hint: these peers will be
		// refused once more and get a later slot then.
		return false, a.maxRetry
	}
	a.queueEnd = start.Add(a.slot)
	return false, start.Sub(now)
}
