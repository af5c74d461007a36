package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/node"
	"github.com/immense-p2p/immense/webrtc"
)

// TestKeyTools runs peer keygen, peer secret and peer token in process:
// each creates what it says, refuses to overwrite, and rejects bad usage
// with exit code 2.
func TestKeyTools(t *testing.T) {
	dir := t.TempDir()
	run := func(f func([]string, *bytes.Buffer, *bytes.Buffer) int, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := f(args, &out, &errb)
		return code, out.String(), errb.String()
	}
	keygen := func(a []string, o, e *bytes.Buffer) int { return runKeygen(a, o, e) }
	secret := func(a []string, o, e *bytes.Buffer) int { return runSecret(a, o, e) }
	token := func(a []string, o, e *bytes.Buffer) int { return runToken(a, o, e) }

	keyFile := filepath.Join(dir, "app.key")
	if code, out, errs := run(keygen, "--out", keyFile); code != 0 || !strings.Contains(out, "namespace") {
		t.Fatalf("keygen: %d %q %q", code, out, errs)
	}
	if _, err := erasure.LoadAppKey(keyFile); err != nil {
		t.Fatalf("keygen wrote an unreadable key: %v", err)
	}
	// The public half, beside it: what volunteers get with --app-pub.
	pub, err := node.LoadAppPublicKey(keyFile + ".pub")
	if err != nil {
		t.Fatalf("keygen wrote no readable app.key.pub: %v", err)
	}
	code, tok, errs := run(token, "--app-key", keyFile, "--sub", "alice", "--read", "chat/*", "--write", "chat/*", "--ttl", "1h")
	if code != 0 {
		t.Fatalf("token --app-key: %d %q", code, errs)
	}
	v, err := webrtc.NewVerifier(nil, []ed25519.PublicKey{pub}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := v.Verify(strings.TrimSpace(tok), time.Now()); err != nil || c.Subject != "alice" || !c.CanWrite("chat/lobby") || c.CanWrite("admin/x") {
		t.Fatalf("EdDSA token %q checked with app.key.pub: %+v %v", tok, c, err)
	}
	// Bound to a browser key: the token names it, for the peers to check
	// the browser's signature on each publish.
	browser := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	code, tok, errs = run(token, "--app-key", keyFile, "--write", "chat/*", "--bind-key", base64.RawURLEncoding.EncodeToString(browser))
	if code != 0 {
		t.Fatalf("token --bind-key: %d %q", code, errs)
	}
	if c, err := v.Verify(strings.TrimSpace(tok), time.Now()); err != nil || !c.Key.Equal(browser) {
		t.Fatalf("bound token %q: key %x, %v", tok, c.Key, err)
	}
	before, _ := os.ReadFile(keyFile)
	if code, _, errs := run(keygen, "--out", keyFile); code != 1 || !strings.Contains(errs, "refusing to overwrite") {
		t.Fatalf("keygen over an existing key: %d %q", code, errs)
	}
	if after, _ := os.ReadFile(keyFile); !bytes.Equal(before, after) {
		t.Fatal("keygen changed an existing key")
	}

	secretFile := filepath.Join(dir, "token.secret")
	if code, _, errs := run(secret, "--out", secretFile); code != 0 {
		t.Fatalf("secret: %d %q", code, errs)
	}
	if code, _, _ := run(secret, "--out", secretFile); code != 1 {
		t.Fatalf("secret over an existing file: %d", code)
	}
	code, tok, errs = run(token, "--secret-file", secretFile, "--read", "chat,news/*", "--write", "chat", "--ttl", "2h")
	if code != 0 {
		t.Fatalf("token: %d %q", code, errs)
	}
	s, err := webrtc.LoadSecret(secretFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := webrtc.Verify(s, strings.TrimSpace(tok), time.Now())
	if err != nil || !c.CanRead("news/today") || !c.CanWrite("chat") || c.CanWrite("news/today") {
		t.Fatalf("token %q: %+v %v", tok, c, err)
	}

	// An app key given as a token secret is refused, pointing at --app-key.
	code, _, errs = run(token, "--secret-file", keyFile, "--read", "demo/*")
	if code != 1 || !strings.Contains(errs, "is an app key") || !strings.Contains(errs, "--app-key") {
		t.Errorf("token --secret-file app.key: %d %q, want 1 pointing at --app-key", code, errs)
	}

	for _, tc := range []struct {
		f    func([]string, *bytes.Buffer, *bytes.Buffer) int
		args []string
	}{
		{keygen, nil},
		{keygen, []string{"--out", filepath.Join(dir, "x"), "extra"}},
		{secret, []string{"--bogus"}},
		{token, []string{"--secret-file", secretFile}},                                      // no topics
		{token, []string{"--secret-file", secretFile, "--app-key", keyFile, "--read", "a"}}, // both keys
		{token, []string{"--read", "a"}},                                                    // no key
		{token, []string{"--secret-file", secretFile, "--read", "a", "--ttl", "0s"}},        // ttl
		{token, []string{"--app-key", keyFile, "--read", "a", "--bind-key", "AAAA"}},        // short key
	} {
		if code, _, _ := run(tc.f, tc.args...); code != 2 {
			t.Errorf("%q: exit code %d, want 2", tc.args, code)
		}
	}
	if code, _, _ := run(keygen, "--help"); code != 0 {
		t.Errorf("keygen --help: exit code %d", code)
	}
}
