package webrtc

import (
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
