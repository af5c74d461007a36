package model

import (
	"math/rand/v2"
	"sort"
	"time"
)

// Kademlia parameters of go-libp2p-kad-dht's defaults.
const (
	kadK     = 20 // bucket size, and peers a lookup returns
	kadAlpha = 10 // concurrency
	kadBeta  = 3  // resiliency: the lookup ends once its beta closest peers answered
)

// lookupModel runs iterative Kademlia lookups over the population.
//
// A node's routing table holds, per common-prefix length, up to K peers it
// knew at its last refresh: peers online then. Peers that went offline
// since are stale entries (queried, they time out); peers that came online
// since are not known yet. Tables are drawn when a lookup needs them, from
// the key index, with the node's refresh a uniform time in the past
// Refresh interval.
type lookupModel struct {
	pop     *population
	now     time.Duration
	refresh time.Duration
	r       *rand.Rand
}

// knownAt: is y in routing tables refreshed at tRef, and does it answer now?
func (lm *lookupModel) knownAt(y int32, tRef time.Duration) (known, alive bool) {
	since := lm.pop.since[y]
	if lm.pop.isOnline(int(y)) {
		return since <= tRef, since <= tRef
	}
	return since > tRef, false // left after the refresh: a stale entry
}

// bucket returns up to K peers of x's table with common prefix length b.
func (lm *lookupModel) bucket(x int32, b int, tRef time.Duration) []int32 {
	ix := &lm.pop.index
	xp := &lm.pop.points[x]
	var pool []int32
	take := func(e entry) {
		if e.slot == x || cpl(xp, &e.pt) != b {
			return
		}
		if known, _ := lm.knownAt(e.slot, tRef); known {
			pool = append(pool, e.slot)
		}
	}
	if uint(b) >= ix.bits {
		for _, e := range ix.buckets[ix.bucketOf(*xp)] {
			take(e)
		}
	} else {
		span := uint32(1) << (ix.bits - 1 - uint(b))
		base := (ix.bucketOf(*xp) ^ span) &^ (span - 1)
		if span <= 8 {
			for k := range span {
				for _, e := range ix.buckets[base+k] {
					take(e)
				}
			}
		} else {
			// A large range: sample it.
			seen := map[int32]bool{}
			for tries := 0; tries < 8*kadK && len(pool) < kadK; tries++ {
				bk := ix.buckets[base+uint32(lm.r.IntN(int(span)))]
				if len(bk) == 0 {
					continue
				}
				e := bk[lm.r.IntN(len(bk))]
				if !seen[e.slot] {
					seen[e.slot] = true
					take(e)
				}
			}
		}
	}
	if len(pool) > kadK {
		lm.r.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
		pool = pool[:kadK]
	}
	return pool
}

// closest returns the K peers of x's table closest to t.
func (lm *lookupModel) closest(x int32, t *point) []int32 {
	tRef := lm.now - time.Duration(lm.r.Int64N(int64(lm.refresh)))
	j := cpl(&lm.pop.points[x], t)
	out := lm.bucket(x, j, tRef)
	if len(out) < kadK {
		// Deeper buckets are next (as far from t as x is), then shallower
		// ones, farther and farther.
		var deeper []int32
		for b := j + 1; b < 256 && b <= j+24; b++ {
			deeper = append(deeper, lm.bucket(x, b, tRef)...)
		}
		sort.Slice(deeper, func(a, c int) bool { return xorLess(&lm.pop.points[deeper[a]], &lm.pop.points[deeper[c]], t) })
		out = append(out, deeper...)
		for b := j - 1; b >= 0 && len(out) < kadK; b-- {
			out = append(out, lm.bucket(x, b, tRef)...)
		}
	}
	sort.Slice(out, func(a, c int) bool { return xorLess(&lm.pop.points[out[a]], &lm.pop.points[out[c]], t) })
	if len(out) > kadK {
		out = out[:kadK]
	}
	return out
}

type qstate struct {
	depth   int
	queried bool
	failed  bool
}

// lookup has src look up target's key. It reports whether target was among
// the peers found and the depth at which the lookup first heard of it (1:
// it was in src's own table), as live mode measures.
func (lm *lookupModel) lookup(src, target int32) (found bool, hops int) {
	t := lm.pop.points[target]
	st := map[int32]*qstate{}
	var cands []int32
	add := func(y int32, depth int) {
		if y == src {
			return
		}
		if _, ok := st[y]; !ok {
			st[y] = &qstate{depth: depth}
			cands = append(cands, y)
		}
	}
	for _, y := range lm.closest(src, &t) {
		add(y, 1)
	}
	for round := 0; round < 64; round++ {
		sort.Slice(cands, func(a, c int) bool { return xorLess(&lm.pop.points[cands[a]], &lm.pop.points[cands[c]], &t) })
		// Done once the beta closest peers still standing have answered.
		var next []int32
		answered, standing := 0, 0
		for _, y := range cands {
			s := st[y]
			if s.failed {
				continue
			}
			if standing < kadBeta {
				standing++
				if s.queried {
					answered++
				}
			}
			if !s.queried && len(next) < kadAlpha {
				next = append(next, y)
			}
		}
		if (standing > 0 && answered == standing) || len(next) == 0 {
			break
		}
		for _, y := range next {
			s := st[y]
			s.queried = true
			if !lm.pop.isOnline(int(y)) {
				s.failed = true
				continue
			}
			for _, z := range lm.closest(y, &t) {
				add(z, s.depth+1)
			}
		}
	}
	if s, ok := st[target]; ok {
		hops = s.depth
		found = s.queried && !s.failed
	}
	return found, hops
}
