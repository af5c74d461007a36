package node

import (
	"context"
	"fmt"
	"strings"

	"github.com/immense-p2p/immense/overlay"
	"github.com/immense-p2p/immense/webrtc"
)

// bus adapts the node's topics to what the browser bridge needs. Its
// subscriptions are the overlay's own: the bridge's fan-out reads the
// overlay subscription's queue directly, so between gossipsub and the
// browsers there is one hand-off, with the overlay's drop rule.
type bus struct{ n *Node }

// Publish relays a browser's message with its token, which every peer
// checks against the topic (overlay publish authorization).
func (b bus) Publish(ctx context.Context, topic string, data []byte, token string, proof *webrtc.Proof) error {
	if b.n.ctx.Err() != nil {
		return ErrClosed
	}
	if strings.HasPrefix(topic, presencePrefix) {
		// Presence announcements are the peers' own; a browser publishing
		// there would speak for its peer.
		return fmt.Errorf("%w: %q is a presence topic, announced by peers only", overlay.ErrUnauthorized, topic)
	}
	if token == "" { // InsecureNoAuth: the peer publishes as itself
		return b.n.overlay.Publish(ctx, topic, data)
	}
	var p *overlay.BrowserProof
	if proof != nil {
		p = &overlay.BrowserProof{Time: proof.Time, Sig: proof.Sig}
	}
	return b.n.overlay.PublishToken(ctx, topic, data, token, p)
}

func (b bus) Subscribe(_ context.Context, topic string) (webrtc.Subscription, error) {
	if b.n.ctx.Err() != nil {
		return nil, ErrClosed
	}
	sub, err := b.n.overlay.Subscribe(topic)
	if err != nil {
		return nil, err
	}
	return busSubscription{sub}, nil
}

// busSubscription is an overlay subscription seen as a webrtc.Subscription.
type busSubscription struct{ sub *overlay.Subscription }

func (s busSubscription) Next(ctx context.Context) (webrtc.Message, error) {
	m, err := s.sub.Next(ctx)
	if err != nil {
		return webrtc.Message{}, err
	}
	return browserMessage(m), nil
}

func (s busSubscription) TryNext() (webrtc.Message, bool) {
	m, ok := s.sub.TryNext()
	if !ok {
		return webrtc.Message{}, false
	}
	return browserMessage(m), true
}

func (s busSubscription) Close() { s.sub.Cancel() }

// browserMessage is m for browsers: its ID is its position, which the
// browser resumes after.
func browserMessage(m *Message) webrtc.Message {
	return webrtc.Message{Topic: m.Topic, ID: m.Position.String(), Data: m.Data, From: m.From.String(), Sender: m.Sender.String(), Time: m.Published}
}

// Resume replays topic's history after since for a browser
// (webrtc.Resumer); live filters by the message IDs browserMessage gives.
func (b bus) Resume(ctx context.Context, client, topic, since string) ([]webrtc.Message, bool, func(string) bool, error) {
	p, err := overlay.ParsePosition(since)
	if err != nil {
		return nil, false, nil, err
	}
	msgs, ok, err := b.n.history(ctx, client, topic, p)
	if err != nil {
		return nil, false, nil, err
	}
	r := overlay.NewResume(p, msgs)
	out := make([]webrtc.Message, len(msgs))
	for i, m := range msgs {
		out[i] = browserMessage(m)
	}
	live := func(id string) bool {
		q, err := overlay.ParsePosition(id)
		return err != nil || r.Live(&Message{Position: q})
	}
	return out, ok, live, nil
}

// PresenceOn, Present and WatchPresence give browsers presence
// (webrtc.Presencer, presence.go).
func (b bus) PresenceOn(topic string) bool { return b.n.presence.on(topic) }

func (b bus) Present(topic, member string, joined bool) {
	if joined {
		b.n.presence.join(topic, member)
	} else {
		b.n.presence.leave(topic, member)
	}
}

func (b bus) WatchPresence(ctx context.Context, topic string) (<-chan webrtc.PresenceEvent, error) {
	events, err := b.n.WatchPresence(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make(chan webrtc.PresenceEvent, cap(events))
	b.n.wg.Add(1)
	go func() {
		defer b.n.wg.Done()
		defer close(out)
		for e := range events {
			select {
			case out <- webrtc.PresenceEvent{Topic: e.Topic, Member: e.Member.ID, Peer: e.Member.Peer, Joined: e.Joined}:
			case <-ctx.Done():
			}
		}
	}()
	return out, nil
}

// startBrowsers starts the WebRTC bridge if the config asks for one.
func (n *Node) startBrowsers() error {
	if n.cfg.Browsers == nil {
		return nil
	}
	wc := *n.cfg.Browsers
	if wc.Logger == nil {
		wc.Logger = n.plog
	}
	if wc.Registerer == nil {
		wc.Registerer = n.registry
	}
	// A peer that knows the app's topic key admits browsers whose EdDSA
	// tokens it signed (appauth.go).
	keys, err := browserTokenKeys(n.cfg.Browsers, n.topicKeys)
	if err != nil {
		return fmt.Errorf("start WebRTC bridge: %w", err)
	}
	wc.PublicKeys = keys
	srv, err := webrtc.New(bus{n}, wc)
	if err != nil {
		return fmt.Errorf("start WebRTC bridge: %w", err)
	}
	n.browsers = srv
	return nil
}
