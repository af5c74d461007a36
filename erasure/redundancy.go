package erasure

import (
	"math"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Redundancy defaults.
const (
	// DefaultTarget is the probability, estimated from the holders'
	// availability, that at least k shards of an object are online.
	DefaultTarget = 0.9999
	// DefaultDataShards is the least k, the k of small objects. 4 keeps
	// the fetch fan-out and the per-shard overhead of a small object low.
	DefaultDataShards = 4
	// DefaultMaxDataShards is the largest k, for objects of at least
	// DefaultMaxDataShards*DefaultMinShardSize bytes (256 KiB). With at most
	// MaxShards (32) shards an object costs at most MaxShards/k times its
	// size: 8x at k=4, 2x at k=16. Holders online with probability p need
	// about k/p shards, so a larger k buys a lower expansion for the same
	// target (issue 14: at p = 0.8, 12 shards for k=4 (3x), 31 for k=16
	// (1.9x)); 16 leaves up to 16 parity shards within the cap.
	DefaultMaxDataShards = 16
	// DefaultMinShardSize is the least shard size (per segment) k is raised
	// for: a shard costs a request, a 32-byte hash in the manifest and
	// a holder's bookkeeping whatever its size, which is under 1% of
	// 16 KiB; a smaller shard would spend the saving on overhead.
	DefaultMinShardSize = 16 << 10
	// DefaultMinParity is the least m, whatever availability says: even
	// servers that are always up get lost for good sometimes.
	DefaultMinParity = 2
)

// ProbAtLeast returns the probability that at least k of independent
// holders are online, holder i being online with probability avail[i]: the
// upper tail of the Poisson-binomial distribution, computed exactly with
// the O(n*k) dynamic programme
//
//	P_0 = [1], P_i[j] = P_{i-1}[j]*(1-a_i) + P_{i-1}[j-1]*a_i
//
// where P_i[j] is the probability that exactly j of the first i holders are
// online, with all mass at j >= k folded into j = k.
func ProbAtLeast(k int, avail []float64) float64 {
	if k <= 0 {
		return 1
	}
	if k > len(avail) {
		return 0
	}
	p := make([]float64, k+1) // p[k] accumulates "k or more"
	p[0] = 1
	for _, a := range avail {
		a = clamp01(a)
		p[k] += p[k-1] * a
		for j := k - 1; j >= 1; j-- {
			p[j] = p[j]*(1-a) + p[j-1]*a
		}
		p[0] *= 1 - a
	}
	return p[k]
}

// BinomialAtLeast returns the probability that at least k of n holders,
// each online with probability a, are online.
func BinomialAtLeast(k, n int, a float64) float64 {
	avail := make([]float64, n)
	for i := range avail {
		avail[i] = a
	}
	return ProbAtLeast(k, avail)
}

func clamp01(a float64) float64 {
	if math.IsNaN(a) {
		return 0
	}
	return math.Min(1, math.Max(0, a))
}

// ChooseParity picks the number of parity shards m for k data shards, given
// the availability of the prospective holders in placement order (holder i
// gets shard i). It returns the least m >= minParity such that
// ProbAtLeast(k, avail[:k+m]) >= target, with m <= maxShards-k and k+m <=
// len(avail). When no such m exists it returns the largest m allowed and
// ok = false: the object is stored as well as the available peers allow.
// prob is the probability achieved with the m returned.
func ChooseParity(k int, avail []float64, target float64, minParity, maxShards int) (m int, prob float64, ok bool) {
	maxM := min(maxShards, len(avail)) - k
	if maxM < 0 {
		return 0, 0, false
	}
	minParity = min(max(minParity, 0), maxM)
	for m = minParity; m <= maxM; m++ {
		prob = ProbAtLeast(k, avail[:k+m])
		if prob >= target {
			return m, prob, true
		}
	}
	return maxM, prob, false
}

// PutPolicy is the part of Config that decides how a new object is stored.
type PutPolicy struct {
	// DataShards is the least k (small objects), MaxDataShards the largest
	// (0: DataShards); k grows with the object's size so that no shard of a
	// segment is smaller than MinShardSize (see ChooseDataShards).
	DataShards, MaxDataShards, MinShardSize int
	// SegmentSize is the plaintext bytes per segment (0: DefaultSegmentSize).
	SegmentSize          int
	MinParity, MaxShards int
	Target               float64
}

// PutPolicy returns c's put policy.
func (c Config) PutPolicy() PutPolicy {
	return PutPolicy{DataShards: c.DataShards, MaxDataShards: c.MaxDataShards, MinShardSize: c.MinShardSize,
		SegmentSize: c.SegmentSize, MinParity: c.MinParity, MaxShards: c.MaxShards, Target: c.Target}
}

// ChooseDataShards returns k for an object of size bytes stored on at most
// holders peers: the largest k in [pol.DataShards, pol.MaxDataShards] whose
// shards of one segment (min(size, SegmentSize)/k bytes) are at least
// MinShardSize, lowered to keep MinParity parity shards when fewer than
// k+MinParity holders can be had (down to 1). Larger objects get more data
// shards because the expansion a target needs falls with k (see
// DefaultMaxDataShards); small ones keep few, since each shard has a fixed
// cost. A segment is still decoded from k shards of SegmentSize/k bytes, so
// the memory a Get or repair needs per segment does not grow with k.
func ChooseDataShards(size int64, holders int, pol PutPolicy) int {
	k := max(1, pol.DataShards)
	maxK := max(k, pol.MaxDataShards)
	seg := int64(pol.SegmentSize)
	if seg <= 0 {
		seg = DefaultSegmentSize
	}
	if floor := int64(pol.MinShardSize); floor > 0 {
		k = max(k, min(maxK, int(min(size, seg)/floor)))
	}
	if pol.MaxShards > 0 {
		k = min(k, pol.MaxShards-pol.MinParity)
	}
	return max(1, min(k, holders-pol.MinParity))
}

// PutPlan is how a new object is stored.
type PutPlan struct {
	K, M int
	// Holders are the k+m distinct peers that take the shards, in shard
	// index order.
	Holders []peer.ID
	// Prob is the estimated probability that at least K holders are online;
	// TargetMet says whether it reaches the policy's target (if not, M is
	// the most the candidates allow).
	Prob      float64
	TargetMet bool
}

// PlanPut decides how Put stores the object of size bytes whose placement
// seed is seed on cands (those without quota are never chosen): Place
// draws up to MaxShards holders, favouring available peers with room (see
// placementWeight); they are ordered by estimated availability, most
// available first (ties keep Place's order), so that the least m
// ChooseParity finds is also the least for the holders drawn. k is chosen
// by size and population: each k from ChooseDataShards' (the largest the
// size allows, lowered when Place finds fewer holders than k+MinParity: a
// small network, or few networks) down to DataShards is tried with
// ChooseParity, and the plan of least expansion meeting the target is
// taken (a large k needs many available holders: among volunteers
// rarely online, or with few candidates, a smaller k stores the object
// more cheaply, or at all); when none meets it, the most probable. It is pure: the
// simulator calls it too. It returns ErrNotEnoughPeers when no candidate
// has quota.
func PlanPut(seed PlacementSeed, cands []Candidate, pol PutPolicy, size int64) (PutPlan, error) {
	usable := 0
	avail := map[peer.ID]float64{}
	for _, c := range cands {
		if c.HasQuota {
			if _, dup := avail[c.ID]; !dup {
				usable++
			}
			avail[c.ID] = c.Availability
		}
	}
	if usable < 1 {
		return PutPlan{}, ErrNotEnoughPeers
	}
	order := Place(seed, min(pol.MaxShards, usable), cands)
	slices.SortStableFunc(order, func(a, b peer.ID) int {
		return cmpDesc(avail[a], avail[b])
	})
	avails := make([]float64, len(order))
	for i, p := range order {
		avails[i] = avail[p]
	}
	kMax := ChooseDataShards(size, len(order), pol)
	var best PutPlan
	for k := kMax; k >= min(kMax, max(1, pol.DataShards)); k-- {
		m, prob, ok := ChooseParity(k, avails, pol.Target, pol.MinParity, pol.MaxShards)
		c := PutPlan{K: k, M: m, Prob: prob, TargetMet: ok}
		if best.K == 0 || betterPlan(c, best) {
			best = c
		}
	}
	best.Holders = slices.Clone(order[:best.K+best.M])
	return best, nil
}

// betterPlan reports whether a stores an object better than b: meeting
// the target beats missing it; among plans that meet it, the lower
// expansion (k+m)/k wins; among plans that miss it, the higher
// probability. Ties keep b, the plan with the larger k.
func betterPlan(a, b PutPlan) bool {
	if a.TargetMet != b.TargetMet {
		return a.TargetMet
	}
	if a.TargetMet {
		return (a.K+a.M)*b.K < (b.K+b.M)*a.K
	}
	return a.Prob > b.Prob
}

// cmpDesc orders larger values first.
func cmpDesc(a, b float64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// LeastShards returns the least n such that the n most available of the
// holders whose availabilities are avail have at least k online with
// probability target (ProbAtLeast), and false when all of them do not: the
// optimum for those holders, against which the simulator measures what
// ChooseParity chose from estimates.
func LeastShards(k int, avail []float64, target float64) (int, bool) {
	sorted := slices.Clone(avail)
	slices.SortFunc(sorted, cmpDesc)
	for n := k; n <= len(sorted); n++ {
		if ProbAtLeast(k, sorted[:n]) >= target {
			return n, true
		}
	}
	return len(sorted), false
}
