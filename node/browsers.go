package node

import (
	"context"
	"fmt"

	"github.com/immense-p2p/immense/webrtc"
)

// bus adapts the node's topics to what the browser bridge needs.
type bus struct{ n *Node }

func (b bus) Publish(ctx context.Context, topic string, data []byte) error {
	return b.n.Publish(ctx, topic, data)
}

func (b bus) Subscribe(ctx context.Context, topic string) (<-chan webrtc.Message, error) {
	in, err := b.n.Subscribe(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make(chan webrtc.Message, cap(in))
	b.n.wg.Add(1)
	go func() {
		defer b.n.wg.Done()
		defer close(out)
		for m := range in { // closed when ctx ends or the node closes
			select {
			case out <- webrtc.Message{Topic: m.Topic, ID: m.ID, Data: m.Data, From: m.From.String(), Time: m.Published}:
			case <-ctx.Done():
				return
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
	srv, err := webrtc.New(bus{n}, wc)
	if err != nil {
		return fmt.Errorf("start WebRTC bridge: %w", err)
	}
	n.browsers = srv
	return nil
}
