package node

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/immense-p2p/immense/erasure"
)

// TestStateHandoff runs a planned departure on full nodes (real DHT with
// the hint validator, shard protocol, disk stores): a holder hands its
// shards off with Node.Handoff and stops; the hint is in the DHT, the
// object stays at full redundancy, and the writer's repair loop adopts
// the new holder into the manifest without regenerating anything.
func TestStateHandoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const nodes = 6
		keyFile := seededAppKey(t, "handoff")
		net := newStateNet(t, nodes, func(i int, c *Config) {
			c.AppKeyFile = keyFile
			sc := erasure.DevnetConfig()
			sc.DataShards, sc.MinParity, sc.MaxShards = 2, 2, 4 // 4 holders of 6: spares to hand to
			sc.GCInterval = 0
			sc.Scheduler.Seed = uint64(i + 1)
			c.State = &sc
		})
		for _, nd := range net.nodes {
			<-nd.n.Joined()
		}
		time.Sleep(10 * time.Second)
		ctx := context.Background()
		writer := net.nodes[1]
		value := bytes.Repeat([]byte("handoff "), 20000)
		res, err := writer.n.Put(ctx, "doc", value)
		if err != nil {
			t.Fatal(err)
		}
		var leaver *simNode
		for _, p := range res.Holders {
			if i := net.index(p); i != writer.i && leaver == nil {
				leaver = net.nodes[i]
			}
		}
		idx := slices.Index(res.Holders, leaver.id)
		hr, err := leaver.n.Handoff(ctx)
		if err != nil || hr.HandedOff != 1 || hr.Failed != 0 {
			t.Fatalf("handoff: %+v %v", hr, err)
		}
		key, err := erasure.LoadAppKey(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		hintKey := erasure.HintKey(key.Namespace(), key.ObjectID("doc"), idx, leaver.id)
		b, err := writer.n.Overlay().DHT().GetValue(ctx, hintKey)
		if err != nil {
			t.Fatalf("hint not in the DHT: %v", err)
		}
		hint, err := erasure.ParseHint(b)
		if err != nil {
			t.Fatal(err)
		}
		net.stop(leaver)

		h, err := writer.n.Health(ctx, "doc")
		if err != nil || h.Reachable != h.Total || h.Holders[idx].Peer != hint.New || !h.Holders[idx].HandedOff {
			t.Fatalf("health after the handoff: %+v %v", h, err)
		}
		// The writer checks the object within a scheduler interval (20 s).
		time.Sleep(30 * time.Second)
		m, err := writer.n.state.svc.Manifest(ctx, "doc")
		if err != nil {
			t.Fatal(err)
		}
		if m.Version != 2 || m.DataVersion != 1 || m.Placement[idx] != hint.New {
			t.Fatalf("after the repair pass: version %d, data version %d, holder %d on node %d (want node %d)",
				m.Version, m.DataVersion, idx, net.index(m.Placement[idx]), net.index(hint.New))
		}
		if v := metricSum(t, writer.n, "immense_state_repaired_shards_total"); v != 0 {
			t.Fatalf("repair regenerated %v shards", v)
		}
		if v := metricSum(t, writer.n, "immense_state_handoff_adoptions_total"); v != 1 {
			t.Fatalf("%v adoptions", v)
		}
		for _, nd := range net.nodes {
			if nd.n == nil || nd == writer {
				continue
			}
			if got, err := nd.n.Get(ctx, "doc"); err != nil || !bytes.Equal(got, value) {
				t.Fatalf("get on node %d after adoption: %v", nd.i, err)
			}
			break
		}
	})
}
