package node

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/internal/durable"
	"github.com/immense-p2p/immense/overlay"
	"github.com/immense-p2p/immense/webrtc"
)

// An app's peers hold its app key (--app-key, made by peer keygen); its
// topic key (erasure.AppKey.TopicKey) signs browser tokens and the
// certificates with which app peers publish. Volunteers and every other
// peer that should only check are given the topic key's public half
// (--app-pub app.key.pub, which peer keygen writes beside the key). A peer
// that knows either authorizes publishing on every topic except
// --open-topics (overlay/authorize.go).
//
// "Knows the app key" means a key given on purpose: --app-key or
// --app-pub. The key a peer without --app-key generates for itself in
// DataDir/app.key gives it a storage namespace of its own, nothing more:
// it turns no authorization on, since no other peer shares it, and such a
// peer, like one of a devnet, relays every topic unverified.

// appPubFileType tags the public key file, so that it cannot be mistaken
// for another JSON file (or for the private key, which --app-pub refuses).
const appPubFileType = "immense-app-pub"

// maxAppPubFile caps what LoadAppPublicKey reads: a valid file is ~200 bytes.
const maxAppPubFile = 4 << 10

// appPubFile is the public key file:
//
//	{"type":"immense-app-pub","version":1,
//	 "topic_key":"<base64 std, 32-byte Ed25519 public key>",
//	 "namespace":"<hex namespace id of the app key, informative>"}
type appPubFile struct {
	Type      string `json:"type"`
	Version   int    `json:"version"`
	TopicKey  string `json:"topic_key"`
	Namespace string `json:"namespace"`
}

// AppPublicKeyFile is where peer keygen writes the public half of the app
// key at path: beside it, with ".pub" appended.
func AppPublicKeyFile(path string) string { return path + ".pub" }

// WriteAppPublicKey writes the public half of k's topic key to path (mode
// 0644: it is public), refusing to overwrite a file.
func WriteAppPublicKey(path string, k *erasure.AppKey) error {
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("write app public key: %s exists", path)
	}
	b, err := json.MarshalIndent(appPubFile{
		Type:      appPubFileType,
		Version:   1,
		TopicKey:  base64.StdEncoding.EncodeToString(k.TopicKey().Public().(ed25519.PublicKey)),
		Namespace: k.Namespace().String(),
	}, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write app public key: %w", err)
	}
	return nil
}

// ParseAppPublicKey decodes an app public key file strictly.
func ParseAppPublicKey(data []byte) (ed25519.PublicKey, error) {
	if len(data) > maxAppPubFile {
		return nil, fmt.Errorf("app public key: larger than %d bytes", maxAppPubFile)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f appPubFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("app public key: %w", err)
	}
	if dec.More() {
		return nil, errors.New("app public key: trailing data")
	}
	if f.Type != appPubFileType || f.Version != 1 {
		return nil, fmt.Errorf("app public key: type %q version %d, want %q version 1 (the .pub file peer keygen writes)", f.Type, f.Version, appPubFileType)
	}
	k, err := base64.StdEncoding.Strict().DecodeString(f.TopicKey)
	if err != nil || len(k) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("app public key: topic_key must be %d bytes of base64", ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(k), nil
}

// LoadAppPublicKey reads an app public key file (peer keygen's app.key.pub).
func LoadAppPublicKey(path string) (ed25519.PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load app public key: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxAppPubFile+1))
	if err != nil {
		return nil, fmt.Errorf("load app public key %s: %w", path, err)
	}
	k, err := ParseAppPublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("load app public key %s: %w", path, err)
	}
	return k, nil
}

// topicAuth fills c.Overlay.Auth from the app key and public key files,
// and returns the topic public keys, which also verify browsers' EdDSA
// tokens.
func (c *Config) topicAuth() (overlay.Authorization, []ed25519.PublicKey, error) {
	a := c.Overlay.Auth
	var keys []ed25519.PublicKey
	if c.AppKeyFile != "" {
		k, err := erasure.LoadAppKey(c.AppKeyFile)
		if err != nil {
			return a, nil, err
		}
		a.Key = k.TopicKey()
		keys = append(keys, a.Key.Public().(ed25519.PublicKey))
	}
	for _, p := range c.AppPubFiles {
		k, err := LoadAppPublicKey(p)
		if err != nil {
			return a, nil, err
		}
		keys = append(keys, k)
	}
	a.PublicKeys = append(append([]ed25519.PublicKey(nil), a.PublicKeys...), keys...)
	if len(a.PublicKeys) > overlay.MaxAppKeys {
		return a, nil, fmt.Errorf("%d app public keys, at most %d", len(a.PublicKeys), overlay.MaxAppKeys)
	}
	if a.VerifyToken == nil && (a.Key != nil || len(a.PublicKeys) > 0) {
		var secret []byte
		var maxTTL time.Duration
		var revoked []string
		if b := c.Browsers; b != nil {
			secret, maxTTL, revoked = b.Secret, b.MaxTokenTTL, b.RevokedTokens
		}
		keys, err := browserTokenKeys(c.Browsers, a.PublicKeys)
		if err != nil {
			return a, nil, err
		}
		v, err := webrtc.NewVerifier(secret, keys, maxTTL, revoked)
		if err != nil {
			return a, nil, fmt.Errorf("browser token verifier: %w", err)
		}
		a.VerifyToken = tokenVerifier(v)
	}
	return a, a.PublicKeys, nil
}

// browserTokenKeys is the one list of keys that verify browsers' EdDSA
// tokens: the browser config's own keys, then the app's topic keys, each
// once. The WebRTC bridge (startBrowsers) and the overlay's check of a
// relayed browser message both use it, so a token one accepts the other
// accepts too. More keys than a verifier takes is an error, not a silent
// cut that would drop a different key in each place.
func browserTokenKeys(b *webrtc.Config, topic []ed25519.PublicKey) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	if b != nil {
		keys = slices.Clone(b.PublicKeys)
	}
	for _, k := range topic {
		if !slices.ContainsFunc(keys, func(p ed25519.PublicKey) bool { return p.Equal(k) }) {
			keys = append(keys, k)
		}
	}
	if len(keys) > webrtc.MaxPublicKeys {
		return nil, fmt.Errorf("browser token keys: %d (browser keys and app public keys together), at most %d", len(keys), webrtc.MaxPublicKeys)
	}
	return keys, nil
}

// tokenVerifier is v as the overlay's TokenVerifier: every peer checks the
// token a browser's relayed message carries as the peer it connected to
// did, and what it grants on the message's topic.
func tokenVerifier(v *webrtc.Verifier) overlay.TokenVerifier {
	return func(token string, now time.Time) (overlay.TokenGrant, error) {
		c, err := v.Verify(token, now)
		if err != nil {
			return overlay.TokenGrant{}, err
		}
		return overlay.TokenGrant{
			Subject:    c.Subject,
			ValidUntil: c.ExpiresAt.Add(webrtc.ClockSkew),
			CanWrite:   c.CanWrite,
			Key:        c.Key,
		}, nil
	}
}
