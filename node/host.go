package node

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	libp2pquic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
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
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(partial.Build(scaled)))
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	return rm, nil
}

func newHost(cfg *Config, priv crypto.PrivKey) (host.Host, error) {
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
	opts := []libp2p.Option{
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings(cfg.ListenAddrs...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(libp2pquic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.PrometheusRegisterer(cfg.Registry),
		libp2p.UserAgent(userAgent),
	}
	opts = append(opts, cfg.HostOptions...)
	h, err := libp2p.New(opts...)
	if err != nil {
		rm.Close()
		cm.Close()
		return nil, fmt.Errorf("start libp2p host: %w", err)
	}
	return h, nil
}
