package erasure

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestPolicyLoses60PercentOfHolders: issue 14's policy on a real service
// (simulated network, virtual time). The writer has watched its 29 peers
// for four days, each online half of every hour, so its tracker knows them
// and its prior for strangers is learned from them (about 0.5, not a fixed
// guess). It stores objects of 1 KiB to 4 MiB: every plan meets the target
// with the least shards its holders allow (LeastShards on the lower
// confidence bounds of their estimates, which the policy places on), and k stays 4 even where the size allows 16, because with
// holders online half of the time a larger k needs more holders than
// there are. Then 60% of the peers go offline, as the estimates say they
// will at any time, and every object reads back.
func TestPolicyLoses60PercentOfHolders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const nodes = 30
		var offset atomic.Int64 // the writer's clock runs this far ahead
		cn := newChurnNet(t, nodes, func(i int, c *Config) {
			c.DisableRepair = true
			if i == 0 {
				c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
			}
		})
		writer := cn.nodes[0]
		tr := writer.svc.Availability()
		advance := func(d time.Duration) { offset.Add(int64(d)) }
		for range 96 {
			for _, nd := range cn.nodes[1:] {
				tr.Succeeded(nd.id)
			}
			advance(30 * time.Minute)
			for _, nd := range cn.nodes[1:] {
				tr.Failed(nd.id)
			}
			advance(30 * time.Minute)
		}
		for _, nd := range cn.nodes[1:] {
			tr.Succeeded(nd.id) // online now, as they are
		}
		if p := tr.PopulationPrior(); p < 0.4 || p > 0.6 {
			t.Fatalf("population prior %v, want about 0.5", p)
		}
		ctx := context.Background()
		r := rand.New(rand.NewPCG(14, 60))
		sizes := []int{1 << 10, 256 << 10, 4 << 20}
		values := make([][]byte, len(sizes))
		for i, size := range sizes {
			values[i] = randBytes(r, size)
			res, err := writer.svc.Put(ctx, fmt.Sprintf("obj-%d", i), values[i])
			if err != nil {
				t.Fatalf("put %d bytes: %v", size, err)
			}
			var est []float64
			for _, h := range res.Holders {
				// The writer rates itself as Put did: from its tracker,
				// where it is unknown, at the prior.
				est = append(est, tr.LowerBound(h))
			}
			least, _ := LeastShards(res.K, est, DefaultTarget)
			if !res.TargetMet || res.K != 4 || len(res.Holders) > least {
				t.Fatalf("put %d bytes: k=%d m=%d met %v; the least for its holders is %d", size, res.K, res.M, res.TargetMet, least)
			}
			t.Logf("%d bytes: k=%d m=%d, P(>=k online) %.6f", size, res.K, res.M, res.Prob)
		}
		// 60% of the peers go offline, the writer excepted.
		perm := r.Perm(nodes - 1)
		offline := map[peer.ID]bool{}
		var reader *churnNode
		for j, p := range perm {
			nd := cn.nodes[p+1]
			if j < (nodes-1)*6/10 {
				cn.stop(nd)
				offline[nd.id] = true
			} else if reader == nil {
				reader = nd
			}
		}
		for i, v := range values {
			got, err := reader.svc.Get(ctx, fmt.Sprintf("obj-%d", i))
			if err != nil || !bytes.Equal(got, v) {
				t.Fatalf("with 60%% of the peers offline, obj-%d (%d bytes): %v", i, len(v), err)
			}
		}
	})
}
