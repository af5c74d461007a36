package model

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// This file holds how one peer gets the celebrity post to its followers:
// directly, one copy after another on its uplink, or through a tree of
// browser relays. The functions are pure (every random draw is in the
// browsers they are given), so the tests compute small cases by hand.

// follower is one browser following the celebrity, as its peer sees it.
type follower struct {
	// access is the one-way latency of its access link.
	access time.Duration
	// up and down are its link's bandwidths in bit/s.
	up, down float64
	// capable: it may relay (the app and its user opted in, it has been
	// connected long enough, its link is not metered and its measured
	// upload is enough).
	capable bool
	// z is a standard normal: the quantile of the stack latency of the
	// delivery to it, the same in the runs with and without relays.
	z float64
	// leave is when it leaves (closes the tab), from publication, if it is
	// made a relay; negative: it stays.
	leave time.Duration
	// reattach is how long, after its relay left, it takes to be fed by
	// its peer again (within the documented bound).
	reattach time.Duration
}

// stack is what one delivery costs on a transport: a core's time, and the
// latency of the transport's stack, log-normal with median p50.
type stack struct {
	cpu   time.Duration
	p50   time.Duration
	sigma float64
}

// latency returns the stack latency at standard normal quantile z.
func (s stack) latency(z float64) time.Duration {
	return time.Duration(float64(s.p50) * math.Exp(s.sigma*z))
}

// peerFeed is one peer feeding its followers.
type peerFeed struct {
	// at is when the peer has the post (from publication).
	at time.Duration
	// perCopy is the time between two copies leaving the peer: the slower
	// of its CPU (cost per delivery over its cores) and its uplink.
	perCopy time.Duration
	// hop is the one-way latency from the peer to a browser of its region,
	// without the browser's access link.
	hop time.Duration
	// tr is the transport its browsers use.
	tr stack
	// bits of one copy.
	bits float64
}

// transmit returns the time bits take at bps.
func transmit(bits, bps float64) time.Duration {
	return time.Duration(bits / bps * float64(time.Second))
}

// direct returns when the k-th copy (from 1) the peer sends reaches b.
func (f *peerFeed) direct(k int, b *follower) time.Duration {
	return f.at + time.Duration(k)*f.perCopy + f.tr.latency(b.z) + f.hop + b.access + transmit(f.bits, b.down)
}

// feedDirect feeds every follower from the peer, in the order given (the
// peer's sessions in no particular order), and writes their arrival times
// into arr.
func feedDirect(f *peerFeed, bs []follower, arr []time.Duration) {
	for i := range bs {
		arr[i] = f.direct(i+1, &bs[i])
	}
}

// relayConf is how a peer builds its relay tree.
type relayConf struct {
	// budget is how many followers the peer feeds itself.
	budget int
	// fanOut bounds a relay's children, depth the relay hops below the
	// peer (a follower is at most depth+1 hops from its peer).
	fanOut, depth int
	// verify is what a relay spends on the post before forwarding it.
	verify time.Duration
	// dc is the browser-to-browser data channel; its cpu is multiplied by
	// cpuFactor for a browser.
	dc        stack
	cpuFactor float64
	// hop is the one-way latency between two browsers of the peer's
	// region, without their access links.
	hop time.Duration
}

// feedStats counts what a peer's feeding did.
type feedStats struct {
	peerCopies int // copies the peer sent itself
	relays     int // followers that forwarded the post to others
	viaRelay   int // followers fed by a relay (first attachment)
	maxDepth   int // hops from the peer of the deepest follower
	reattached int // followers whose relay left before sending to them
	left       int // relays that left before they had the post
}

// feedRelays feeds bs through a relay tree when there are more than the
// budget, and writes arrival times into arr (in tree order, not the order
// of bs; -1 for a relay that left before it had the post, which is no
// longer a follower). order is scratch space.
//
// The tree is laid out breadth first: capable followers first, fastest
// uplink first, then the others. Positions 0..budget-1 are the peer's own
// children; position i beyond them is the ((i-budget) mod fanOut)+1-th
// child of position (i-budget)/fanOut, if that one is capable and no
// deeper than depth; once no such parent is left, the rest are fed by the
// peer too (over its budget). Relays are served first by every parent, so
// a relay's subtree starts as early as it can. A relay that leaves before
// it has sent to a child leaves that child to reattach: the peer feeds it
// once the child's reattachment delay has passed.
func feedRelays(f *peerFeed, rc *relayConf, bs []follower, arr []time.Duration, order []int) feedStats {
	n := len(bs)
	var st feedStats
	if n <= rc.budget {
		feedDirect(f, bs, arr)
		st.peerCopies, st.maxDepth = n, min(n, 1)
		return st
	}
	order = order[:0]
	for i := range bs {
		order = append(order, i)
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ca, cb := bs[a].capable, bs[b].capable
		switch {
		case ca && !cb:
			return -1
		case cb && !ca:
			return 1
		case ca && cb:
			return cmp.Compare(bs[b].up, bs[a].up)
		}
		return 0
	})
	nCap := 0
	for nCap < n && bs[order[nCap]].capable {
		nCap++
	}
	// Lay the tree out first: who feeds whom, at which depth.
	parent := make([]int, n) // -1: the peer
	depth := make([]int, n)
	relay := make([]bool, n)
	overflow := false
	for pos := range n {
		p := -1
		if pos >= rc.budget && !overflow {
			p = (pos - rc.budget) / rc.fanOut
			if p >= nCap || depth[p] > rc.depth {
				p, overflow = -1, true
			}
		}
		parent[pos], depth[pos] = p, 1
		if p >= 0 {
			depth[pos], relay[p] = depth[p]+1, true
		}
		st.maxDepth = max(st.maxDepth, depth[pos])
	}
	// Then the arrivals, parents before children.
	peerSlot := 0
	for pos := range n {
		b := &bs[order[pos]]
		if p := parent[pos]; p < 0 {
			peerSlot++
			st.peerCopies++
			arr[pos] = f.direct(peerSlot, b)
		} else {
			k := (pos-rc.budget)%rc.fanOut + 1
			st.viaRelay++
			r := &bs[order[p]]
			perCopy := max(time.Duration(float64(rc.dc.cpu)*rc.cpuFactor), transmit(f.bits, r.up))
			// A relay that left before it had the post sends nothing
			// (arr[p] < 0); the child notices as when it leaves later.
			sendAt := arr[p] + rc.verify + time.Duration(k)*perCopy
			if r.leave >= 0 && (arr[p] < 0 || r.leave < sendAt) {
				st.reattached++
				st.peerCopies++
				// The peer sends it the post (from its history) once it
				// has reattached, and not before the peer has it.
				arr[pos] = max(f.at, r.leave+b.reattach) + f.perCopy + f.tr.latency(b.z) + f.hop + b.access + transmit(f.bits, b.down)
			} else {
				arr[pos] = sendAt + rc.dc.latency(b.z) + r.access + rc.hop + b.access + transmit(f.bits, b.down)
			}
		}
		if relay[pos] {
			st.relays++
			// A relay that leaves before it has the post is no longer a
			// follower.
			if b.leave >= 0 && b.leave < arr[pos] {
				arr[pos] = -1
				st.left++
			}
		}
	}
	return st
}
