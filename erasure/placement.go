package erasure

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"sort"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Candidate is a peer that might hold a shard.
type Candidate struct {
	ID           peer.ID
	Availability float64 // estimated fraction of time online, in [0, 1]
	Zone         string  // failure-domain label (--zone); "" when unknown
	HasQuota     bool    // false when the peer recently refused for quota (or failed a request): not to be chosen
}

// minPlacementWeight keeps peers with a zero estimate eligible (last
// resort), since estimates of new or briefly seen peers are poor.
const minPlacementWeight = 0.01

// ShardTarget returns the keyspace point of shard i of an object:
// SHA-256(object id || i as 2 bytes big-endian).
func ShardTarget(obj ObjectID, i int) [32]byte {
	var b [34]byte
	copy(b[:], obj[:])
	binary.BigEndian.PutUint16(b[32:], uint16(i))
	return sha256.Sum256(b[:])
}

// peerPoint returns a peer's keyspace point: SHA-256 of its id bytes, as in
// Kademlia.
func peerPoint(p peer.ID) [32]byte { return sha256.Sum256([]byte(p)) }

// placementScore ranks candidate c for a shard whose target is t; lower is
// better. It is weighted rendezvous hashing with the XOR distance as the
// random variate: u = 1 - d/2^256 for the XOR distance d between the peer's
// point and t (close means u near 1), and score = -ln(u)/w for the
// candidate's availability w. With
// equal weights the order is exactly XOR order (closest first), and a peer
// twice as available wins about twice as many shards.
func placementScore(point, t [32]byte, w float64) float64 {
	var d [8]byte
	for i := range d {
		d[i] = point[i] ^ t[i]
	}
	// The top 53 bits are as much as a float64 holds; the +0.5 keeps u in (0, 1).
	u := 1 - (float64(binary.BigEndian.Uint64(d[:])>>11)+0.5)/(1<<53)
	return -math.Log(u) / math.Max(w, minPlacementWeight)
}

// Place chooses distinct peers for shards 0..n-1 of an object, one per
// shard, in shard order. Each shard in turn takes the best-scoring remaining
// candidate (see placementScore) among those with quota, restricted, when
// candidates carry zones, to those whose zone holds the fewest shards so far
// (peers without a zone count as zones of their own). Greedy in shard order
// means Place(n) is a prefix of Place(n+1), which lets ChooseParity look at
// the holders of the first k+m shards before m is fixed. It returns fewer
// than n peers when there are not enough candidates. Deterministic: the same
// inputs give the same result on every peer.
func Place(obj ObjectID, n int, cands []Candidate) []peer.ID {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return PlaceShards(obj, idx, cands, nil)
}

// PlaceShards is Place for the given shard indices only, never choosing a
// peer in exclude (the holders of the shards that stay where they are).
// Zones already used by excluded peers count towards the spread.
func PlaceShards(obj ObjectID, indices []int, cands []Candidate, exclude map[peer.ID]Candidate) []peer.ID {
	type entry struct {
		c     Candidate
		point [32]byte
	}
	// Sort candidates by id so that duplicates and input order never matter.
	pool := make([]entry, 0, len(cands))
	seen := map[peer.ID]bool{}
	for _, c := range cands {
		if !c.HasQuota || seen[c.ID] {
			continue
		}
		if _, ok := exclude[c.ID]; ok {
			continue
		}
		seen[c.ID] = true
		pool = append(pool, entry{c, peerPoint(c.ID)})
	}
	sort.Slice(pool, func(i, j int) bool { return pool[i].c.ID < pool[j].c.ID })
	zoneUse := map[string]int{}
	for _, c := range exclude {
		if c.Zone != "" {
			zoneUse[c.Zone]++
		}
	}
	used := make([]bool, len(pool))
	out := make([]peer.ID, 0, len(indices))
	for _, shard := range indices {
		t := ShardTarget(obj, shard)
		minUse := math.MaxInt
		for i, e := range pool {
			if !used[i] && e.c.Zone != "" {
				minUse = min(minUse, zoneUse[e.c.Zone])
			}
		}
		best, bestScore := -1, math.Inf(1)
		for i, e := range pool {
			if used[i] || (e.c.Zone != "" && zoneUse[e.c.Zone] > minUse) {
				continue
			}
			s := placementScore(e.point, t, e.c.Availability)
			if s < bestScore || (s == bestScore && bytes.Compare([]byte(e.c.ID), []byte(pool[best].c.ID)) < 0) {
				best, bestScore = i, s
			}
		}
		if best < 0 {
			break
		}
		used[best] = true
		if z := pool[best].c.Zone; z != "" {
			zoneUse[z]++
		}
		out = append(out, pool[best].c.ID)
	}
	return out
}
