package webrtc

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/immense-p2p/immense/internal/durable"
	"io"
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
	// DefaultMaxTokenTTL is the longest lifetime (exp - iat) a peer accepts
	// unless configured otherwise: a leaked token is then good for a day at
	// most, and an app re-mints tokens for its sessions well within that.
	DefaultMaxTokenTTL = 24 * time.Hour
	// MaxPublicKeys caps the EdDSA keys a peer verifies with (an app's
	// current key and those it is rotating out); a token without a key id
	// is tried against each.
	MaxPublicKeys = 8

	// maxSecretFileSize bounds LoadSecret's read, so that pointing it at the
	// wrong file fails clearly instead of reading a disk image.
	maxSecretFileSize = 64 << 10
)

// Claims are what a token grants. A token is a JWT (RFC 7519) signed with
// EdDSA (Ed25519, RFC 8037: the app keeps the private key, peers need only
// the public one) or HS256 (a secret every verifying peer shares, so any of
// them could mint: for single-operator deployments). Its payload carries
// these fields under the JSON names given in parentheses, spelled exactly
// so and each at most once.
//
// A topic pattern is either an exact topic name ("chat") or a prefix
// followed by a single trailing "*", matching every topic that starts with
// the prefix: "chat/*" matches "chat/lobby" and "chat/a/b" but not "chat";
// "*" matches every topic.
type Claims struct {
	// Subject (sub) names whom the token was minted for, for logs. Optional.
	Subject string
	// ID (jti) identifies the token, so that it can be revoked before it
	// expires (Config.RevokedTokens). Optional.
	ID string
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
	// Key (cnf), if set, binds the token to a browser's Ed25519 key (RFC
	// 7800 "cnf" with an RFC 8037 "jwk": {"kty":"OKP","crv":"Ed25519",
	// "x":...}): every publish made with it must then be signed with the
	// private half, which only the browser holds, so that the peers that
	// relay or receive its messages cannot reuse the token for messages of
	// their own. A token without Key is a bearer token.
	Key ed25519.PublicKey
}

// CanRead reports whether the claims allow subscribing to topic.
func (c *Claims) CanRead(topic string) bool { return matchTopic(c.Read, topic) }

// CanWrite reports whether the claims allow publishing to topic.
func (c *Claims) CanWrite(topic string) bool { return matchTopic(c.Write, topic) }

// jwtClaims is the JSON form of Claims. Times are NumericDate: whole
// seconds since the Unix epoch.
type jwtClaims struct {
	Subject   string   `json:"sub,omitempty"`
	ID        string   `json:"jti,omitempty"`
	IssuedAt  *int64   `json:"iat"`
	ExpiresAt *int64   `json:"exp"`
	NotBefore *int64   `json:"nbf,omitempty"`
	Read      []string `json:"read"`
	Write     []string `json:"write"`
	Cnf       *jwtCnf  `json:"cnf,omitempty"`
}

// jwtCnf is a token's confirmation claim (RFC 7800): the key a browser
// proves it holds.
type jwtCnf struct {
	JWK *jwtKey `json:"jwk"`
}

// jwtKey is an Ed25519 public key as a JWK (RFC 8037).
type jwtKey struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
}

type jwtHeader struct {
	Alg  string          `json:"alg"`
	Typ  string          `json:"typ,omitempty"`
	Kid  string          `json:"kid,omitempty"`
	Crit json.RawMessage `json:"crit,omitempty"`
}

// The names decodeStrictJSON checks the case and uniqueness of.
var (
	headerNames = []string{"alg", "typ", "kid", "crit"}
	claimNames  = []string{"sub", "jti", "iat", "exp", "nbf", "read", "write", "cnf"}
	cnfNames    = []string{"jwk"}
	jwkNames    = []string{"kty", "crv", "x"}
)

const (
	algHS256 = "HS256"
	algEdDSA = "EdDSA"
)

// headerHS256 is the encoded header of every token Mint produces.
var headerHS256 = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// KeyID names an EdDSA public key in a token's "kid" header: the first 8
// bytes of its SHA-256, in base64url. Peers holding several keys (during a
// rotation) pick the key by it instead of trying each.
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return base64.RawURLEncoding.EncodeToString(h[:8])
}

// b64 is the only base64 accepted: unpadded base64url with zero padding
// bits, so that each token has exactly one encoding.
var b64 = base64.RawURLEncoding.Strict()

// Mint returns an HS256 token granting claims. A zero IssuedAt means now.
// Times are truncated to whole seconds, as JWT requires.
func Mint(secret []byte, claims Claims) (string, error) {
	if len(secret) < MinSecretSize {
		return "", fmt.Errorf("%w: %d bytes, at least %d required", ErrSecretTooShort, len(secret), MinSecretSize)
	}
	payload, err := encodeClaims(claims)
	if err != nil {
		return "", err
	}
	signed := headerHS256 + "." + payload
	return finishToken(signed, sign(secret, signed))
}

// MintEdDSA returns an EdDSA token granting claims, signed with priv; peers
// verify it with the public half (Config.PublicKeys). A zero IssuedAt means
// now. Times are truncated to whole seconds, as JWT requires.
func MintEdDSA(priv ed25519.PrivateKey, claims Claims) (string, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("mint token: Ed25519 private key of %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	payload, err := encodeClaims(claims)
	if err != nil {
		return "", err
	}
	header, err := json.Marshal(jwtHeader{Alg: algEdDSA, Typ: "JWT", Kid: KeyID(priv.Public().(ed25519.PublicKey))})
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	signed := base64.RawURLEncoding.EncodeToString(header) + "." + payload
	return finishToken(signed, ed25519.Sign(priv, []byte(signed)))
}

// encodeClaims checks claims and returns the token's encoded payload.
func encodeClaims(claims Claims) (string, error) {
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
		Subject: claims.Subject, ID: claims.ID, IssuedAt: &iat, ExpiresAt: &exp,
		Read: nonNil(claims.Read), Write: nonNil(claims.Write),
	}
	if !claims.NotBefore.IsZero() {
		nbf := claims.NotBefore.Unix()
		jc.NotBefore = &nbf
	}
	if claims.Key != nil {
		if len(claims.Key) != ed25519.PublicKeySize {
			return "", fmt.Errorf("mint token: bound key of %d bytes, want %d", len(claims.Key), ed25519.PublicKeySize)
		}
		jc.Cnf = &jwtCnf{JWK: &jwtKey{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(claims.Key)}}
	}
	payload, err := json.Marshal(jc)
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(payload), nil
}

func finishToken(signed string, sig []byte) (string, error) {
	tok := signed + "." + base64.RawURLEncoding.EncodeToString(sig)
	if len(tok) > MaxTokenSize {
		return "", fmt.Errorf("mint token: %d bytes, more than the %d a peer accepts (too many or too long patterns)", len(tok), MaxTokenSize)
	}
	return tok, nil
}

// Verifier checks browser tokens. Build it with NewVerifier.
type Verifier struct {
	secret  []byte
	public  []ed25519.PublicKey
	maxTTL  time.Duration
	revoked map[string]struct{}
}

// NewVerifier returns a Verifier accepting HS256 tokens signed with secret
// (if any) and EdDSA tokens signed by one of public's keys (if any), with a
// lifetime of at most maxTTL (0 means DefaultMaxTokenTTL), unless their jti
// is in revoked.
func NewVerifier(secret []byte, public []ed25519.PublicKey, maxTTL time.Duration, revoked []string) (*Verifier, error) {
	if len(secret) > 0 && len(secret) < MinSecretSize {
		return nil, fmt.Errorf("%w: %d bytes, at least %d required", ErrSecretTooShort, len(secret), MinSecretSize)
	}
	if len(public) > MaxPublicKeys {
		return nil, fmt.Errorf("webrtc: %d token public keys, at most %d", len(public), MaxPublicKeys)
	}
	for i, k := range public {
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("webrtc: token public key %d: %d bytes, want %d", i, len(k), ed25519.PublicKeySize)
		}
	}
	if maxTTL < 0 {
		return nil, fmt.Errorf("webrtc: maximum token TTL %v is negative", maxTTL)
	}
	if maxTTL == 0 {
		maxTTL = DefaultMaxTokenTTL
	}
	v := &Verifier{secret: secret, public: public, maxTTL: maxTTL, revoked: make(map[string]struct{}, len(revoked))}
	for _, id := range revoked {
		v.revoked[id] = struct{}{}
	}
	return v, nil
}

// Verify checks token against secret at time now and returns its claims:
// HS256 only, with DefaultMaxTokenTTL. Peers use a Verifier.
func Verify(secret []byte, token string, now time.Time) (Claims, error) {
	if len(secret) < MinSecretSize {
		return Claims{}, fmt.Errorf("%w: %d bytes, at least %d required", ErrSecretTooShort, len(secret), MinSecretSize)
	}
	v, err := NewVerifier(secret, nil, 0, nil)
	if err != nil {
		return Claims{}, err
	}
	return v.Verify(token, now)
}

// Verify checks token at time now and returns its claims. It accepts only
// the algorithms it has a key for (EdDSA with a public key, HS256 with a
// secret; never "none" or another algorithm, whatever the header says),
// compares HMACs in constant time, allows ClockSkew of disagreement between
// clocks, requires iat and exp no more than the maximum TTL apart, refuses
// JSON names in another case or given twice, and refuses revoked jti.
//
// Errors wrap ErrTokenMalformed, ErrTokenSignature, ErrTokenExpired,
// ErrTokenNotYetValid, ErrTokenTTL or ErrTokenRevoked.
func (v *Verifier) Verify(token string, now time.Time) (Claims, error) {
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
	if err := decodeStrictJSON(headerJSON, &h, headerNames); err != nil {
		return Claims{}, fmt.Errorf("%w: header: %v", ErrTokenMalformed, err)
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
	if err := v.checkSignature(h, token[:len(parts[0])+1+len(parts[1])], sig); err != nil {
		return Claims{}, err
	}

	// Only now, with the signature checked, is the payload worth parsing.
	payload, err := b64.DecodeString(parts[1])
	if err != nil {
		return Claims{}, fmt.Errorf("%w: payload: %v", ErrTokenMalformed, err)
	}
	var jc jwtClaims
	if err := decodeStrictJSON(payload, &jc, claimNames); err != nil {
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
		ID:        jc.ID,
		IssuedAt:  time.Unix(*jc.IssuedAt, 0),
		ExpiresAt: time.Unix(*jc.ExpiresAt, 0),
		Read:      jc.Read,
		Write:     jc.Write,
	}
	if jc.NotBefore != nil {
		c.NotBefore = time.Unix(*jc.NotBefore, 0)
	}
	if jc.Cnf != nil {
		if c.Key, err = boundKey(payload); err != nil {
			return Claims{}, fmt.Errorf("%w: cnf: %v", ErrTokenMalformed, err)
		}
	}
	if !c.ExpiresAt.After(c.IssuedAt) {
		return Claims{}, fmt.Errorf("%w: exp is not after iat", ErrTokenMalformed)
	}
	if ttl := c.ExpiresAt.Sub(c.IssuedAt); ttl > v.maxTTL {
		return Claims{}, fmt.Errorf("%w: valid for %v, this peer accepts at most %v", ErrTokenTTL, ttl, v.maxTTL)
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
	if _, ok := v.revoked[c.ID]; ok && c.ID != "" {
		return Claims{}, fmt.Errorf("%w: jti %q", ErrTokenRevoked, c.ID)
	}
	return c, nil
}

// boundKey returns the Ed25519 key of the cnf claim of payload, a token's
// JSON claims, holding the nested objects to the same strict rules as the
// claims themselves.
func boundKey(payload []byte) (ed25519.PublicKey, error) {
	var outer struct {
		Cnf json.RawMessage `json:"cnf"`
	}
	if err := json.Unmarshal(payload, &outer); err != nil {
		return nil, err
	}
	var cnf struct {
		JWK json.RawMessage `json:"jwk"`
	}
	if err := decodeStrictJSON(outer.Cnf, &cnf, cnfNames); err != nil {
		return nil, err
	}
	if cnf.JWK == nil {
		return nil, errors.New("no jwk (the only confirmation method accepted)")
	}
	var k jwtKey
	if err := decodeStrictJSON(cnf.JWK, &k, jwkNames); err != nil {
		return nil, fmt.Errorf("jwk: %v", err)
	}
	if k.Kty != "OKP" || k.Crv != "Ed25519" {
		return nil, fmt.Errorf("jwk: key type %q curve %q, only OKP Ed25519 is accepted", k.Kty, k.Crv)
	}
	x, err := b64.DecodeString(k.X)
	if err != nil || len(x) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("jwk: x is not a base64url Ed25519 public key of %d bytes", ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(x), nil
}

// checkSignature checks sig over signed with the key the header's
// algorithm names, if this verifier has one.
func (v *Verifier) checkSignature(h jwtHeader, signed string, sig []byte) error {
	switch h.Alg {
	case algEdDSA:
		if len(v.public) == 0 {
			return fmt.Errorf("%w: algorithm EdDSA, but this peer has no app public key", ErrTokenSignature)
		}
		for _, k := range v.public {
			if h.Kid != "" && h.Kid != KeyID(k) {
				continue
			}
			if ed25519.Verify(k, []byte(signed), sig) {
				return nil
			}
		}
		return ErrTokenSignature
	case algHS256:
		if len(v.secret) == 0 {
			return fmt.Errorf("%w: algorithm HS256, but this peer has no token secret", ErrTokenSignature)
		}
		if !hmac.Equal(sig, sign(v.secret, signed)) {
			return ErrTokenSignature
		}
		return nil
	}
	return fmt.Errorf("%w: algorithm %q, only EdDSA and HS256 are accepted", ErrTokenSignature, h.Alg)
}

// LoadSecret reads a token secret from the file at path. Surrounding
// whitespace (such as the newline an editor or echo adds) is not part of
// the secret. The secret must be at least MinSecretSize bytes; a good one
// is `head -c 32 /dev/urandom | base64`.
func LoadSecret(path string) ([]byte, error) {
	b, err := durable.ReadPrivate(path, maxSecretFileSize)
	if err != nil {
		return nil, fmt.Errorf("read token secret: %w", err)
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
// trailing data, a top-level name given twice, and a name that differs from
// one of known only in case (encoding/json would match "EXP" to exp, and
// keep the last of two "exp": a token must mean one thing to every parser).
// Other names are allowed: other JWT claims (iss, aud) are common and
// harmless.
func decodeStrictJSON(b []byte, v any, known []string) error {
	if err := checkNames(b, known); err != nil {
		return err
	}
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after JSON object")
	}
	return nil
}

// checkNames walks the top level of the JSON object b.
func checkNames(b []byte, known []string) error {
	d := json.NewDecoder(bytes.NewReader(b))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	seen := make(map[string]bool)
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		name := tok.(string) // object keys are always strings
		if seen[name] {
			return fmt.Errorf("name %q given twice", name)
		}
		seen[name] = true
		for _, k := range known {
			if name != k && strings.EqualFold(name, k) {
				return fmt.Errorf("name %q: names are case-sensitive, did you mean %q?", name, k)
			}
		}
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			return err
		}
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
