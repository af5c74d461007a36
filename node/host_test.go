package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/immense-p2p/immense/internal/simtest"
	"github.com/immense-p2p/immense/overlay"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// TestConnsPerIP: the resource manager admits Limits.MaxConnsPerIP
// connections from one address (a machine with many identities) and
// refuses the next with libp2p's resource-limit error, while another
// address beside it and loopback (devnets) are unaffected.
func TestConnsPerIP(t *testing.T) {
	for _, preset := range []struct {
		name string
		cfg  Config
	}{{"default", DefaultConfig()}, {"volunteer", VolunteerConfig()}, {"bootstrap", BootstrapConfig()}} {
		t.Run(preset.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := preset.cfg.Limits
				rm, err := resourceManager(l)
				if err != nil {
					t.Fatal(err)
				}
				defer rm.Close()
				open := func(addr string) error {
					// One per 10 s: libp2p also limits the rate of new
					// connections per address (a burst of 16, then a few a minute).
					time.Sleep(10 * time.Second)
					_, err := rm.OpenConnection(network.DirInbound, true, multiaddr.StringCast(addr))
					return err
				}
				for i := range l.MaxConnsPerIP {
					if err := open(fmt.Sprintf("/ip4/203.0.114.7/udp/%d/quic-v1", 9000+i)); err != nil {
						t.Fatalf("connection %d of %d from one address: %v", i+1, l.MaxConnsPerIP, err)
					}
				}
				err = open("/ip4/203.0.114.7/udp/9999/quic-v1")
				if err == nil || !strings.Contains(err.Error(), "per ip limit exceeded") {
					t.Fatalf("connection %d from one address: %v, want refused", l.MaxConnsPerIP+1, err)
				}
				if err := open("/ip4/203.0.114.8/udp/9000/quic-v1"); err != nil {
					t.Fatalf("another address: %v", err)
				}
				for i := range 12 { // more than the default 8
					if err := open(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 9000+i)); err != nil {
						t.Fatalf("loopback connection %d: %v", i+1, err)
					}
				}
			})
		})
	}
}

// TestDialGateProviderRecords: a stranger subscribes to a topic from a
// loopback address, so its provider record in the DHT points at loopback,
// as a stranger's record pointing at a node owner's own services
// (127.0.0.1:22) would. The network is simulated: nothing reaches the
// machine's real loopback. A node on the internet that publishes to the
// topic looks its providers up and must not dial there: the dial gate
// refuses (and counts it), so the stranger never hears from it, though
// the bootstrap node took its inbound connection. On a devnet, where the
// nodes themselves are on loopback, the same publisher dials the stranger
// and delivers.
func TestDialGateProviderRecords(t *testing.T) {
	for _, c := range []struct {
		name      string
		nodes     []string // the bootstrap node's and the publisher's IPs; "": simtest.Addr
		wantDials bool
	}{
		{"internet", []string{"", ""}, false},
		{"devnet", []string{"127.0.0.1", "127.0.0.2"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newSimNet(t, simtest.Config{}, 2, nil, func(i int, cfg *Config) {
					cfg.State = nil
					if ip := c.nodes[i]; ip != "" {
						cfg.ListenAddrs = []string{fmt.Sprintf("/ip4/%s/udp/8000/quic-v1", ip)}
					}
					if i == 1 {
						// A client: the stranger's DHT puts its record on
						// the bootstrap node only, and never dials us.
						cfg.Overlay.Mode = overlay.ModeClient
					}
				})
				s.start(s.nodes[0], nil)
				s.start(s.nodes[1], s.bootstrapAddrs())
				boot, pub := s.nodes[0].n, s.nodes[1].n
				<-pub.Joined()

				h := simtest.NewHosts(t, s.net).StartAt(0, net.IPv4(127, 0, 0, 9), 8000)
				ocfg := overlay.DefaultConfig()
				ocfg.Mode = overlay.ModeClient
				ocfg.Bootstrap = []peer.AddrInfo{{ID: boot.ID(), Addrs: boot.Host().Addrs()}}
				ocfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
				stranger, err := overlay.New(context.Background(), h, ocfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { stranger.Close() })
				<-stranger.Joined()
				sub, err := stranger.Subscribe("news")
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Second) // the stranger provides the topic in the DHT

				ctx := context.Background()
				if err := pub.Publish(ctx, "news", []byte("hello")); err != nil {
					t.Fatal(err)
				}
				// Discovery gives up after PublishDiscoveryTimeout.
				wait, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				m, err := sub.Next(wait)
				refused := metricSum(t, pub, "immense_overlay_dials_refused_total")
				if !c.wantDials {
					if err == nil {
						t.Fatalf("the stranger on loopback received %q: our node dialled it", m.Data)
					}
					if pub.Host().Network().Connectedness(h.ID()) == network.Connected {
						t.Fatal("our node is connected to the stranger on loopback")
					}
					if refused == 0 {
						t.Fatal("no refused dial counted")
					}
					return
				}
				if err != nil || string(m.Data) != "hello" {
					t.Fatalf("the stranger on the devnet's loopback got %v, %v: want the message", m, err)
				}
				if refused != 0 {
					t.Errorf("%v dials refused on a devnet", refused)
				}
			})
		})
	}
}
