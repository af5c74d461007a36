package node

import (
	"fmt"
	"net"
	"time"

	"github.com/immense-p2p/immense/internal/netprefix"
	"github.com/immense-p2p/immense/overlay"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/transport"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	"github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/quicreuse"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/libp2p/go-libp2p/p2p/transport/tcpreuse"
	"github.com/multiformats/go-multiaddr"
)

// userAgent is announced through identify.
const userAgent = "immense/0.1"

// resourceManager turns Limits into a libp2p resource manager: libp2p's
// default scaled limits for the given memory and FD budget, with the
// system-wide connection and stream caps replaced by ours.
func resourceManager(l Limits) (network.ResourceManager, error) {
	scaled := rcmgr.DefaultLimits.Scale(l.MaxMemory, l.MaxFD)
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			Conns:         rcmgr.LimitVal(l.MaxConns),
			ConnsInbound:  rcmgr.LimitVal(l.MaxInboundConns),
			ConnsOutbound: rcmgr.LimitVal(l.MaxConns),
			Streams:       rcmgr.LimitVal(l.MaxStreams),
			Memory:        rcmgr.LimitVal64(l.MaxMemory),
			FD:            rcmgr.LimitVal(l.MaxFD),
		},
	}
	// Connections per IPv4 address and IPv6 /56 (Limits.MaxConnsPerIP):
	// identities are free, addresses are not. Loopback stays unlimited
	// (libp2p's network prefix limits), for devnets. The shard server's
	// slots per address count by the same prefixes.
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(partial.Build(scaled)),
		rcmgr.WithLimitPerSubnet(
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: netprefix.MachineBits4, ConnCount: l.MaxConnsPerIP}},
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: netprefix.MachineBits6, ConnCount: l.MaxConnsPerIP}}))
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	return rm, nil
}

// natOptions turns on reachability detection, hole punching and relaying.
func natOptions(c NATConfig, peers autorelay.PeerSource) []libp2p.Option {
	if !c.Enabled {
		return []libp2p.Option{libp2p.DisableRelay()}
	}
	opts := []libp2p.Option{
		libp2p.EnableAutoNATv2(),
		// Answer other peers' AutoNAT v1 probes (rate-limited by libp2p):
		// DHT auto mode follows the v1 reachability verdict.
		libp2p.EnableNATService(),
		libp2p.EnableHolePunching(),
		libp2p.EnableAutoRelayWithPeerSource(peers, autorelay.WithBootDelay(5*time.Second)),
	}
	if c.PortMap {
		opts = append(opts, libp2p.NATPortMap())
	}
	if c.ForcePublic {
		opts = append(opts, libp2p.ForceReachabilityPublic())
	}
	if c.RelayService && c.MaxRelayedConns > 0 {
		res := relayv2.DefaultResources()
		res.MaxReservations = c.MaxRelayedConns
		res.MaxCircuits = min(res.MaxCircuits, c.MaxRelayedConns)
		res.MaxReservationsPerIP = min(32, c.MaxRelayedConns) // shared addresses, as above
		// Relayed connections exist to coordinate a hole punch or carry a
		// little traffic until one succeeds: 2 minutes and 1 MiB each way.
		res.Limit = &relayv2.RelayLimit{Duration: 2 * time.Minute, Data: 1 << 20}
		opts = append(opts, libp2p.EnableRelayService(relayv2.WithResources(res)))
	}
	return opts
}

// deployment is where the node runs (overlay.Deployment): the scopes of
// its listen and bootstrap addresses. Its dial gate keeps the node's dials
// within them (and the internet, and private addresses with DialPrivate),
// and its DHT mode follows them.
func deployment(cfg *Config, bootstrap []peer.AddrInfo) overlay.Deployment {
	var listen []multiaddr.Multiaddr
	for _, s := range cfg.ListenAddrs {
		if a, err := multiaddr.NewMultiaddr(s); err == nil { // validated
			listen = append(listen, a)
		}
	}
	return overlay.NewDeployment(listen, bootstrap)
}

func newHost(cfg *Config, priv crypto.PrivKey, counter *metrics.BandwidthCounter, peerSource autorelay.PeerSource, gate *overlay.DialGate) (host.Host, error) {
	rm, err := resourceManager(cfg.Limits)
	if err != nil {
		return nil, err
	}
	cm, err := connmgr.NewConnManager(cfg.Limits.ConnLowWater, cfg.Limits.ConnHighWater,
		connmgr.WithGracePeriod(cfg.Limits.ConnGracePeriod))
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("connection manager: %w", err)
	}
	bw := newBandwidth(cfg.MaxUpload, cfg.MaxDownload)
	opts := []libp2p.Option{
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings(cfg.ListenAddrs...),
		libp2p.Transport(func(up transport.Upgrader, rm network.ResourceManager, shared *tcpreuse.ConnMgr) (*tcp.TcpTransport, error) {
			if bw.enabled() {
				up = &cappedUpgrader{Upgrader: up, b: bw}
			}
			return tcp.NewTCPTransport(up, rm, shared)
		}),
		libp2p.Transport(libp2pquic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.ConnectionGater(gate),
		libp2p.PrometheusRegisterer(cfg.Registry),
		libp2p.UserAgent(agentVersion(cfg.zone())),
		// libp2p stops dialling QUIC once fewer than 5 of the last 100 UDP
		// dials succeeded, taking it for a network that blocks UDP. Here
		// most dials that fail do so because volunteers are offline, and
		// repair dials them on purpose: the detector would switch QUIC off
		// for the wrong reason.
		libp2p.UDPBlackHoleSuccessCounter(nil),
	}
	if counter != nil {
		opts = append(opts, libp2p.BandwidthReporter(counter))
	}
	if bw.enabled() {
		opts = append(opts, libp2p.QUICReuse(quicreuse.NewConnManager,
			quicreuse.OverrideListenUDP(func(network string, laddr *net.UDPAddr) (net.PacketConn, error) {
				c, err := net.ListenUDP(network, laddr)
				if err != nil {
					return nil, err
				}
				return capPacketConn(c, bw), nil
			})))
	}
	opts = append(opts, natOptions(cfg.NAT, peerSource)...)
	opts = append(opts, cfg.HostOptions...)
	h, err := libp2p.New(opts...)
	if err != nil {
		rm.Close()
		cm.Close()
		return nil, fmt.Errorf("start libp2p host: %w", err)
	}
	return h, nil
}
