package erasure

import "github.com/libp2p/go-libp2p/core/peer"

// PeerReport counts what a peer did wrong in this service's experience.
type PeerReport struct {
	Corrupt  int // shards that failed verification
	Failures int // requests that failed or timed out
	Slow     int // fetches overtaken by a hedged request and abandoned
}

// PeerReports returns what each misbehaving peer did, as seen by this service.
func (s *Service) PeerReports() map[peer.ID]PeerReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[peer.ID]PeerReport, len(s.reports))
	for p, r := range s.reports {
		out[p] = r
	}
	return out
}

func (s *Service) report(p peer.ID, f func(*PeerReport)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.reports[p]
	f(&r)
	s.reports[p] = r
}

// setFailing starts (or, with ok, ends) p's failure backoff.
func (s *Service) setFailing(p peer.ID, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		delete(s.failing, p)
	} else if s.cfg.FailureBackoff > 0 {
		s.failing[p] = s.cfg.Now().Add(s.cfg.FailureBackoff)
	}
}

func (s *Service) markFull(p peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.full[p] = s.cfg.Now().Add(s.cfg.QuotaBackoff)
}
