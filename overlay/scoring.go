package overlay

import (
	"net"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ScoreConfig holds gossipsub peer-scoring parameters. Params.Topics is
// ignored: TopicParams is applied to every topic the node joins, because our
// topics are created by applications at run time.
type ScoreConfig struct {
	Params      pubsub.PeerScoreParams
	TopicParams pubsub.TopicScoreParams
	Thresholds  pubsub.PeerScoreThresholds
}

// DefaultScoreConfig returns the scoring we run with. The reasoning:
//
//   - The penalty that matters is for invalid messages (bad signature,
//     oversized, refused by a Validator): -100 each (weight -100, squared
//     counter, decaying to zero over an hour). One invalid message takes a
//     peer below the gossip threshold (-100); a handful graylists it
//     (-1000) and we ignore everything it sends until it decays.
//   - Positive score comes from time in the mesh (up to +3) and first
//     deliveries (up to +10), capped at +10 per topic overall, so an attacker
//     cannot bank credit to spend on spam: valid spam earns at most +10 in
//     all, one invalid message's worth. Messages over a publisher's rate
//     are ignored (ratelimit.go), which earns nothing.
//   - A peer flooding us with its own messages collects strikes
//     (ratelimit.go), -10 each through AppSpecificScore (weight 1; New
//     adds them to any AppSpecificScore configured here, scaled by
//     AppSpecificWeight), so about a hundred graylist it. They are not
//     invalid-message penalties, which gossipsub would also charge to
//     honest peers relaying the same message later.
//   - Mesh delivery-rate penalties are off: application topics are often
//     quiet, and a quiet topic would otherwise punish honest peers.
//   - IP colocation is penalised beyond 8 peers per IP, except on loopback
//     and private ranges, where devnets and LAN clusters legitimately run
//     many peers per address.
//   - Peer exchange is accepted only from peers at +10 or better (peers that
//     have been useful for a while), so a fresh Sybil cannot steer our mesh.
func DefaultScoreConfig() ScoreConfig {
	return ScoreConfig{
		Params: pubsub.PeerScoreParams{
			AppSpecificScore:            func(peer.ID) float64 { return 0 },
			AppSpecificWeight:           1,
			TopicScoreCap:               10,
			IPColocationFactorWeight:    -10,
			IPColocationFactorThreshold: 8,
			IPColocationFactorWhitelist: privateNets(),
			BehaviourPenaltyWeight:      -10,
			BehaviourPenaltyThreshold:   6,
			BehaviourPenaltyDecay:       pubsub.ScoreParameterDecay(10 * time.Minute),
			DecayInterval:               pubsub.DefaultDecayInterval,
			DecayToZero:                 pubsub.DefaultDecayToZero,
			RetainScore:                 10 * time.Minute,
		},
		TopicParams: pubsub.TopicScoreParams{
			TopicWeight:                    1,
			TimeInMeshWeight:               0.01,
			TimeInMeshQuantum:              time.Second,
			TimeInMeshCap:                  300,
			FirstMessageDeliveriesWeight:   1,
			FirstMessageDeliveriesDecay:    pubsub.ScoreParameterDecay(10 * time.Minute),
			FirstMessageDeliveriesCap:      10,
			InvalidMessageDeliveriesWeight: -100,
			InvalidMessageDeliveriesDecay:  pubsub.ScoreParameterDecay(time.Hour),
			// Mesh delivery penalties off (see above). pubsub requires the
			// decays to be in (0,1) even when the weight is zero.
			MeshMessageDeliveriesDecay: pubsub.ScoreParameterDecay(time.Minute),
			MeshFailurePenaltyDecay:    pubsub.ScoreParameterDecay(time.Minute),
		},
		Thresholds: pubsub.PeerScoreThresholds{
			GossipThreshold:             -100,
			PublishThreshold:            -500,
			GraylistThreshold:           -1000,
			AcceptPXThreshold:           10,
			OpportunisticGraftThreshold: 3,
		},
	}
}

func privateNets() []*net.IPNet {
	var nets []*net.IPNet
	for _, s := range []string{"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7"} {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			panic(err) // constant input
		}
		nets = append(nets, n)
	}
	return nets
}
