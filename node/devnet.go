package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/overlay"
	"github.com/immense-p2p/immense/webrtc"
)

// DevnetConfig configures a local network run in one process.
type DevnetConfig struct {
	// Nodes is the number of nodes, the bootstrap node included (>= 2).
	Nodes int
	// DataDir holds one sub-directory per node, so identities survive restarts.
	DataDir string
	// HTTPAddr is the HTTP address of the first peer; peer i listens on
	// port+i-1. Port 0 gives every peer a free port.
	HTTPAddr string
	Logger   *slog.Logger
}

// Devnet is a bootstrap node and peers on loopback, each with its HTTP API.
type Devnet struct {
	Bootstrap *Node
	Peers     []*Node
	// HTTP[i] serves Peers[i].
	HTTP []*HTTPServer
}

// StartDevnet starts a bootstrap node and cfg.Nodes-1 peers on 127.0.0.1,
// every one a DHT server (loopback is reachable by all of them), and serves
// each peer's HTTP API.
func StartDevnet(ctx context.Context, cfg DevnetConfig) (*Devnet, error) {
	if cfg.Nodes < 2 {
		return nil, fmt.Errorf("devnet needs at least 2 nodes (a bootstrap and a peer), got %d", cfg.Nodes)
	}
	if cfg.DataDir == "" {
		return nil, errors.New("devnet: DataDir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	host, portStr, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("devnet HTTP address %q: %w", cfg.HTTPAddr, err)
	}
	basePort, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("devnet HTTP port %q: %w", portStr, err)
	}
	loopback := []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}

	// Every devnet peer shares one app key, as the peers of one application
	// do: what one writes, the others read.
	appKey := filepath.Join(cfg.DataDir, "app.key")
	if _, err := erasure.LoadOrGenerateAppKey(appKey); err != nil {
		return nil, err
	}
	d := &Devnet{}
	bcfg := BootstrapConfig()
	bcfg.DataDir = filepath.Join(cfg.DataDir, "bootstrap")
	bcfg.ListenAddrs = loopback
	bcfg.NAT.PortMap = false
	bcfg.Logger = cfg.Logger.With("devnet", "bootstrap")
	d.Bootstrap, err = New(ctx, bcfg)
	if err != nil {
		return nil, err
	}
	var boot []string
	for _, a := range d.Bootstrap.Addrs() {
		boot = append(boot, a.String())
	}
	for i := 1; i < cfg.Nodes; i++ {
		pcfg := DefaultConfig()
		pcfg.DataDir = filepath.Join(cfg.DataDir, fmt.Sprintf("peer%d", i))
		pcfg.ListenAddrs = loopback
		pcfg.NAT.PortMap = false // nothing to map on loopback
		// Browsers need no token on a devnet (the HTTP API is on loopback).
		// ICE uses every interface: a desktop browser hides its loopback
		// candidates, so loopback-only would leave it nothing to pair with.
		bc := webrtc.DevnetConfig()
		pcfg.Browsers = &bc
		ec := erasure.DevnetConfig()
		pcfg.State = &ec
		pcfg.StorageQuota = 1 << 30
		pcfg.AppKeyFile = appKey
		pcfg.Bootstrap = boot
		pcfg.Mode = overlay.ModeServer
		pcfg.Logger = cfg.Logger.With("devnet", fmt.Sprintf("peer%d", i))
		p, err := New(ctx, pcfg)
		if err != nil {
			d.Close()
			return nil, err
		}
		d.Peers = append(d.Peers, p)
		port := 0
		if basePort != 0 {
			port = basePort + i - 1
		}
		srv, err := ServeHTTP(net.JoinHostPort(host, strconv.Itoa(port)), p.Handler(HTTPOptions{Topics: true}), pcfg.Logger)
		if err != nil {
			d.Close()
			return nil, err
		}
		d.HTTP = append(d.HTTP, srv)
	}
	return d, nil
}

// Close stops every server and node.
func (d *Devnet) Close() error {
	var errs []error
	for _, s := range d.HTTP {
		errs = append(errs, s.Close())
	}
	for _, p := range d.Peers {
		errs = append(errs, p.Close())
	}
	if d.Bootstrap != nil {
		errs = append(errs, d.Bootstrap.Close())
	}
	return errors.Join(errs...)
}
