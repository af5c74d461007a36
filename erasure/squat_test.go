package erasure

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
)

// TestShardSquatting: a peer without the app key fetches a shard of
// someone else's object and stores the same bytes on holder Q under its
// own namespace, before the owner's repair moves that index to Q. The
// owner's store still records its ref; the squatter's delete removes only
// its own ref, a second one is refused (unauthorized, counted), and the
// squatter's tombstone makes GC drop only its ref. The owner reads
// throughout and deletes its shard from Q in the end.
func TestShardSquatting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 8
		owner, _ := GenerateAppKey()
		squatterKey, _ := GenerateAppKey()
		regs := make([]*prometheus.Registry, n)
		tn := newTestNet(t, n, netOpts{
			key: func(i int) *AppKey {
				if i == n-1 {
					return squatterKey
				}
				return owner
			},
			config: func(i int, c *Config, _ *StoreConfig) {
				regs[i] = prometheus.NewRegistry()
				c.Registerer = regs[i]
				c.MaxShards = 6
			},
		})
		ctx := context.Background()
		writer, squatter := tn.nodes[0].svc, tn.nodes[n-1].svc
		if _, err := writer.Put(ctx, "obj", []byte("the owner's value")); err != nil {
			t.Fatal(err)
		}
		m, err := writer.Manifest(ctx, "obj")
		if err != nil {
			t.Fatal(err)
		}
		// Q: a peer that holds nothing of the object, nor is the squatter.
		placed := map[peer.ID]bool{}
		for _, p := range m.Placement {
			placed[p] = true
		}
		var q *testNode
		for _, nd := range tn.nodes[1 : n-1] {
			if !placed[nd.h.ID()] {
				q = nd
				break
			}
		}
		if q == nil {
			t.Fatal("every peer holds a shard")
		}
		idx := 0
		if m.Placement[idx] == squatter.h.ID() {
			idx = 1
		}
		h := m.Hashes[0][idx]

		// The squatter fetches the shard (anyone may) and stores it on Q
		// under an object of its own namespace.
		data, err := squatter.client.Fetch(ctx, m.Placement[idx], h)
		if err != nil {
			t.Fatal(err)
		}
		squatObj := squatterKey.ObjectID("squat")
		squat := ShardRef{Namespace: squatterKey.Namespace(), Object: squatObj, Version: 1}
		if err := squatter.client.Store(ctx, q.h.ID(), h, squat, data); err != nil {
			t.Fatal(err)
		}
		// The owner's repair moves index idx to Q: it stores the shard
		// there, then publishes the placement.
		ref := ShardRef{Namespace: owner.Namespace(), Object: m.Object, Version: m.DataVersion, Index: uint16(idx)}
		if err := writer.client.Store(ctx, q.h.ID(), h, ref, data); err != nil {
			t.Fatalf("owner's store after the squatter's: %v", err)
		}
		if info, _ := q.store.Stat(h); len(info.Refs) != 2 || refIndex(info.Refs, ref) < 0 {
			t.Fatalf("Q's refs: %+v", info.Refs)
		}
		if _, err := writer.publishRepair(ctx, m.Object, m.Key(), m, m, map[int]peer.ID{idx: q.h.ID()}); err != nil {
			t.Fatal(err)
		}
		deletes := func(result string) float64 { return counterValue(q.svc.metrics.deletes.WithLabelValues(result)) }

		// The squatter's delete removes its ref only; a second is refused.
		if err := squatter.client.Delete(ctx, q.h.ID(), h, squatterKey); err != nil {
			t.Fatalf("squatter's delete of its own ref: %v", err)
		}
		if info, ok := q.store.Stat(h); !ok || len(info.Refs) != 1 || info.Ref != ref {
			t.Fatalf("after the squatter's delete: %v %+v", ok, info.Refs)
		}
		err = squatter.client.Delete(ctx, q.h.ID(), h, squatterKey)
		if !errors.Is(err, ErrUnauthorized) || deletes("unref") != 1 || deletes("unauthorized") != 1 {
			t.Fatalf("squatter's second delete: %v (unref %v, unauthorized %v)", err, deletes("unref"), deletes("unauthorized"))
		}
		if got, err := tn.nodes[2].svc.Get(ctx, "obj"); err != nil || string(got) != "the owner's value" {
			t.Fatalf("owner's read: %q %v", got, err)
		}

		// The squatter stores again and publishes a tombstone for its
		// object: GC on Q drops its ref and keeps the owner's.
		if err := squatter.client.Store(ctx, q.h.ID(), h, squat, data); err != nil {
			t.Fatal(err)
		}
		ts, err := (&Manifest{Object: squatObj, Version: 1, Tombstone: true, Created: time.Now()}).Sign(squatterKey)
		if err != nil {
			t.Fatal(err)
		}
		if err := tn.records.PutValue(ctx, DHTKey(squatterKey.Namespace(), squatObj), ts); err != nil {
			t.Fatal(err)
		}
		time.Sleep(DevnetConfig().GCMinAge + time.Second)
		if removed, _, err := q.svc.CollectGarbage(ctx); err != nil || removed != 0 {
			t.Fatalf("gc on Q: removed %d %v", removed, err)
		}
		if info, ok := q.store.Stat(h); !ok || len(info.Refs) != 1 || info.Ref != ref {
			t.Fatalf("after the squatter's tombstone: %v %+v", ok, info.Refs)
		}
		if got, err := tn.nodes[3].svc.Get(ctx, "obj"); err != nil || string(got) != "the owner's value" {
			t.Fatalf("owner's read: %q %v", got, err)
		}

		// The squatter squats once more; the owner's delete still removes
		// its own shard from Q (and leaves the squatter's ref to its GC).
		if err := squatter.client.Store(ctx, q.h.ID(), h, squat, data); err != nil {
			t.Fatal(err)
		}
		if err := writer.Delete(ctx, "obj"); err != nil {
			t.Fatal(err)
		}
		if info, ok := q.store.Stat(h); !ok || len(info.Refs) != 1 || info.Ref != squat {
			t.Fatalf("after the owner's delete: %v %+v", ok, info.Refs)
		}
		time.Sleep(DevnetConfig().GCMinAge + time.Second) // the last squat's ref is young
		if removed, _, err := q.svc.CollectGarbage(ctx); err != nil || removed != 1 || q.store.Len() != 0 {
			t.Fatalf("gc on Q after both tombstones: removed %d %v, %d shards left", removed, err, q.store.Len())
		}
	})
}
