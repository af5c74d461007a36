// Command peer runs an Immense peer: a member of the overlay that relays
// topic messages and serves the HTTP API. With --devnet N it runs a whole
// local network (a bootstrap node and N-1 peers) in one process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/immense-p2p/immense/cmd/internal/cli"
	"github.com/immense-p2p/immense/node"
	"github.com/immense-p2p/immense/overlay"
	"github.com/immense-p2p/immense/webrtc"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `Usage: peer [flags]
       peer keygen --out FILE                       # new app key: give it to your app's peers as --app-key
       peer secret --out FILE                       # new token secret for browsers
       peer token --secret-file FILE --read T --write T --ttl 1h   # mint a browser token

Runs an Immense peer. Examples:

  peer --devnet 5                       # local network: bootstrap + 4 peers, HTTP on :8080..:8083
  peer --bootstrap /ip4/203.0.113.7/tcp/4001/p2p/12D3Koo... --data-dir /var/lib/immense
  peer --volunteer --max-upload 512KiB/s --bootstrap ...

HTTP API (--http): POST/GET /v1/topics/{topic}, GET /v1/status, GET /metrics,
POST /v1/webrtc/offer (browsers), the demo page at / and the client at /client.js.

Flags:
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "token":
			return runToken(args[1:], stdout, stderr)
		case "secret":
			return runSecret(args[1:], stdout, stderr)
		case "keygen":
			return runKeygen(args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("peer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }

	var (
		bootstrap, listen cli.List
		home, _           = os.UserHomeDir()
		dataDir           = fs.String("data-dir", filepath.Join(home, ".immense", "peer"), "directory for the node's identity and state")
		httpAddr          = fs.String("http", "127.0.0.1:8080", "HTTP API address (host:port); empty disables it")
		devnet            = fs.Int("devnet", 0, "run a local network of N nodes (a bootstrap node and N-1 peers) on 127.0.0.1")
		mode              = fs.String("mode", "auto", "DHT mode: auto (server once publicly reachable), server or client")
		preset            = fs.String("preset", "default", "limits preset: default (a server) or volunteer (a home machine)")
		maxConns          = fs.Int("max-conns", 0, "hard cap on connections (0: preset)")
		maxInbound        = fs.Int("max-inbound-conns", 0, "hard cap on inbound connections (0: preset)")
		connLow           = fs.Int("conn-low", 0, "connection manager low water mark (0: preset)")
		connHigh          = fs.Int("conn-high", 0, "connection manager high water mark (0: preset)")
		volunteer         = fs.Bool("volunteer", false, "same as --preset volunteer: gentle limits for a home machine")
		relayService      = fs.Bool("relay-service", true, "offer circuit relay v2 to NAT'd peers once publicly reachable")
		maxRelayed        = fs.Int("max-relayed-conns", 0, "relay reservations granted to other peers (0: preset)")
		joinRate          = fs.Float64("join-rate", 0, "newcomers admitted per second when they join through this peer, the rest told to come back later (default: preset, 10/s, volunteer 2/s; 0: no limit)")
		joinBurst         = fs.Int("join-burst", 0, "newcomers admitted at once before --join-rate applies (0: preset)")
		natPortMap        = fs.Bool("nat-portmap", true, "ask the home router for a port mapping (UPnP/NAT-PMP)")
		appKey            = fs.String("app-key", "", "app key file (peer keygen): read and write the app's state namespace (default: a key of this peer's own)")
		zone              = fs.String("zone", "", "failure-domain label (region, data centre); shards of an object are spread over zones")
		noState           = fs.Bool("no-state", false, "store no shards and offer no state API")
		handoffTimeout    = fs.Duration("handoff-timeout", node.DefaultConfig().State.HandoffTimeout, "on SIGINT/SIGTERM, hand the shards this peer holds to other peers for at most this long before exiting (0: do not; a second signal cuts it short)")
		storageQuota      cli.Size
		secretFile        = fs.String("token-secret-file", "", "secret that browser tokens are signed with (see: peer secret, peer token)")
		insecureNoAuth    = fs.Bool("insecure-no-auth", false, "accept browsers without a token: anyone who reaches --http can read and write every topic")
		noBrowsers        = fs.Bool("no-browsers", false, "turn the WebRTC bridge for browsers off")
		udpPorts          = fs.String("webrtc-udp-ports", "", "UDP port range for browser connections, e.g. 50000-50999 (default: any)")
		iceServers        cli.List
		publicIPs         cli.List
		maxUpload         cli.Size
		maxDownload       cli.Size
		maxMemory         cli.Size
		maxMessage        cli.Size
		infoFile          = fs.String("info-file", "", "write {peer_id, addrs, http} as JSON to this file once started")
		logFormat         = fs.String("log-format", "text", "log format: text or json")
		logLevel          = fs.String("log-level", "info", "log level: debug, info, warn or error")
	)
	fs.Var(&bootstrap, "bootstrap", "bootstrap peers: comma-separated multiaddrs ending in /p2p/<peer id>")
	fs.Var(&listen, "listen", "comma-separated libp2p listen multiaddrs (default: TCP and QUIC on port 4001)")
	fs.Var(&storageQuota, "storage-quota", "most shard bytes kept for others, e.g. 10GiB (0: preset: 10GiB, volunteer 2GiB)")
	fs.Var(&iceServers, "ice-server", "STUN/TURN server for browsers' ICE, e.g. stun:stun.example.org:3478 (repeatable)")
	fs.Var(&publicIPs, "webrtc-public-ip", "public IP to announce to browsers when behind 1:1 NAT (repeatable)")
	fs.Var(&maxUpload, "max-upload", "upload cap for all traffic, e.g. 2MiB/s (0: preset; the volunteer preset caps at 1MiB/s)")
	fs.Var(&maxDownload, "max-download", "download cap for all traffic, e.g. 8MiB/s (0: preset)")
	fs.Var(&maxMemory, "max-memory", "memory libp2p may use, e.g. 512MiB (0: preset)")
	fs.Var(&maxMessage, "max-message-size", "largest topic message, e.g. 1MiB (0: default 1 MiB)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "peer: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	log, err := cli.NewLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "peer:", err)
		return 2
	}
	ctx, stop := cli.SignalContext()
	defer stop()

	if *devnet != 0 {
		dir := *dataDir
		if !flagSet(fs, "data-dir") {
			dir, err = os.MkdirTemp("", "immense-devnet-")
			if err != nil {
				fmt.Fprintln(stderr, "peer:", err)
				return 1
			}
			defer os.RemoveAll(dir)
		}
		return runDevnet(ctx, *devnet, dir, *httpAddr, stdout, log)
	}

	var cfg node.Config
	if *volunteer {
		*preset = "volunteer"
	}
	switch *preset {
	case "default":
		cfg = node.DefaultConfig()
	case "volunteer":
		cfg = node.VolunteerConfig()
	default:
		fmt.Fprintf(stderr, "peer: --preset %q: want default or volunteer\n", *preset)
		return 2
	}
	cfg.DataDir = *dataDir
	cfg.Bootstrap = bootstrap
	if len(listen) > 0 {
		cfg.ListenAddrs = listen
	}
	if cfg.Overlay.Mode, err = overlay.ParseMode(*mode); err != nil {
		fmt.Fprintln(stderr, "peer: --mode:", err)
		return 2
	}
	setInt(&cfg.Limits.MaxConns, *maxConns)
	setInt(&cfg.Limits.MaxInboundConns, *maxInbound)
	setInt(&cfg.Limits.ConnLowWater, *connLow)
	setInt(&cfg.Limits.ConnHighWater, *connHigh)
	if maxMemory > 0 {
		cfg.Limits.MaxMemory = int64(maxMemory)
	}
	if flagSet(fs, "relay-service") {
		cfg.NAT.RelayService = *relayService
	}
	if flagSet(fs, "nat-portmap") {
		cfg.NAT.PortMap = *natPortMap
	}
	setInt(&cfg.NAT.MaxRelayedConns, *maxRelayed)
	if flagSet(fs, "join-rate") {
		cfg.Overlay.JoinRate = *joinRate
	}
	setInt(&cfg.Overlay.JoinBurst, *joinBurst)
	if maxUpload > 0 {
		cfg.MaxUpload = int64(maxUpload)
	}
	if maxDownload > 0 {
		cfg.MaxDownload = int64(maxDownload)
	}
	if maxMessage > 0 {
		cfg.Overlay.MaxMessageSize = int(maxMessage)
	}
	cfg.AppKeyFile = *appKey
	if storageQuota > 0 {
		cfg.StorageQuota = int64(storageQuota)
	}
	if *noState {
		cfg.State = nil
	}
	if *handoffTimeout < 0 {
		fmt.Fprintln(stderr, "peer: --handoff-timeout must not be negative")
		return 2
	}
	if cfg.State != nil {
		cfg.State.HandoffTimeout = *handoffTimeout
		cfg.State.Zone = *zone
	}
	if !*noBrowsers {
		bc := webrtc.DefaultConfig()
		bc.InsecureNoAuth = *insecureNoAuth
		if *secretFile != "" {
			if bc.Secret, err = webrtc.LoadSecret(*secretFile); err != nil {
				fmt.Fprintln(stderr, "peer:", err)
				return 2
			}
		} else if !*insecureNoAuth {
			log.Warn("no --token-secret-file: browsers will be refused (give one, or --insecure-no-auth for a trusted network)")
		}
		for _, u := range iceServers {
			bc.ICEServers = append(bc.ICEServers, webrtc.ICEServer{URLs: []string{u}})
		}
		bc.PublicIPs = publicIPs
		if *udpPorts != "" {
			var lo, hi uint16
			if _, err := fmt.Sscanf(*udpPorts, "%d-%d", &lo, &hi); err != nil || lo == 0 || hi < lo {
				fmt.Fprintf(stderr, "peer: --webrtc-udp-ports %q: want MIN-MAX, e.g. 50000-50999\n", *udpPorts)
				return 2
			}
			bc.UDPPortMin, bc.UDPPortMax = lo, hi
		}
		cfg.Browsers = &bc
	}
	cfg.Logger = log
	cfg.Registry = cli.NewRegistry()

	n, err := node.New(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "peer:", err)
		return 1
	}
	return cli.Serve(ctx, "peer", n, *httpAddr, node.HTTPOptions{Topics: true}, *infoFile, stdout, stderr, log)
}

func runDevnet(ctx context.Context, nodes int, dir, httpAddr string, stdout io.Writer, log *slog.Logger) int {
	if httpAddr == "" {
		httpAddr = "127.0.0.1:0"
	}
	d, err := node.StartDevnet(ctx, node.DevnetOptions{Nodes: nodes, DataDir: dir, HTTPAddr: httpAddr, Logger: log, Peer: node.DevnetConfig()})
	if err != nil {
		log.Error("devnet failed to start", "err", err)
		return 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nImmense devnet: a bootstrap node and %d peers on 127.0.0.1 (data in %s)\n\n", len(d.Peers), dir)
	fmt.Fprintf(&b, "  bootstrap  %s\n", d.Bootstrap.Addrs()[0])
	for i, s := range d.HTTP {
		fmt.Fprintf(&b, "  peer%-5d  %s   (%s)\n", i+1, s.URL(), d.Peers[i].ID())
	}
	first, last := d.HTTP[0].URL(), d.HTTP[len(d.HTTP)-1].URL()
	fmt.Fprintf(&b, "\nOpen %s/ in a browser for the demo chat (open it twice, or on another peer's port).\n", first)
	fmt.Fprintf(&b, "\nTry, in another terminal:\n")
	fmt.Fprintf(&b, "  curl -N %s/v1/topics/chat                 # follow a topic on one peer\n", last)
	fmt.Fprintf(&b, "  curl -d 'hello, overlay' %s/v1/topics/chat   # publish on another\n", first)
	fmt.Fprintf(&b, "  curl %s/v1/status\n\nCtrl-C stops the devnet.\n", first)
	fmt.Fprint(stdout, b.String())

	<-ctx.Done()
	log.Info("stopping devnet")
	if err := cli.ShutdownWithin(5*time.Second, log, d.Close); err != nil {
		log.Error("devnet shutdown", "err", err)
		return 1
	}
	return 0
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func setInt(dst *int, v int) {
	if v > 0 {
		*dst = v
	}
}
