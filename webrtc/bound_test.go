package webrtc

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/immense-p2p/immense/internal/browsersig"
)

// TestTokenBoundKey: a token minted with Claims.Key carries it as an RFC
// 7800 cnf/jwk and Verify returns it; a cnf in any other shape is refused.
func TestTokenBoundKey(t *testing.T) {
	browser := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize))
	c := Claims{Subject: "bob", IssuedAt: testNow, ExpiresAt: testNow.Add(time.Hour), Write: []string{"chat/*"}, Key: browser.Public().(ed25519.PublicKey)}
	tok, err := MintEdDSA(testEdKey, c)
	if err != nil {
		t.Fatal(err)
	}
	v := edVerifier(t, nil, testEdKey.Public().(ed25519.PublicKey))
	got, err := v.Verify(tok, testNow)
	if err != nil || !got.Key.Equal(c.Key) {
		t.Fatalf("Verify = %x, %v; want the bound key", got.Key, err)
	}
	if _, err := MintEdDSA(testEdKey, Claims{ExpiresAt: testNow.Add(time.Hour), Key: []byte("short")}); err == nil {
		t.Error("minted a token bound to a 5-byte key")
	}
	x := base64.RawURLEncoding.EncodeToString(c.Key)
	for name, cnf := range map[string]string{
		"no jwk":         `{}`,
		"JWK":            `{"JWK":{"kty":"OKP","crv":"Ed25519","x":"` + x + `"}}`,
		"jwk twice":      `{"jwk":{"kty":"OKP","crv":"Ed25519","x":"` + x + `"},"jwk":{}}`,
		"x twice":        `{"jwk":{"kty":"OKP","crv":"Ed25519","x":"` + x + `","x":"AA"}}`,
		"X":              `{"jwk":{"kty":"OKP","crv":"Ed25519","X":"` + x + `"}}`,
		"EC key":         `{"jwk":{"kty":"EC","crv":"P-256","x":"` + x + `"}}`,
		"short x":        `{"jwk":{"kty":"OKP","crv":"Ed25519","x":"AAAA"}}`,
		"padded x":       `{"jwk":{"kty":"OKP","crv":"Ed25519","x":"` + x + `="}}`,
		"jwk not object": `{"jwk":"` + x + `"}`,
		"cnf not object": `"` + x + `"`,
	} {
		payload := `{"iat":1893553445,"exp":1893557045,"write":["a"],"cnf":` + cnf + `}`
		if _, err := v.Verify(signEd(testEdKey, `{"alg":"EdDSA"}`, payload), testNow); !errors.Is(err, ErrTokenMalformed) {
			t.Errorf("%s: %v, want ErrTokenMalformed", name, err)
		}
	}
}

// TestSignedPublish: a session whose token is bound to a key relays only
// publishes signed by that key, with the signature, for every peer to
// check again; an unsigned publish, one signed by another key or for
// another payload, and a signed publish with a bearer token are refused
// with the reason, and none reaches the overlay.
func TestSignedPublish(t *testing.T) {
	e := newTestEnv(t, nil)
	ctx := testContext(t)
	browser := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, ed25519.SeedSize))
	now := time.Now()
	bound, err := Mint(testSecret, Claims{Subject: "bob", IssuedAt: now, ExpiresAt: now.Add(time.Hour), Read: []string{"a"}, Write: []string{"a"}, Key: browser.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	signing := e.dial(ctx, bound, WithBoundKey(browser))
	if err := signing.Subscribe(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := signing.Publish(ctx, "a", []byte("signed")); err != nil {
		t.Fatalf("signed publish: %v", err)
	}
	if m := <-signing.Messages(); string(m.Data) != "signed" {
		t.Fatalf("got %q", m.Data)
	}
	e.bus.mu.Lock()
	proofs := e.bus.proofs
	e.bus.mu.Unlock()
	if len(proofs) != 1 || proofs[0] == nil || browsersig.Verify(browser.Public().(ed25519.PublicKey), "a", proofs[0].Time, []byte("signed"), proofs[0].Sig) != nil {
		t.Fatalf("the bus got proofs %+v, want the browser's signature", proofs)
	}

	_, other, _ := ed25519.GenerateKey(nil)
	unsigned := e.dial(ctx, bound)
	otherKey := e.dial(ctx, bound, WithBoundKey(other))
	bearer := e.dial(ctx, e.token([]string{"a"}, []string{"a"}), WithBoundKey(browser))
	for name, tc := range map[string]struct {
		c    *Client
		want string
	}{
		"unsigned with a bound token": {unsigned, "must be signed"},
		"signed by another key":       {otherKey, "does not match"},
		"signed with a bearer token":  {bearer, "bound to no key"},
	} {
		var se *ServerError
		if err := tc.c.Publish(ctx, "a", []byte("x")); !errors.As(err, &se) || se.Code != CodeForbidden || !strings.Contains(se.Reason, tc.want) {
			t.Errorf("%s: %v, want forbidden: %s", name, err, tc.want)
		}
	}
	// A signature moved to another payload, and one from the past.
	sig := browsersig.Sign(browser, "a", now, []byte("x"))
	for name, f := range map[string]frame{
		"moved":   {typ: frameSignedPublish, req: 1, topic: "a", time: now.UnixMilli(), sig: sig, payload: []byte("y")},
		"too old": {typ: frameSignedPublish, req: 1, topic: "a", time: now.Add(-time.Hour).UnixMilli(), sig: browsersig.Sign(browser, "a", now.Add(-time.Hour), []byte("x")), payload: []byte("x")},
	} {
		var se *ServerError
		if err := unsigned.request(ctx, &f); !errors.As(err, &se) || se.Code != CodeForbidden {
			t.Errorf("%s: %v, want forbidden", name, err)
		}
	}
	e.bus.mu.Lock()
	defer e.bus.mu.Unlock()
	if len(e.bus.proofs) != 1 {
		t.Errorf("%d publishes reached the overlay, want only the signed one", len(e.bus.proofs))
	}
}

// TestSignedPublishPeerClock: a signature's time is judged against the
// server's clock (Config.Now), as its token is, not the wall clock.
func TestSignedPublishPeerClock(t *testing.T) {
	later := time.Now().Add(time.Hour)
	e := newTestEnv(t, func(c *Config) { c.Now = func() time.Time { return later } })
	ctx := testContext(t)
	browser := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, ed25519.SeedSize))
	bound, err := Mint(testSecret, Claims{Subject: "bob", IssuedAt: later, ExpiresAt: later.Add(time.Hour), Read: []string{"a"}, Write: []string{"a"}, Key: browser.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	c := e.dial(ctx, bound, WithBoundKey(browser))
	var se *ServerError
	if err := c.Publish(ctx, "a", []byte("x")); !errors.As(err, &se) || !strings.Contains(se.Reason, "from this peer's clock") {
		t.Fatalf("signed an hour behind the peer's clock: %v, want refused", err)
	}
	f := frame{typ: frameSignedPublish, req: 1, topic: "a", time: later.UnixMilli(), sig: browsersig.Sign(browser, "a", later, []byte("x")), payload: []byte("x")}
	if err := c.request(ctx, &f); err != nil {
		t.Fatalf("signed at the peer's time: %v", err)
	}
}
