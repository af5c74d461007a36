package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/immense-p2p/immense/overlay"
	"github.com/libp2p/go-libp2p/core/peer"
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

// TestValidatorHook: receivers running a Validator drop the messages it
// refuses (and count them), while others still flow.
func TestValidatorHook(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nodes := simNetwork(t, 4, func(i int, c *Config) {
			if i == 1 {
				return // the publisher does not check; its neighbours do
			}
			c.Overlay.Validator = func(_ context.Context, topic string, _ peer.ID, data []byte) error {
				if bytes.Contains(data, []byte("spam")) {
					return errors.New("no spam")
				}
				return nil
			}
		})
		for _, nd := range nodes {
			<-nd.Joined()
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var subs []<-chan *Message
		for _, nd := range nodes[2:] {
			ch, err := nd.Subscribe(ctx, "news")
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, ch)
		}
		time.Sleep(10 * time.Second)
		for _, body := range []string{"buy spam now", "real news"} {
			if err := nodes[1].Publish(ctx, "news", []byte(body)); err != nil {
				t.Fatal(err)
			}
		}
		for i, ch := range subs {
			if m := <-ch; string(m.Data) != "real news" {
				t.Errorf("subscriber %d got %q first", i, m.Data)
			}
		}
		rejected := 0.0
		for _, nd := range nodes[2:] {
			rejected += metricSum(t, nd, "immense_overlay_messages_rejected_total")
		}
		if rejected == 0 {
			t.Error("no rejection counted")
		}
	})
}

// metricSum returns the sum of all series of counter name in n's registry.
func metricSum(t *testing.T, n *Node, name string) float64 {
	t.Helper()
	mfs, err := n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestLonePeerPublish: a peer with no other peer delivers each publish to
// its local subscriber at once, thousands in no time. Publish used to wait
// PublishDiscoveryTimeout (2 s) for a remote subscriber on every call; in
// virtual time ten publishes then took 20 s.
func TestLonePeerPublish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nd := simNetwork(t, 1, nil)[0]
		<-nd.Joined()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ch, err := nd.Subscribe(ctx, "demo/chat")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		// More than the per-publisher burst (overlay's PublisherMessageBurst):
		// with no neighbour to count them, none is refused or ignored.
		const n = 2500
		for i := range n {
			want := fmt.Sprintf("message %d", i)
			if err := nd.Publish(ctx, "demo/chat", []byte(want)); err != nil {
				t.Fatal(err)
			}
			if m := <-ch; string(m.Data) != want {
				t.Fatalf("got %q, want %q", m.Data, want)
			}
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("%d publishes to a local subscriber took %v of virtual time, want 0", n, d)
		}
	})
}

// TestPublishBacklog: on a topic a node only publishes to, Publish returns
// at once and the messages wait, in order, until discovery has found the
// remote subscriber; a publisher far ahead of discovery is told to slow
// down, and publishing works again once the backlog has gone out.
func TestPublishBacklog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nodes := simNetwork(t, 3, nil)
		for _, nd := range nodes {
			<-nd.Joined()
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ch, err := nodes[2].Subscribe(ctx, "news")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second) // the subscriber provides the topic in the DHT

		pub := nodes[1]
		start := time.Now()
		const n = 20
		for i := range n {
			if err := pub.Publish(ctx, "news", fmt.Appendf(nil, "news %d", i)); err != nil {
				t.Fatal(err)
			}
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("publishing while discovery ran took %v of virtual time, want 0", d)
		}
		for i := range n {
			want := fmt.Sprintf("news %d", i)
			select {
			case m := <-ch:
				if string(m.Data) != want {
					t.Fatalf("got %q, want %q", m.Data, want)
				}
			case <-time.After(time.Minute):
				t.Fatalf("no %q", want)
			}
		}

		// Nobody subscribes to "void": the backlog fills, then drains
		// after PublishDiscoveryTimeout with nobody to send to.
		var full error
		for i := 0; full == nil && i < 1000; i++ {
			full = pub.Publish(ctx, "void", []byte("x"))
		}
		if !errors.Is(full, overlay.ErrBacklogFull) {
			t.Fatalf("publishing far ahead of discovery: %v, want ErrBacklogFull", full)
		}
		time.Sleep(overlay.DefaultConfig().PublishDiscoveryTimeout + time.Second)
		if err := pub.Publish(ctx, "void", []byte("x")); err != nil {
			t.Errorf("publish after the backlog drained: %v", err)
		}
	})
}
