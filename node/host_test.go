package node

import (
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
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
