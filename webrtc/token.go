package webrtc

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

const (
	// MinSecretSize is the shortest token secret accepted, in bytes. HS256
	// keys shorter than the hash output (32 bytes) weaken the MAC (RFC 7518
	// section 3.2 requires at least that much).
	MinSecretSize = 32
	// MaxTokenSize caps the length of a token string. Real tokens are a few
	// hundred bytes; the cap bounds the work an unauthenticated caller can
	// make the peer do before the signature check.
	MaxTokenSize = 4096
	// MaxTokenPatterns caps the number of read and of write patterns.
	MaxTokenPatterns = 64
	// ClockSkew is how far the peer's clock may disagree with the clock of
	// the app server that minted a token.
	ClockSkew = time.Minute

	// maxSecretFileSize bounds LoadSecret's read, so that pointing it at the
	// wrong file fails clearly instead of reading a disk image.
	maxSecretFileSize = 64 << 10
)

// Claims are what a token grants. A token is an HS256 JWT (RFC 7519) whose
// payload carries these fields under the JSON names given in parentheses.
//
// A topic pattern is either an exact topic name ("chat") or a prefix
// followed by a single trailing "*", matching every topic that starts with
// the prefix: "chat/*" matches "chat/lobby" and "chat/a/b" but not "chat";
// "*" matches every topic.
type Claims struct {
	// Subject (sub) names whom the token was minted for, for logs. Optional.
	Subject string
	// IssuedAt (iat) is required, and may not lie in the future.
	IssuedAt time.Time
	// ExpiresAt (exp) is required. A session ends when its token expires.
	ExpiresAt time.Time
	// NotBefore (nbf) is optional.
	NotBefore time.Time
	// Read (read) are the topic patterns the holder may subscribe to.
	Read []string
	// Write (write) are the topic patterns the holder may publish to.
	Write []string
}

// CanRead reports whether the claims allow subscribing to topic.
func (c *Claims) CanRead(topic string) bool { return matchTopic(c.Read, topic) }

// CanWrite reports whether the claims allow publishing to topic.
func (c *Claims) CanWrite(topic string) bool { return matchTopic(c.Write, topic) }

// jwtClaims is the JSON form of Claims. Times are NumericDate: whole
// seconds since the Unix epoch.
type jwtClaims struct {
	Subject   string   `json:"sub,omitempty"`
	IssuedAt  *int64   `json:"iat"`
	ExpiresAt *int64   `json:"exp"`
	NotBefore *int64   `json:"nbf,omitempty"`
	Read      []string `json:"read"`
	Write     []string `json:"write"`
}

type jwtHeader struct {
	Alg  string          `json:"alg"`
	Typ  string          `json:"typ,omitempty"`
	Crit json.RawMessage `json:"crit,omitempty"`
}

// headerHS256 is the encoded header of every token Mint produces.
var headerHS256 = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// b64 is the only base64 accepted: unpadded base64url with zero padding
// bits, so that each token has exactly one encoding.
var b64 = base64.RawURLEncoding.Strict()

// Mint returns a signed token granting claims. A zero IssuedAt means now.
// Times are truncated to whole seconds, as JWT requires.
func Mint(secret []byte, claims Claims) (string, error) {
	if len(secret) < MinSecretSize {
		return "", fmt.Errorf("%w: %d bytes, at least %d required", ErrSecretTooShort, len(secret), MinSecretSize)
	}
	if claims.IssuedAt.IsZero() {
		claims.IssuedAt = time.Now()
	}
	if claims.ExpiresAt.IsZero() {
		return "", fmt.Errorf("mint token: ExpiresAt is required")
	}
	iat, exp := claims.IssuedAt.Unix(), claims.ExpiresAt.Unix()
	if exp <= iat {
		return "", fmt.Errorf("mint token: ExpiresAt %v is not at least a second after IssuedAt %v", claims.ExpiresAt, claims.IssuedAt)
	}
	if err := validatePatterns(claims.Read, claims.Write); err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	jc := jwtClaims{
		Subject: claims.Subject, IssuedAt: &iat, ExpiresAt: &exp,
		Read: nonNil(claims.Read), Write: nonNil(claims.Write),
	}
	if !claims.NotBefore.IsZero() {
		nbf := claims.NotBefore.Unix()
		jc.NotBefore = &nbf
	}
	payload, err := json.Marshal(jc)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	signed := headerHS256 + "." + base64.RawURLEncoding.EncodeToString(payload)
	tok := signed + "." + base64.RawURLEncoding.EncodeToString(sign(secret, signed))
	if len(tok) > MaxTokenSize {
		return "", fmt.Errorf("mint token: %d bytes, more than the %d a peer accepts (too many or too long patterns)", len(tok), MaxTokenSize)
	}
	return tok, nil
}

// Verify checks token against secret at time now and returns its claims.
// It accepts only HS256 (never "none" or another algorithm, whatever the
// header says), compares signatures in constant time, allows ClockSkew of
// disagreement between clocks, and requires iat and exp.
//
// Errors wrap ErrTokenMalformed, ErrTokenSignature, ErrTokenExpired or
// ErrTokenNotYetValid.
func Verify(secret []byte, token string, now time.Time) (Claims, error) {
	if len(secret) < MinSecretSize {
		return Claims{}, fmt.Errorf("%w: %d bytes, at least %d required", ErrSecretTooShort, len(secret), MinSecretSize)
	}
	if token == "" {
		return Claims{}, fmt.Errorf("%w: empty", ErrTokenMalformed)
	}
	if len(token) > MaxTokenSize {
		return Claims{}, fmt.Errorf("%w: %d bytes, at most %d", ErrTokenMalformed, len(token), MaxTokenSize)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Claims{}, fmt.Errorf("%w: %d dot-separated parts, want 3", ErrTokenMalformed, len(parts))
	}
	headerJSON, err := b64.DecodeString(parts[0])
	if err != nil {
		return Claims{}, fmt.Errorf("%w: header: %v", ErrTokenMalformed, err)
	}
	var h jwtHeader
	if err := decodeStrictJSON(headerJSON, &h); err != nil {
		return Claims{}, fmt.Errorf("%w: header: %v", ErrTokenMalformed, err)
	}
	if h.Alg != "HS256" {
		return Claims{}, fmt.Errorf("%w: algorithm %q, only HS256 is accepted", ErrTokenSignature, h.Alg)
	}
	if h.Typ != "" && h.Typ != "JWT" {
		return Claims{}, fmt.Errorf("%w: typ %q", ErrTokenMalformed, h.Typ)
	}
	if h.Crit != nil {
		return Claims{}, fmt.Errorf("%w: critical header extensions are not supported", ErrTokenMalformed)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return Claims{}, fmt.Errorf("%w: signature: %v", ErrTokenMalformed, err)
	}
	want := sign(secret, token[:len(parts[0])+1+len(parts[1])])
	if !hmac.Equal(sig, want) {
		return Claims{}, ErrTokenSignature
	}

	// Only now, with the signature checked, is the payload worth parsing.
	payload, err := b64.DecodeString(parts[1])
	if err != nil {
		return Claims{}, fmt.Errorf("%w: payload: %v", ErrTokenMalformed, err)
	}
	var jc jwtClaims
	if err := decodeStrictJSON(payload, &jc); err != nil {
		return Claims{}, fmt.Errorf("%w: payload: %v", ErrTokenMalformed, err)
	}
	if jc.IssuedAt == nil || jc.ExpiresAt == nil {
		return Claims{}, fmt.Errorf("%w: iat and exp are required", ErrTokenMalformed)
	}
	if err := validatePatterns(jc.Read, jc.Write); err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrTokenMalformed, err)
	}
	c := Claims{
		Subject:   jc.Subject,
		IssuedAt:  time.Unix(*jc.IssuedAt, 0),
		ExpiresAt: time.Unix(*jc.ExpiresAt, 0),
		Read:      jc.Read,
		Write:     jc.Write,
	}
	if jc.NotBefore != nil {
		c.NotBefore = time.Unix(*jc.NotBefore, 0)
	}
	if !c.ExpiresAt.After(c.IssuedAt) {
		return Claims{}, fmt.Errorf("%w: exp is not after iat", ErrTokenMalformed)
	}
	if !now.Before(c.ExpiresAt.Add(ClockSkew)) {
		return Claims{}, fmt.Errorf("%w: at %s", ErrTokenExpired, c.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if c.IssuedAt.After(now.Add(ClockSkew)) {
		return Claims{}, fmt.Errorf("%w: issued at %s, in the future", ErrTokenNotYetValid, c.IssuedAt.UTC().Format(time.RFC3339))
	}
	if !c.NotBefore.IsZero() && c.NotBefore.After(now.Add(ClockSkew)) {
		return Claims{}, fmt.Errorf("%w: not before %s", ErrTokenNotYetValid, c.NotBefore.UTC().Format(time.RFC3339))
	}
	return c, nil
}

// LoadSecret reads a token secret from the file at path. Surrounding
// whitespace (such as the newline an editor or echo adds) is not part of
// the secret. The secret must be at least MinSecretSize bytes; a good one
// is `head -c 32 /dev/urandom | base64`.
func LoadSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read token secret: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read token secret %s: %w", path, err)
	}
	if len(b) > maxSecretFileSize {
		return nil, fmt.Errorf("read token secret %s: larger than %d bytes, is it the right file?", path, maxSecretFileSize)
	}
	secret := bytes.TrimSpace(b)
	if len(secret) == 0 {
		return nil, fmt.Errorf("read token secret %s: file is empty", path)
	}
	if len(secret) < MinSecretSize {
		return nil, fmt.Errorf("read token secret %s: %w: %d bytes, at least %d required", path, ErrSecretTooShort, len(secret), MinSecretSize)
	}
	return secret, nil
}

func sign(secret []byte, signed string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

func validatePatterns(read, write []string) error {
	if len(read) > MaxTokenPatterns || len(write) > MaxTokenPatterns {
		return fmt.Errorf("more than %d read or write patterns", MaxTokenPatterns)
	}
	for _, p := range read {
		if err := validatePattern(p); err != nil {
			return fmt.Errorf("read: %w", err)
		}
	}
	for _, p := range write {
		if err := validatePattern(p); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	return nil
}

// decodeStrictJSON decodes exactly one JSON object into v, refusing
// trailing data. Unknown fields are allowed: other JWT claims (iss, aud,
// jti) are common and harmless.
func decodeStrictJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after JSON object")
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
