package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/node"
)

// runKeygen writes a new app key: peer keygen --out FILE, and the public
// half of its topic key beside it, FILE.pub, for volunteers (--app-pub).
func runKeygen(args []string, stdout, stderr io.Writer) int {
	out, code, ok := outFileArgs("peer keygen", args, stderr, nil)
	if !ok {
		return code
	}
	pub := node.AppPublicKeyFile(out)
	for _, f := range []string{out, pub} {
		if _, err := os.Stat(f); err == nil {
			fmt.Fprintf(stderr, "peer keygen: %s exists; refusing to overwrite an app key (its state would become unreadable)\n", f)
			return 1
		}
	}
	k, err := erasure.GenerateAppKey()
	if err != nil {
		fmt.Fprintln(stderr, "peer keygen:", err)
		return 1
	}
	if err := erasure.SaveAppKey(out, k); err != nil {
		fmt.Fprintln(stderr, "peer keygen:", err)
		return 1
	}
	if err := node.WriteAppPublicKey(pub, k); err != nil {
		fmt.Fprintln(stderr, "peer keygen:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote app key for namespace %s to %s\nGive it to your app's own peers with --app-key; never to volunteers.\n", k.Namespace(), out)
	fmt.Fprintf(stdout, "wrote its public half to %s\nGive that to volunteers and every other peer with --app-pub: they check who publishes and admit browsers, but cannot mint.\n", pub)
	fmt.Fprintf(stdout, "Browser tokens are signed with a key derived from it (peer token mints them); for an app server in another language, export that key with peer token-key --app-key %s --out token-key.pem.\n", out)
	return 0
}

// outFileArgs parses the arguments of a subcommand whose flags are --out
// FILE, the file it creates, and those bind (if not nil) adds. When ok is
// false the subcommand stops with code: 0 after --help, 2 on a usage
// error (already reported).
func outFileArgs(cmd string, args []string, stderr io.Writer, bind func(*flag.FlagSet)) (out string, code int, ok bool) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&out, "out", "", "file to create (mode 0600); it must not exist")
	if bind != nil {
		bind(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", 0, false
		}
		return "", 2, false
	}
	if out == "" {
		fmt.Fprintf(stderr, "%s: --out is required\n", cmd)
		return "", 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q\n", cmd, fs.Args())
		return "", 2, false
	}
	return out, 0, true
}
