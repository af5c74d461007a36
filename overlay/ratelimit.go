package overlay

import (
	"container/list"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/immense-p2p/immense/internal/ratelimit"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
)

// Gossip spam defences. Any peer can connect and speak gossipsub to us, so
// everything it sends is bounded before it costs us a signature check, a
// slot in the validation queue or a byte of memory:
//
//  1. The subscription filter (gossipsub, before any state is kept) keeps
//     only announcements of our own topics (immense/ and a valid name), at
//     most MaxTopics per peer at once, and drops an RPC announcing more
//     than MaxRPCSubscriptions at once.
//  2. The RPC inspector (inspectRPC, on gossipsub's event loop, before the
//     validation queue, without crypto) drops an RPC whose control part is
//     larger than any honest peer sends, then removes from it the messages
//     beyond the forwarding peer's budget (PeerMessageRate) and beyond
//     their topic's budget (TopicMessageRate). A removed message that
//     names the forwarding peer as its publisher is a strike against that
//     peer (see 3): our own Publish keeps far below PeerMessageRate, and
//     the inspector runs even for graylisted peers, so a peer flooding us
//     with its own messages stays graylisted for as long as it floods. The validation queue, which
//     all topics share behind one worker (see New: it keeps each
//     publisher's messages in order), therefore never receives more than a
//     topic's budget from a flood on that topic, and the other topics keep
//     their share of the worker. Dropped here, a message costs its sender
//     nothing: it is as if it was never sent (gossip offers it again).
//  3. The validator (admitRate, first thing in (*Overlay).validator, once
//     the signature is verified) limits each publisher to
//     PublisherMessageRate. A message over it is ignored: not delivered,
//     not forwarded, so the burst goes no further than the first honest
//     peer. When the publisher sent it to us itself, that peer is the
//     spammer: each such message is a strike against it, which the
//     application-specific part of its score subtracts (spamStrikeScore
//     each, decaying with a time constant of spamStrikeDecay), so that
//     about a hundred graylist it and gossipsub then drops everything it
//     sends. A message over the rate relayed by another peer costs that
//     peer nothing: a forwarder relaying a publisher's burst is not the
//     spammer. (Rejecting instead would be wrong: gossipsub penalises
//     every later sender of a rejected message, so a spammer sending the
//     same message fast to us and slowly to an honest neighbour would get
//     the neighbour penalised for relaying it.) Our own Publish keeps
//     under half the burst (publishAllowed), so that an honest peer's
//     bursts, seen a link's jitter later, draw no strikes.
//
// What is left: an attacker signing each message with a fresh identity
// passes step 3 and is bounded only by step 2, per connection and per
// topic; it is not graylisted, but cannot take more than one topic's
// budget, which starves only the topic it floods.
const (
	// maxRateBuckets caps the buckets each limiter keeps (forwarders,
	// topics, publishers); beyond it the least recently used is forgotten,
	// so a stranger minting identities or topic names cannot grow the
	// map. A forgotten key starts again with a full burst, which the
	// other two limiters still bound.
	maxRateBuckets = 4096
	// spamStrikeScore is what one strike subtracts from a peer's score:
	// 100 strikes reach the graylist threshold (-1000), far more than the
	// few a link's jitter can cause an honest publisher, and a tenth of a
	// second of a flood at ten times the rate.
	spamStrikeScore = 10
	// spamStrikeDecay is the time constant strikes decay with: a
	// graylisted spammer (1000 strikes) is heard again after about
	// 25 minutes of silence, like gossipsub's own behaviour penalties.
	spamStrikeDecay = 10 * time.Minute
)

// Spam counter reasons (immense_overlay_spam_refused_total{reason}).
const (
	spamPeerRate          = "peer_rate"
	spamTopicRate         = "topic_rate"
	spamPublisherStrike   = "publisher_rate_direct"
	spamStrikes           = "strikes"
	spamPublisherIgnore   = "publisher_rate_relayed"
	spamRPCSubscriptions  = "rpc_subscriptions"
	spamRPCControl        = "rpc_control"
	spamForeignTopic      = "foreign_subscription"
	spamPeerSubscriptions = "peer_subscriptions"
)

var spamReasons = []string{spamPeerRate, spamTopicRate, spamPublisherStrike, spamPublisherIgnore, spamStrikes,
	spamRPCSubscriptions, spamRPCControl, spamForeignTopic, spamPeerSubscriptions}

var (
	errRPCSubscriptions = errors.New("overlay: RPC announces too many subscriptions")
	errRPCControl       = errors.New("overlay: RPC carries too many control entries")
	errPublisherRate    = errors.New("overlay: publisher over its message rate")
)

// spamGuard holds the limiters of one overlay.
type spamGuard struct {
	forwarders *ratelimit.Keyed[peer.ID]
	topics     *ratelimit.Keyed[string]
	publishers *ratelimit.Keyed[peer.ID]
	// self bounds our own publishing (publishAllowed).
	self *ratelimit.Keyed[struct{}]

	strikeCounter prometheus.Counter

	mu      sync.Mutex
	strikes map[peer.ID]*list.Element
	lru     list.List // of *strikeEntry, most recent first
}

type strikeEntry struct {
	p peer.ID
	v float64 // strikes at t
	t time.Time
}

func newSpamGuard(c *Config) *spamGuard {
	return &spamGuard{
		forwarders: ratelimit.NewKeyed[peer.ID](c.PeerMessageRate, c.PeerMessageBurst, maxRateBuckets, ratelimit.EvictOldest),
		topics:     ratelimit.NewKeyed[string](c.TopicMessageRate, c.TopicMessageBurst, maxRateBuckets, ratelimit.EvictOldest),
		publishers: ratelimit.NewKeyed[peer.ID](c.PublisherMessageRate, c.PublisherMessageBurst, maxRateBuckets, ratelimit.EvictOldest),
		self:       ratelimit.NewKeyed[struct{}](c.PublisherMessageRate, max(1, c.PublisherMessageBurst/2), 1, ratelimit.EvictOldest),
		strikes:    make(map[peer.ID]*list.Element),
	}
}

// strike counts one strike against p.
func (g *spamGuard) strike(p peer.ID, now time.Time) {
	if g.strikeCounter != nil {
		g.strikeCounter.Inc()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if e, ok := g.strikes[p]; ok {
		se := e.Value.(*strikeEntry)
		se.v, se.t = decayed(se.v, now.Sub(se.t))+1, now
		g.lru.MoveToFront(e)
		return
	}
	if len(g.strikes) >= maxRateBuckets {
		old := g.lru.Back()
		delete(g.strikes, old.Value.(*strikeEntry).p)
		g.lru.Remove(old)
	}
	g.strikes[p] = g.lru.PushFront(&strikeEntry{p: p, v: 1, t: now})
}

// penalty is p's application-specific score: minus spamStrikeScore per
// strike, decayed. gossipsub asks for it whenever it refreshes scores.
func (g *spamGuard) penalty(p peer.ID, now time.Time) float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.strikes[p]
	if !ok {
		return 0
	}
	se := e.Value.(*strikeEntry)
	return -spamStrikeScore * decayed(se.v, now.Sub(se.t))
}

func decayed(v float64, dt time.Duration) float64 {
	return v * math.Exp(-dt.Seconds()/spamStrikeDecay.Seconds())
}

// inspectRPC is gossipsub's RPC inspector (step 2 above). It runs on
// gossipsub's event loop for every RPC any peer sends, before the
// subscription filter and the graylist: it must be cheap and must not
// block (nor take o.mu, which is held across calls into that loop).
//
// An error drops the whole RPC. Over-budget messages are instead removed
// from rpc.Publish, so that a forwarder's control messages and its other
// messages still count: gossipsub v0.17 reads rpc.Publish after the
// inspector returns (handleIncomingRPC), and the RPC is this call's alone.
func (o *Overlay) inspectRPC(from peer.ID, rpc *pubsub.RPC) error {
	if n := len(rpc.GetSubscriptions()); n > o.cfg.MaxRPCSubscriptions {
		o.metrics.spam.WithLabelValues(spamRPCSubscriptions).Inc()
		return fmt.Errorf("%w: %d from %s, at most %d", errRPCSubscriptions, n, from, o.cfg.MaxRPCSubscriptions)
	}
	if ctl := rpc.GetControl(); ctl != nil {
		if n := controlSize(ctl); n > o.cfg.MaxRPCControl {
			o.metrics.spam.WithLabelValues(spamRPCControl).Inc()
			return fmt.Errorf("%w: %d from %s, at most %d", errRPCControl, n, from, o.cfg.MaxRPCControl)
		}
	}
	msgs := rpc.GetPublish()
	if len(msgs) == 0 {
		return nil
	}
	now := time.Now()
	kept := msgs[:0]
	var peerDropped, topicDropped int
	for _, m := range msgs {
		switch {
		case !o.spam.forwarders.Allow(from, now):
			peerDropped++
			if peer.ID(m.GetFrom()) == from {
				// Its own message (signed or not, the claim is its
				// own): the peer floods us itself (see strike).
				o.spam.strike(from, now)
			}
		case o.joinedTopic(m.GetTopic()) && !o.spam.topics.Allow(m.GetTopic(), now):
			// Only topics we are in have a bucket: gossipsub drops the
			// others' messages before the queue, and a stranger naming
			// invented topics could otherwise push out the bucket of
			// the topic it floods.
			topicDropped++
		default:
			kept = append(kept, m)
		}
	}
	if peerDropped+topicDropped == 0 {
		return nil
	}
	clear(msgs[len(kept):])
	rpc.Publish = kept
	if peerDropped > 0 {
		o.metrics.spam.WithLabelValues(spamPeerRate).Add(float64(peerDropped))
	}
	if topicDropped > 0 {
		o.metrics.spam.WithLabelValues(spamTopicRate).Add(float64(topicDropped))
	}
	o.log.Debug("messages over budget dropped", "from", from, "peer_rate", peerDropped, "topic_rate", topicDropped)
	return nil
}

// joinedTopic reports whether wire is the gossipsub name of a topic we
// have joined, without o.mu (see inspectRPC).
func (o *Overlay) joinedTopic(wire string) bool {
	_, ok := o.wireTopics.Load(wire)
	return ok
}

// controlSize counts the entries of a control message: topics and message
// ids in IHAVE, IWANT and IDONTWANT, GRAFTs, and PRUNEs with the peers
// they offer.
func controlSize(ctl *pb.ControlMessage) int {
	n := len(ctl.GetGraft())
	for _, ih := range ctl.GetIhave() {
		n += 1 + len(ih.GetMessageIDs())
	}
	for _, iw := range ctl.GetIwant() {
		n += 1 + len(iw.GetMessageIDs())
	}
	for _, idw := range ctl.GetIdontwant() {
		n += 1 + len(idw.GetMessageIDs())
	}
	for _, pr := range ctl.GetPrune() {
		n += 1 + len(pr.GetPeers())
	}
	return n
}

// admitRate is step 3 above, called first by the validator of every
// topic: it limits each publisher's messages, and says what to do with one
// over the rate. Our own messages are never limited here.
func (o *Overlay) admitRate(topic string, from peer.ID, msg *pubsub.Message) (pubsub.ValidationResult, bool) {
	publisher := msg.GetFrom()
	// Message.Local only marks in-process-only publications: our own
	// messages are recognised by their publisher, and Publish has held
	// them to the rate already (when anyone could count them).
	if msg.Local || publisher == o.host.ID() {
		return pubsub.ValidationAccept, true
	}
	if o.spam.publishers.Allow(publisher, time.Now()) {
		return pubsub.ValidationAccept, true
	}
	if from == publisher {
		o.spam.strike(publisher, time.Now())
		o.metrics.spam.WithLabelValues(spamPublisherStrike).Inc()
	} else {
		o.metrics.spam.WithLabelValues(spamPublisherIgnore).Inc()
	}
	o.log.Debug("message ignored", "topic", topic, "from", publisher, "via", from, "err", errPublisherRate)
	return pubsub.ValidationIgnore, false
}

// subscriptionFilter keeps the subscriptions peers announce to ours (step
// 1 above): gossipsub remembers every topic any peer says it reads, so a
// stranger announcing invented topics would otherwise grow that memory.
// Each peer may have at most max topics announced at once (MaxTopics: an
// honest peer cannot subscribe to more), over any number of RPCs; further
// announcements are dropped until it unsubscribes some or disconnects.
// Our own joins pass the same name check. pubsub.WrapLimitSubscriptionFilter
// adds the per-RPC cap around it.
type subscriptionFilter struct {
	o   *Overlay
	max int

	mu    sync.Mutex
	peers map[peer.ID]map[string]struct{}
}

func newSubscriptionFilter(o *Overlay, max int) *subscriptionFilter {
	return &subscriptionFilter{o: o, max: max, peers: make(map[peer.ID]map[string]struct{})}
}

func (f *subscriptionFilter) CanSubscribe(wire string) bool {
	name, ok := strings.CutPrefix(wire, wirePrefix)
	return ok && ValidateTopic(name) == nil
}

func (f *subscriptionFilter) FilterIncomingSubscriptions(from peer.ID, subs []*pb.RPC_SubOpts) ([]*pb.RPC_SubOpts, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	kept := make([]*pb.RPC_SubOpts, 0, len(subs))
	foreign, over := 0, 0
	for _, s := range subs {
		wire := s.GetTopicid()
		if !f.CanSubscribe(wire) {
			foreign++
			continue
		}
		topics := f.peers[from]
		if !s.GetSubscribe() {
			delete(topics, wire)
			kept = append(kept, s)
			continue
		}
		if _, ok := topics[wire]; !ok {
			if len(topics) >= f.max {
				over++
				continue
			}
			if topics == nil {
				topics = make(map[string]struct{})
				f.peers[from] = topics
			}
			topics[wire] = struct{}{}
		}
		kept = append(kept, s)
	}
	if foreign > 0 {
		f.o.metrics.spam.WithLabelValues(spamForeignTopic).Add(float64(foreign))
	}
	if over > 0 {
		f.o.metrics.spam.WithLabelValues(spamPeerSubscriptions).Add(float64(over))
	}
	return kept, nil
}

// forget drops what p announced; gossipsub forgets it too once p has no
// connection left.
func (f *subscriptionFilter) forget(p peer.ID) {
	f.mu.Lock()
	delete(f.peers, p)
	f.mu.Unlock()
}

// notifiee forgets a peer's announcements when its last connection closes.
func (f *subscriptionFilter) notifiee() network.Notifiee {
	return &network.NotifyBundle{DisconnectedF: func(n network.Network, c network.Conn) {
		if n.Connectedness(c.RemotePeer()) != network.Connected {
			f.forget(c.RemotePeer())
		}
	}}
}

// scoreBoard keeps the last peer scores gossipsub reported
// (pubsub.WithPeerScoreInspect), for the graylisted-peers gauge and tests.
type scoreBoard struct {
	mu     sync.Mutex
	scores map[peer.ID]float64
}

func (s *scoreBoard) update(scores map[peer.ID]float64) {
	s.mu.Lock()
	s.scores = scores
	s.mu.Unlock()
}

func (s *scoreBoard) score(p peer.ID) (float64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.scores[p]
	return v, ok
}

// below counts the peers scored under threshold.
func (s *scoreBoard) below(threshold float64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range s.scores {
		if v < threshold {
			n++
		}
	}
	return n
}
