package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/immense-p2p/immense/overlay"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/x/simlibp2p"
	"github.com/marcopolo/simnet"
)

// simNetwork starts n nodes on a go-libp2p simulated network (real QUIC over
// simulated links, 20 Mbit/s, 10 ms one way). Node 0 is the bootstrap node;
// the others bootstrap from it. Call it inside synctest.Test: the nodes then
// run in virtual time. Everything is closed by t.Cleanup.
func simNetwork(t *testing.T, n int, adjust func(i int, c *Config)) []*Node {
	t.Helper()
	sn := &simnet.Simnet{LatencyFunc: simnet.StaticLatency(10 * time.Millisecond)}
	link := simnet.NodeBiDiLinkSettings{
		Downlink: simnet.LinkSettings{BitsPerSecond: 20 * simlibp2p.OneMbps},
		Uplink:   simnet.LinkSettings{BitsPerSecond: 20 * simlibp2p.OneMbps},
	}
	sn.Start()
	nodes := make([]*Node, 0, n)
	t.Cleanup(func() {
		for _, nd := range nodes {
			nd.Close()
		}
		sn.Close()
	})
	var bootstrap []string
	for i := range n {
		cfg := DefaultConfig()
		cfg.DataDir = t.TempDir()
		cfg.ListenAddrs = []string{fmt.Sprintf("/ip4/%s/udp/8000/quic-v1", simnet.IntToPublicIPv4(i))}
		cfg.Overlay.Mode = overlay.ModeServer
		cfg.Bootstrap = bootstrap
		cfg.NAT = NATConfig{} // every simulated node is public
		cfg.NoTrafficMeters = true
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		cfg.HostOptions = []libp2p.Option{
			simlibp2p.QUICSimnet(sn, link),
			// Identify's address discovery stalls synctest (see simlibp2p).
			libp2p.DisableIdentifyAddressDiscovery(),
		}
		if adjust != nil {
			adjust(i, &cfg)
		}
		nd, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		nodes = append(nodes, nd)
		if i == 0 {
			for _, a := range nd.Addrs() {
				bootstrap = append(bootstrap, a.String())
			}
		}
	}
	return nodes
}
