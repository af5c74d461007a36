package erasure

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestVolunteerRepair: the app's peers are offline; the volunteers that
// hold the app's shards regenerate the lost ones under its delegation
// (one of them: the others defer to its rank), and a reader reads the
// object through their repair hints. A hint forged by a non-holder is
// refused; once the delegation has expired the hints are refused too, and
// a renewed delegation brings volunteer repair back; an app peer then
// folds the hints into its next manifest version.
func TestVolunteerRepair(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		app := newAppKey(bytes.Repeat([]byte{'a'}, 32), [32]byte{'s'})
		const nodes, readerIdx = 9, 8
		tn := newTestNet(t, nodes, netOpts{
			key: func(i int) *AppKey {
				if i == 0 || i == readerIdx {
					return app // node 0 writes; the reader is another app peer
				}
				return newAppKey(bytes.Repeat([]byte{byte(i)}, 32), [32]byte{byte(i)})
			},
			config: func(i int, c *Config, sc *StoreConfig) {
				c.DataShards, c.MinParity, c.MaxShards = 2, 2, 4
				c.DelegateRepair = 10 * time.Minute
				c.DelegationBudget = 4
				c.VolunteerRepairInterval = 0 // driven by the test
			},
		})
		tn.records.v = record.NamespacedValidator{RecordNamespace: ManifestValidator{}, HandoffNamespace: HintValidator{},
			DelegationNamespace: DelegationValidator{}, RepairNamespace: RepairHintValidator{}}
		writer, reader := tn.nodes[0], tn.nodes[readerIdx]
		// The reader holds no shard (no candidate of anyone's): whatever it
		// reads comes over the network.
		tn.mu.Lock()
		tn.down[reader.h.ID()] = true
		tn.mu.Unlock()
		value := testValue(rand.New(rand.NewPCG(14, 4)), 300<<10, "volunteer")
		if _, err := writer.svc.Put(ctx, "obj", value); err != nil {
			t.Fatal(err)
		}
		if err := writer.svc.RenewDelegation(ctx); err != nil {
			t.Fatal(err)
		}
		m, err := reader.svc.Manifest(ctx, "obj")
		if err != nil {
			t.Fatal(err)
		}

		// The writer and all but k of the holders go away for good.
		down := map[peer.ID]bool{writer.h.ID(): true}
		tn.takeDown(writer.h.ID())
		var live []peer.ID
		for _, p := range m.Placement {
			if !down[p] {
				live = append(live, p)
			}
		}
		for len(live) > m.Params.DataShards {
			down[live[0]] = true
			tn.takeDown(live[0])
			live = live[1:]
		}
		time.Sleep(time.Minute) // past the grace period
		synctest.Wait()

		repairAll := func() VolunteerResult {
			t.Helper()
			var total VolunteerResult
			for _, nd := range tn.nodes {
				if down[nd.h.ID()] {
					continue
				}
				r, err := nd.svc.VolunteerRepair(ctx)
				if err != nil {
					t.Fatalf("volunteer repair on %s: %v", nd.h.ID(), err)
				}
				total.Repaired += r.Repaired
				total.Deferred += r.Deferred
				total.Shards += r.Shards
				total.Bytes += r.Bytes
			}
			return total
		}
		res := repairAll()
		if res.Repaired != 1 || res.Shards == 0 || res.Bytes == 0 {
			t.Fatalf("volunteer repair: %+v, want one volunteer to repair", res)
		}
		var volunteerBytes float64
		for _, nd := range tn.nodes {
			if !down[nd.h.ID()] {
				volunteerBytes += counterValue(nd.svc.metrics.roles.WithLabelValues(roleVolunteer))
			}
		}
		if volunteerBytes != float64(res.Bytes) {
			t.Fatalf("repair_role_bytes_total{role=volunteer} = %v, want %d", volunteerBytes, res.Bytes)
		}
		if again := repairAll(); again.Repaired != 0 {
			t.Fatalf("repaired again: %+v", again)
		}
		hinted := map[int]peer.ID{}
		for i := range m.Placement {
			if h, _, err := reader.svc.lookupRepairHint(ctx, m, i); err == nil {
				hinted[i] = h.Holder
			}
		}
		if len(hinted) == 0 {
			t.Fatal("no repair hint published")
		}

		// One more original holder goes: the read needs a repaired shard.
		down[live[0]] = true
		tn.takeDown(live[0])
		if got, err := reader.svc.Get(ctx, "obj"); err != nil || !bytes.Equal(got, value) {
			t.Fatalf("read through repair hints: %v", err)
		}

		// A hint signed by a peer that holds nothing of the object is
		// refused, whatever delegation it carries.
		var outsider *testNode
		for _, nd := range tn.nodes {
			if !down[nd.h.ID()] && !holds(m, nd.h.ID()) && nd != reader {
				outsider = nd
				break
			}
		}
		d, drec, err := reader.svc.lookupDelegation(ctx, app.Namespace())
		if err != nil {
			t.Fatal(err)
		}
		free := -1
		for i := range m.Placement {
			if _, _, err := reader.svc.lookupRepairHint(ctx, m, i); errors.Is(err, ErrNotFound) {
				free = i
				break
			}
		}
		forged := &RepairHint{Object: m.Object, DataVersion: m.DataVersion, Index: free, Created: time.Now(),
			Signer: outsider.h.ID(), Holder: reader.h.ID(), Delegation: d, delegation: drec}
		rec, err := forged.Sign(outsider.h.Peerstore().PrivKey(outsider.h.ID()))
		if err != nil {
			t.Fatal(err)
		}
		if err := tn.records.PutValue(ctx, forged.Key(), rec); err != nil {
			t.Fatal(err)
		}
		if _, _, err := reader.svc.lookupRepairHint(ctx, m, free); !errors.Is(err, ErrInvalidRepairHint) {
			t.Fatalf("forged hint by a non-holder: %v", err)
		}

		// The delegation expires: its hints no longer count.
		time.Sleep(11 * time.Minute)
		synctest.Wait()
		if _, err := reader.svc.Get(ctx, "obj"); !errors.Is(err, ErrNotEnoughShards) {
			t.Fatalf("read with an expired delegation: %v", err)
		}
		if r := repairAll(); r.Repaired != 0 {
			t.Fatalf("volunteers repaired under an expired delegation: %+v", r)
		}

		// An app peer renews it; volunteers renew the hints (the shards
		// stay where they are); the app peer folds them into the next
		// manifest version.
		if err := reader.svc.RenewDelegation(ctx); err != nil {
			t.Fatal(err)
		}
		if r := repairAll(); r.Repaired > 1 {
			t.Fatalf("volunteer repair after renewal: %+v", r)
		}
		for i, p := range hinted {
			h, _, err := reader.svc.lookupRepairHint(ctx, m, i)
			if err != nil || h.Holder != p {
				t.Fatalf("index %d: hint not renewed in place (%v)", i, err)
			}
		}
		if got, err := reader.svc.Get(ctx, "obj"); err != nil || !bytes.Equal(got, value) {
			t.Fatalf("read after renewal: %v", err)
		}
		if _, err := reader.svc.Repair(ctx, "obj"); err != nil {
			t.Fatalf("app repair: %v", err)
		}
		m2, err := reader.svc.Manifest(ctx, "obj")
		if err != nil {
			t.Fatal(err)
		}
		if m2.Version <= m.Version || m2.DataVersion != m.DataVersion {
			t.Fatalf("no folded version: %d (data %d) after %d", m2.Version, m2.DataVersion, m.Version)
		}
		for i, p := range m2.Placement {
			if down[p] {
				t.Errorf("index %d still placed on a departed peer", i)
			}
		}
		if !slices.Equal(m2.Hashes[0], m.Hashes[0]) {
			t.Fatal("folding changed the content")
		}
		if got, err := reader.svc.Get(ctx, "obj"); err != nil || !bytes.Equal(got, value) {
			t.Fatalf("read after folding: %v", err)
		}
	})
}

func TestVolunteerRank(t *testing.T) {
	ids := testPeerIDs(t, 4)
	var hs []HolderStatus
	for _, p := range ids {
		hs = append(hs, HolderStatus{Peer: p, Reachable: true, Complete: true})
	}
	hs[3].Complete = false
	var seed PlacementSeed
	seen := map[int]bool{}
	for _, p := range ids[:3] {
		r := volunteerRank(seed, hs, p)
		if r < 0 || r > 2 || seen[r] {
			t.Fatalf("rank %d of %s", r, p)
		}
		seen[r] = true
	}
	if r := volunteerRank(seed, hs, ids[3]); r != -1 {
		t.Fatalf("holder without its shards ranked %d", r)
	}
	// A holder a hint led to cannot act under an open delegation: it
	// must not hold a rank the others wait for.
	hs[3] = HolderStatus{Peer: ids[3], Reachable: true, Complete: true, HandedOff: true}
	if r := volunteerRank(seed, hs, ids[3]); r != -1 {
		t.Fatalf("hinted holder ranked %d", r)
	}
	seed[0] = 1
	differ := false
	for _, p := range ids[:3] {
		if volunteerRank(seed, hs, p) != volunteerRank(PlacementSeed{}, hs, p) {
			differ = true
		}
	}
	if !differ {
		t.Log("ranks happen to be the same under two seeds")
	}
}
