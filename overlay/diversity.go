package overlay

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/immense-p2p/immense/internal/netprefix"
	"github.com/libp2p/go-libp2p-kbucket/peerdiversity"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Diversity bounds how many routing-table entries one network may take.
// Peer ids cost nothing; public addresses cost something, and a /24 or a
// /16 more. Without a limit, one machine with a thousand identities,
// ground to be near a key or near this node, fills the buckets that route
// to it (an eclipse) and sees or drops every lookup through them.
//
// The /16 group is kad-dht's (peerdiversity.IPGroupKey: /16, or /8 for
// the legacy class-A blocks, or the AS for IPv6); the /24 (IPv4) or /48
// (IPv6) group is ours. Peers on loopback or private addresses are not
// limited: a devnet or a LAN runs all its peers there, and a stranger on
// the internet cannot appear with one.
type Diversity struct {
	// PerCPL24 and Table24 cap the peers of one /24 (IPv4) or /48 (IPv6)
	// in one bucket and in the whole table.
	PerCPL24 int
	Table24  int
	// PerCPL16 and Table16 cap the peers of one /16 group in one bucket
	// and in the whole table.
	PerCPL16 int
	Table16  int
}

// DefaultDiversity: at most 2 peers of one /24 in a bucket (of 20) and 5
// in the table, 3 and 10 of one /16. A household or a small hoster gets
// a handful of entries; a bucket always keeps 18 peers from elsewhere.
// IPFS's public DHT allows 2 and 6 per /16; ours is smaller and shares
// more address space (universities, clouds), so the /16 caps are looser.
func DefaultDiversity() Diversity {
	return Diversity{PerCPL24: 2, Table24: 5, PerCPL16: 3, Table16: 10}
}

func (d Diversity) validate() error {
	if d == (Diversity{}) {
		return nil // off
	}
	if d.PerCPL24 < 1 || d.Table24 < d.PerCPL24 || d.PerCPL16 < 1 || d.Table16 < d.PerCPL16 {
		return fmt.Errorf("Diversity: need 1 <= PerCPL24 <= Table24 and 1 <= PerCPL16 <= Table16, or all 0 (off); got %+v", d)
	}
	return nil
}

// diversityFilter is a peerdiversity.PeerIPGroupFilter keeping both the
// /16 groups the Filter hands it and the /24 groups of the same peers.
type diversityFilter struct {
	h host.Host
	d Diversity

	mu    sync.Mutex
	cpl16 map[int]map[peerdiversity.PeerIPGroupKey]int
	tab16 map[peerdiversity.PeerIPGroupKey]int
	cpl24 map[int]map[string]int
	tab24 map[string]int
	// counted holds the /24 groups a peer was counted in, so that its
	// removal undoes exactly that even if its addresses changed.
	counted map[peer.ID][]string
	// groups16 holds the /16 groups a peer was counted in.
	groups16 map[peer.ID]map[peerdiversity.PeerIPGroupKey]bool

	refused atomic.Uint64
}

func newDiversityFilter(h host.Host, d Diversity) *diversityFilter {
	return &diversityFilter{
		h: h, d: d,
		cpl16:   map[int]map[peerdiversity.PeerIPGroupKey]int{},
		tab16:   map[peerdiversity.PeerIPGroupKey]int{},
		cpl24:   map[int]map[string]int{},
		tab24:   map[string]int{},
		counted: map[peer.ID][]string{},

		groups16: map[peer.ID]map[peerdiversity.PeerIPGroupKey]bool{},
	}
}

// PeerAddresses are the addresses the peer is connected from: what it
// claims to listen on costs it nothing.
func (f *diversityFilter) PeerAddresses(p peer.ID) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, c := range f.h.Network().ConnsToPeer(p) {
		out = append(out, c.RemoteMultiaddr())
	}
	return out
}

// subnets24 are the /24 (or /48) groups of p's public addresses
// (internal/netprefix, the grouping shard placement uses too).
func (f *diversityFilter) subnets24(p peer.ID) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range f.PeerAddresses(p) {
		k := netprefix.OfAddr(a)
		if k != "" && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// groupLimitless tells whether a /16 group key stands for addresses that
// are not limited (kad-dht computes it from the same addresses).
func (f *diversityFilter) groupLimitless(p peer.ID, g peerdiversity.PeerIPGroupKey) bool {
	for _, a := range f.PeerAddresses(p) {
		ip, err := manet.ToIP(a)
		if err == nil && !netprefix.Exempt(ip) && peerdiversity.IPGroupKey(ip) == g {
			return false
		}
	}
	return true
}

func (f *diversityFilter) Allow(g peerdiversity.PeerGroupInfo) bool {
	if f.groupLimitless(g.Id, g.IPGroupKey) {
		return true
	}
	subs := f.subnets24(g.Id)
	f.mu.Lock()
	defer f.mu.Unlock()
	ok := f.tab16[g.IPGroupKey] < f.d.Table16 && f.cpl16[g.Cpl][g.IPGroupKey] < f.d.PerCPL16
	if _, already := f.counted[g.Id]; !already {
		for _, s := range subs {
			if f.tab24[s] >= f.d.Table24 || f.cpl24[g.Cpl][s] >= f.d.PerCPL24 {
				ok = false
			}
		}
	}
	if !ok {
		f.refused.Add(1)
	}
	return ok
}

func (f *diversityFilter) Increment(g peerdiversity.PeerGroupInfo) {
	if f.groupLimitless(g.Id, g.IPGroupKey) {
		return
	}
	subs := f.subnets24(g.Id)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.groups16[g.Id] == nil {
		f.groups16[g.Id] = map[peerdiversity.PeerIPGroupKey]bool{}
	}
	f.groups16[g.Id][g.IPGroupKey] = true
	f.tab16[g.IPGroupKey]++
	if f.cpl16[g.Cpl] == nil {
		f.cpl16[g.Cpl] = map[peerdiversity.PeerIPGroupKey]int{}
	}
	f.cpl16[g.Cpl][g.IPGroupKey]++
	if _, already := f.counted[g.Id]; already {
		return // a peer with several /16 groups: its /24s count once
	}
	f.counted[g.Id] = subs
	if f.cpl24[g.Cpl] == nil {
		f.cpl24[g.Cpl] = map[string]int{}
	}
	for _, s := range subs {
		f.tab24[s]++
		f.cpl24[g.Cpl][s]++
	}
}

func (f *diversityFilter) Decrement(g peerdiversity.PeerGroupInfo) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.groups16[g.Id][g.IPGroupKey] {
		delete(f.groups16[g.Id], g.IPGroupKey)
		if len(f.groups16[g.Id]) == 0 {
			delete(f.groups16, g.Id)
		}
		dec(f.tab16, g.IPGroupKey)
		if m := f.cpl16[g.Cpl]; m != nil {
			dec(m, g.IPGroupKey)
			if len(m) == 0 {
				delete(f.cpl16, g.Cpl)
			}
		}
	}
	subs, ok := f.counted[g.Id]
	if !ok {
		return
	}
	delete(f.counted, g.Id)
	for _, s := range subs {
		dec(f.tab24, s)
		if m := f.cpl24[g.Cpl]; m != nil {
			dec(m, s)
			if len(m) == 0 {
				delete(f.cpl24, g.Cpl)
			}
		}
	}
}

func dec[K comparable](m map[K]int, k K) {
	if m[k] <= 1 {
		delete(m, k)
		return
	}
	m[k]--
}
