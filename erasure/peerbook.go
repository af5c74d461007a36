package erasure

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// PeerReport counts what a peer did wrong in this service's experience.
type PeerReport struct {
	Corrupt  int // shards that failed verification
	Failures int // requests that failed or timed out
	Slow     int // fetches overtaken by a hedged request and abandoned
}

// peerBook is what the service's own requests taught it about other
// peers: who refused a shard for quota or failed a request, and so is not
// offered new shards until a backoff ends, and who misbehaved. It has its
// own lock: every request updates it, and nothing else the service keeps
// has to change together with it.
type peerBook struct {
	now            func() time.Time
	quotaBackoff   time.Duration
	failureBackoff time.Duration

	mu      sync.Mutex
	full    map[peer.ID]time.Time // out of quota, until
	failing map[peer.ID]time.Time // last request failed, until
	reports map[peer.ID]PeerReport
}

func newPeerBook(cfg Config) *peerBook {
	return &peerBook{now: cfg.Now, quotaBackoff: cfg.QuotaBackoff, failureBackoff: cfg.FailureBackoff,
		full: map[peer.ID]time.Time{}, failing: map[peer.ID]time.Time{}, reports: map[peer.ID]PeerReport{}}
}

// outOfQuota starts p's quota backoff.
func (b *peerBook) outOfQuota(p peer.ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.full[p] = b.now().Add(b.quotaBackoff)
}

// answered ends p's failure backoff: it gave a clear answer.
func (b *peerBook) answered(p peer.ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.failing, p)
}

// failed starts p's failure backoff and counts the failure.
func (b *peerBook) failed(p peer.ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failureBackoff > 0 {
		b.failing[p] = b.now().Add(b.failureBackoff)
	}
	r := b.reports[p]
	r.Failures++
	b.reports[p] = r
}

// corrupt counts a shard from p that failed verification.
func (b *peerBook) corrupt(p peer.ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.reports[p]
	r.Corrupt++
	b.reports[p] = r
}

// slow counts a fetch from p that a hedged request overtook.
func (b *peerBook) slow(p peer.ID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.reports[p]
	r.Slow++
	b.reports[p] = r
}

// peerReports returns a copy of the reports.
func (b *peerBook) peerReports() map[peer.ID]PeerReport {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[peer.ID]PeerReport, len(b.reports))
	for p, r := range b.reports {
		out[p] = r
	}
	return out
}

// setQuota sets each candidate's HasQuota: false while its quota or
// failure backoff runs at now. Backoffs that have ended are forgotten.
func (b *peerBook) setQuota(cands []Candidate, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for p, until := range b.full {
		if !now.Before(until) {
			delete(b.full, p)
		}
	}
	for p, until := range b.failing {
		if !now.Before(until) {
			delete(b.failing, p)
		}
	}
	for i, c := range cands {
		_, full := b.full[c.ID]
		_, failing := b.failing[c.ID]
		cands[i].HasQuota = !full && !failing
	}
}

// PeerReports returns what each misbehaving peer did, as seen by this service.
func (s *Service) PeerReports() map[peer.ID]PeerReport { return s.book.peerReports() }
