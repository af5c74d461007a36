package overlay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
)

// Publishing never waits for discovery. A topic with a local subscriber is
// advertised and searched by gossipsub itself, so its messages go out at
// once: local subscribers (SSE streams, browsers, Go channels) get them
// without delay, and remote subscribers that have found us get them too. A
// topic this node only publishes to is known to nobody: its first messages
// would reach no one, so while no subscriber is known they wait, in order, in
// a bounded backlog that one goroutine per topic sends once DHT discovery has
// found a subscriber or Config.PublishDiscoveryTimeout has passed. The
// caller returns as soon as its message is queued.
const (
	// maxBacklogMessages caps the messages one topic holds while it looks
	// for a subscriber: a publisher ahead of discovery by more than this
	// is told to slow down (ErrBacklogFull).
	maxBacklogMessages = 256
	// maxBacklogBytes caps the payload bytes all topics hold that way,
	// so a publisher to many topics at once cannot grow the heap (raised
	// to two maximum-size messages if MaxMessageSize is larger).
	maxBacklogBytes = 16 << 20
	// maxDiscoveries caps the topics searched for a subscriber at once.
	// Beyond it, messages to further topics go out without waiting (and
	// reach only the subscribers gossipsub already knows).
	maxDiscoveries = 32
	// maxDiscoveryDials caps the peers dialled per discovery.
	maxDiscoveryDials = 8
)

// backlog holds, in publication order, the envelopes published to a topic
// while its subscribers are looked for. Guarded by Overlay.mu.
type backlog struct {
	msgs  [][]byte
	bytes int
}

// Publish signs and sends data to every subscriber of topic. It does not
// wait for the network: a nil error means the message was handed to
// gossipsub (or, on a topic this node only publishes to and knows no
// subscriber of yet, queued until discovery finds one; see above), not that
// anyone received it. The message carries the time of this call.
func (o *Overlay) Publish(ctx context.Context, topic string, data []byte) error {
	return o.publish(ctx, topic, data, "", nil)
}

// publish is Publish, with a browser's token as the credential if token is
// set (authorize.go), else this peer's own.
func (o *Overlay) publish(ctx context.Context, topic string, data []byte, token string, proof *BrowserProof) error {
	if err := ValidateTopic(topic); err != nil {
		return err
	}
	if len(data) == 0 {
		return ErrEmptyMessage
	}
	if len(data) > o.cfg.MaxMessageSize {
		return fmt.Errorf("%w: %d bytes, at most %d allowed", ErrMessageTooLarge, len(data), o.cfg.MaxMessageSize)
	}
	// Our neighbours hold each publisher to PublisherMessageRate and strike
	// one that goes over, so we hold ourselves to it first; a node with no
	// neighbour (the one-laptop deployment) has nobody to strike it, and
	// its local subscribers take what it publishes at full speed.
	// (The peer count, which copies the peer list, is asked only when over.)
	if !o.spam.self.Allow(struct{}{}, time.Now()) && len(o.host.Network().Peers()) > 0 {
		return fmt.Errorf("%w: more than %v messages a second (PublisherMessageRate)", ErrRateLimited, o.cfg.PublisherMessageRate)
	}
	env, err := o.seal(topic, data, token, proof)
	if err != nil {
		return err
	}
	// A topic without a subscriber can be left (to make room for another,
	// topics.go) between the join and the send: join it again, once.
	for attempt := 0; ; attempt++ {
		err := o.publishOnce(ctx, topic, env)
		if !errors.Is(err, errTopicLeft) {
			return err
		}
		if attempt == 1 {
			return fmt.Errorf("publish to %q: %w: topics are being left as fast as they are joined", topic, ErrTooManyTopics)
		}
	}
}

// errTopicLeft says that the topic was left while a publish used it.
var errTopicLeft = errors.New("overlay: topic left")

// publishOnce hands one sealed envelope to gossipsub, or to the topic's
// backlog while a subscriber is looked for.
func (o *Overlay) publishOnce(ctx context.Context, topic string, env []byte) error {
	o.mu.Lock()
	ts, err := o.join(topic, false)
	if err != nil {
		o.mu.Unlock()
		return err
	}
	direct := ts.backlog == nil && (ts.subs > 0 || o.cfg.PublishDiscoveryTimeout == 0)
	o.mu.Unlock()
	// peersKnown is a round trip through gossipsub's event loop: not under
	// o.mu, which every publish and subscribe takes.
	if direct || (ts.backlog == nil && ts.peersKnown(time.Now())) {
		return o.send(ctx, topic, ts, env)
	}

	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	if o.topics[topic] != ts {
		o.mu.Unlock()
		return errTopicLeft
	}
	if ts.backlog == nil {
		if o.discoveries >= maxDiscoveries {
			o.mu.Unlock()
			return o.send(ctx, topic, ts, env)
		}
		ts.backlog = &backlog{}
		o.discoveries++
		o.wg.Add(1)
		go o.drainBacklog(topic, ts)
	}
	err = o.enqueue(topic, ts.backlog, env)
	o.mu.Unlock()
	return err
}

// enqueue appends env to b within the backlog budgets. o.mu must be held.
func (o *Overlay) enqueue(topic string, b *backlog, env []byte) error {
	budget := max(maxBacklogBytes, 2*o.cfg.MaxMessageSize)
	if len(b.msgs) >= maxBacklogMessages || o.backlogBytes+len(env) > budget {
		return fmt.Errorf("%w: %d messages to %q (%d bytes in all topics) wait for a subscriber to be found",
			ErrBacklogFull, len(b.msgs), topic, o.backlogBytes)
	}
	b.msgs = append(b.msgs, env)
	b.bytes += len(env)
	o.backlogBytes += len(env)
	return nil
}

// send hands one envelope to gossipsub.
func (o *Overlay) send(ctx context.Context, topic string, ts *topicState, env []byte) error {
	if err := ts.topic.Publish(ctx, env); err != nil {
		if errors.Is(err, pubsub.ErrTopicClosed) {
			o.mu.Lock()
			closed := o.closed
			o.mu.Unlock()
			if closed {
				return ErrClosed
			}
			return errTopicLeft
		}
		return fmt.Errorf("publish to %q: %w", topic, err)
	}
	o.metrics.published.WithLabelValues(o.metrics.label(topic)).Inc()
	return nil
}

// drainBacklog looks for a subscriber of topic, then sends the topic's
// backlog in order, including what is queued while it sends; it ends, and
// later publishes go out directly, once the backlog is empty.
func (o *Overlay) drainBacklog(topic string, ts *topicState) {
	defer o.wg.Done()
	o.awaitSubscriber(o.ctx, topic, ts.topic)
	for {
		o.mu.Lock()
		b := ts.backlog
		msgs := b.msgs
		b.msgs, b.bytes = nil, 0
		for _, env := range msgs {
			o.backlogBytes -= len(env)
		}
		if len(msgs) == 0 {
			ts.backlog = nil
			o.discoveries--
			o.mu.Unlock()
			return
		}
		o.mu.Unlock()
		for i, env := range msgs {
			if err := o.send(o.ctx, topic, ts, env); err != nil {
				o.log.Warn("queued messages dropped", "topic", topic, "messages", len(msgs)-i, "err", err)
				break
			}
		}
	}
}

// awaitSubscriber gives a topic with no known subscriber up to
// PublishDiscoveryTimeout to get one: it looks the topic's providers up in
// the DHT and dials them, and returns as soon as gossipsub reports a peer on
// the topic (whether found that way or announced by a neighbour). It returns
// once every goroutine it started has stopped.
func (o *Overlay) awaitSubscriber(ctx context.Context, name string, t *pubsub.Topic) {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.PublishDiscoveryTimeout)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	events, err := t.EventHandler()
	if err != nil {
		return
	}
	defer events.Cancel()
	wg.Go(func() {
		found, err := o.disc.FindPeers(ctx, wireTopic(name))
		if err != nil {
			return
		}
		dials := 0
		for ai := range found {
			if ai.ID == o.host.ID() || dials == maxDiscoveryDials {
				continue // drain the channel, so FindPeers can end
			}
			dials++
			wg.Go(func() { _ = o.host.Connect(ctx, ai) })
		}
	})
	for len(t.ListPeers()) == 0 {
		ev, err := events.NextPeerEvent(ctx)
		if err != nil || ev.Type == pubsub.PeerJoin {
			return
		}
	}
}

// peersKnown reports whether gossipsub knows a subscriber of the topic.
// ListPeers is a round trip through gossipsub's event loop, so a positive
// answer is trusted for a second rather than asked again on every publish.
func (ts *topicState) peersKnown(now time.Time) bool {
	if now.Sub(time.Unix(0, ts.peersSeen.Load())) < time.Second {
		return true
	}
	if len(ts.topic.ListPeers()) == 0 {
		return false
	}
	ts.peersSeen.Store(now.UnixNano())
	return true
}
