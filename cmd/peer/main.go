// Command peer runs an Immense peer: a member of the overlay that relays
// topic messages and serves the HTTP API. With --devnet N it runs a whole
// local network (a bootstrap node and N-1 peers) in one process.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/immense-p2p/immense/cmd/internal/cli"
	"github.com/immense-p2p/immense/internal/bytesize"
	"github.com/immense-p2p/immense/node"
	"github.com/immense-p2p/immense/webrtc"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `Usage: peer [flags]
       peer config [flags]                          # print the configuration the flags give, and where each value came from
       peer status | peers [--data-dir D] [--http A] # ask a running peer (token from D/api-token or $IMMENSE_TOKEN)
       peer version                                 # module version and VCS revision (also --version)
       peer keygen --out FILE                       # new app key: give it to your app's peers as --app-key
       peer token --app-key FILE --read T --write T --ttl 1h       # mint a browser token (EdDSA)
       peer secret --out FILE                       # or, for one operator: a token secret (HS256)
       peer token --secret-file FILE --read T --write T --ttl 1h   # and a token signed with it
       peer token-key --app-key FILE --out FILE.pem  # export the key that signs browser tokens, for app servers not in Go

Runs an Immense peer. Examples:

  peer --devnet 5                       # local network: bootstrap + 4 peers, HTTP on :8080..:8083
  peer --bootstrap /ip4/203.0.113.7/tcp/4001/p2p/12D3Koo... --data-dir /var/lib/immense
  peer --volunteer --max-upload 512KiB/s --bootstrap ...

HTTP API (--http): POST/GET /v1/topics/{topic}, GET /v1/topics, /v1/topics/{topic}/presence;
PUT/GET/HEAD/DELETE /v1/state/{key}, GET /v1/state/{key}/health, POST /v1/state/{key}/repair;
GET /v1/status, /v1/peers, /v1/storage, /metrics (all with the bearer token in
<data-dir>/api-token); GET /healthz and /readyz (no token); the dashboard at /dashboard/
(its page without a token); for browsers, GET /v1/ws and POST /v1/webrtc/offer,
/v1/webrtc/signal, GET /v1/webrtc/peers, the demo page at / (script /app.js) and the
client at /client.js (types /immense.d.ts).

Every flag can also come from the environment (--data-dir: IMMENSE_DATA_DIR) or a
YAML file (--config FILE, keys named as the flags); flags > environment > file > preset.

Defaults are the chosen preset's: compare peer --help with peer --volunteer --help.
Sizes and rates take a unit: ` + bytesize.Units + `.

Flags:
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "token":
			return runToken(args[1:], stdout, stderr)
		case "token-key":
			return runTokenKey(args[1:], stdout, stderr)
		case "secret":
			return runSecret(args[1:], stdout, stderr)
		case "keygen":
			return runKeygen(args[1:], stdout, stderr)
		case "version":
			return runVersion(args[1:], stdout, stderr)
		case "status", "peers":
			return runClient(args[0], args[1:], stdout, stderr)
		case "config":
			o, err := parseArgs(args[1:], stderr)
			if err != nil {
				return cli.ExitCode(err)
			}
			cli.PrintConfig(stdout, o.flagSet, o.sources)
			return 0
		}
	}
	if slices.Contains(args, "--version") || slices.Contains(args, "-version") {
		return runVersion(nil, stdout, stderr)
	}
	o, err := parseArgs(args, stderr)
	if err != nil {
		return cli.ExitCode(err)
	}
	log, err := cli.NewLogger(stderr, o.logFormat, o.logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "peer:", err)
		return 2
	}
	ctx, stop := cli.SignalContext()
	defer stop()

	if o.devnet.Nodes != 0 {
		return runDevnet(ctx, o, stdout, log)
	}
	if len(o.node.Bootstrap) == 0 {
		log.Warn("no --bootstrap: this peer runs alone until other peers dial it")
	}
	unlock, err := cli.LockDataDir(o.node.DataDir)
	if err != nil {
		fmt.Fprintln(stderr, "peer:", err)
		return 1
	}
	defer unlock()
	if err := cli.CheckPorts(o.http, o.node.ListenAddrs); err != nil {
		fmt.Fprintln(stderr, "peer:", err)
		return 1
	}
	o.node.Logger = log
	o.node.Registry = cli.NewRegistry()
	if b := o.node.Browsers; b != nil {
		// The names the control API answers to are those a devnet's
		// browsers may use too (webrtc.Config.AllowedHosts).
		for _, h := range o.httpHosts {
			b.AllowedHosts = append(b.AllowedHosts, strings.ToLower(h))
		}
	}
	n, err := node.New(ctx, o.node)
	if err != nil {
		fmt.Fprintln(stderr, "peer:", err)
		return 1
	}
	return cli.Serve(ctx, "peer", n, o.http, node.HTTPOptions{Topics: true, AllowedHosts: o.httpHosts}, o.infoFile, stdout, stderr, log)
}

// options is what peer's command line sets: the node's configuration (or,
// with --devnet, every devnet peer's), and how to serve and log.
type options struct {
	preset    string
	volunteer bool
	devnet    node.DevnetOptions // Nodes is --devnet
	node      node.Config
	http      string
	httpHosts []string
	infoFile  string
	logFormat string
	logLevel  string

	// flagSet and sources are the parsed command line, for peer config.
	flagSet *flag.FlagSet
	sources cli.Sources
}

// presets are the node presets --preset names.
var presets = map[string]func() node.Config{
	"default":   node.DefaultConfig,
	"volunteer": node.VolunteerConfig,
}

// newOptions starts from the preset the command line chose: --devnet N
// (node.DevnetConfig), otherwise --preset.
func newOptions(preset string, devnet int) options {
	o := options{preset: preset, http: "127.0.0.1:8080", logFormat: "text", logLevel: "info"}
	o.devnet.Nodes = devnet
	if devnet != 0 {
		o.node = node.DevnetConfig()
		return o
	}
	o.node = presets[preset]()
	home, _ := os.UserHomeDir()
	o.node.DataDir = filepath.Join(home, ".immense", "peer")
	// A peer serves browsers unless told not to; without a token secret
	// (or --insecure-no-auth) it refuses them all.
	bc := webrtc.DefaultConfig()
	o.node.Browsers = &bc
	return o
}

// flags is peer's flag table, bound to o: the command's own flags, then
// node.Config's. With --devnet, --data-dir is the devnet's directory.
func (o *options) flags() []cli.Flag {
	dataDir := cli.Flag{Name: "data-dir", Usage: "directory for the node's identity and state", Value: cli.String(&o.node.DataDir)}
	if o.devnet.Nodes != 0 {
		dataDir = cli.Flag{Name: "data-dir", Usage: "directory for the devnet, one sub-directory per node (default: a temporary directory, removed on exit)", Value: cli.String(&o.devnet.DataDir)}
	}
	return append([]cli.Flag{
		dataDir,
		{Name: "devnet", Usage: "run a local network of `N` nodes (a bootstrap node and N-1 peers) on 127.0.0.1", Value: cli.Int(&o.devnet.Nodes)},
		{Name: "preset", Usage: "limits preset: default (a server) or volunteer (a home machine); the flags below show its values", Value: cli.String(&o.preset)},
		{Name: "volunteer", Usage: "same as --preset volunteer: gentle limits for a home machine", Value: cli.Bool(&o.volunteer)},
		{Name: "http", Usage: "HTTP API address (host:port); empty disables it", Value: cli.String(&o.http)},
		{Name: "http-allowed-hosts", Usage: "further host names the HTTP control API answers to (comma-separated), besides localhost and this server's IP addresses: a name it is reached by through DNS or a proxy", Value: cli.Strings(&o.httpHosts)},
		{Name: "info-file", Usage: "write {peer_id, addrs, http} as JSON to this file once started (removed at exit)", Value: cli.String(&o.infoFile)},
		{Name: "log-format", Usage: "log format: text or json", Value: cli.String(&o.logFormat)},
		{Name: "log-level", Usage: "log level: debug, info, warn or error", Value: cli.String(&o.logLevel)},
	}, append(cli.NodeFlags(&o.node), cli.TopicFlags(&o.node)...)...)
}

// parseArgs reads the command line twice. The first pass, silent, only
// learns which preset it chooses (--devnet, --volunteer, --preset); the
// second binds every flag to that preset, so that --help shows the
// defaults that will apply, and parses for real.
func parseArgs(args []string, stderr io.Writer) (*options, error) {
	probe := newOptions("default", 0)
	pfs := flag.NewFlagSet("peer", flag.ContinueOnError)
	pfs.SetOutput(io.Discard)
	cli.Bind(pfs, probe.flags()...)
	_, _ = cli.Load(pfs, args, nil, os.Getenv) // the second pass reports what is wrong
	if probe.volunteer {
		probe.preset = "volunteer"
	}
	if _, ok := presets[probe.preset]; !ok && probe.devnet.Nodes == 0 {
		fmt.Fprintf(stderr, "peer: --preset %q: want default or volunteer\n", probe.preset)
		return nil, errors.New("unknown preset")
	}

	o := newOptions(probe.preset, probe.devnet.Nodes)
	fs := flag.NewFlagSet("peer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); cli.PrintDefaults(fs) }
	cli.Bind(fs, o.flags()...)
	src, err := cli.Load(fs, args, &o.node.Limits, os.Getenv)
	if err != nil {
		return nil, err
	}
	if o.volunteer {
		// --volunteer chose the preset, wherever it came from: peer
		// config says so, rather than that the preset chose itself.
		o.preset, src["preset"] = "volunteer", src.Source("volunteer")+" (--volunteer)"
	}
	o.flagSet, o.sources = fs, src
	return &o, nil
}

func runDevnet(ctx context.Context, o *options, stdout io.Writer, log *slog.Logger) int {
	opts := o.devnet
	opts.Peer = o.node
	opts.Logger = log
	opts.HTTPAddr = o.http
	if opts.HTTPAddr == "" {
		opts.HTTPAddr = "127.0.0.1:0"
	}
	if err := cli.CheckDevnetPorts(opts.HTTPAddr, opts.Nodes-1); err != nil {
		log.Error("devnet failed to start", "err", err)
		return 1
	}
	if opts.DataDir == "" {
		dir, err := os.MkdirTemp("", "immense-devnet-")
		if err != nil {
			log.Error("devnet failed to start", "err", err)
			return 1
		}
		defer os.RemoveAll(dir)
		opts.DataDir = dir
	}
	unlock, err := cli.LockDataDir(opts.DataDir)
	if err != nil {
		log.Error("devnet failed to start", "err", err)
		return 1
	}
	defer unlock()
	began := time.Now()
	d, err := node.StartDevnet(ctx, opts)
	if err != nil {
		log.Error("devnet failed to start", "err", err)
		return 1
	}
	log.Info("devnet started: waiting for every peer to join")
	if err := d.WaitJoined(ctx); err != nil {
		log.Info("stopped before every peer joined")
		d.Close()
		return 0
	}
	fmt.Fprint(stdout, devnetBanner(d, o, opts, time.Since(began)))

	<-ctx.Done()
	log.Info("stopping devnet")
	if err := cli.ShutdownWithin(5*time.Second, log, d.Close); err != nil {
		log.Error("devnet shutdown", "err", err)
		return 1
	}
	return 0
}

// devnetBanner is what peer --devnet prints once every node has joined:
// where the peers are, and what to try.
func devnetBanner(d *node.Devnet, o *options, opts node.DevnetOptions, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nImmense devnet ready in %.1f s: a bootstrap node and %d peers on 127.0.0.1, all joined (data in %s)\n\n", took.Seconds(), len(d.Peers), opts.DataDir)
	fmt.Fprintf(&b, "  bootstrap  %s\n", d.Bootstrap.Addrs()[0])
	for i, s := range d.HTTP {
		fmt.Fprintf(&b, "  peer%-5d  %s   (%s)\n", i+1, s.URL(), d.Peers[i].ID())
	}
	first, last := d.HTTP[0].URL(), d.HTTP[len(d.HTTP)-1].URL()
	fmt.Fprintf(&b, "\nOpen %s/ in a browser for the demo chat (open it twice, or on another peer's port).\n", first)
	if open := o.node.Overlay.Auth.OpenTopics; len(open) > 0 {
		fmt.Fprintf(&b, "Open, unauthenticated topics (anyone may publish): %s. The peers share the app key in %s,\n", strings.Join(open, ", "), cmp.Or(opts.Peer.AppKeyFile, filepath.Join(opts.DataDir, "app.key")))
		fmt.Fprintf(&b, "so every other topic takes only their messages and those of browsers with a token it signs.\n")
	}
	fmt.Fprintf(&b, "\nThe control API (topics, state, status, metrics) needs the devnet's token, so that web pages\n")
	fmt.Fprintf(&b, "cannot use it. Try, in another terminal:\n")
	fmt.Fprintf(&b, "  export IMMENSE_TOKEN=%s\n", d.APIToken)
	fmt.Fprintf(&b, "  curl -N -H \"Authorization: Bearer $IMMENSE_TOKEN\" %s/v1/topics/demo/chat &                 # follow the demo chat\n", last)
	fmt.Fprintf(&b, "  curl -H \"Authorization: Bearer $IMMENSE_TOKEN\" -d 'hello, overlay' %s/v1/topics/demo/chat   # it shows in the page\n", first)
	fmt.Fprintf(&b, "  curl -H \"Authorization: Bearer $IMMENSE_TOKEN\" %s/v1/status\n", first)
	fmt.Fprintf(&b, "(The token is also in %s.)\n\n", d.APITokenFile)
	fmt.Fprintf(&b, "Dashboard (peers, topics, storage, bandwidth): %s%s#token=%s\n\n", first, node.DashboardPath, d.APIToken)
	fmt.Fprintf(&b, "A state PUT answers target_met and probability: the chance its shards stay readable, from\n")
	fmt.Fprintf(&b, "the holders' availability. With this devnet's %d peers the target is usually out of reach, so\n", len(d.Peers))
	fmt.Fprintf(&b, "target_met: false is expected here; the value is stored and readable (docs/state.md).\n\nCtrl-C stops the devnet.\n")
	return b.String()
}
