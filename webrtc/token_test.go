package webrtc

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	testSecret  = []byte("0123456789abcdef0123456789abcdef-test")
	otherSecret = []byte("fedcba9876543210fedcba9876543210-other")
	testNow     = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
)

// signRaw builds a token from raw header and payload JSON, so tests can
// craft tokens Mint would refuse to produce.
func signRaw(secret []byte, header, payload string) string {
	s := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(s))
	return s + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func flipBit(sig string) string {
	b, _ := base64.RawURLEncoding.DecodeString(sig)
	b[7] ^= 1
	return base64.RawURLEncoding.EncodeToString(b)
}

func mustMint(t *testing.T, c Claims) string {
	t.Helper()
	tok, err := Mint(testSecret, c)
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	return tok
}

func TestTokenRoundTrip(t *testing.T) {
	c := Claims{
		Subject:   "alice",
		IssuedAt:  testNow,
		ExpiresAt: testNow.Add(time.Hour),
		NotBefore: testNow,
		Read:      []string{"chat", "news/*"},
		Write:     []string{"chat"},
	}
	got, err := Verify(testSecret, mustMint(t, c), testNow.Add(time.Minute))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.Subject != "alice" || !got.IssuedAt.Equal(c.IssuedAt) || !got.ExpiresAt.Equal(c.ExpiresAt) || !got.NotBefore.Equal(c.NotBefore) {
		t.Fatalf("claims changed in transit: %+v", got)
	}
	for topic, want := range map[string][2]bool{ // read, write
		"chat":        {true, true},
		"chat/x":      {false, false},
		"news/sport":  {true, false},
		"news/":       {true, false},
		"news":        {false, false},
		"newsletters": {false, false},
	} {
		if r, w := got.CanRead(topic), got.CanWrite(topic); r != want[0] || w != want[1] {
			t.Errorf("%q: CanRead=%v CanWrite=%v, want %v", topic, r, w, want)
		}
	}
}

func TestTokenWildcardAll(t *testing.T) {
	tok := mustMint(t, Claims{IssuedAt: testNow, ExpiresAt: testNow.Add(time.Hour), Read: []string{"*"}, Write: []string{"room*"}})
	c, err := Verify(testSecret, tok, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if !c.CanRead("anything:at/all") || !c.CanWrite("room") || !c.CanWrite("room42") || c.CanWrite("roo") {
		t.Fatalf("wildcards matched wrongly: %+v", c)
	}
}

func TestTokenVerifyRejects(t *testing.T) {
	valid := Claims{IssuedAt: testNow, ExpiresAt: testNow.Add(time.Hour), Read: []string{"a"}, Write: []string{"a"}}
	good := mustMint(t, valid)
	parts := strings.Split(good, ".")
	payload := `{"iat":1893553445,"exp":1893557045,"read":["a"],"write":["a"]}` // testNow, +1h
	tests := []struct {
		name  string
		token string
		now   time.Time
		want  error
	}{
		{"empty", "", testNow, ErrTokenMalformed},
		{"too large", strings.Repeat("a", MaxTokenSize+1), testNow, ErrTokenMalformed},
		{"two parts", parts[0] + "." + parts[1], testNow, ErrTokenMalformed},
		{"four parts", good + ".x", testNow, ErrTokenMalformed},
		{"wrong secret", func() string { s, _ := Mint(otherSecret, valid); return s }(), testNow, ErrTokenSignature},
		{"tampered payload", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iat":1893553445,"exp":1893557045,"read":["*"],"write":["*"]}`)) + "." + parts[2], testNow, ErrTokenSignature},
		{"flipped signature bit", parts[0] + "." + parts[1] + "." + flipBit(parts[2]), testNow, ErrTokenSignature},
		{"short signature", parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-11], testNow, ErrTokenSignature},
		{"padded signature", good + "=", testNow, ErrTokenMalformed},
		{"alg none", b64url(`{"alg":"none","typ":"JWT"}`) + "." + b64url(payload) + ".", testNow, ErrTokenSignature},
		{"alg none signed", signRaw(testSecret, `{"alg":"none","typ":"JWT"}`, payload), testNow, ErrTokenSignature},
		{"alg HS512", signRaw(testSecret, `{"alg":"HS512"}`, payload), testNow, ErrTokenSignature},
		{"alg lowercase", signRaw(testSecret, `{"alg":"hs256"}`, payload), testNow, ErrTokenSignature},
		{"typ other", signRaw(testSecret, `{"alg":"HS256","typ":"JOSE+JSON"}`, payload), testNow, ErrTokenMalformed},
		{"crit header", signRaw(testSecret, `{"alg":"HS256","crit":["exp"]}`, payload), testNow, ErrTokenMalformed},
		{"header not JSON", signRaw(testSecret, `alg=HS256`, payload), testNow, ErrTokenMalformed},
		{"trailing header data", signRaw(testSecret, `{"alg":"HS256"}{}`, payload), testNow, ErrTokenMalformed},
		{"payload not JSON", signRaw(testSecret, `{"alg":"HS256"}`, `nope`), testNow, ErrTokenMalformed},
		{"no exp", signRaw(testSecret, `{"alg":"HS256"}`, `{"iat":1893553445,"read":["a"]}`), testNow, ErrTokenMalformed},
		{"no iat", signRaw(testSecret, `{"alg":"HS256"}`, `{"exp":1893557045,"read":["a"]}`), testNow, ErrTokenMalformed},
		{"fractional exp", signRaw(testSecret, `{"alg":"HS256"}`, `{"iat":1893553445,"exp":1893557045.5}`), testNow, ErrTokenMalformed},
		{"string exp", signRaw(testSecret, `{"alg":"HS256"}`, `{"iat":1893553445,"exp":"1893557045"}`), testNow, ErrTokenMalformed},
		{"exp before iat", signRaw(testSecret, `{"alg":"HS256"}`, `{"iat":1893557045,"exp":1893553445}`), testNow, ErrTokenMalformed},
		{"bad pattern", signRaw(testSecret, `{"alg":"HS256"}`, `{"iat":1893553445,"exp":1893557045,"read":["a*b"]}`), testNow, ErrTokenMalformed},
		{"bad topic", signRaw(testSecret, `{"alg":"HS256"}`, `{"iat":1893553445,"exp":1893557045,"write":["a b"]}`), testNow, ErrTokenMalformed},
		{"expired", good, testNow.Add(time.Hour + ClockSkew), ErrTokenExpired},
		{"long expired", good, testNow.Add(48 * time.Hour), ErrTokenExpired},
		{"issued in the future", good, testNow.Add(-ClockSkew - time.Second), ErrTokenNotYetValid},
		{"before nbf", signRaw(testSecret, `{"alg":"HS256"}`, `{"iat":1893553445,"exp":1893557045,"nbf":1893555000}`), testNow, ErrTokenNotYetValid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(testSecret, tc.token, tc.now)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestTokenClockSkewAccepted(t *testing.T) {
	good := mustMint(t, Claims{IssuedAt: testNow, ExpiresAt: testNow.Add(time.Hour)})
	for _, now := range []time.Time{
		testNow.Add(-ClockSkew + time.Second),            // our clock slightly behind the minter's
		testNow.Add(time.Hour + ClockSkew - time.Second), // slightly ahead, just past exp
	} {
		if _, err := Verify(testSecret, good, now); err != nil {
			t.Errorf("at %v: %v", now, err)
		}
	}
	c, _ := Verify(testSecret, good, testNow)
	if c.CanRead("x") || c.CanWrite("x") {
		t.Fatal("a token without patterns must grant nothing")
	}
}

func TestTokenMintRejects(t *testing.T) {
	ok := Claims{IssuedAt: testNow, ExpiresAt: testNow.Add(time.Hour)}
	if _, err := Mint(testSecret[:MinSecretSize-1], ok); !errors.Is(err, ErrSecretTooShort) {
		t.Errorf("short secret: %v", err)
	}
	if _, err := Verify(testSecret[:MinSecretSize-1], "a.b.c", testNow); !errors.Is(err, ErrSecretTooShort) {
		t.Errorf("short secret in Verify: %v", err)
	}
	for name, c := range map[string]Claims{
		"no expiry":       {IssuedAt: testNow},
		"expiry too soon": {IssuedAt: testNow, ExpiresAt: testNow.Add(500 * time.Millisecond)},
		"bad pattern":     {IssuedAt: testNow, ExpiresAt: testNow.Add(time.Hour), Read: []string{"*a"}},
		"too many":        {IssuedAt: testNow, ExpiresAt: testNow.Add(time.Hour), Write: make([]string, MaxTokenPatterns+1)},
		"too long": {IssuedAt: testNow, ExpiresAt: testNow.Add(time.Hour), Read: func() []string {
			r := make([]string, MaxTokenPatterns)
			for i := range r {
				r[i] = strings.Repeat("x", MaxTopicLength)
			}
			return r
		}()},
	} {
		if _, err := Mint(testSecret, c); err == nil {
			t.Errorf("%s: Mint accepted %+v", name, c)
		}
	}
	// A zero IssuedAt means now: the token must verify against the real clock.
	tok, err := Mint(testSecret, Claims{ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(testSecret, tok, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := LoadSecret(write("ok", "  "+string(testSecret)+"\n"))
	if err != nil || string(got) != string(testSecret) {
		t.Fatalf("LoadSecret = %q, %v", got, err)
	}
	if _, err := LoadSecret(write("short", "tooshort\n")); !errors.Is(err, ErrSecretTooShort) {
		t.Errorf("short: %v", err)
	}
	if _, err := LoadSecret(write("empty", "\n\n")); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty: %v", err)
	}
	if _, err := LoadSecret(write("huge", strings.Repeat("x", maxSecretFileSize+1))); err == nil {
		t.Error("huge file accepted")
	}
	if _, err := LoadSecret(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing: %v", err)
	}
}

var testEdKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

func edVerifier(t *testing.T, secret []byte, pubs ...ed25519.PublicKey) *Verifier {
	t.Helper()
	v, err := NewVerifier(secret, pubs, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// signEd builds an EdDSA token from raw header and payload JSON.
func signEd(priv ed25519.PrivateKey, header, payload string) string {
	s := b64url(header) + "." + b64url(payload)
	return s + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(s)))
}

// TestTokenEdDSA: a peer holding only the app's public key admits the
// app's EdDSA tokens, and can mint nothing that another such peer takes.
func TestTokenEdDSA(t *testing.T) {
	pub := testEdKey.Public().(ed25519.PublicKey)
	c := Claims{Subject: "alice", ID: "t-1", IssuedAt: testNow, ExpiresAt: testNow.Add(time.Hour), Read: []string{"chat/*"}, Write: []string{"chat/*"}}
	tok, err := MintEdDSA(testEdKey, c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := edVerifier(t, nil, pub).Verify(tok, testNow)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.Subject != "alice" || got.ID != "t-1" || !got.CanWrite("chat/lobby") || got.CanWrite("admin/x") {
		t.Fatalf("claims changed in transit: %+v", got)
	}

	// Rotation: the right key is picked by kid among several, and a token
	// without kid is tried against each.
	_, other, _ := ed25519.GenerateKey(nil)
	rotating := edVerifier(t, nil, other.Public().(ed25519.PublicKey), pub)
	if _, err := rotating.Verify(tok, testNow); err != nil {
		t.Errorf("with two keys: %v", err)
	}
	payload := `{"iat":1893553445,"exp":1893557045,"read":["a"]}`
	if _, err := rotating.Verify(signEd(testEdKey, `{"alg":"EdDSA"}`, payload), testNow); err != nil {
		t.Errorf("without kid: %v", err)
	}

	otherTok, _ := MintEdDSA(other, c)
	hsWithPub := signRaw(pub, `{"alg":"HS256"}`, payload) // algorithm confusion: the public key as HMAC secret
	for name, tc := range map[string]struct {
		v     *Verifier
		token string
	}{
		"another app's key":       {edVerifier(t, nil, pub), otherTok},
		"wrong kid":               {edVerifier(t, nil, pub), signEd(testEdKey, `{"alg":"EdDSA","kid":"AAAAAAAAAAA"}`, payload)},
		"HS256 on a pub-key peer": {edVerifier(t, nil, pub), mustMint(t, c)},
		"public key as secret":    {edVerifier(t, nil, pub), hsWithPub},
		"EdDSA on a secret peer":  {edVerifier(t, testSecret), tok},
		"tampered":                {edVerifier(t, nil, pub), strings.Replace(tok, ".", ".e", 1)},
	} {
		if _, err := tc.v.Verify(tc.token, testNow); !errors.Is(err, ErrTokenSignature) && !errors.Is(err, ErrTokenMalformed) {
			t.Errorf("%s: Verify = %v, want a signature error", name, err)
		}
	}
}

// TestTokenStrictJSON: a name in another case, or given twice, means
// different things to different parsers; both are refused.
func TestTokenStrictJSON(t *testing.T) {
	v := edVerifier(t, testSecret, testEdKey.Public().(ed25519.PublicKey))
	for name, tc := range map[string][2]string{
		"EXP in capitals":  {`{"alg":"HS256"}`, `{"iat":1893553445,"EXP":1893557045,"exp":1893557045}`},
		"Read in capitals": {`{"alg":"HS256"}`, `{"iat":1893553445,"exp":1893557045,"Read":["*"]}`},
		"write twice":      {`{"alg":"HS256"}`, `{"iat":1893553445,"exp":1893557045,"write":["a"],"write":["*"]}`},
		"exp twice":        {`{"alg":"HS256"}`, `{"iat":1893553445,"exp":1893557045,"exp":1999999999}`},
		"Alg in header":    {`{"Alg":"none","alg":"HS256"}`, `{"iat":1893553445,"exp":1893557045}`},
		"alg twice":        {`{"alg":"HS256","alg":"none"}`, `{"iat":1893553445,"exp":1893557045}`},
	} {
		if _, err := v.Verify(signRaw(testSecret, tc[0], tc[1]), testNow); !errors.Is(err, ErrTokenMalformed) {
			t.Errorf("%s: Verify = %v, want ErrTokenMalformed", name, err)
		}
	}
	// Unknown names stay allowed.
	if _, err := v.Verify(signRaw(testSecret, `{"alg":"HS256","x5u":"n/a"}`, `{"iss":"app","aud":["x"],"iat":1893553445,"exp":1893557045}`), testNow); err != nil {
		t.Errorf("other claims: %v", err)
	}
}

// TestTokenLimits: a token valid for longer than the peer's maximum, or
// revoked by its jti, is refused.
func TestTokenLimits(t *testing.T) {
	long := mustMint(t, Claims{IssuedAt: testNow, ExpiresAt: testNow.Add(DefaultMaxTokenTTL + time.Second)})
	if _, err := Verify(testSecret, long, testNow); !errors.Is(err, ErrTokenTTL) {
		t.Errorf("TTL over the default: %v", err)
	}
	v, err := NewVerifier(testSecret, nil, 10*time.Minute, []string{"stolen"})
	if err != nil {
		t.Fatal(err)
	}
	hour := mustMint(t, Claims{IssuedAt: testNow, ExpiresAt: testNow.Add(time.Hour)})
	if _, err := v.Verify(hour, testNow); !errors.Is(err, ErrTokenTTL) {
		t.Errorf("TTL over a configured 10 min: %v", err)
	}
	stolen := mustMint(t, Claims{ID: "stolen", IssuedAt: testNow, ExpiresAt: testNow.Add(time.Minute)})
	if _, err := v.Verify(stolen, testNow); !errors.Is(err, ErrTokenRevoked) {
		t.Errorf("revoked jti: %v", err)
	}
	fine := mustMint(t, Claims{ID: "fine", IssuedAt: testNow, ExpiresAt: testNow.Add(time.Minute)})
	if _, err := v.Verify(fine, testNow); err != nil {
		t.Errorf("other jti: %v", err)
	}
	for name, f := range map[string]func() (*Verifier, error){
		"negative TTL": func() (*Verifier, error) { return NewVerifier(testSecret, nil, -time.Second, nil) },
		"short key":    func() (*Verifier, error) { return NewVerifier(nil, []ed25519.PublicKey{make([]byte, 31)}, 0, nil) },
		"too many keys": func() (*Verifier, error) {
			return NewVerifier(nil, make([]ed25519.PublicKey, MaxPublicKeys+1), 0, nil)
		},
	} {
		if _, err := f(); err == nil {
			t.Errorf("%s: NewVerifier accepted it", name)
		}
	}
}

// TestLoadSecretMode: a secret other users can read is refused, as the
// identity is: whoever reads it can mint tokens.
func TestLoadSecretMode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, testSecret, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSecret(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("mode 0644: %v", err)
	}
}

// FuzzVerify: no input makes Verify panic, and what it accepts is a token
// Mint or MintEdDSA could have made (a valid signature by our keys).
func FuzzVerify(f *testing.F) {
	pub := testEdKey.Public().(ed25519.PublicKey)
	c := Claims{Subject: "s", ID: "j", IssuedAt: testNow, ExpiresAt: testNow.Add(time.Hour), Read: []string{"a/*"}, Write: []string{"a"}}
	hs, _ := Mint(testSecret, c)
	ed, _ := MintEdDSA(testEdKey, c)
	f.Add(hs)
	f.Add(ed)
	bound := c
	bound.Key = pub
	bd, _ := MintEdDSA(testEdKey, bound)
	f.Add(bd)
	f.Add(signRaw(testSecret, `{"alg":"HS256","alg":"none"}`, `{"iat":1893553445,"exp":1893557045}`))
	f.Add(b64url(`{"alg":"none"}`) + "." + b64url(`{"iat":1,"exp":2}`) + ".")
	v, err := NewVerifier(testSecret, []ed25519.PublicKey{pub}, 0, []string{"revoked"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		got, err := v.Verify(token, testNow)
		if err != nil {
			return
		}
		if got.ExpiresAt.Sub(got.IssuedAt) > DefaultMaxTokenTTL || got.ID == "revoked" {
			t.Fatalf("accepted %+v", got)
		}
	})
}
