package node_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/immense-p2p/immense/node"
)

// Two nodes embedded in one program: b bootstraps from a, subscribes to a
// topic, and a publishes to it.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "immense-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	config := func(name string, bootstrap ...string) node.Config {
		cfg := node.DefaultConfig()
		cfg.DataDir = filepath.Join(dir, name) // identity.key lives here
		cfg.ListenAddrs = []string{"/ip4/127.0.0.1/tcp/0"}
		cfg.NAT.PortMap = false
		cfg.Bootstrap = bootstrap
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		return cfg
	}
	a, err := node.New(ctx, config("a"))
	if err != nil {
		panic(err)
	}
	defer a.Close()
	b, err := node.New(ctx, config("b", a.Addrs()[0].String()))
	if err != nil {
		panic(err)
	}
	defer b.Close()
	<-b.Joined()

	msgs, err := b.Subscribe(ctx, "greetings")
	if err != nil {
		panic(err)
	}
	// Publish waits briefly for a subscriber to be known, then sends.
	if err := a.Publish(ctx, "greetings", []byte("hello from a")); err != nil {
		panic(err)
	}
	m := <-msgs
	fmt.Printf("%s (signed by a: %v)\n", m.Data, m.From == a.ID())
	// Output: hello from a (signed by a: true)
}
