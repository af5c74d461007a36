package model

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"time"
)

// fanout models gossipsub delivering one message to the subscribers of a
// topic.
//
// The mesh is a random graph in which every subscriber has degree D
// (random pairing of D stubs per node: gossipsub keeps each mesh between
// Dlo and Dhi around D). A node that receives the message spends PerHopCost
// (validation, signature check, queues), delivers it, and sends it to its
// mesh peers one after another on its uplink: the j-th copy leaves after
// j transmission times and arrives a link latency later. A node also
// gossips: at each of its next HistoryGossip heartbeats (its heartbeat
// phase is random) it sends IHAVE to Dlazy random subscribers, which ask
// with IWANT and get the message: three link latencies and a transmission
// after that heartbeat. Delivery times are the earliest arrival over all
// these paths (Dijkstra; every edge is FIFO, so earliest arrival is exact).
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

// member is one subscriber in the mesh.
type member struct {
	region int
	alive  bool
}

// publish returns, for every member, the time from publication to
// delivery; -1 for the publisher, dead members and members never reached.
func (f *fanout) publish(r *rand.Rand, ms []member, src int) []time.Duration {
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
	arr[src] = 0
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
		relax := func(v int, at time.Duration) {
			if ms[v].alive && at < arr[v] {
				arr[v] = at
				heap.Push(h, timeItem{at, int32(v)})
			}
		}
		// Eager push along the mesh, copies in random order on the uplink.
		nb := adj[deg[u]:deg[u+1]]
		order := r.Perm(len(nb))
		for j, k := range order {
			v := int(nb[k])
			relax(v, ready+time.Duration(j+1)*f.Tx+f.Latency(ms[u].region, ms[v].region))
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
					relax(v, hb+3*f.Latency(ms[u].region, ms[v].region)+f.Tx)
				}
			}
		}
	}
	out := make([]time.Duration, n)
	for i := range out {
		if i == src || !ms[i].alive || arr[i] == inf {
			out[i] = -1
			continue
		}
		out[i] = arr[i] + f.PerHopCost // validated before delivery
	}
	return out
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
