package erasure

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

func TestPeerBookBackoffs(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	cfg := DefaultConfig()
	cfg.Now = func() time.Time { return now }
	b := newPeerBook(cfg)
	full, failing, fine := peer.ID("full"), peer.ID("failing"), peer.ID("fine")
	cands := func() []Candidate {
		c := []Candidate{{ID: full}, {ID: failing}, {ID: fine}}
		b.setQuota(c, now)
		return c
	}
	quota := func(c []Candidate) [3]bool { return [3]bool{c[0].HasQuota, c[1].HasQuota, c[2].HasQuota} }

	b.outOfQuota(full)
	b.failed(failing)
	b.answered(fine)
	if got := quota(cands()); got != [3]bool{false, false, true} {
		t.Fatalf("right after: quota %v", got)
	}
	// The failure backoff (5 min) ends before the quota backoff (10 min).
	now = now.Add(cfg.FailureBackoff)
	if got := quota(cands()); got != [3]bool{false, true, true} {
		t.Fatalf("after the failure backoff: quota %v", got)
	}
	b.failed(failing)
	b.answered(failing) // a clear answer ends the backoff at once
	now = now.Add(cfg.QuotaBackoff - cfg.FailureBackoff)
	if got := quota(cands()); got != [3]bool{true, true, true} {
		t.Fatalf("after the quota backoff: quota %v", got)
	}

	b.corrupt(fine)
	b.slow(fine)
	b.slow(fine)
	want := map[peer.ID]PeerReport{failing: {Failures: 2}, fine: {Corrupt: 1, Slow: 2}}
	got := b.peerReports()
	if len(got) != len(want) || got[failing] != want[failing] || got[fine] != want[fine] {
		t.Fatalf("reports %v, want %v", got, want)
	}
}

func TestPeerBookNoFailureBackoff(t *testing.T) {
	cfg := DefaultConfig()
	cfg.FailureBackoff = 0
	b := newPeerBook(cfg)
	b.failed("p")
	c := []Candidate{{ID: "p"}}
	b.setQuota(c, cfg.Now())
	if !c[0].HasQuota {
		t.Fatal("a failed peer is backed off with FailureBackoff 0")
	}
	if r := b.peerReports()["p"]; r.Failures != 1 {
		t.Fatalf("report %+v: the failure is still counted", r)
	}
}
