package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/immense-p2p/immense/cmd/internal/cli"
	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/node"
	"github.com/immense-p2p/immense/webrtc"
)

// runToken mints a browser token: peer token --app-key F --read T --write
// T --ttl 1h, an EdDSA token signed with the app's topic key, which every
// peer given the public half (--app-pub) verifies; or, for a
// single-operator deployment, --secret-file F, an HS256 token.
func runToken(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("peer token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var read, write []string
	appKey := fs.String("app-key", "", "app key `file` (peer keygen): sign an EdDSA token, which peers with the app key or its public half (--app-pub) verify")
	secretFile := fs.String("secret-file", "", "file holding the token secret (the peers' --token-secret-file): sign an HS256 token instead")
	ttl := fs.Duration("ttl", time.Hour, fmt.Sprintf("how long the token is valid (at most %v: peers refuse a longer lifetime)", webrtc.DefaultMaxTokenTTL))
	sub := fs.String("sub", "", "whom the token is for (shows in peer logs)")
	bindKey := fs.String("bind-key", "", "bind the token to this browser `key` (base64url Ed25519, the JS client's client.publicKey()): publishes must then be signed with it, and nobody who sees the token can reuse it")
	fs.Var(cli.Strings(&read), "read", "topics the holder may subscribe to (comma-separated; a trailing * matches a prefix)")
	fs.Var(cli.Strings(&write), "write", "topics the holder may publish to (comma-separated; a trailing * matches a prefix)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: peer token --app-key FILE [--read TOPICS] [--write TOPICS] [--ttl 1h]\n       peer token --secret-file FILE ...\n\nPrints a token for browsers.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if (*appKey == "") == (*secretFile == "") {
		fmt.Fprintln(stderr, "peer token: give one of --app-key (EdDSA, the default to use) and --secret-file (HS256)")
		return 2
	}
	if *ttl <= 0 {
		fmt.Fprintln(stderr, "peer token: --ttl must be positive")
		return 2
	}
	if *ttl > webrtc.DefaultMaxTokenTTL {
		// Peers refuse it (webrtc.ErrTokenTTL, WebSocket close 4401):
		// a token nobody accepts is better refused here.
		fmt.Fprintf(stderr, "peer token: --ttl %v is longer than the %v peers accept; mint shorter tokens and mint again before they expire\n", *ttl, webrtc.DefaultMaxTokenTTL)
		return 2
	}
	if len(read) == 0 && len(write) == 0 {
		fmt.Fprintln(stderr, "peer token: give --read and/or --write topics; a token for nothing is useless")
		return 2
	}
	now := time.Now()
	claims := webrtc.Claims{Subject: *sub, IssuedAt: now, ExpiresAt: now.Add(*ttl), Read: read, Write: write}
	if *bindKey != "" {
		k, err := base64.RawURLEncoding.DecodeString(*bindKey)
		if err != nil || len(k) != ed25519.PublicKeySize {
			fmt.Fprintf(stderr, "peer token: --bind-key: want a base64url (unpadded) Ed25519 public key of %d bytes\n", ed25519.PublicKeySize)
			return 2
		}
		claims.Key = k
	}
	var tok string
	var err error
	if *appKey != "" {
		var k *erasure.AppKey
		k, err = erasure.LoadAppKey(*appKey)
		if err != nil {
			fmt.Fprintln(stderr, "peer token:", err)
			return 1
		}
		tok, err = webrtc.MintEdDSA(k.TopicKey(), claims)
	} else {
		var secret []byte
		if secret, err = cli.LoadTokenSecret(*secretFile); err != nil {
			fmt.Fprintln(stderr, "peer token:", err)
			return 1
		}
		tok, err = webrtc.Mint(secret, claims)
	}
	if err != nil {
		fmt.Fprintln(stderr, "peer token:", err)
		return 1
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

// runSecret writes a new random token secret: peer secret --out FILE.
func runSecret(args []string, stdout, stderr io.Writer) int {
	out, code, ok := outFileArgs("peer secret", args, stderr, nil)
	if !ok {
		return code
	}
	b := make([]byte, 32)
	rand.Read(b)
	if err := createPrivateFile(out, []byte(hex.EncodeToString(b)+"\n")); err != nil {
		fmt.Fprintln(stderr, "peer secret:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote a new token secret to %s; give it to your peers with --token-secret-file\n", out)
	return 0
}

// runTokenKey exports the app's topic key, which signs browser tokens, for
// app servers that mint them in another language: peer token-key
// --app-key FILE --out FILE.pem writes it as an unencrypted PKCS#8 PEM
// private key (mode 0600), which OpenSSL, Node's crypto.createPrivateKey,
// Python's cryptography and JWT libraries read as an Ed25519 key, and
// prints its public half (SPKI PEM) and key id. The app key's own
// signing_key does not sign tokens: see erasure.AppKey.TopicKey for the
// derivation, which docs/app-developer.md spells out.
func runTokenKey(args []string, stdout, stderr io.Writer) int {
	var appKey string
	out, code, ok := outFileArgs("peer token-key", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&appKey, "app-key", "", "app key `file` (peer keygen) whose topic key to export")
		fs.Usage = func() {
			fmt.Fprint(stderr, "Usage: peer token-key --app-key FILE --out FILE.pem\n\nWrites the key that signs the app's browser tokens (EdDSA, derived from the app key)\nas a PKCS#8 PEM private key, for an app server that mints tokens in another language.\n\n")
			fs.PrintDefaults()
		}
	})
	if !ok {
		return code
	}
	if appKey == "" {
		fmt.Fprintln(stderr, "peer token-key: --app-key is required")
		return 2
	}
	k, err := erasure.LoadAppKey(appKey)
	if err != nil {
		fmt.Fprintln(stderr, "peer token-key:", err)
		return 1
	}
	priv := k.TopicKey()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		fmt.Fprintln(stderr, "peer token-key:", err)
		return 1
	}
	pub := priv.Public().(ed25519.PublicKey)
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		fmt.Fprintln(stderr, "peer token-key:", err)
		return 1
	}
	if err := createPrivateFile(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		fmt.Fprintln(stderr, "peer token-key:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote the token signing key of namespace %s to %s (PKCS#8 PEM, Ed25519)\n", k.Namespace(), out)
	fmt.Fprintln(stdout, "Sign browser tokens with it (JWT, alg EdDSA) in your app server, and keep it secret: whoever has it can mint tokens for, and publish on, every topic of the app (not read or write its state).")
	fmt.Fprintf(stdout, "Its public key, key id (kid) %s, is the one in %s, which peers verify with:\n", webrtc.KeyID(pub), node.AppPublicKeyFile(appKey))
	fmt.Fprint(stdout, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})))
	return 0
}

// createPrivateFile writes data to a new file at path, mode 0600,
// refusing to replace one that exists.
func createPrivateFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
