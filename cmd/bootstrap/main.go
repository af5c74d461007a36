// Command bootstrap runs an Immense bootstrap node: a stable, always-on DHT
// server with a persistent identity that newcomers dial first.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/immense-p2p/immense/cmd/internal/cli"
	"github.com/immense-p2p/immense/internal/bytesize"
	"github.com/immense-p2p/immense/internal/durable"
	"github.com/immense-p2p/immense/node"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `Usage: bootstrap [flags]
       bootstrap config [flags]   # print the configuration the flags give, and where each value came from
       bootstrap version          # module version and VCS revision (also --version)

Runs an Immense bootstrap node. It prints its full multiaddrs, one per line;
give them to peers as --bootstrap.

Every flag can also come from the environment (--data-dir: IMMENSE_DATA_DIR) or a
YAML file (--config FILE, keys named as the flags); flags > environment > file > defaults.

Defaults are node.BootstrapConfig's. Sizes and rates take a unit: ` + bytesize.Units + `.

Flags:
`

func run(args []string, stdout, stderr io.Writer) int {
	printConfig := false
	if len(args) > 0 && args[0] == "config" {
		printConfig, args = true, args[1:]
	}
	if len(args) > 0 && (args[0] == "version" || args[0] == "--version" || args[0] == "-version") {
		fmt.Fprintln(stdout, cli.Version("bootstrap"))
		return 0
	}
	home, _ := os.UserHomeDir()
	cfg := node.BootstrapConfig()
	cfg.DataDir = filepath.Join(home, ".immense", "bootstrap")
	var (
		httpAddr  = "127.0.0.1:8090"
		httpHosts []string
		addrFile  string
		infoFile  string
		logFormat = "text"
		logLevel  = "info"
	)
	fs := flag.NewFlagSet("bootstrap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); cli.PrintDefaults(fs) }
	cli.Bind(fs, append([]cli.Flag{
		{Name: "data-dir", Usage: "directory for the node's identity", Value: cli.String(&cfg.DataDir)},
		{Name: "http", Usage: "address for GET /v1/status and /metrics (with the token in <data-dir>/api-token) and /healthz, /readyz (without); empty disables it", Value: cli.String(&httpAddr)},
		{Name: "http-allowed-hosts", Usage: "further host names the HTTP API answers to (comma-separated), besides localhost and this server's IP addresses", Value: cli.Strings(&httpHosts)},
		{Name: "addr-file", Usage: "also write the node's multiaddrs to this file, one per line", Value: cli.String(&addrFile)},
		{Name: "info-file", Usage: "write {peer_id, addrs, http} as JSON to this file once started (removed at exit)", Value: cli.String(&infoFile)},
		{Name: "log-format", Usage: "log format: text or json", Value: cli.String(&logFormat)},
		{Name: "log-level", Usage: "log level: debug, info, warn or error", Value: cli.String(&logLevel)},
	}, cli.NodeFlags(&cfg)...)...)
	src, err := cli.Load(fs, args, &cfg.Limits, os.Getenv)
	if err != nil {
		return cli.ExitCode(err)
	}
	if printConfig {
		cli.PrintConfig(stdout, fs, src)
		return 0
	}
	log, err := cli.NewLogger(stderr, logFormat, logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "bootstrap:", err)
		return 2
	}
	ctx, stop := cli.SignalContext()
	defer stop()

	unlock, err := cli.LockDataDir(cfg.DataDir)
	if err != nil {
		fmt.Fprintln(stderr, "bootstrap:", err)
		return 1
	}
	defer unlock()
	if err := cli.CheckPorts(httpAddr, cfg.ListenAddrs); err != nil {
		fmt.Fprintln(stderr, "bootstrap:", err)
		return 1
	}
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
	if addrFile != "" {
		if err := durable.WriteFile(addrFile, []byte(out), 0o644); err != nil {
			n.Close()
			fmt.Fprintln(stderr, "bootstrap: --addr-file:", err)
			return 1
		}
	}
	return cli.Serve(ctx, "bootstrap", n, httpAddr, node.HTTPOptions{AllowedHosts: httpHosts}, infoFile, stdout, stderr, log)
}
