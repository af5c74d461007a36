package erasure

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/libp2p/go-libp2p/core/routing"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// handedOff is what a handoff did to one object.
type handedOff struct {
	key   string
	value []byte
	v1    *Manifest
	index int     // the departed holder's index
	to    peer.ID // the peer it handed the index to
}

// TestHandoff is the planned-departure scenario of issue 6 on 10 simnet
// hosts: a writer puts objects (k=3, m=2 on 5 of the 10 peers), one
// holder hands its shards off and leaves. Then
//
//   - (a) Health reports every affected object at full redundancy, through
//     the hint, at the same manifest version: nothing was regenerated;
//   - (d) the receiving peer's GC keeps the handed-off shards although the
//     manifest does not place them there yet;
//   - (b) Get works with m more holders refusing, so k-1 of the placed
//     holders answer and the handed-off shard is needed (and served);
//   - (c) the writer's repair pass adopts the new holder into version 2,
//     same data version and hashes, without regenerating a shard.
func TestHandoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 10, netOpts{config: func(i int, c *Config, sc *StoreConfig) {
			c.DataShards, c.MinParity, c.MaxShards = 3, 2, 5
		}})
		ctx := context.Background()
		writer := tn.nodes[0]
		r := rand.New(rand.NewPCG(6, 6))
		var objs []*handedOff
		holds := map[peer.ID]int{}
		for i, size := range []int{1, 100 << 10, 2<<20 + 512<<10, 300 << 10} {
			o := &handedOff{key: fmt.Sprintf("obj-%d", i), value: testValue(r, size, "h")}
			res, err := writer.svc.Put(ctx, o.key, o.value)
			if err != nil {
				t.Fatal(err)
			}
			if res.K != 3 || res.M != 2 {
				t.Fatalf("put %s: k=%d m=%d, want 3 and 2", o.key, res.K, res.M)
			}
			for _, p := range res.Holders {
				holds[p]++
			}
			objs = append(objs, o)
		}
		// The leaver: the peer other than the writer holding most objects.
		var leaver *testNode
		for _, nd := range tn.nodes[1:] {
			if leaver == nil || holds[nd.h.ID()] > holds[leaver.h.ID()] {
				leaver = nd
			}
		}
		lid := leaver.h.ID()
		var affected []*handedOff
		for _, o := range objs {
			m, err := writer.svc.Manifest(ctx, o.key)
			if err != nil {
				t.Fatal(err)
			}
			o.v1 = m
			if o.index = slices.Index(m.Placement, lid); o.index >= 0 {
				affected = append(affected, o)
			}
		}
		t.Logf("leaver holds shards of %d of %d objects", len(affected), len(objs))

		res, err := leaver.svc.Handoff(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.Held != len(affected) || res.HandedOff != len(affected) || res.Failed != 0 || res.Stale != 0 {
			t.Fatalf("handoff: %+v, want %d held and handed off", res, len(affected))
		}
		if got := counterValue(leaver.svc.metrics.handoffShards.WithLabelValues("handed_off")); int(got) != res.Shards {
			t.Fatalf("handoff_shards_total{handed_off} = %v, %d shards sent", got, res.Shards)
		}
		// While leaving, it takes no new shard.
		junk := []byte("junk")
		if err := writer.svc.client.Store(ctx, lid, HashShard(junk), ShardRef{}, junk); !errors.Is(err, ErrBusy) {
			t.Fatalf("a leaving peer accepted a shard: %v", err)
		}
		for _, o := range affected {
			b, err := tn.records.GetValue(ctx, HintKey(o.v1.Namespace(), o.v1.Object, o.index, lid))
			if err != nil {
				t.Fatalf("%s: no hint: %v", o.key, err)
			}
			h, err := ParseHint(b)
			if err != nil {
				t.Fatal(err)
			}
			if h.DataVersion != o.v1.DataVersion || h.New == lid || slices.Contains(o.v1.Placement, h.New) {
				t.Fatalf("%s: hint %+v for a manifest placing on %v", o.key, h, o.v1.Placement)
			}
			o.to = h.New
			for seg := range o.v1.Hashes {
				if _, ok := tn.node(o.to).store.Stat(o.v1.Hashes[seg][o.index]); !ok {
					t.Fatalf("%s: new holder lacks segment %d", o.key, seg)
				}
			}
		}
		tn.takeDown(lid)

		// (a) Full redundancy through the hint, nothing rewritten.
		for _, o := range affected {
			h, err := writer.svc.Health(ctx, o.key)
			if err != nil {
				t.Fatal(err)
			}
			hh := h.Holders[o.index]
			if h.Reachable != h.Total || h.Version != 1 || h.Repair != RepairNone || hh.Peer != o.to || !hh.HandedOff {
				t.Fatalf("%s after the handoff: %d of %d reachable, version %d, repair %v, holder %d: %+v",
					o.key, h.Reachable, h.Total, h.Version, h.Repair, o.index, hh)
			}
		}

		// (d) The receivers' GC keeps what was handed to them.
		time.Sleep(DevnetConfig().GCMinAge + time.Second)
		receivers := map[peer.ID]bool{}
		for _, o := range affected {
			receivers[o.to] = true
		}
		for p := range receivers {
			nd := tn.node(p)
			before := nd.store.Len()
			removed, _, err := nd.svc.CollectGarbage(ctx)
			if err != nil || removed != 0 || nd.store.Len() != before {
				t.Fatalf("GC on a receiver removed %d shards (%v)", removed, err)
			}
		}

		// (b) With m more holders refusing, only k-1 placed holders answer:
		// reads need the handed-off shard.
		for _, o := range affected {
			// The reader holds nothing of it: every shard crosses the network.
			var reader *testNode
			for _, nd := range tn.nodes {
				if p := nd.h.ID(); p != lid && p != o.to && !slices.Contains(o.v1.Placement, p) {
					reader = nd
					break
				}
			}
			var refusing []*testNode
			for _, p := range o.v1.Placement {
				if p != lid && len(refusing) < o.v1.Params.ParityShards {
					refusing = append(refusing, tn.node(p))
				}
			}
			if len(refusing) != o.v1.Params.ParityShards {
				t.Fatalf("%s: only %d holders to turn off", o.key, len(refusing))
			}
			for _, nd := range refusing {
				nd.h.SetStreamHandler(ShardProtocol, func(st network.Stream) { st.Reset() })
			}
			served := counterValue(tn.node(o.to).svc.metrics.shardsServed)
			got, err := reader.svc.Get(ctx, o.key)
			if err != nil {
				t.Fatalf("%s with %d holders refusing and one handed off: %v", o.key, len(refusing), err)
			}
			if !bytes.Equal(got, o.value) {
				t.Fatalf("%s: value differs", o.key)
			}
			if d := counterValue(tn.node(o.to).svc.metrics.shardsServed) - served; int(d) != len(o.v1.Hashes) {
				t.Fatalf("%s: the new holder served %v shards, want one per segment (%d)", o.key, d, len(o.v1.Hashes))
			}
			for _, nd := range refusing {
				nd.h.SetStreamHandler(ShardProtocol, nd.svc.server.handle)
			}
		}

		// (c) The writer's repair adopts the new holders: no regeneration.
		for _, o := range affected {
			plan, err := writer.svc.RepairObject(ctx, o.v1.Object)
			if err != nil {
				t.Fatalf("%s: repair: %v", o.key, err)
			}
			if plan.Action != RepairNone || len(plan.Regenerate) != 0 {
				t.Fatalf("%s: repair plan %+v", o.key, plan)
			}
			m, err := writer.svc.Manifest(ctx, o.key)
			if err != nil {
				t.Fatal(err)
			}
			want := slices.Clone(o.v1.Placement)
			want[o.index] = o.to
			if m.Version != 2 || m.DataVersion != 1 || !slices.Equal(m.Placement, want) ||
				fmt.Sprint(m.Hashes) != fmt.Sprint(o.v1.Hashes) {
				t.Fatalf("%s after repair: version %d, data version %d, placement %v (want %v), same hashes %v",
					o.key, m.Version, m.DataVersion, m.Placement, want, fmt.Sprint(m.Hashes) == fmt.Sprint(o.v1.Hashes))
			}
			h, err := writer.svc.Health(ctx, o.key)
			if err != nil || h.Reachable != h.Total || h.Holders[o.index].HandedOff {
				t.Fatalf("%s after adoption: %+v %v", o.key, h, err)
			}
		}
		if n := counterValue(writer.svc.metrics.repairedShards); n != 0 {
			t.Fatalf("repair regenerated %v shards", n)
		}
		if n := counterValue(writer.svc.metrics.adoptions); int(n) != len(affected) {
			t.Fatalf("%v adoptions, want %d", n, len(affected))
		}
		// Another app peer (not the writer, not the leaver) reads every object.
		reader := tn.nodes[9]
		if reader == leaver {
			reader = tn.nodes[8]
		}
		for _, o := range objs {
			if got, err := reader.svc.Get(ctx, o.key); err != nil || !bytes.Equal(got, o.value) {
				t.Fatalf("%s read after adoption: %v", o.key, err)
			}
		}
	})
}

// slowRecords answers every GetValue after a delay, as a DHT lookup over
// the internet takes.
type slowRecords struct {
	Records
	delay time.Duration
}

func (r slowRecords) GetValue(ctx context.Context, key string, opts ...routing.Option) ([]byte, error) {
	time.Sleep(r.delay)
	return r.Records.GetValue(ctx, key, opts...)
}

// junkHandoff sets up a leaving volunteer among 10 nodes (k=3, m=2) that
// holds shards of 4 real objects of 10 KiB (3.4 KiB shards) and then, after
// prepare, count shards of junkSize bytes under made-up objects, each a
// DHT lookup of 200 ms; it returns the leaver, how many real objects it
// holds, and its handoff within a 2 s timeout, which fits a fraction of
// the lookups. keys gives the nodes' app keys (nil: one shared key).
func junkHandoff(t *testing.T, keys func(int) *AppKey, count, junkSize int, prepare func(*testNode)) (*testNode, int, HandoffResult) {
	t.Helper()
	tn := newTestNet(t, 10, netOpts{key: keys, config: func(i int, c *Config, sc *StoreConfig) {
		c.DataShards, c.MinParity, c.MaxShards = 3, 2, 5
	}})
	ctx := context.Background()
	writer := tn.nodes[0]
	r := rand.New(rand.NewPCG(7, 7))
	holds := map[peer.ID]int{}
	for i := range 4 {
		res, err := writer.svc.Put(ctx, fmt.Sprintf("obj-%d", i), testValue(r, 10<<10, "j"))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range res.Holders {
			holds[p]++
		}
	}
	var leaver *testNode
	for _, nd := range tn.nodes[1:] {
		if leaver == nil || holds[nd.h.ID()] > holds[leaver.h.ID()] {
			leaver = nd
		}
	}
	if prepare != nil {
		prepare(leaver)
	}
	junk := make([]byte, junkSize)
	for i := range count {
		junk[0], junk[1] = byte(i), byte(i>>8)
		ref := ShardRef{Namespace: NamespaceID{9, byte(i)}, Object: ObjectID{byte(i >> 8), byte(i)}}
		if err := leaver.store.Put(HashShard(junk), ref, junk); err != nil {
			t.Fatal(err)
		}
	}
	leaver.svc.records = slowRecords{leaver.svc.records, 200 * time.Millisecond}
	leaver.svc.cfg.HandoffTimeout = 2 * time.Second
	res, _ := leaver.svc.Handoff(ctx)
	return leaver, holds[leaver.h.ID()], res
}

// TestHandoffJunkLast: a leaving volunteer holding a stranger's junk (500
// tiny shards under made-up objects) besides real shards hands off every
// real one within a timeout that fits a fraction of the lookups. Before,
// objects went in map order, and the junk used up the timeout. Then GC
// removes the junk once its manifests have been missing for the grace,
// and forgets that they were missing.
func TestHandoffJunkLast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		leaver, affected, res := junkHandoff(t, nil, 500, 4, nil)
		if res.HandedOff != affected || res.Held != affected {
			t.Fatalf("handoff beside 500 junk objects: %+v, want all %d real ones handed off", res, affected)
		}
		if res.Unvisited == 0 {
			t.Errorf("every junk object looked up within the timeout (%+v): the test does not stall", res)
		}

		ctx := context.Background()
		leaver.svc.records = leaver.svc.records.(slowRecords).Records
		leaver.svc.cfg.GCMinAge, leaver.svc.cfg.GCMissingGrace = 0, time.Minute
		if _, _, err := leaver.svc.CollectGarbage(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Minute)
		removed, _, err := leaver.svc.CollectGarbage(ctx)
		if err != nil || removed < 500 {
			t.Fatalf("gc of the junk: removed %d, %v; want the 500", removed, err)
		}
		leaver.svc.missing.mu.Lock()
		left := len(leaver.svc.missing.m)
		leaver.svc.missing.mu.Unlock()
		if left != 0 {
			t.Errorf("%d missing manifests remembered after their shards went", left)
		}
	})
}

// TestHandoffPlacedFirst: on a volunteer of another app, junk heavier than
// the real objects (8 KiB a made-up object against 3.4 KiB, fresh, so that
// GC has not found its manifest missing yet) still goes after the objects
// whose manifest a GC pass found placing shards here. Before, handoff went
// by bytes held, and such junk went first (an attacker's review: HandedOff
// 0).
func TestHandoffPlacedFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		keys := make([]*AppKey, 10) // volunteers of other apps: the objects are not in their namespace
		for i := range keys {
			var err error
			if keys[i], err = GenerateAppKey(); err != nil {
				t.Fatal(err)
			}
		}
		_, affected, res := junkHandoff(t, func(i int) *AppKey { return keys[i] }, 300, 8<<10, func(leaver *testNode) {
			leaver.svc.cfg.GCMinAge = 0
			if _, _, err := leaver.svc.CollectGarbage(context.Background()); err != nil { // finds the real objects placed here
				t.Fatal(err)
			}
		})
		if res.HandedOff != affected || res.Held != affected {
			t.Fatalf("handoff beside 300 objects of 8 KiB junk: %+v, want all %d real ones handed off", res, affected)
		}
	})
}

// TestHandoffHolderReturns: a holder that handed its shards off but did
// not leave (or came back before the writer adopted the new holder) still
// serves them, and the receiver's GC then drops its redundant copy.
func TestHandoffHolderReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn, writer, m := smallHandoffNet(t, testValue(rand.New(rand.NewPCG(7, 7)), 1<<20+10, "r"))
		ctx := context.Background()
		holder, idx, receiver := handOffOne(t, tn, writer, m)
		time.Sleep(DevnetConfig().GCMinAge + time.Second)
		removed, _, err := receiver.svc.CollectGarbage(ctx)
		if err != nil || removed != len(m.Hashes) {
			t.Fatalf("receiver GC removed %d of its %d handed-off shards (%v)", removed, len(m.Hashes), err)
		}
		if removed, _, _ := holder.svc.CollectGarbage(ctx); removed != 0 {
			t.Fatalf("the holder's GC removed %d shards", removed)
		}
		h, err := writer.svc.Health(ctx, "obj")
		if err != nil || h.Reachable != h.Total || h.Holders[idx].HandedOff || h.Holders[idx].Peer != holder.h.ID() {
			t.Fatalf("health: %+v %v", h, err)
		}
	})
}

// TestHandoffDelete: deleting an object whose holder handed its shards off
// and left deletes them on the peer the hint names, not only on the holders
// the manifest places.
func TestHandoffDelete(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn, writer, m := smallHandoffNet(t, testValue(rand.New(rand.NewPCG(8, 8)), 200<<10, "d"))
		ctx := context.Background()
		leaver, idx, receiver := handOffOne(t, tn, writer, m)
		tn.takeDown(leaver.h.ID())
		if err := writer.svc.Delete(ctx, "obj"); err != nil {
			t.Fatal(err)
		}
		for seg := range m.Hashes {
			if _, ok := receiver.store.Stat(m.Hashes[seg][idx]); ok {
				t.Fatalf("the handed-off shard of segment %d survived the delete", seg)
			}
		}
		for i, p := range m.Placement {
			if p == leaver.h.ID() {
				continue
			}
			if _, ok := tn.node(p).store.Stat(m.Hashes[0][i]); ok {
				t.Fatalf("holder %d kept its shard", i)
			}
		}
	})
}

// smallHandoffNet starts 6 peers storing with k=2, m=2, and has the first
// write value as "obj". It returns the object's manifest.
func smallHandoffNet(t *testing.T, value []byte) (*testNet, *testNode, *Manifest) {
	t.Helper()
	tn := newTestNet(t, 6, netOpts{config: func(i int, c *Config, sc *StoreConfig) {
		c.DataShards, c.MinParity, c.MaxShards = 2, 2, 4
	}})
	writer := tn.nodes[0]
	if _, err := writer.svc.Put(context.Background(), "obj", value); err != nil {
		t.Fatal(err)
	}
	m, err := writer.svc.Manifest(context.Background(), "obj")
	if err != nil {
		t.Fatal(err)
	}
	return tn, writer, m
}

// handOffOne has the first holder of m other than the writer hand its
// shards off, and returns it, its shard index and the peer its hint names.
func handOffOne(t *testing.T, tn *testNet, writer *testNode, m *Manifest) (holder *testNode, idx int, receiver *testNode) {
	t.Helper()
	ctx := context.Background()
	for i, p := range m.Placement {
		if p != writer.h.ID() {
			holder, idx = tn.node(p), i
			break
		}
	}
	if hr, err := holder.svc.Handoff(ctx); err != nil || hr.HandedOff != 1 {
		t.Fatalf("handoff: %+v %v", hr, err)
	}
	b, err := tn.records.GetValue(ctx, HintKey(m.Namespace(), m.Object, idx, holder.h.ID()))
	if err != nil {
		t.Fatal(err)
	}
	hint, err := ParseHint(b)
	if err != nil {
		t.Fatal(err)
	}
	return holder, idx, tn.node(hint.New)
}

// TestHandoffNoTarget: when every peer already holds a shard of the object
// there is nobody to hand to; the handoff says so and publishes nothing.
func TestHandoffNoTarget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 4, netOpts{config: func(i int, c *Config, sc *StoreConfig) {
			c.DataShards, c.MinParity, c.MaxShards = 2, 2, 4
		}})
		ctx := context.Background()
		if _, err := tn.nodes[0].svc.Put(ctx, "obj", []byte("everywhere")); err != nil {
			t.Fatal(err)
		}
		leaver := tn.nodes[2]
		res, err := leaver.svc.Handoff(ctx)
		if err != nil || res.Held != 1 || res.Failed != 1 || res.HandedOff != 0 || res.Shards != 0 {
			t.Fatalf("handoff with no spare peer: %+v %v", res, err)
		}
		if n := counterValue(leaver.svc.metrics.handoffShards.WithLabelValues("failed")); n != 1 {
			t.Fatalf("handoff_shards_total{failed} = %v", n)
		}
		m, _ := tn.nodes[0].svc.Manifest(ctx, "obj")
		idx := slices.Index(m.Placement, leaver.h.ID())
		if _, err := tn.records.GetValue(ctx, HintKey(m.Namespace(), m.Object, idx, leaver.h.ID())); err == nil {
			t.Fatal("a hint was published")
		}
	})
}

// counterValue reads a counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
