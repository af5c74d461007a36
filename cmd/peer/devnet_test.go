package main

import (
	"bytes"
	"net"
	"strings"
	"testing"
)

// TestDevnetPortTaken: a devnet whose HTTP port is taken (by a devnet left
// running, typically) says what to do, and starts nothing.
func TestDevnetPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var out, errb bytes.Buffer
	code := run([]string{"--devnet", "3", "--http", ln.Addr().String()}, &out, &errb)
	want := "HTTP port " + ln.Addr().String() + " of peer 1: address already in use: another devnet may still be running"
	if code != 1 || !strings.Contains(errb.String(), want) || !strings.Contains(errb.String(), "--http 127.0.0.1:0") {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1 and %q, with the hint --http 127.0.0.1:0", code, errb.String(), want)
	}
	if strings.Contains(errb.String(), "peer1") {
		t.Errorf("a peer started before the port was checked:\n%s", errb.String())
	}
}
