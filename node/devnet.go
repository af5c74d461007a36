package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/internal/durable"
)

// DevnetOptions are the launcher's options for a local network run in one
// process (StartDevnet). The preset its peers start from is DevnetConfig.
type DevnetOptions struct {
	// Nodes is the number of nodes, the bootstrap node included (>= 2).
	Nodes int
	// DataDir holds one sub-directory per node, so identities survive restarts.
	DataDir string
	// HTTPAddr is the HTTP address of the first peer; peer i listens on
	// port+i-1. Port 0 gives every peer a free port.
	HTTPAddr string
	Logger   *slog.Logger
	// Peer is the configuration every peer starts from, normally
	// DevnetConfig(). Each peer gets its own DataDir (under DataDir), logger
	// and metrics registry, and the devnet's bootstrap node added to
	// Bootstrap. Without an AppKeyFile the peers share one app key, made
	// in DataDir: what one writes, the others read, as the peers of one
	// application do.
	Peer Config
}

// Devnet is a bootstrap node and peers on loopback, each with its HTTP API.
type Devnet struct {
	Bootstrap *Node
	Peers     []*Node
	// HTTP[i] serves Peers[i].
	HTTP []*HTTPServer
	// APIToken is every node's control API token, kept in APITokenFile.
	APIToken     string
	APITokenFile string
}

// StartDevnet starts a bootstrap node on 127.0.0.1 and opts.Nodes-1 peers
// configured by opts.Peer, and serves each peer's HTTP API.
func StartDevnet(ctx context.Context, opts DevnetOptions) (*Devnet, error) {
	if opts.Nodes < 2 {
		return nil, fmt.Errorf("devnet needs at least 2 nodes (a bootstrap and a peer), got %d", opts.Nodes)
	}
	if opts.DataDir == "" {
		return nil, errors.New("devnet: DataDir is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	host, portStr, err := net.SplitHostPort(opts.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("devnet HTTP address %q: %w", opts.HTTPAddr, err)
	}
	basePort, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("devnet HTTP port %q: %w", portStr, err)
	}

	appKey := opts.Peer.AppKeyFile
	if appKey == "" {
		appKey = filepath.Join(opts.DataDir, "app.key")
		if _, err := erasure.LoadOrGenerateAppKey(appKey); err != nil {
			return nil, err
		}
	}
	// One control API token for the whole devnet, so that one exported
	// variable serves the curls to every peer.
	d := &Devnet{APITokenFile: filepath.Join(opts.DataDir, apiTokenFile)}
	if d.APIToken, err = loadOrCreateAPIToken(d.APITokenFile); err != nil {
		return nil, err
	}
	shareToken := func(dir string) error {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create data dir: %w", err)
		}
		return durable.WriteFile(filepath.Join(dir, apiTokenFile), []byte(d.APIToken+"\n"), 0o600)
	}
	bcfg := BootstrapConfig()
	bcfg.DataDir = filepath.Join(opts.DataDir, "bootstrap")
	bcfg.ListenAddrs = DevnetConfig().ListenAddrs
	bcfg.Logger = opts.Logger.With("devnet", "bootstrap")
	if err := shareToken(bcfg.DataDir); err != nil {
		return nil, err
	}
	d.Bootstrap, err = New(ctx, bcfg)
	if err != nil {
		return nil, err
	}
	boot := slices.Clone(opts.Peer.Bootstrap)
	for _, a := range d.Bootstrap.Addrs() {
		boot = append(boot, a.String())
	}
	for i := 1; i < opts.Nodes; i++ {
		pcfg := opts.Peer
		pcfg.DataDir = filepath.Join(opts.DataDir, fmt.Sprintf("peer%d", i))
		pcfg.AppKeyFile = appKey
		pcfg.Bootstrap = boot
		pcfg.Logger = opts.Logger.With("devnet", fmt.Sprintf("peer%d", i))
		pcfg.Registry = nil
		if err := shareToken(pcfg.DataDir); err != nil {
			d.Close()
			return nil, err
		}
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
		srv, err := p.StartHTTP(net.JoinHostPort(host, strconv.Itoa(port)), HTTPOptions{Topics: true})
		if err != nil {
			d.Close()
			return nil, err
		}
		d.HTTP = append(d.HTTP, srv)
	}
	return d, nil
}

// WaitJoined blocks until every node of the devnet has joined the overlay
// (see Node.Joined), or ctx ends.
func (d *Devnet) WaitJoined(ctx context.Context) error {
	for _, n := range append([]*Node{d.Bootstrap}, d.Peers...) {
		select {
		case <-n.Joined():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
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
