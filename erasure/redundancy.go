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
	// DefaultDataShards is k. 4 keeps the fetch fan-out and the per-shard
	// overhead low; the simulator explores 4..8.
	DefaultDataShards = 4
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
	DataShards, MinParity, MaxShards int
	Target                           float64
}

// PutPolicy returns c's put policy.
func (c Config) PutPolicy() PutPolicy {
	return PutPolicy{DataShards: c.DataShards, MinParity: c.MinParity, MaxShards: c.MaxShards, Target: c.Target}
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

// PlanPut decides how Put stores the object whose placement seed is seed
// on cands (those without quota are never chosen): Place orders the
// candidates; k is the policy's DataShards, lowered when Place finds fewer
// holders than k+MinParity (a small network, or few networks) to keep
// MinParity parity shards (down to 1); ChooseParity picks m from the
// availability estimates of the holders in that order. It is pure: the
// simulator calls it too. It returns ErrNotEnoughPeers when no candidate
// has quota.
func PlanPut(seed PlacementSeed, cands []Candidate, pol PutPolicy) (PutPlan, error) {
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
	k := max(1, min(pol.DataShards, len(order)-pol.MinParity))
	avails := make([]float64, len(order))
	for i, p := range order {
		avails[i] = avail[p]
	}
	m, prob, ok := ChooseParity(k, avails, pol.Target, pol.MinParity, pol.MaxShards)
	return PutPlan{K: k, M: m, Holders: slices.Clone(order[:k+m]), Prob: prob, TargetMet: ok}, nil
}
