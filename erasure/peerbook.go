package erasure

import (
	"container/list"
	"slices"
	"sync"
	"time"

	"github.com/immense-p2p/immense/internal/netprefix"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// PeerReport counts what a peer did wrong in this service's experience.
type PeerReport struct {
	Corrupt  int // shards that failed verification
	Failures int // requests that failed or timed out
	Slow     int // fetches overtaken by a hedged request and abandoned
}

// peerBook is what the service's own requests and connections taught it
// about other peers: who refused a shard for quota or failed a request, and
// so is not offered new shards until a backoff ends, who misbehaved, and
// which network each peer was last connected from. It has its own lock:
// every request updates it, and nothing else the service keeps has to
// change together with it.
type peerBook struct {
	now            func() time.Time
	quotaBackoff   time.Duration
	failureBackoff time.Duration

	mu      sync.Mutex
	full    map[peer.ID]time.Time // out of quota, until
	failing map[peer.ID]time.Time // last request failed, until
	reports map[peer.ID]PeerReport
	// nets: the network (netprefix) of the address each peer was last
	// connected from, for placement once the connection has closed. At
	// most maxNets peers, the least recently connected forgotten first:
	// a stranger makes new identities for free, and a holder whose
	// network is forgotten no longer keeps others of its /24 out.
	nets    map[peer.ID]*list.Element // of *peerNet, in netsLRU
	netsLRU list.List                 // most recently connected first
	maxNets int
}

type peerNet struct {
	id  peer.ID
	net string
}

func newPeerBook(cfg Config) *peerBook {
	return &peerBook{now: cfg.Now, quotaBackoff: cfg.QuotaBackoff, failureBackoff: cfg.FailureBackoff,
		full: map[peer.ID]time.Time{}, failing: map[peer.ID]time.Time{}, reports: map[peer.ID]PeerReport{},
		nets: map[peer.ID]*list.Element{}, maxNets: DefaultMaxTrackedPeers}
}

// connNet is the network a set of connections to one peer puts it in: ""
// when any direct connection comes from a loopback or private address (a
// peer on our own machine or LAN), else the least of the direct
// connections' networks, else (relayed only) the least of the relays'.
// Only addresses we are actually connected to count: what a peer says it
// listens on costs it nothing.
func connNet(conns []network.Conn) string {
	var direct, relayed []string
	for _, c := range conns {
		a := c.RemoteMultiaddr()
		n := netprefix.OfAddr(a)
		if _, err := a.ValueForProtocol(ma.P_CIRCUIT); err == nil {
			relayed = append(relayed, n)
			continue
		}
		if n == "" {
			return ""
		}
		direct = append(direct, n)
	}
	if len(direct) == 0 {
		direct = relayed
	}
	if len(direct) == 0 {
		return ""
	}
	return slices.Min(direct)
}

// connected remembers the network p is connected from now.
func (b *peerBook) connected(p peer.ID, net string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.nets[p]; ok {
		e.Value.(*peerNet).net = net
		b.netsLRU.MoveToFront(e)
		return
	}
	if len(b.nets) >= b.maxNets {
		old := b.netsLRU.Back()
		delete(b.nets, old.Value.(*peerNet).id)
		b.netsLRU.Remove(old)
	}
	b.nets[p] = b.netsLRU.PushFront(&peerNet{id: p, net: net})
}

// lastNet returns the network p was last connected from, "" if unknown.
func (b *peerBook) lastNet(p peer.ID) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e, ok := b.nets[p]; ok {
		return e.Value.(*peerNet).net
	}
	return ""
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
