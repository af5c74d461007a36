package overlay

import (
	"io"
	"log/slog"
	"testing"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"
)

// FuzzInspectRPC feeds the RPC inspector whatever a peer's bytes decode
// to: it must never panic, never add messages, and keep within the
// per-peer budget.
func FuzzInspectRPC(f *testing.F) {
	topic := wireTopic("t")
	for _, rpc := range []*pb.RPC{
		{Publish: []*pb.Message{{Topic: &topic, Data: []byte{1}}, {Topic: &topic, From: []byte("p")}}},
		{Subscriptions: []*pb.RPC_SubOpts{{Topicid: &topic}}},
		{Control: &pb.ControlMessage{
			Ihave: []*pb.ControlIHave{{TopicID: &topic, MessageIDs: []string{"a", "b"}}},
			Prune: []*pb.ControlPrune{{TopicID: &topic, Peers: []*pb.PeerInfo{{}}}},
		}},
	} {
		b, err := proto.Marshal(rpc)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	cfg := DefaultConfig()
	cfg.MaxRPCSubscriptions, cfg.MaxRPCControl = 4, 8
	cfg.PeerMessageRate, cfg.PeerMessageBurst = 1, 4
	o := &Overlay{cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	o.spam = newSpamGuard(&o.cfg)
	m, err := newMetrics(nil, 0, o)
	if err != nil {
		f.Fatal(err)
	}
	o.metrics = m
	f.Fuzz(func(t *testing.T, b []byte) {
		rpc := new(pubsub.RPC)
		if err := proto.Unmarshal(b, &rpc.RPC); err != nil {
			return
		}
		n := len(rpc.Publish)
		if err := o.inspectRPC(peer.ID("p"), rpc); err != nil {
			return
		}
		if len(rpc.Publish) > n || len(rpc.Publish) > cfg.PeerMessageBurst {
			t.Fatalf("%d messages kept of %d, burst %d", len(rpc.Publish), n, cfg.PeerMessageBurst)
		}
		for _, msg := range rpc.Publish {
			if msg == nil {
				t.Fatal("nil message kept")
			}
		}
	})
}
