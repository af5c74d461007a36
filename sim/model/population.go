package model

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/immense-p2p/immense/sim/churn"
	"github.com/immense-p2p/immense/sim/scenario"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// longAgo is the time of the last transition of a node that has been in
// its initial state since before the run.
const longAgo = -100 * 365 * 24 * time.Hour

// point is a position in the Kademlia keyspace: SHA-256 of a peer id or a
// key, as kad-dht and erasure's placement both use.
type point [32]byte

func keyPoint(s string) point { return sha256.Sum256([]byte(s)) }

// xorLess reports whether a is closer to t than b.
func xorLess(a, b, t *point) bool {
	for i := range a {
		da, db := a[i]^t[i], b[i]^t[i]
		if da != db {
			return da < db
		}
	}
	return false
}

// cpl is the common prefix length of a and b in bits.
func cpl(a, b *point) int {
	for i := range a {
		if x := a[i] ^ b[i]; x != 0 {
			return i*8 + bits.LeadingZeros8(x)
		}
	}
	return 256
}

// population is every node of the model: identities, positions, online
// state. Slot i is a node; when its occupant leaves for good the slot gets
// a new identity (generation).
type population struct {
	sc      *scenario.Scenario
	sched   *churn.Schedule
	servers int
	ids     []peer.ID
	points  []point
	gens    []int32
	since   []time.Duration // time of the slot's last transition
	region  []int
	slotOf  map[peer.ID]int32 // current identities only
	idRNG   *rand.Rand
	index   keyIndex
	online  onlineSet
}

func newPopulation(sc *scenario.Scenario, seed uint64) (*population, error) {
	sched, regions, err := sc.Schedule(seed)
	if err != nil {
		return nil, err
	}
	n := sc.Nodes
	p := &population{
		sc:      sc,
		sched:   sched,
		servers: sc.Servers.Count,
		ids:     make([]peer.ID, n),
		points:  make([]point, n),
		gens:    make([]int32, n),
		since:   make([]time.Duration, n),
		region:  regions,
		slotOf:  make(map[peer.ID]int32, n),
		idRNG:   rand.New(rand.NewPCG(seed, 0x6964)), // "id"
	}
	// Nodes were in their initial state long before the run began.
	for i := range p.since {
		p.since[i] = longAgo
	}
	p.index.init(n)
	p.online.init(n)
	for i := range n {
		if err := p.newIdentity(i); err != nil {
			return nil, err
		}
		if p.sched.Online(i) {
			p.online.add(i)
		}
	}
	return p, nil
}

// newIdentity gives slot i a fresh Ed25519 peer id, exactly as a real peer
// would derive it from its public key.
func (p *population) newIdentity(i int) error {
	var raw [32]byte
	binary.LittleEndian.PutUint64(raw[0:], p.idRNG.Uint64())
	binary.LittleEndian.PutUint64(raw[8:], p.idRNG.Uint64())
	binary.LittleEndian.PutUint64(raw[16:], p.idRNG.Uint64())
	binary.LittleEndian.PutUint64(raw[24:], p.idRNG.Uint64())
	pub, err := crypto.UnmarshalEd25519PublicKey(raw[:])
	if err != nil {
		return fmt.Errorf("peer key: %w", err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		return fmt.Errorf("peer id: %w", err)
	}
	if old := p.ids[i]; old != "" {
		delete(p.slotOf, old)
		p.index.remove(p.points[i], int32(i))
	}
	p.ids[i] = id
	p.points[i] = keyPoint(string(id))
	p.slotOf[id] = int32(i)
	p.index.add(p.points[i], int32(i))
	return nil
}

// apply updates the population for one churn transition.
func (p *population) apply(t churn.Transition) error {
	p.since[t.Node] = t.At
	switch t.Kind {
	case churn.Up:
		p.online.add(t.Node)
	case churn.Down:
		p.online.remove(t.Node)
	case churn.Replace:
		p.gens[t.Node] = int32(t.Gen)
		return p.newIdentity(t.Node)
	}
	return nil
}

func (p *population) isOnline(i int) bool { return p.sched.Online(i) }

// closestOnline returns up to k online slots closest to t, closest first,
// skipping slots for which skip returns true.
func (p *population) closestOnline(t point, k int, skip func(int32) bool) []int32 {
	var out []int32
	p.index.walk(t, func(bucket []entry) bool {
		for _, e := range bucket {
			if p.sched.Online(int(e.slot)) && (skip == nil || !skip(e.slot)) {
				out = append(out, e.slot)
			}
		}
		return len(out) < k
	})
	// Buckets come in XOR order of their prefix; within the last ones the
	// order must be settled by full distance.
	sort.Slice(out, func(a, b int) bool { return xorLess(&p.points[out[a]], &p.points[out[b]], &t) })
	if len(out) > k {
		out = out[:k]
	}
	return out
}

// entry is one identity in the key index.
type entry struct {
	pt   point
	slot int32
}

// keyIndex buckets identities by the top bits of their point, about 16 per
// bucket, so that the peers XOR-closest to a key are found by visiting
// buckets in XOR order of their prefix: every peer in bucket t^x is closer
// to t than every peer in bucket t^(x+1).
type keyIndex struct {
	bits    uint
	buckets [][]entry
}

func (ix *keyIndex) init(n int) {
	ix.bits = 0
	for (n >> ix.bits) > 16 {
		ix.bits++
	}
	ix.buckets = make([][]entry, 1<<ix.bits)
}

func (ix *keyIndex) bucketOf(pt point) uint32 {
	if ix.bits == 0 {
		return 0
	}
	return binary.BigEndian.Uint32(pt[:4]) >> (32 - ix.bits)
}

func (ix *keyIndex) add(pt point, slot int32) {
	b := ix.bucketOf(pt)
	ix.buckets[b] = append(ix.buckets[b], entry{pt, slot})
}

func (ix *keyIndex) remove(pt point, slot int32) {
	b := ix.bucketOf(pt)
	bk := ix.buckets[b]
	for i, e := range bk {
		if e.slot == slot && e.pt == pt {
			bk[i] = bk[len(bk)-1]
			ix.buckets[b] = bk[:len(bk)-1]
			return
		}
	}
}

// walk visits buckets in XOR order from t until visit returns false.
func (ix *keyIndex) walk(t point, visit func([]entry) bool) {
	tb := ix.bucketOf(t)
	for x := uint32(0); x < uint32(len(ix.buckets)); x++ {
		if !visit(ix.buckets[tb^x]) {
			return
		}
	}
}

// onlineSet holds the online slots with O(1) add, remove and uniform
// sampling.
type onlineSet struct {
	list []int32
	pos  []int32 // index in list, -1 when absent
}

func (s *onlineSet) init(n int) {
	s.pos = make([]int32, n)
	for i := range s.pos {
		s.pos[i] = -1
	}
}

func (s *onlineSet) add(i int) {
	if s.pos[i] >= 0 {
		return
	}
	s.pos[i] = int32(len(s.list))
	s.list = append(s.list, int32(i))
}

func (s *onlineSet) remove(i int) {
	k := s.pos[i]
	if k < 0 {
		return
	}
	last := s.list[len(s.list)-1]
	s.list[k] = last
	s.pos[last] = k
	s.list = s.list[:len(s.list)-1]
	s.pos[i] = -1
}

func (s *onlineSet) len() int { return len(s.list) }

func (s *onlineSet) random(r *rand.Rand) int32 { return s.list[r.IntN(len(s.list))] }
