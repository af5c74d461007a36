package erasure

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// AvailabilityConfig configures an AvailabilityTracker.
type AvailabilityConfig struct {
	// HalfLife of the uptime average: an observation's weight halves after
	// this long. Default 24 h, so a daily on/off rhythm averages out instead
	// of swinging the estimate between day and night.
	HalfLife time.Duration
	// Prior is the availability assumed of a peer never observed while the
	// tracker has observed nobody. Once it has, a newcomer is assumed to be
	// like the peers observed so far: the prior is the mean estimate of the
	// peers it tracks (see PopulationPrior), learned, not assumed. Default
	// DefaultPrior.
	Prior float64
	// Now is the clock. Default time.Now; the simulator passes virtual time.
	Now func() time.Time
	// MaxPeers caps the peers remembered. Any peer that connects is
	// observed, and a stranger can connect under ever new identities, so a
	// live node caps the map (Service: DefaultMaxTrackedPeers); reaching
	// it forgets a tenth of the peers, those offline and least recently
	// observed or consulted first, which come back at Prior if they
	// return. 0: no cap (the simulator's model tracks a whole population).
	MaxPeers int
}

// DefaultPrior is the availability assumed before anything is observed:
// between Wuala's volunteers (~0.2) and servers (~1), nearer the
// volunteers, who are most peers of an open network; the population prior
// replaces it as soon as peers are observed.
const DefaultPrior = 0.3

// priorRefresh is how often, in half-lives, the population prior is
// computed again (an O(peers) pass): estimates move by a few percent at
// most in that time.
const priorRefresh = 1.0 / 16

// DefaultMaxTrackedPeers is the cap a Service puts on its tracker: at about
// 150 bytes a peer, 7 MiB, and far more peers than one node meets in the
// half-lives that matter.
const DefaultMaxTrackedPeers = 50_000

// DefaultAvailabilityConfig returns the defaults.
func DefaultAvailabilityConfig() AvailabilityConfig {
	return AvailabilityConfig{HalfLife: 24 * time.Hour, Prior: DefaultPrior, Now: time.Now}
}

// peerAvail is the state kept per peer.
type peerAvail struct {
	online   bool
	since    time.Time // last time the estimate was brought up to date
	estimate float64   // EWMA of the online indicator, as of since
	lastSeen time.Time // last time the peer was seen online
	seen     bool
}

// AvailabilityTracker estimates each peer's availability (the fraction of
// time it is online) from observations: connects and disconnects, requests
// that succeed or fail. It keeps a continuous-time exponentially weighted
// average of the online indicator: over an interval dt spent in state x (1
// online, 0 offline) the estimate moves as
//
//	a <- x + (a - x) * 2^(-dt/HalfLife)
//
// It does no I/O and reads time only from its injected clock, so the
// simulator drives it with virtual time. It is safe for concurrent use.
type AvailabilityTracker struct {
	cfg   AvailabilityConfig
	mu    sync.Mutex
	peers map[peer.ID]*peerAvail
	// prior is the population prior as of priorAt, computed over
	// priorPeers peers (see PopulationPrior).
	prior      float64
	priorAt    time.Time
	priorPeers int
}

// NewAvailabilityTracker returns a tracker; zero fields of cfg take defaults.
func NewAvailabilityTracker(cfg AvailabilityConfig) *AvailabilityTracker {
	d := DefaultAvailabilityConfig()
	if cfg.HalfLife <= 0 {
		cfg.HalfLife = d.HalfLife
	}
	if cfg.Prior <= 0 || cfg.Prior > 1 {
		cfg.Prior = d.Prior
	}
	if cfg.Now == nil {
		cfg.Now = d.Now
	}
	return &AvailabilityTracker{cfg: cfg, peers: map[peer.ID]*peerAvail{}, prior: cfg.Prior}
}

// advance brings a peer's estimate up to now.
func (t *AvailabilityTracker) advance(pa *peerAvail, now time.Time) {
	if now.Sub(pa.since) <= 0 {
		return
	}
	if pa.online {
		pa.lastSeen = now
	}
	pa.estimate = t.estimateAt(pa, now)
	pa.since = now
}

// estimateAt is pa's estimate brought up to now, pa unchanged.
func (t *AvailabilityTracker) estimateAt(pa *peerAvail, now time.Time) float64 {
	dt := now.Sub(pa.since)
	if dt <= 0 {
		return pa.estimate
	}
	x := 0.0
	if pa.online {
		x = 1
	}
	return x + (pa.estimate-x)*math.Exp2(-float64(dt)/float64(t.cfg.HalfLife))
}

func (t *AvailabilityTracker) observe(p peer.ID, online bool) {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	pa, ok := t.peers[p]
	if !ok {
		if t.cfg.MaxPeers > 0 && len(t.peers) >= t.cfg.MaxPeers {
			t.prune()
		}
		pa = &peerAvail{estimate: t.priorLocked(now), since: now}
		t.peers[p] = pa
	}
	t.advance(pa, now)
	pa.online = online
	if online {
		pa.seen, pa.lastSeen = true, now
	}
}

// Connected records that p connected (is online).
func (t *AvailabilityTracker) Connected(p peer.ID) { t.observe(p, true) }

// Disconnected records that p disconnected (is offline, as far as we know).
func (t *AvailabilityTracker) Disconnected(p peer.ID) { t.observe(p, false) }

// Succeeded records a request p answered: it is online.
func (t *AvailabilityTracker) Succeeded(p peer.ID) { t.observe(p, true) }

// Failed records a request to p that failed or timed out: it counts as offline
// until the next sign of life.
func (t *AvailabilityTracker) Failed(p peer.ID) { t.observe(p, false) }

// Availability returns p's estimated availability in [0, 1]; the
// population prior for a peer never observed.
func (t *AvailabilityTracker) Availability(p peer.ID) float64 {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	pa, ok := t.peers[p]
	if !ok {
		return t.priorLocked(now)
	}
	t.advance(pa, now)
	return pa.estimate
}

// PopulationPrior returns the availability assumed of a peer never
// observed: the mean estimate of the peers tracked (each brought up to
// now), or Config.Prior while none is. A newcomer starts from it and its
// own observations then move its estimate as for any peer, so the prior is
// updated per holder and decays with HalfLife. It is computed again at most
// every HalfLife/16, or when the number of peers tracked grew or shrank by
// an eighth, so that asking costs O(1) on average.
func (t *AvailabilityTracker) PopulationPrior() float64 {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.priorLocked(now)
}

func (t *AvailabilityTracker) priorLocked(now time.Time) float64 {
	n := len(t.peers)
	fresh := !t.priorAt.IsZero() && now.Sub(t.priorAt) < time.Duration(float64(t.cfg.HalfLife)*priorRefresh)
	if fresh && 8*abs(n-t.priorPeers) <= t.priorPeers {
		return t.prior
	}
	t.priorAt, t.priorPeers = now, n
	if n == 0 {
		t.prior = t.cfg.Prior
		return t.prior
	}
	// Summed in fixed point: a float sum would depend on the map's
	// (random) order in its last bits, and a seeded simulation must not.
	const one = 1 << 40
	var sum int64
	for _, pa := range t.peers {
		// Not advance: it would move every peer's since, which prune
		// orders by.
		sum += int64(math.Round(t.estimateAt(pa, now) * one))
	}
	t.prior = float64(sum) / one / float64(n)
	return t.prior
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// Online reports whether p's last observation was online.
func (t *AvailabilityTracker) Online(p peer.ID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	pa, ok := t.peers[p]
	return ok && pa.online
}

// LastSeen returns when p was last known online, and false if never.
func (t *AvailabilityTracker) LastSeen(p peer.ID) (time.Time, bool) {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	pa, ok := t.peers[p]
	if !ok || !pa.seen {
		return time.Time{}, false
	}
	t.advance(pa, now)
	return pa.lastSeen, true
}

// Forget drops everything known about p.
func (t *AvailabilityTracker) Forget(p peer.ID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.peers, p)
}

// prune forgets a tenth of MaxPeers: offline peers before online ones,
// each group by oldest observation. t.mu must be held.
func (t *AvailabilityTracker) prune() {
	type entry struct {
		id     peer.ID
		online bool
		since  time.Time
	}
	all := make([]entry, 0, len(t.peers))
	for id, pa := range t.peers {
		all = append(all, entry{id, pa.online, pa.since})
	}
	slices.SortFunc(all, func(a, b entry) int {
		if a.online != b.online {
			if a.online {
				return 1
			}
			return -1
		}
		return a.since.Compare(b.since)
	})
	for _, e := range all[:max(1, t.cfg.MaxPeers/10)] {
		delete(t.peers, e.id)
	}
}

// Len returns the number of peers remembered.
func (t *AvailabilityTracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.peers)
}
