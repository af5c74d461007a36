package node

import (
	"context"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"
)

// TestOverlay20 is the foundation's acceptance test: 20 nodes in process
// join through one bootstrap node; every routing table fills, any node finds
// any other through the DHT, and a message published on one node reaches the
// 19 others.
func TestOverlay20(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 20
		nodes := simNetwork(t, n, nil)
		for i, nd := range nodes {
			<-nd.Joined()
			if i > 0 && nd.Overlay().RoutingTableSize() == 0 {
				t.Errorf("node %d: empty routing table after joining", i)
			}
		}
		// Let the periodic refreshes spread knowledge beyond the bootstrap node.
		time.Sleep(time.Minute)
		for i, nd := range nodes {
			if nd.Overlay().RoutingTableSize() == 0 {
				t.Errorf("node %d: empty routing table", i)
			}
		}

		rng := rand.New(rand.NewPCG(1, 2))
		for range 10 {
			a, b := rng.IntN(n), rng.IntN(n)
			if a == b {
				continue
			}
			target := nodes[b].ID()
			// Disconnect so that the lookup has to go through the DHT.
			nodes[a].Host().Network().ClosePeer(target)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			ai, err := nodes[a].Overlay().FindPeer(ctx, target)
			cancel()
			if err != nil {
				t.Fatalf("node %d FindPeer(node %d): %v", a, b, err)
			}
			if len(ai.Addrs) == 0 {
				t.Fatalf("node %d FindPeer(node %d): no addresses", a, b)
			}
		}

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		subs := make([]<-chan *Message, n)
		for i := 1; i < n; i++ {
			ch, err := nodes[i].Subscribe(ctx, "chat")
			if err != nil {
				t.Fatal(err)
			}
			subs[i] = ch
		}
		// Discovery (provide + find providers) and two heartbeats to form meshes.
		time.Sleep(10 * time.Second)
		if err := nodes[0].Publish(ctx, "chat", []byte("hello overlay")); err != nil {
			t.Fatal(err)
		}
		for i := 1; i < n; i++ {
			select {
			case m := <-subs[i]:
				if string(m.Data) != "hello overlay" || m.From != nodes[0].ID() {
					t.Errorf("node %d got %q from %s", i, m.Data, m.From)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("node %d: no message", i)
			}
		}
	})
}
