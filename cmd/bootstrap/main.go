// Command bootstrap runs an Immense bootstrap node: a stable, always-on DHT
// server with a persistent identity that newcomers dial first.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/immense-p2p/immense/cmd/internal/cli"
	"github.com/immense-p2p/immense/internal/durable"
	"github.com/immense-p2p/immense/node"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `Usage: bootstrap [flags]

Runs an Immense bootstrap node. It prints its full multiaddrs, one per line;
give them to peers as --bootstrap.

Flags:
`

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bootstrap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	var (
		bootstrap, listen cli.List
		home, _           = os.UserHomeDir()
		dataDir           = fs.String("data-dir", filepath.Join(home, ".immense", "bootstrap"), "directory for the node's identity")
		httpAddr          = fs.String("http", "127.0.0.1:8090", "address for GET /v1/status and /metrics; empty disables it")
		addrFile          = fs.String("addr-file", "", "also write the node's multiaddrs to this file, one per line")
		maxConns          = fs.Int("max-conns", 0, "hard cap on connections (0: preset)")
		relayService      = fs.Bool("relay-service", true, "offer circuit relay v2 to NAT'd peers")
		natPortMap        = fs.Bool("nat-portmap", false, "ask the router for a port mapping (UPnP/NAT-PMP); a server rarely needs it")
		maxRelayed        = fs.Int("max-relayed-conns", 0, "relay reservations granted (0: preset, 128)")
		joinRate          = fs.Float64("join-rate", node.BootstrapConfig().Overlay.JoinRate, "newcomers admitted per second; the rest are told when to come back and referred to other peers (0: no limit)")
		joinBurst         = fs.Int("join-burst", node.BootstrapConfig().Overlay.JoinBurst, "newcomers admitted at once before --join-rate applies")
		infoFile          = fs.String("info-file", "", "write {peer_id, addrs, http} as JSON to this file once started")
		logFormat         = fs.String("log-format", "text", "log format: text or json")
		logLevel          = fs.String("log-level", "info", "log level: debug, info, warn or error")
	)
	fs.Var(&bootstrap, "bootstrap", "other bootstrap nodes to join: comma-separated multiaddrs ending in /p2p/<peer id>")
	fs.Var(&listen, "listen", "comma-separated listen multiaddrs (default: TCP and QUIC on port 4001)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bootstrap: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	log, err := cli.NewLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "bootstrap:", err)
		return 2
	}
	ctx, stop := cli.SignalContext()
	defer stop()

	cfg := node.BootstrapConfig()
	cfg.DataDir = *dataDir
	cfg.Bootstrap = bootstrap
	if len(listen) > 0 {
		cfg.ListenAddrs = listen
	}
	if *maxConns > 0 {
		cfg.Limits.MaxConns = *maxConns
		cfg.Limits.MaxInboundConns = min(cfg.Limits.MaxInboundConns, *maxConns)
		cfg.Limits.ConnHighWater = min(cfg.Limits.ConnHighWater, *maxConns)
		cfg.Limits.ConnLowWater = min(cfg.Limits.ConnLowWater, cfg.Limits.ConnHighWater/2)
	}
	cfg.NAT.RelayService = *relayService
	cfg.NAT.PortMap = *natPortMap
	if *maxRelayed > 0 {
		cfg.NAT.MaxRelayedConns = *maxRelayed
	}
	cfg.Overlay.JoinRate, cfg.Overlay.JoinBurst = *joinRate, *joinBurst
	cfg.Logger = log
	cfg.Registry = cli.NewRegistry()
	n, err := node.New(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "bootstrap:", err)
		return 1
	}
	var lines []string
	for _, a := range n.Addrs() {
		lines = append(lines, a.String())
	}
	out := strings.Join(lines, "\n") + "\n"
	if *addrFile != "" {
		if err := durable.WriteFile(*addrFile, []byte(out), 0o644); err != nil {
			n.Close()
			fmt.Fprintln(stderr, "bootstrap: --addr-file:", err)
			return 1
		}
	}
	return cli.Serve(ctx, "bootstrap", n, *httpAddr, node.HTTPOptions{}, *infoFile, stdout, stderr, log)
}
