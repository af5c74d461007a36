// Package node is the composition root of Immense: it builds a libp2p host
// (persistent identity, TCP and QUIC transports, Noise and TLS, yamux, a
// resource manager and a connection manager with explicit limits, and
// overlay's DialGate, which dials loopback and private addresses only where
// the node's own listen or bootstrap addresses are, or with
// Config.DialPrivate), joins it to the overlay, and offers the API applications embed: Publish and
// Subscribe on topics. It also serves the HTTP API of cmd/peer and
// cmd/bootstrap and runs local devnets.
//
// Most applications embed a Node in their own back-end, configured from a
// preset (DefaultConfig, VolunteerConfig, BootstrapConfig, DevnetConfig):
//
//	cfg := node.DefaultConfig()
//	cfg.DataDir = "/var/lib/myapp/immense"
//	cfg.Overlay.MaxMessageSize = 256 << 10 // each part's config is nested whole
//	n, err := node.New(ctx, cfg)
//	defer n.Close()
//	msgs, err := n.Subscribe(ctx, "chat")
//	for m := range msgs { ... }
//	err = n.Publish(ctx, "chat", []byte("hello"))
package node
