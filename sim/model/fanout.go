package model

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"time"
)

// fanout models gossipsub delivering one message to the subscribers of a
// topic, as the overlay runs it (go-libp2p-pubsub's GossipSubRouter.rpcs).
//
// The mesh is a random graph in which every subscriber has degree D
// (random pairing of D stubs per node: gossipsub keeps each mesh between
// Dlo and Dhi around D). The publisher floods: the overlay publishes with
// pubsub.WithFloodPublish(true), so it sends the message to every
// subscriber it is connected to, not only to its mesh peers; its
// connections are its mesh peers and random other subscribers, as many as
// the publish call is given. A node that receives the message spends
// PerHopCost (validation, signature check, queues), delivers it, and
// forwards it to its mesh peers except the one it came from and the
// publisher. Every node sends its copies one after another on its uplink:
// the j-th copy leaves after j transmission times and arrives a link
// latency later. A node also gossips: at each of its next HistoryGossip
// heartbeats (its heartbeat phase is random) it sends IHAVE to Dlazy random
// subscribers, which ask with IWANT and get the message: three link
// latencies and a transmission after that heartbeat. Delivery times are the
// earliest arrival over all these paths (Dijkstra; every edge is FIFO, so
// earliest arrival is exact).
//
// Members that are gone since the mesh last changed (offline now, online at
// their neighbours' last heartbeat) stay in the mesh but never forward.
type fanout struct {
	D, Dlazy, HistoryGossip int
	Heartbeat, PerHopCost   time.Duration
	// Tx is the time one copy of the message takes on an uplink.
	Tx time.Duration
	// Latency is the one-way latency between two regions.
	Latency func(a, b int) time.Duration
}

// delivery is when a member got the message, and whether it got it
// straight from the publisher.
type delivery struct {
	at     time.Duration // -1: not delivered (publisher, dead, unreached)
	direct bool
}

// member is one subscriber in the mesh.
type member struct {
	region int
	alive  bool
	// tx, if set, is this member's own time per copy on its uplink
	// (the celebrity model's peers have uplinks of their own); 0 uses the
	// fanout's Tx.
	tx time.Duration
}

// publish returns, for every member, the time from publication to
// delivery. The publisher src is connected to conns other members (its
// flood-publish reach; at least its mesh peers, at most every member).
func (f *fanout) publish(r *rand.Rand, ms []member, src, conns int) []delivery {
	n := len(ms)
	// Random D-regular-ish mesh: pair up D stubs per node at random.
	stubs := make([]int32, 0, n*f.D)
	for i := range n {
		for range f.D {
			stubs = append(stubs, int32(i))
		}
	}
	r.Shuffle(len(stubs), func(a, b int) { stubs[a], stubs[b] = stubs[b], stubs[a] })
	deg := make([]int32, n+1)
	for i := 0; i+1 < len(stubs); i += 2 {
		if stubs[i] != stubs[i+1] {
			deg[stubs[i]+1]++
			deg[stubs[i+1]+1]++
		}
	}
	for i := range n {
		deg[i+1] += deg[i] // CSR offsets
	}
	adj := make([]int32, deg[n])
	fill := append([]int32(nil), deg[:n]...)
	for i := 0; i+1 < len(stubs); i += 2 {
		a, b := stubs[i], stubs[i+1]
		if a != b {
			adj[fill[a]] = b
			fill[a]++
			adj[fill[b]] = a
			fill[b]++
		}
	}

	const inf = time.Duration(math.MaxInt64)
	arr := make([]time.Duration, n)
	for i := range arr {
		arr[i] = inf
	}
	done := make([]bool, n)
	direct := make([]bool, n)
	from := make([]int32, n) // whom the earliest copy came from
	arr[src] = 0
	from[src] = -1
	h := &timeHeap{{0, int32(src)}}
	for h.Len() > 0 {
		it := heap.Pop(h).(timeItem)
		u := int(it.node)
		if done[u] || it.at != arr[u] {
			continue
		}
		done[u] = true
		if !ms[u].alive {
			continue
		}
		ready := arr[u] + f.PerHopCost
		relax := func(v int, at time.Duration, eager bool) {
			if ms[v].alive && at < arr[v] {
				arr[v] = at
				from[v] = int32(u)
				direct[v] = eager && u == src
				heap.Push(h, timeItem{at, int32(v)})
			}
		}
		// Eager push, copies in random order on the uplink: the publisher
		// to every member it is connected to, a forwarder to its mesh
		// peers but the one it got the message from and the publisher.
		var to []int32
		if u == src {
			to = f.floodTargets(r, ms, adj[deg[u]:deg[u+1]], src, conns)
		} else {
			for _, v := range adj[deg[u]:deg[u+1]] {
				if v != from[u] && int(v) != src && ms[v].alive {
					to = append(to, v)
				}
			}
		}
		r.Shuffle(len(to), func(a, b int) { to[a], to[b] = to[b], to[a] })
		tx := f.Tx
		if ms[u].tx > 0 {
			tx = ms[u].tx
		}
		for j, v := range to {
			relax(int(v), ready+time.Duration(j+1)*tx+f.Latency(ms[u].region, ms[v].region), true)
		}
		// Lazy gossip at the next heartbeats.
		if f.Dlazy > 0 && f.Heartbeat > 0 {
			phase := time.Duration(r.Int64N(int64(f.Heartbeat)))
			next := ready + (phase-ready%f.Heartbeat+f.Heartbeat)%f.Heartbeat
			for k := range f.HistoryGossip {
				hb := next + time.Duration(k)*f.Heartbeat
				for range f.Dlazy {
					v := r.IntN(n)
					if v == u {
						continue
					}
					relax(v, hb+3*f.Latency(ms[u].region, ms[v].region)+tx, false)
				}
			}
		}
	}
	out := make([]delivery, n)
	for i := range out {
		if i == src || !ms[i].alive || arr[i] == inf {
			out[i] = delivery{at: -1}
			continue
		}
		out[i] = delivery{at: arr[i] + f.PerHopCost, direct: direct[i]} // validated before delivery
	}
	return out
}

// floodTargets returns the members the publisher is connected to: its mesh
// peers, then random other live members up to conns in all. A member gone
// since the last heartbeat has closed its connections: the publisher no
// longer sends to it, even if its mesh still lists it.
func (f *fanout) floodTargets(r *rand.Rand, ms []member, mesh []int32, src, conns int) []int32 {
	in := map[int32]bool{int32(src): true}
	var to []int32
	for _, v := range mesh {
		if !in[v] && ms[v].alive {
			in[v] = true
			to = append(to, v)
		}
	}
	var rest []int32
	for i := range ms {
		if !in[int32(i)] && ms[i].alive {
			rest = append(rest, int32(i))
		}
	}
	need := min(conns-len(to), len(rest))
	// A partial Fisher-Yates shuffle picks need of rest at random.
	for j := 0; j < need; j++ {
		k := j + r.IntN(len(rest)-j)
		rest[j], rest[k] = rest[k], rest[j]
		to = append(to, rest[j])
	}
	return to
}

type timeItem struct {
	at   time.Duration
	node int32
}

// timeHeap orders by time, then node, so runs are reproducible.
type timeHeap []timeItem

func (h timeHeap) Len() int { return len(h) }
func (h timeHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].node < h[j].node
}
func (h timeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timeHeap) Push(x any)   { *h = append(*h, x.(timeItem)) }
func (h *timeHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}
