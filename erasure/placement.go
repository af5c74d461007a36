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
	// Zone is the peer's failure domain as this peer's operator assigned
	// it (Config.Zones, --zones), or as the peer declared it when
	// Config.DeclaredZones trusts declarations; "" when none. Peers with a
	// zone are spread over zones and are not held to the network rule.
	Zone string
	// Net is the network of the address this peer is connected to it
	// from (NetOf: the /24 of an IPv4 address, the /48 of an IPv6 one);
	// "" when that address is loopback, private or unknown. An object gets
	// at most one holder per Net among peers without a Zone.
	Net      string
	HasQuota bool // false when the peer recently refused for quota (or failed a request): not to be chosen
	// Used is the share of the peer's storage quota in use, in [0, 1], as
	// far as the chooser knows; 0 when unknown. Placement favours peers
	// with room (see placementWeight).
	Used float64
}

// placementWeight is c's weight in the rendezvous hash: its availability
// squared, times the share of its quota that is free. A holder online with
// probability a is worth about a shards towards the k a read needs, so
// the shards an object needs for its target fall roughly as 1/a; the
// square makes placement seek out the available peers (with weight a alone,
// a population of volunteers online a fifth of the time hands most shards
// to the least available, and ChooseParity has to pay for them with
// parity). The free share spreads the load: a reliable volunteer whose
// quota fills up loses weight in step, so the reliable peers are not all
// filled first and then lost to every later object.
func placementWeight(c Candidate) float64 {
	a := clamp01(c.Availability)
	return a * a * (1 - clamp01(c.Used))
}

// minPlacementWeight keeps peers with a zero estimate (or a full quota, as
// far as we know) eligible, as a last resort, since estimates of new or
// briefly seen peers are poor.
const minPlacementWeight = 1e-3

// PlacementSeed is what the shard targets of an object derive from. A
// Service uses AppKey.PlacementSeed(obj), a keyed hash of the object id
// that only holders of the app key can compute: the object id itself is
// public (it is in the manifest's DHT key), and a seed anyone can compute
// would let an attacker grind peer ids that win an object's shards.
type PlacementSeed [32]byte

// ShardTarget returns the rendezvous point of shard i of the object with
// placement seed s: SHA-256(s || i as 2 bytes big-endian).
func ShardTarget(s PlacementSeed, i int) [32]byte {
	var b [34]byte
	copy(b[:], s[:])
	binary.BigEndian.PutUint16(b[32:], uint16(i))
	return sha256.Sum256(b[:])
}

// peerKey is what placement hashes of a peer: the first 16 bytes of
// SHA-256 of its id. Hashed once per placement, and short enough that a
// target and a peer key fill one SHA-256 block. Two ids share a key only
// by a 128-bit collision.
type peerKey [16]byte

func keyOf(p peer.ID) peerKey {
	h := sha256.Sum256([]byte(p))
	return peerKey(h[:16])
}

// placementScore ranks the peer with key k for a shard whose target is t;
// lower is better. It is weighted rendezvous hashing: u = SHA-256(t || k)
// read as a number in (0, 1) is the peer's random variate for this shard,
// and score = -ln(u)/w for the candidate's weight w (placementWeight), so
// that a peer of twice the weight wins about twice as many shards. Because t is secret
// (see PlacementSeed) and the hash covers the pair, knowing which peers
// won other shards, or this shard before, tells nothing about how a new
// peer id would score: ids cannot be ground for it.
func placementScore(t [32]byte, k peerKey, w float64) float64 {
	var b [48]byte
	copy(b[:32], t[:])
	copy(b[32:], k[:])
	sum := sha256.Sum256(b[:])
	// The top 53 bits are as much as a float64 holds; the +0.5 keeps u in (0, 1).
	u := (float64(binary.BigEndian.Uint64(sum[:8])>>11) + 0.5) / (1 << 53)
	return -math.Log(u) / math.Max(w, minPlacementWeight)
}

// Place chooses distinct peers for shards 0..n-1 of an object, one per
// shard, in shard order. Each shard in turn takes the best-scoring remaining
// candidate (see placementScore) among those with quota, restricted, when
// candidates carry zones, to those whose zone holds the fewest shards so far
// (peers without a zone count as zones of their own), and never a peer
// without a zone whose Net already holds a shard of the object. Greedy in
// shard order means Place(n) is a prefix of Place(n+1), which lets
// ChooseParity look at the holders of the first k+m shards before m is
// fixed. It returns fewer than n peers when there are not enough candidates
// (or networks). Deterministic: the same inputs give the same result on
// every peer.
func Place(seed PlacementSeed, n int, cands []Candidate) []peer.ID {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return PlaceShards(seed, idx, cands, nil)
}

// PlaceShards is Place for the given shard indices only, never choosing a
// peer in exclude (the holders of the shards that stay where they are).
// Zones and networks already used by excluded peers count towards the
// spread.
func PlaceShards(seed PlacementSeed, indices []int, cands []Candidate, exclude map[peer.ID]Candidate) []peer.ID {
	type entry struct {
		Candidate
		key peerKey
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
		pool = append(pool, entry{c, keyOf(c.ID)})
	}
	sort.Slice(pool, func(i, j int) bool { return pool[i].ID < pool[j].ID })
	zoneUse := map[string]int{}
	netUsed := map[string]bool{}
	use := func(c Candidate) {
		if c.Zone != "" {
			zoneUse[c.Zone]++
		} else if c.Net != "" {
			netUsed[c.Net] = true
		}
	}
	for _, c := range exclude {
		use(c)
	}
	used := make([]bool, len(pool))
	out := make([]peer.ID, 0, len(indices))
	for _, shard := range indices {
		t := ShardTarget(seed, shard)
		minUse := math.MaxInt
		for i, c := range pool {
			if !used[i] && c.Zone != "" {
				minUse = min(minUse, zoneUse[c.Zone])
			}
		}
		best, bestScore := -1, math.Inf(1)
		for i, c := range pool {
			if used[i] || (c.Zone != "" && zoneUse[c.Zone] > minUse) || (c.Zone == "" && netUsed[c.Net]) {
				continue
			}
			s := placementScore(t, c.key, placementWeight(c.Candidate))
			if s < bestScore || (s == bestScore && bytes.Compare([]byte(c.ID), []byte(pool[best].ID)) < 0) {
				best, bestScore = i, s
			}
		}
		if best < 0 {
			break
		}
		used[best] = true
		use(pool[best].Candidate)
		out = append(out, pool[best].ID)
	}
	return out
}

// candidates by id, for building PlaceShards' exclude set from holders.
type candidateMap map[peer.ID]Candidate

func newCandidateMap(cands []Candidate) candidateMap {
	m := make(candidateMap, len(cands))
	for _, c := range cands {
		m[c.ID] = c
	}
	return m
}

// get returns p's candidate (zone and network included), or one with the
// id alone when p is not a candidate.
func (m candidateMap) get(p peer.ID) Candidate {
	if c, ok := m[p]; ok {
		return c
	}
	return Candidate{ID: p}
}
