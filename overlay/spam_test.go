package overlay

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/immense-p2p/immense/internal/ratelimit"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
)

func spamCount(t *testing.T, o *Overlay, reason string) float64 {
	t.Helper()
	return counterValue(t, o.metrics.spam.WithLabelValues(reason))
}

// TestGossipSpam is issue 11's finding 9. A stranger (a bare gossipsub
// peer, no keys of ours) floods topic "spam" at 10,000 well-formed
// messages a second, directly to the victim, while an honest peer
// publishes 200 messages on "chat" at 20 a second. Every honest message
// reaches the victim, in order; the spammer's messages beyond its budgets
// are dropped before validation (peer_rate) or ignored as over its
// publisher rate, each a strike, until its score is below the graylist
// threshold, which the graylisted_peers gauge shows.
func TestGossipSpam(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			honest   = 200
			spamRate = 10000 // messages a second
			spamFor  = 3 * time.Second
		)
		ctx := t.Context()
		s := newSimNet(t)
		reg := prometheus.NewRegistry()
		victim := s.overlay(nil, func(c *Config) { c.Registerer = reg })
		pub := s.overlay(victim, nil)
		waitJoined(t, 10*time.Second, pub)

		// The spammer: plain gossipsub on a fresh host, connected to the
		// victim, publishing into our topic with our envelope.
		sh := s.host()
		sps, err := pubsub.NewGossipSub(ctx, sh,
			pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
			pubsub.WithPeerOutboundQueueSize(1<<14))
		if err != nil {
			t.Fatal(err)
		}
		if err := sh.Connect(ctx, peer.AddrInfo{ID: victim.Host().ID(), Addrs: victim.Host().Addrs()}); err != nil {
			t.Fatal(err)
		}
		st, err := sps.Join(wireTopic("spam"))
		if err != nil {
			t.Fatal(err)
		}
		ssub, err := st.Subscribe() // so that the victim meshes with it
		if err != nil {
			t.Fatal(err)
		}
		defer ssub.Cancel()

		chat, err := victim.Subscribe("chat")
		if err != nil {
			t.Fatal(err)
		}
		spam, err := victim.Subscribe("spam")
		if err != nil {
			t.Fatal(err)
		}
		go func() { // a subscriber of the spam topic keeps reading
			for {
				if _, err := spam.Next(ctx); err != nil {
					return
				}
			}
		}()
		time.Sleep(3 * time.Second) // subscriptions announced, meshes grafted

		spamDone := make(chan struct{})
		go func() {
			defer close(spamDone)
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for i := 0; i < int(spamFor/(10*time.Millisecond)); i++ {
				for j := range spamRate / 100 {
					env := encodeEnvelope(time.Now(), credNone, nil, []byte(fmt.Sprint(i, j)))
					if err := st.Publish(ctx, env); err != nil {
						return
					}
				}
				<-tick.C
			}
		}()
		for i := range honest {
			if err := pub.Publish(ctx, "chat", []byte(strconv.Itoa(i))); err != nil {
				t.Fatalf("honest publish %d: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		<-spamDone
		for i := range honest {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			m, err := chat.Next(rctx)
			cancel()
			if err != nil {
				t.Fatalf("honest message %d of %d not received: %v", i, honest, err)
			}
			if string(m.Data) != strconv.Itoa(i) || m.From != pub.Host().ID() {
				t.Fatalf("honest message %d: got %q from %s", i, m.Data, m.From)
			}
		}

		time.Sleep(2 * time.Second) // scores refresh every second
		score, ok := victim.scores.score(sh.ID())
		if !ok || score >= victim.cfg.Score.Thresholds.GraylistThreshold {
			t.Errorf("spammer's score %v (known %v), want below the graylist threshold %v",
				score, ok, victim.cfg.Score.Thresholds.GraylistThreshold)
		}
		if hs, _ := victim.scores.score(pub.Host().ID()); hs < 0 {
			t.Errorf("honest publisher's score %v, want >= 0", hs)
		}
		if n := victim.scores.below(victim.cfg.Score.Thresholds.GraylistThreshold); n != 1 {
			t.Errorf("%d peers graylisted, want 1", n)
		}
		direct := spamCount(t, victim, spamPublisherStrike)
		if direct < 100 {
			t.Errorf("spam_refused_total{reason=%q} = %v, want >= 100", spamPublisherStrike, direct)
		}
		t.Logf("spam refused: peer_rate %v, topic_rate %v, publisher_rate_direct %v; spammer score %.0f",
			spamCount(t, victim, spamPeerRate), spamCount(t, victim, spamTopicRate), direct, score)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "immense_overlay_graylisted_peers" {
				if v := mf.GetMetric()[0].GetGauge().GetValue(); v != 1 {
					t.Errorf("graylisted_peers gauge %v, want 1", v)
				}
			}
		}
	})
}

// TestRPCInspector: RPCs larger than any honest peer sends are dropped
// whole and counted; over-budget messages are cut from an RPC, leaving
// the rest of it.
func TestRPCInspector(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newSimNet(t).overlay(nil, func(c *Config) {
			c.Registerer = prometheus.NewRegistry()
			c.MaxRPCSubscriptions, c.MaxRPCControl = 2, 3
			c.PeerMessageRate, c.PeerMessageBurst = 1, 3
		})
		p := peer.ID("stranger")
		topic := wireTopic("t")
		subs := &pubsub.RPC{RPC: pb.RPC{Subscriptions: make([]*pb.RPC_SubOpts, 3)}}
		if err := o.inspectRPC(p, subs); err == nil {
			t.Error("RPC with 3 subscriptions accepted, limit 2")
		}
		ctl := &pubsub.RPC{RPC: pb.RPC{Control: &pb.ControlMessage{
			Ihave: []*pb.ControlIHave{{TopicID: &topic, MessageIDs: []string{"a", "b", "c"}}},
		}}}
		if err := o.inspectRPC(p, ctl); err == nil {
			t.Error("RPC with 4 control entries accepted, limit 3")
		}
		msgs := &pubsub.RPC{RPC: pb.RPC{Publish: make([]*pb.Message, 5)}}
		for i := range msgs.Publish {
			msgs.Publish[i] = &pb.Message{Topic: &topic}
		}
		if err := o.inspectRPC(p, msgs); err != nil {
			t.Fatalf("RPC with messages dropped whole: %v", err)
		}
		if len(msgs.Publish) != 3 {
			t.Errorf("%d messages kept of 5, want the burst of 3", len(msgs.Publish))
		}
		for reason, want := range map[string]float64{spamRPCSubscriptions: 1, spamRPCControl: 1, spamPeerRate: 2} {
			if got := spamCount(t, o, reason); got != want {
				t.Errorf("spam_refused_total{reason=%q} = %v, want %v", reason, got, want)
			}
		}
		// The topic budget applies to topics we are in: another peer's
		// messages to "t" are cut at its burst, those to a topic we are
		// not in are left for gossipsub to drop.
		o.spam.topics = ratelimit.NewKeyed[string](1, 2, maxRateBuckets, ratelimit.EvictOldest)
		o.spam.forwarders = ratelimit.NewKeyed[peer.ID](0, 0, maxRateBuckets, ratelimit.EvictOldest) // off
		if _, err := o.Subscribe("t"); err != nil {
			t.Fatal(err)
		}
		other := wireTopic("not-joined")
		mixed := &pubsub.RPC{RPC: pb.RPC{Publish: []*pb.Message{
			{Topic: &topic}, {Topic: &other}, {Topic: &topic}, {Topic: &other}, {Topic: &topic},
		}}}
		if err := o.inspectRPC(peer.ID("another"), mixed); err != nil {
			t.Fatal(err)
		}
		if got := len(mixed.Publish); got != 4 {
			t.Errorf("%d messages kept of 5 (3 to a topic with a burst of 2), want 4", got)
		}
		if got := spamCount(t, o, spamTopicRate); got != 1 {
			t.Errorf("spam_refused_total{reason=%q} = %v, want 1", spamTopicRate, got)
		}

		// Our own topics pass the subscription filter; others do not.
		f := newSubscriptionFilter(o, 2)
		for wire, want := range map[string]bool{topic: true, "t": false, "immense/": false, "immense/a b": false, "/meshsub": false} {
			if got := f.CanSubscribe(wire); got != want {
				t.Errorf("CanSubscribe(%q) = %v, want %v", wire, got, want)
			}
		}
		// A peer has at most max topics announced at once, over any
		// number of RPCs; unsubscribing or leaving frees room.
		sub := func(name string, on bool) *pb.RPC_SubOpts {
			wire := wireTopic(name)
			return &pb.RPC_SubOpts{Topicid: &wire, Subscribe: &on}
		}
		announce := func(subs ...*pb.RPC_SubOpts) int {
			kept, err := f.FilterIncomingSubscriptions(p, subs)
			if err != nil {
				t.Fatal(err)
			}
			return len(kept)
		}
		foreign := "floodsub-topic"
		if n := announce(sub("a", true), sub("b", true), &pb.RPC_SubOpts{Topicid: &foreign}); n != 2 {
			t.Errorf("kept %d of a, b and a foreign topic, want 2", n)
		}
		if n := announce(sub("c", true)); n != 0 {
			t.Error("a third topic announced with a cap of 2")
		}
		if n := announce(sub("a", false), sub("c", true), sub("b", true)); n != 3 {
			t.Errorf("kept %d of unsubscribe a, subscribe c, b again; want 3", n)
		}
		f.forget(p)
		if n := announce(sub("d", true), sub("e", true)); n != 2 {
			t.Errorf("kept %d after the peer was forgotten, want 2", n)
		}
		if got := spamCount(t, o, spamPeerSubscriptions); got != 1 {
			t.Errorf("spam_refused_total{reason=%q} = %v, want 1", spamPeerSubscriptions, got)
		}
	})
}
