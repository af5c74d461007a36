package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
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
	// The longest lifetime peers accept is minted; a longer one is refused
	// below, rather than minted for every peer to refuse.
	code, tok, errs = run(token, "--app-key", keyFile, "--read", "chat/*", "--ttl", webrtc.DefaultMaxTokenTTL.String())
	if code != 0 {
		t.Fatalf("token --ttl %v: %d %q", webrtc.DefaultMaxTokenTTL, code, errs)
	}
	if _, err := v.Verify(strings.TrimSpace(tok), time.Now()); err != nil {
		t.Fatalf("token of the longest lifetime: %v", err)
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
		{token, []string{"--app-key", keyFile, "--read", "a", "--ttl", "25h"}},              // longer than peers accept
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

// TestTokenKeyExport: peer token-key writes the app's topic key as a
// PKCS#8 PEM that the standard library reads as is; a token assembled and
// signed with it by hand, as an app server in another language would, is
// accepted by the verifier peers build from app.key.pub, while one signed
// with the app key's own signing_key is refused. The key is also what the
// derivation docs/app-developer.md gives (HKDF-SHA256 of the seed, salt
// the namespace id, info "immense-topics v1 signing key") makes.
func TestTokenKeyExport(t *testing.T) {
	dir := t.TempDir()
	run := func(f func([]string, io.Writer, io.Writer) int, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := f(args, &out, &errb)
		return code, out.String(), errb.String()
	}
	keyFile := filepath.Join(dir, "app.key")
	if code, _, errs := run(runKeygen, "--out", keyFile); code != 0 {
		t.Fatalf("keygen: %d %q", code, errs)
	}
	pemFile := filepath.Join(dir, "token-key.pem")
	code, out, errs := run(runTokenKey, "--app-key", keyFile, "--out", pemFile)
	if code != 0 {
		t.Fatalf("token-key: %d %q", code, errs)
	}
	if st, err := os.Stat(pemFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token-key.pem: %v, mode %v, want 0600", err, st.Mode())
	}

	// What an app server does with it: read the PEM, assemble the JWT,
	// sign. No helper of ours.
	b, _ := os.ReadFile(pemFile)
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("token-key.pem is not one PRIVATE KEY block: %q", b)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	exported, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		t.Fatalf("token-key.pem holds a %T, want an Ed25519 key", parsed)
	}
	now := time.Now()
	mint := func(priv ed25519.PrivateKey) string {
		enc := func(v any) string {
			j, _ := json.Marshal(v)
			return base64.RawURLEncoding.EncodeToString(j)
		}
		signed := enc(map[string]string{"alg": "EdDSA", "typ": "JWT"}) + "." + enc(map[string]any{
			"sub": "alice", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			"read": []string{"chat/*"}, "write": []string{"chat/*"},
		})
		return signed + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(signed)))
	}
	pub, err := node.LoadAppPublicKey(keyFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	v, err := webrtc.NewVerifier(nil, []ed25519.PublicKey{pub}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := v.Verify(mint(exported), now); err != nil || c.Subject != "alice" || !c.CanWrite("chat/lobby") {
		t.Fatalf("token signed with token-key.pem: %+v %v", c, err)
	}

	// The mistake this command exists to prevent: signing with app.key's
	// signing_key.
	var f struct {
		SigningKey string `json:"signing_key"`
		Namespace  string `json:"namespace"`
	}
	raw, _ := os.ReadFile(keyFile)
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	seed, _ := base64.StdEncoding.DecodeString(f.SigningKey)
	if _, err := v.Verify(mint(ed25519.NewKeyFromSeed(seed)), now); !errors.Is(err, webrtc.ErrTokenSignature) {
		t.Fatalf("token signed with app.key's signing_key: %v, want %v", err, webrtc.ErrTokenSignature)
	}

	// The derivation, as documented, from the file's fields alone.
	ns, _ := hex.DecodeString(f.Namespace)
	derived, err := hkdf.Key(sha256.New, seed, ns, "immense-topics v1 signing key", ed25519.SeedSize)
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.NewKeyFromSeed(derived).Equal(exported) {
		t.Error("token-key.pem is not HKDF-SHA256(signing_key, namespace, \"immense-topics v1 signing key\")")
	}

	// The public half it prints, and its key id, are app.key.pub's.
	pb, _ := pem.Decode([]byte(out[strings.Index(out, "-----BEGIN"):]))
	if pb == nil {
		t.Fatalf("no public key PEM in %q", out)
	}
	if p, err := x509.ParsePKIXPublicKey(pb.Bytes); err != nil || !pub.Equal(p) {
		t.Errorf("printed public key %v (%v), want app.key.pub's", p, err)
	}
	if !strings.Contains(out, webrtc.KeyID(pub)) {
		t.Errorf("output %q lacks the key id %s", out, webrtc.KeyID(pub))
	}

	// It never overwrites, and bad usage changes nothing.
	if code, _, errs := run(runTokenKey, "--app-key", keyFile, "--out", pemFile); code != 1 || !strings.Contains(errs, "exists") {
		t.Errorf("token-key over an existing file: %d %q", code, errs)
	}
	if after, _ := os.ReadFile(pemFile); !bytes.Equal(b, after) {
		t.Error("token-key changed an existing file")
	}
	other := filepath.Join(dir, "other.pem")
	for _, args := range [][]string{
		{"--out", other},                            // no app key
		{"--app-key", keyFile},                      // no --out
		{"--app-key", keyFile, "--out", other, "x"}, // extra argument
	} {
		if code, _, _ := run(runTokenKey, args...); code != 2 {
			t.Errorf("%q: exit code %d, want 2", args, code)
		}
	}
	if code, _, errs := run(runTokenKey, "--app-key", keyFile+".pub", "--out", other); code != 1 || !strings.Contains(errs, "app key") {
		t.Errorf("token-key --app-key app.key.pub: %d %q, want 1", code, errs)
	}
	if _, err := os.Stat(other); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused token-key left %s behind: %v", other, err)
	}
}
