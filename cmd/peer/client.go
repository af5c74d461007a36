package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/immense-p2p/immense/cmd/internal/cli"
	"github.com/immense-p2p/immense/node"
)

// runVersion prints the build's version: peer version, or peer --version.
func runVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "peer version: unexpected argument %q\n", args[0])
		return 2
	}
	fmt.Fprintln(stdout, cli.Version("peer"))
	return 0
}

// clientTimeout bounds one request of peer status or peer peers.
const clientTimeout = 10 * time.Second

// runClient asks a running peer's control API: peer status prints its
// /v1/status, peer peers the peers it is connected to. The token is
// $IMMENSE_TOKEN if set, else the one in --data-dir.
func runClient(cmd string, args []string, stdout, stderr io.Writer) int {
	home, _ := os.UserHomeDir()
	dataDir, addr := filepath.Join(home, ".immense", "peer"), "127.0.0.1:8080"
	fs := flag.NewFlagSet("peer "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cli.Bind(fs,
		cli.Flag{Name: "data-dir", Usage: "the running peer's data directory, whose api-token file is read (unless $IMMENSE_TOKEN is set)", Value: cli.String(&dataDir)},
		cli.Flag{Name: "http", Usage: "the running peer's HTTP API address (host:port or URL)", Value: cli.String(&addr)},
	)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: peer %s [--data-dir DIR] [--http HOST:PORT]\n\n", cmd)
		cli.PrintDefaults(fs)
	}
	if _, err := cli.Load(fs, args, nil, os.Getenv); err != nil {
		return cli.ExitCode(err)
	}
	tok := strings.TrimSpace(os.Getenv("IMMENSE_TOKEN"))
	if tok == "" {
		b, err := os.ReadFile(filepath.Join(dataDir, "api-token"))
		if err != nil {
			fmt.Fprintf(stderr, "peer %s: no $IMMENSE_TOKEN and no token in --data-dir: %v\n", cmd, err)
			return 1
		}
		tok = strings.TrimSpace(string(b))
	}
	base := addr
	if host, port, err := net.SplitHostPort(addr); err == nil && (host == "" || net.ParseIP(host).IsUnspecified()) {
		// The peer's --http may be 0.0.0.0:8080 (IMMENSE_HTTP set for
		// both): ask it on loopback, a Host it answers to.
		base = net.JoinHostPort("127.0.0.1", port)
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	var st node.Status
	if err := getJSON(base+"/v1/status", tok, &st); err != nil {
		fmt.Fprintf(stderr, "peer %s: %v\n", cmd, err)
		return 1
	}
	if cmd == "peers" {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PEER\tDIRECTION\tRELAYED\tADDRESS")
		for _, c := range st.Connections {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\n", c.Peer, c.Direction, c.Relayed, c.Addr)
		}
		tw.Flush()
		return 0
	}
	var out bytes.Buffer
	b, _ := json.Marshal(st)
	json.Indent(&out, b, "", "  ")
	fmt.Fprintln(stdout, out.String())
	return 0
}

// getJSON fetches url with the bearer token and decodes its JSON body
// into v; an error answer becomes an error carrying the API's message.
func getJSON(url, token string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("is the peer running? %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return errors.New(resp.Status)
	}
	return json.Unmarshal(body, v)
}
