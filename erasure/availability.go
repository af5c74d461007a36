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
	// Confidence is z in the lower confidence bound that LowerBound
	// returns and the storage policy places and sizes parity on (see
	// LowerBound). Default DefaultConfidence; negative: no margin
	// (LowerBound is the mean).
	Confidence float64
}

// DefaultConfidence is the z of LowerBound. Volunteers' sessions are
// heavy-tailed (Weibull shape 0.5: Stutzbach and Rejaie, IMC 2006), so a
// 24-hour average of a peer seen in a few long sessions is often off by
// 0.2 or more, and placement, which picks the highest estimates, picks
// the peers that are overestimated (the winner's curse): in the
// realistic-mix model, placing on the mean, a fifth of the objects had
// holders that by their true availability could not meet the target at
// all, and retrievability was 0.99987 for a target of 0.9999 over a year.
// 0.15 standard errors from the cycles seen bring it to 0.99995 there at
// 6% more storage, 1.18 times the optimum for the holders chosen; 0.25
// gave 0.99997 at 1.23 times the optimum, 0.5 to 2 cost 18% to 140% more
// storage over 60 days (docs/simulation.md).
const DefaultConfidence = 0.15

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
	return AvailabilityConfig{HalfLife: 24 * time.Hour, Prior: DefaultPrior, Now: time.Now, Confidence: DefaultConfidence}
}

// peerAvail is the state kept per peer.
type peerAvail struct {
	online   bool
	since    time.Time // last time the estimate was brought up to date
	estimate float64   // EWMA of the online indicator, as of since
	lastSeen time.Time // last time the peer was seen online
	seen     bool
	// term is the peer's part of the tracker's decaySum (see
	// priorLocked), as last added.
	term float64
	// cycles is the number of times the peer was seen to come back online
	// (an offline observation, then an online one), decayed with the same
	// half-life as the estimate, as of since: how many independent
	// on/off periods the estimate rests on.
	cycles float64
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
	// The sum of every tracked estimate, kept up to date as peers are
	// observed so that the prior costs O(1): a peer's estimate at time t
	// is x + (e - x) 2^(-(t - since)/HalfLife) (x its state, e its estimate
	// at since), so the sum at t is onlineN + decaySum 2^(-(t-epoch)/H),
	// where decaySum adds each peer's (e - x) 2^((since - epoch)/H).
	onlineN  int
	decaySum float64
	epoch    time.Time
}

// maxEpochHalfLives bounds (now - epoch) in half-lives before the terms of
// decaySum are computed again from a new epoch, far from float64's range
// (2^1023).
const maxEpochHalfLives = 512

// termOf is pa's part of decaySum (see AvailabilityTracker.decaySum).
func (t *AvailabilityTracker) termOf(pa *peerAvail) float64 {
	x := 0.0
	if pa.online {
		x = 1
	}
	return (pa.estimate - x) * math.Exp2(float64(pa.since.Sub(t.epoch))/float64(t.cfg.HalfLife))
}

// enroll adds pa to the running sums, retire takes it out.
func (t *AvailabilityTracker) enroll(pa *peerAvail) {
	if t.epoch.IsZero() {
		t.epoch = pa.since
	}
	pa.term = t.termOf(pa)
	t.decaySum += pa.term
	if pa.online {
		t.onlineN++
	}
}

func (t *AvailabilityTracker) retire(pa *peerAvail) {
	t.decaySum -= pa.term
	if pa.online {
		t.onlineN--
	}
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
	if cfg.Confidence == 0 {
		cfg.Confidence = d.Confidence
	}
	return &AvailabilityTracker{cfg: cfg, peers: map[peer.ID]*peerAvail{}, prior: cfg.Prior}
}

// advance brings a peer's estimate up to now.
func (t *AvailabilityTracker) advance(pa *peerAvail, now time.Time) {
	dt := now.Sub(pa.since)
	if dt <= 0 {
		return
	}
	if pa.online {
		pa.lastSeen = now
	}
	// As estimateAt, with the decay computed once for the cycles too.
	f := math.Exp2(-float64(dt) / float64(t.cfg.HalfLife))
	x := 0.0
	if pa.online {
		x = 1
	}
	pa.estimate = x + (pa.estimate-x)*f
	pa.cycles *= f
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
	} else {
		t.retire(pa)
	}
	t.advance(pa, now)
	if online && ok && !pa.online {
		pa.cycles++ // came back: one more on/off period seen
	}
	pa.online = online
	t.enroll(pa)
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

// LowerBound returns a lower confidence bound of p's availability: the
// estimate a less the Confidence (z) standard errors of an availability
// measured over n independent on/off periods,
//
//	a - z * sqrt(a(1-a) / (n+1))
//
// where n is the (decayed) number of times p was seen to come back
// online. A peer seen in one long session, or briefly, gets a wide margin;
// a peer always online (a = 1) or never online (a = 0) none, since its
// estimate has no spread to measure; a peer that came and went many times
// a narrow one. The storage policy places shards and chooses parity on
// this bound (Service.candidates, CheckedHolder), so that the peers it
// picks for their high estimates are not, on average, worse than the
// target assumes. Never below 0.
func (t *AvailabilityTracker) LowerBound(p peer.ID) float64 {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	pa, ok := t.peers[p]
	if !ok {
		// Nothing observed: no estimate to be optimistic about. Peers of
		// whom nothing is known are, on average, the population.
		return t.priorLocked(now)
	}
	t.advance(pa, now)
	return t.lowerBound(pa.estimate, pa.cycles)
}

// view is LowerBound and LastSeen of p in one look-up, for CheckedHolder.
func (t *AvailabilityTracker) view(p peer.ID) (lower float64, lastSeen time.Time, seen bool) {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	pa, ok := t.peers[p]
	if !ok {
		return t.priorLocked(now), time.Time{}, false
	}
	t.advance(pa, now)
	return t.lowerBound(pa.estimate, pa.cycles), pa.lastSeen, pa.seen
}

func (t *AvailabilityTracker) lowerBound(a, cycles float64) float64 {
	if t.cfg.Confidence <= 0 {
		return a
	}
	return math.Max(0, a-t.cfg.Confidence*math.Sqrt(a*(1-a)/(cycles+1)))
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
	if now.Sub(t.epoch) > maxEpochHalfLives*t.cfg.HalfLife {
		t.rebase(now)
	}
	sum := float64(t.onlineN) + t.decaySum*math.Exp2(-float64(now.Sub(t.epoch))/float64(t.cfg.HalfLife))
	t.prior = clamp01(sum / float64(n))
	return t.prior
}

// rebase computes decaySum again from epoch now. Its terms are summed in
// fixed point: a float sum would depend on the map's (random) order in
// its last bits, and a seeded simulation must not.
func (t *AvailabilityTracker) rebase(now time.Time) {
	t.epoch = now
	const one = 1 << 40
	var sum int64
	for _, pa := range t.peers {
		pa.term = t.termOf(pa)
		sum += int64(math.Round(pa.term * one))
	}
	t.decaySum = float64(sum) / one
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

// State returns whether p's last observation was online, and whether p is
// tracked at all.
func (t *AvailabilityTracker) State(p peer.ID) (online, tracked bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pa, ok := t.peers[p]
	return ok && pa.online, ok
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
	if pa, ok := t.peers[p]; ok {
		t.retire(pa)
		delete(t.peers, p)
	}
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
		t.retire(t.peers[e.id])
		delete(t.peers, e.id)
	}
}

// Len returns the number of peers remembered.
func (t *AvailabilityTracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.peers)
}
