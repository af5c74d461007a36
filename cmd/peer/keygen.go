package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/immense-p2p/immense/erasure"
)

// runKeygen writes a new app key: peer keygen --out FILE.
func runKeygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("peer keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "file to create (mode 0600); it must not exist")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *out == "" {
		fmt.Fprintln(stderr, "peer keygen: --out is required")
		return 2
	}
	if _, err := os.Stat(*out); err == nil {
		fmt.Fprintf(stderr, "peer keygen: %s exists; refusing to overwrite an app key (its state would become unreadable)\n", *out)
		return 1
	}
	k, err := erasure.GenerateAppKey()
	if err != nil {
		fmt.Fprintln(stderr, "peer keygen:", err)
		return 1
	}
	if err := erasure.SaveAppKey(*out, k); err != nil {
		fmt.Fprintln(stderr, "peer keygen:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote app key for namespace %s to %s\nGive it to your app's own peers with --app-key; never to volunteers.\n", k.Namespace(), *out)
	return 0
}
