package erasure

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/immense-p2p/immense/internal/simtest"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	dto "github.com/prometheus/client_model/go"
)

// grind returns, for each shard 0..n-1, two ids of the form prefix-N that
// beat every honest candidate's score for that shard: what an attacker
// who knows the seed does (about len(honest) tries per id). Two, because
// an id ground for one shard may win an earlier one.
func grind(seed PlacementSeed, n int, honest []Candidate, prefix string) []peer.ID {
	var out []peer.ID
	tries := 0
	for i := range n {
		t := ShardTarget(seed, i)
		best := 1e300
		for _, c := range honest {
			best = min(best, placementScore(t, keyOf(c.ID), c.Availability))
		}
		for found := 0; found < 2; {
			id := peer.ID(fmt.Sprintf("%s-%d", prefix, tries))
			tries++
			if placementScore(t, keyOf(id), 1) < best {
				out = append(out, id)
				found++
			}
		}
	}
	return out
}

func count(holders []peer.ID, pred func(peer.ID) bool) int {
	n := 0
	for _, p := range holders {
		if pred(p) {
			n++
		}
	}
	return n
}

// TestPlaceOneHolderPerNet: an attacker who knows an object's seed grinds
// ids that beat every honest peer for each shard, always online, and runs
// them from one /24: it gets one holder. From three /24s, three. Without
// the network rule it would get every shard. Honest peers on distinct
// networks are placed exactly as without networks.
func TestPlaceOneHolderPerNet(t *testing.T) {
	const n = 12
	seed := PlacementSeed{42}
	honest := candidates(30)
	for i := range honest {
		honest[i].Net = fmt.Sprintf("9.%d.%d.0/24", i/256, i%256)
	}
	evil := grind(seed, n, honest, "evil")
	isEvil := func(p peer.ID) bool { return strings.HasPrefix(string(p), "evil") }
	attack := func(nets int) []Candidate {
		cs := append([]Candidate(nil), honest...)
		for j, id := range evil {
			cs = append(cs, Candidate{ID: id, Availability: 1, HasQuota: true, Net: fmt.Sprintf("6.6.%d.0/24", j%nets)})
		}
		return cs
	}

	noNets := attack(1)
	for i := range noNets {
		noNets[i].Net = ""
	}
	if got := count(Place(seed, n, noNets), isEvil); got != n {
		t.Fatalf("without the network rule the ground ids take %d of %d shards, want all: the grinding does not work", got, n)
	}
	for _, nets := range []int{1, 3} {
		got := Place(seed, n, attack(nets))
		if len(got) != n {
			t.Fatalf("%d attacker networks: %d holders, want %d", nets, len(got), n)
		}
		if e := count(got, isEvil); e != nets {
			t.Fatalf("%d attacker networks: the attacker holds %d shards, want %d (one per network)", nets, e, nets)
		}
	}

	// Honest spreading unchanged: distinct networks place as none at all.
	plain := candidates(30)
	if a, b := Place(seed, n, honest), Place(seed, n, plain); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("distinct networks changed the placement: %v vs %v", a, b)
	}

	// Repair and Put's replacements (PlaceShards with the holders
	// excluded) keep the rule: a network holding a shard is used up.
	first := Place(seed, 1, attack(1))
	ex := map[peer.ID]Candidate{}
	for _, c := range attack(1) {
		if c.ID == first[0] {
			ex[c.ID] = c
		}
	}
	if !isEvil(first[0]) {
		t.Fatalf("shard 0 went to %s, want a ground id", first[0])
	}
	if rest := PlaceShards(seed, []int{1, 2, 3}, attack(1), ex); count(rest, isEvil) != 0 {
		t.Fatalf("PlaceShards gave the attacker's network more shards: %v", rest)
	}
}

// TestPlaceNetExemptions: peers without a network (loopback, private or
// unknown addresses: a devnet, a LAN, a test) are all placeable, and so
// are peers with an operator-given zone however many share a /24 (an
// operator's servers in one data centre): zones spread those.
func TestPlaceNetExemptions(t *testing.T) {
	seed := PlacementSeed{3}
	local := candidates(20) // Net "": 127.0.0.1, 10/8, ...
	if got := Place(seed, 20, local); len(got) != 20 {
		t.Fatalf("devnet: %d of 20 placed", len(got))
	}
	servers := candidates(10, "dc-1", "dc-2")
	for i := range servers {
		servers[i].Net = "5.5.5.0/24"
	}
	got := Place(seed, 10, servers)
	if len(got) != 10 {
		t.Fatalf("zoned servers in one /24: %d of 10 placed", len(got))
	}
	zones := map[string]int{}
	for _, p := range got {
		for _, c := range servers {
			if c.ID == p {
				zones[c.Zone]++
			}
		}
	}
	if zones["dc-1"] != 5 || zones["dc-2"] != 5 {
		t.Fatalf("zones not spread: %v", zones)
	}
}

// TestDeclaredZonesNotTrusted: peers declaring fresh zones of their own
// would, if counted, keep every peer of an already used zone out (a zone
// is only eligible while it holds the fewest shards). Declared zones count
// only with DeclaredZones; the operator's Zones always.
func TestDeclaredZonesNotTrusted(t *testing.T) {
	seed := PlacementSeed{5}
	honest := candidates(30, "eu", "us", "asia")
	evil := candidates(6)
	declared := map[peer.ID]string{}
	for i := range evil {
		evil[i].ID = peer.ID(fmt.Sprintf("evil-%02d", i))
		evil[i].Net = fmt.Sprintf("7.7.%d.0/24", i) // many networks: the /24 rule alone does not stop it
		declared[evil[i].ID] = fmt.Sprintf("zone-%d", i)
	}
	operator := map[peer.ID]string{}
	for _, c := range honest {
		operator[c.ID] = c.Zone
	}
	isEvil := func(p peer.ID) bool { return strings.HasPrefix(string(p), "evil") }
	build := func(cfg Config) []Candidate {
		var cs []Candidate
		for _, c := range honest {
			c.Zone = cfg.zoneOf(c.ID, c.Zone)
			cs = append(cs, c)
		}
		for _, c := range evil {
			c.Zone = cfg.zoneOf(c.ID, declared[c.ID])
			cs = append(cs, c)
		}
		return cs
	}
	cfg := DefaultConfig()
	cfg.Zones = operator
	trusting := cfg
	trusting.DeclaredZones = true
	// Trusted declarations: after one shard per honest zone, only the
	// attacker's fresh zones are eligible: its 6 peers take 6 of 12.
	if got := count(Place(seed, 12, build(trusting)), isEvil); got != len(evil) {
		t.Fatalf("declared zones trusted: the attacker holds %d of 12, want all its %d peers chosen (the attack this test guards against)", got, len(evil))
	}
	// Default: the attacker's peers are zone-less; its share is what its
	// numbers give it (6 of 36 candidates: about 2 of 12).
	if got := count(Place(seed, 12, build(cfg)), isEvil); got > 3 {
		t.Fatalf("declared zones ignored: the attacker still holds %d of 12", got)
	}
	if z := cfg.zoneOf(evil[0].ID, "zone-0"); z != "" {
		t.Fatalf("a stranger's declared zone counted: %q", z)
	}
	if z := cfg.zoneOf(honest[0].ID, "elsewhere"); z != honest[0].Zone {
		t.Fatalf("operator zone %q, want %q", z, honest[0].Zone)
	}
}

// TestPlacementSeedStopsGrinding: ids ground against the object id (public:
// it is in the manifest's DHT key) win nothing special once placement uses
// the app's keyed seed.
func TestPlacementSeedStopsGrinding(t *testing.T) {
	key := newAppKey(bytes.Repeat([]byte{1}, 32), [32]byte{2})
	other := newAppKey(bytes.Repeat([]byte{3}, 32), [32]byte{4})
	obj := key.ObjectID("chat/history")
	seed := key.PlacementSeed(obj)
	if seed != key.PlacementSeed(obj) || seed == PlacementSeed(obj) || seed == other.PlacementSeed(obj) {
		t.Fatal("PlacementSeed: not deterministic, or not keyed")
	}
	const n = 16
	honest := candidates(48)
	for i := range honest {
		honest[i].Net = fmt.Sprintf("9.9.%d.0/24", i)
	}
	evil := grind(PlacementSeed(obj), n, honest, "evil")
	cs := append([]Candidate(nil), honest...)
	for j, id := range evil {
		cs = append(cs, Candidate{ID: id, Availability: 1, HasQuota: true, Net: fmt.Sprintf("6.%d.0.0/24", j)})
	}
	isEvil := func(p peer.ID) bool { return strings.HasPrefix(string(p), "evil") }
	if got := count(Place(PlacementSeed(obj), n, cs), isEvil); got != n {
		t.Fatalf("public seed: the ground ids hold %d of %d, want all", got, n)
	}
	// Keyed: the ground ids do no better than as many fresh ids, always
	// on too (32 at 1 among 48 at 0.5: about 57% of the shards by weight).
	fresh := append([]Candidate(nil), honest...)
	for j := range evil {
		fresh = append(fresh, Candidate{ID: peer.ID(fmt.Sprintf("evil-fresh-%d", j)), Availability: 1, HasQuota: true,
			Net: fmt.Sprintf("6.%d.0.0/24", j)})
	}
	ground, random := count(Place(seed, n, cs), isEvil), count(Place(seed, n, fresh), isEvil)
	t.Logf("keyed seed: ground ids hold %d of %d, fresh ids %d", ground, n, random)
	if ground > random+3 || ground > n-4 {
		t.Fatalf("keyed seed: the ground ids hold %d of %d (fresh ids: %d)", ground, n, random)
	}
}

func TestLoadZones(t *testing.T) {
	dir := t.TempDir()
	ids := make([]peer.ID, 2)
	for i, k := range simtest.Keys(t, rand.NewChaCha8([32]byte{9}), 2) {
		ids[i], _ = peer.IDFromPrivateKey(k)
	}
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", fmt.Sprintf("# servers\n\n%s eu-west\n  %s\tus-east  \n", ids[0], ids[1]))
	z, err := LoadZones(good)
	if err != nil || len(z) != 2 || z[ids[0]] != "eu-west" || z[ids[1]] != "us-east" {
		t.Fatalf("good file: %v %v", z, err)
	}
	for name, text := range map[string]string{
		"twice":    fmt.Sprintf("%s a\n%s b\n", ids[0], ids[0]),
		"bad id":   "notapeer a\n",
		"no zone":  fmt.Sprintf("%s\n", ids[0]),
		"too many": fmt.Sprintf("%s a b\n", ids[0]),
		"long":     fmt.Sprintf("%s %s\n", ids[0], strings.Repeat("z", 65)),
	} {
		if _, err := LoadZones(write(strings.ReplaceAll(name, " ", "-"), text)); err == nil || !strings.Contains(err.Error(), "line ") {
			t.Errorf("%s: %v, want an error naming the line", name, err)
		}
	}
	if _, err := LoadZones(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
	if _, err := LoadZones(write("huge", strings.Repeat("#", maxZonesFile+1))); err == nil {
		t.Error("oversized file accepted")
	}

	// The config merges the file into Zones; a peer in two zones is refused.
	cfg := DefaultConfig()
	cfg.ZonesFile = good
	cfg.Zones = map[peer.ID]string{ids[0]: "eu-west"}
	if err := cfg.validate(); err != nil || cfg.Zones[ids[1]] != "us-east" {
		t.Fatalf("merge: %v %v", cfg.Zones, err)
	}
	cfg.Zones = map[peer.ID]string{ids[0]: "elsewhere"}
	if err := cfg.Validate(); err == nil {
		t.Fatal("a peer in two zones accepted")
	}
	cfg = DefaultConfig()
	cfg.Zones = map[peer.ID]string{ids[0]: "two words"}
	if err := cfg.Validate(); err == nil {
		t.Fatal("a zone with a space accepted")
	}
}

func TestPeerBookNets(t *testing.T) {
	b := newPeerBook(DefaultConfig())
	b.maxNets = 3
	for i := range 5 {
		b.connected(peer.ID(fmt.Sprint(i)), fmt.Sprintf("1.1.%d.0/24", i))
	}
	if len(b.nets) != 3 {
		t.Fatalf("%d networks remembered, want at most 3", len(b.nets))
	}
	if got := b.lastNet("4"); got != "1.1.4.0/24" {
		t.Fatalf("last net %q", got)
	}
	b.connected("4", "2.2.2.0/24")
	if got := b.lastNet("4"); got != "2.2.2.0/24" || len(b.nets) != 3 {
		t.Fatalf("reconnected from elsewhere: %q (%d kept)", got, len(b.nets))
	}
	// The least recently connected is forgotten first: 2 reconnects, so
	// a newcomer pushes out 3, not 2.
	b.connected("2", "1.1.2.0/24")
	b.connected("new", "9.9.9.0/24")
	if b.lastNet("2") != "1.1.2.0/24" || b.lastNet("3") != "" || b.lastNet("4") != "2.2.2.0/24" {
		t.Fatalf("after a reconnect and a newcomer: 2=%q 3=%q 4=%q, want 3 forgotten", b.lastNet("2"), b.lastNet("3"), b.lastNet("4"))
	}
}

// TestSybilsOnOneSubnetHoldOneShard is the attack on the simulated
// network: 16 attacker hosts in 6.6.6.0/24, with identities ground to beat
// every honest peer for shards 0..7 of the object (the test knows the
// app's seed; a real attacker does not), connect to the writer. The writer
// measures their networks from its connections and gives them one shard;
// the honest peers, each in a /24 of its own, take the rest, and the
// object reads back.
func TestSybilsOnOneSubnetHoldOneShard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const honestN, shards = 9, 8 // honest includes the writer
		key := newAppKey(bytes.Repeat([]byte{7}, 32), [32]byte{8})
		seed := key.PlacementSeed(key.ObjectID("obj"))
		r := rand.NewChaCha8([32]byte{1})
		keys := simtest.Keys(t, r, honestN)
		var honest []Candidate
		for _, k := range keys {
			id, _ := peer.IDFromPrivateKey(k)
			honest = append(honest, Candidate{ID: id, Availability: 0.5})
		}
		// Grind: two identities per shard 0..shards-1 (one may win an
		// earlier shard) beating every honest one by a margin (the
		// tracker's estimates move a little as the writer connects).
		for i := range 2 * shards {
			tgt := ShardTarget(seed, i/2)
			best := 1e300
			for _, c := range honest {
				best = min(best, placementScore(tgt, keyOf(c.ID), 0.5))
			}
			for {
				k := simtest.Keys(t, r, 1)[0]
				id, _ := peer.IDFromPrivateKey(k)
				if placementScore(tgt, keyOf(id), 0.5) < best/2 {
					keys = append(keys, k)
					break
				}
			}
		}
		net := simtest.New(t, simtest.Config{Bandwidth: 1000 * simtest.Mbps, Latency: 5 * time.Millisecond})
		hs := simtest.NewHosts(t, net, keys...)
		hosts := make([]host.Host, len(keys))
		evil := map[peer.ID]bool{}
		for i := range hosts {
			if i < honestN {
				hosts[i] = hs.Start(i)
				continue
			}
			hosts[i] = hs.StartAt(i, net4(6, 6, 6, byte(10+i)), 8000)
			evil[hosts[i].ID()] = true
		}
		tn := buildTestNet(t, hosts, netOpts{key: func(int) *AppKey { return key }})
		writer := tn.nodes[0]
		ctx := context.Background()
		for _, h := range hosts[1:] {
			if err := writer.h.Connect(ctx, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}); err != nil {
				t.Fatal(err)
			}
		}
		cands, err := writer.svc.candidates(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if got := count(Place(seed, shards, stripNets(cands)), func(p peer.ID) bool { return evil[p] }); got != shards {
			t.Fatalf("without networks the ground ids would hold %d of shards 0..%d, want all", got, shards-1)
		}
		value := testValue(rand.New(rand.NewPCG(1, 2)), 100_000, "s")
		res, err := writer.svc.Put(ctx, "obj", value)
		if err != nil {
			t.Fatal(err)
		}
		var m dto.Metric
		if err := writer.svc.metrics.sharedNet.Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got < 2*shards-1 {
			t.Fatalf("shared-network candidates counted %v, want at least %d per lookup", got, 2*shards-1)
		}
		if e := count(res.Holders, func(p peer.ID) bool { return evil[p] }); e != 1 {
			t.Fatalf("the attacker's /24 holds %d shards of %d, want 1", e, len(res.Holders))
		}
		if len(res.Holders) != honestN+1 {
			t.Fatalf("%d holders, want every honest peer and one attacker (%d)", len(res.Holders), honestN+1)
		}
		got, err := tn.nodes[1].svc.Get(ctx, "obj")
		if err != nil || !bytes.Equal(got, value) {
			t.Fatalf("get: %v", err)
		}
	})
}

func net4(a, b, c, d byte) net.IP { return net.IPv4(a, b, c, d) }

func stripNets(cs []Candidate) []Candidate {
	out := append([]Candidate(nil), cs...)
	for i := range out {
		out[i].Net = ""
	}
	return out
}

// TestPlanRepairOneHolderPerNet: repair places lost shards off the networks
// of the holders that stay, including a holder that is not a candidate
// (the service adds those without quota, withHolders), and off those of
// each other.
func TestPlanRepairOneHolderPerNet(t *testing.T) {
	now := time.Unix(1e6, 0)
	p := Params{DataShards: 2, ParityShards: 2, SegmentSize: MinSegmentSize}
	pol := DefaultRepairPolicy()
	var holders []HolderStatus
	var cs []Candidate
	for i := range 4 {
		id := peer.ID(fmt.Sprintf("holder-%d", i))
		holders = append(holders, HolderStatus{Peer: id, Reachable: i >= 2, Complete: true, LastSeen: now, Availability: 0.9})
		// holder-3 is no candidate: only withHolders' entry gives its network.
		cs = append(cs, Candidate{ID: id, Net: fmt.Sprintf("1.1.%d.0/24", i), Availability: 0.9, HasQuota: i < 3})
	}
	// Holders 0 and 1 are gone for good.
	holders[0].Reachable, holders[0].LastSeen = false, time.Time{}
	holders[1].Reachable, holders[1].LastSeen = false, time.Time{}
	// Spare peers: many in holder-2's and holder-3's networks, always on,
	// and a few on networks of their own.
	for i := range 10 {
		cs = append(cs, Candidate{ID: peer.ID(fmt.Sprintf("crowd-%d", i)), Net: fmt.Sprintf("1.1.%d.0/24", 2+i%2), Availability: 1, HasQuota: true})
	}
	for i := range 3 {
		cs = append(cs, Candidate{ID: peer.ID(fmt.Sprintf("spare-%d", i)), Net: fmt.Sprintf("2.2.%d.0/24", i), Availability: 0.5, HasQuota: true})
	}
	plan := PlanRepair(PlacementSeed{9}, p, holders, cs, pol, now)
	if plan.Action != RepairNow || len(plan.Targets) != 2 {
		t.Fatalf("plan %+v", plan)
	}
	for _, tgt := range plan.Targets {
		if !strings.HasPrefix(string(tgt), "spare-") {
			t.Fatalf("repair target %s shares a network with a holder (targets %v)", tgt, plan.Targets)
		}
	}
}

// TestPlanPutFewNetworks: when the network rule leaves fewer holders than
// k+MinParity, Put lowers k as in a small network instead of planning
// shards nobody may take.
func TestPlanPutFewNetworks(t *testing.T) {
	cs := candidates(12)
	for i := range cs {
		cs[i].Net = fmt.Sprintf("3.3.%d.0/24", i%3)
		cs[i].Availability = 1
	}
	pol := PutPolicy{DataShards: 4, MinParity: 2, MaxShards: 32, Target: 0.9999}
	p, err := PlanPut(PlacementSeed{1}, cs, pol, 1<<10)
	if err != nil || p.K != 1 || p.M != 2 || len(p.Holders) != 3 {
		t.Fatalf("12 peers on 3 networks: %+v %v, want k=1 m=2 on 3 holders", p, err)
	}
}

// fakeConn is a connection with a remote address and nothing else.
type fakeConn struct {
	network.Conn
	remote ma.Multiaddr
}

func (c fakeConn) RemoteMultiaddr() ma.Multiaddr { return c.remote }

// TestConnNet: a peer's network comes from the addresses we are connected
// to it on: a loopback or private one exempts it (devnet, LAN), relayed
// connections count in the relay's network only when there is no direct
// one.
func TestConnNet(t *testing.T) {
	conns := func(addrs ...string) []network.Conn {
		var out []network.Conn
		for _, a := range addrs {
			out = append(out, fakeConn{remote: ma.StringCast(a)})
		}
		return out
	}
	const relayed = "/ip4/5.6.7.8/udp/4001/quic-v1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"
	for _, tc := range []struct {
		addrs []string
		want  string
	}{
		{nil, ""},
		{[]string{"/ip4/1.2.3.4/udp/4001/quic-v1"}, "1.2.3.0/24"},
		{[]string{"/ip4/127.0.0.1/udp/4001/quic-v1"}, ""},
		{[]string{"/ip4/9.9.9.9/tcp/1", "/ip4/192.168.1.5/tcp/1"}, ""},
		{[]string{"/ip4/9.9.9.9/tcp/1", "/ip4/1.2.3.4/tcp/1"}, "1.2.3.0/24"},
		{[]string{relayed}, "5.6.7.0/24"},
		{[]string{relayed, "/ip4/8.8.8.8/tcp/1"}, "8.8.8.0/24"},
	} {
		if got := connNet(conns(tc.addrs...)); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.addrs, got, tc.want)
		}
	}
}
