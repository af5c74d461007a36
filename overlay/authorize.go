package overlay

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/immense-p2p/immense/internal/browsersig"
	"github.com/immense-p2p/immense/internal/topicname"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Publish authorization. An overlay is open to volunteers nobody vets, so
// a topic of an app must refuse what the app did not authorize, at every
// peer, or one stranger's message reaches every subscriber. When
// Config.Auth knows the app's topic key (its public half at least), every
// message on every topic except Auth.OpenTopics must carry, in its
// envelope, one of:
//
//   - a peer certificate: the app's topic key signed "this peer id may
//     publish until T". An app peer (Auth.Key) issues its own; a peer the
//     app trusts without giving it the key can be handed one
//     (Auth.Certificate). It is bound to the gossipsub publisher, whose
//     signature every receiver checks (StrictSign), so a copied
//     certificate is worth nothing to another peer.
//   - a browser token (an EdDSA JWT signed by the same topic key, as
//     webrtc.MintEdDSA makes, or HS256 where every peer holds the secret):
//     the peer a browser is connected to relays its publish with the
//     token, and every receiver checks the token again, its expiry and
//     that its write patterns cover the topic, so a malicious relay cannot
//     stretch a token to a topic it does not grant.
//
// A message without a valid credential is rejected
// (pubsub.ValidationReject: the neighbour that forwarded it loses score,
// and gossipsub does not forward it), counted in
// immense_overlay_messages_unauthorized_total{reason}. A message published
// more than MaxClockSkew in the future or longer ago than MessageMaxAge is
// ignored (not forwarded, no penalty: clocks drift, it is not forgery), so
// a signed message cannot be replayed once gossipsub's seen-cache has
// forgotten it.
//
// What stays possible: a peer that subscribes to a topic sees the tokens of
// the browsers that write to it and can relay its own messages with them,
// within their write patterns and until they expire (a token is a bearer
// credential; binding it to a browser key is future work). Keep browser
// tokens short-lived and narrow. Such messages show the token's subject as
// sender and the replaying peer as Message.From.
//
// A peer that knows no topic key authorizes nothing: it delivers and
// forwards every well-formed message, and shows its sender as unverified.

// Authorization configures publish authorization; see above. It is off
// unless Key or PublicKeys is set.
type Authorization struct {
	// Key is the app's private topic key. A peer holding it certifies
	// itself (CertificateTTL at a time) and may publish to every topic.
	Key ed25519.PrivateKey
	// Certificate, for a peer without Key, is a certificate the app issued
	// to this peer (IssueCertificate); it publishes with it until it
	// expires.
	Certificate []byte
	// PublicKeys verify certificates (and are what token keys are checked
	// against by the node): the app's current topic key and those being
	// rotated out, at most MaxAppKeys. Key's public half is added.
	PublicKeys []ed25519.PublicKey
	// VerifyToken checks a browser token relayed in a message; nil refuses
	// every token.
	VerifyToken TokenVerifier
	// OpenTopics are topic patterns anyone may publish to unauthenticated
	// (a name, or a prefix and a trailing "*"): devnet's demo topics.
	// Their messages show an unverified sender.
	OpenTopics []string
	// CertificateTTL is how long the certificate a Key holder issues
	// itself lasts; it is renewed when half of it has passed. Default
	// 24 h: a peer whose key is taken away can publish at most that long.
	CertificateTTL time.Duration
	// MaxClockSkew is how far in the future a message may be dated.
	// Default 1 min, as for tokens (webrtc.ClockSkew).
	MaxClockSkew time.Duration
	// MessageMaxAge is how old a message may be on receipt. Default 2 min:
	// gossipsub's seen-cache remembers a message that long, so an older
	// replay is refused here and a younger one there.
	MessageMaxAge time.Duration
	// RequireBoundTokens refuses messages relayed with a bearer token (one
	// not bound to a browser key, browserproof.go): anyone who sees such a
	// token in a message can publish with it until it expires. Off by
	// default, so that tokens minted without a browser key (peer token
	// without --bind-key) still publish.
	RequireBoundTokens bool
}

// TokenVerifier checks a browser token at time now and says what it
// grants. Package node builds it from webrtc.Verifier.
type TokenVerifier func(token string, now time.Time) (TokenGrant, error)

// TokenGrant is what a verified token allows.
type TokenGrant struct {
	// Subject is the token's sub, shown as the sender.
	Subject string
	// ValidUntil is when the token stops being accepted (its expiry plus
	// the allowed clock skew).
	ValidUntil time.Time
	// CanWrite reports whether the token allows publishing to a topic.
	CanWrite func(topic string) bool
	// Key is the browser key the token is bound to (its cnf claim), or nil
	// for a bearer token. Messages with a bound token must carry the
	// browser's signature by this key (browserproof.go).
	Key ed25519.PublicKey
}

const (
	// MaxAppKeys caps Authorization.PublicKeys (a key and those it is
	// rotating out); each costs a signature check for a certificate that
	// no key signed.
	MaxAppKeys = 8
	// maxAuthCache caps the certificates and tokens remembered as
	// verified, so that a flow of messages with one credential costs one
	// signature check rather than one per message. Only valid credentials
	// are kept; when full the cache starts afresh.
	maxAuthCache = 4096
	// certSize is the size of a certificate: version, expiry, signature.
	certSize    = 1 + 8 + ed25519.SignatureSize
	certVersion = 1
	// certContext separates the certificate signature from any other use
	// of the topic key (tokens are signed over base64url text, which
	// never starts with this).
	certContext = "immense/publish-certificate/v1\x00"
)

// SenderKind says how a message's sender was established.
type SenderKind uint8

const (
	// SenderUnverified: only the gossipsub signature of the publishing
	// peer was checked, on an open topic or by a peer that knows no topic
	// key. Anybody may have sent it.
	SenderUnverified SenderKind = iota
	// SenderPeer: an app peer, certified by the app's topic key.
	SenderPeer
	// SenderBrowser: a browser, by its token; Sender.Peer relayed it.
	SenderBrowser
)

// Sender is who published a message and how we know.
type Sender struct {
	Kind SenderKind
	// Peer published the message into the overlay (Message.From).
	Peer peer.ID
	// Subject is the browser token's sub, or "#" and a hash of the token
	// when it names no subject. Empty for peers.
	Subject string
}

// String is the sender as SSE events and browser frames show it: the peer
// id, or "token:" and the browser token's subject.
func (s Sender) String() string {
	if s.Kind == SenderBrowser {
		return "token:" + s.Subject
	}
	return s.Peer.String()
}

func (k SenderKind) String() string {
	switch k {
	case SenderPeer:
		return "peer"
	case SenderBrowser:
		return "browser"
	}
	return "unverified"
}

// IssueCertificate returns a certificate, signed with the app's topic key,
// allowing peer id to publish to the app's topics until expiry (whole
// seconds).
func IssueCertificate(key ed25519.PrivateKey, id peer.ID, expiry time.Time) []byte {
	c := make([]byte, certSize)
	c[0] = certVersion
	binary.BigEndian.PutUint64(c[1:9], uint64(expiry.Unix()))
	copy(c[9:], ed25519.Sign(key, certSigned(id, expiry.Unix())))
	return c
}

func certSigned(id peer.ID, expiry int64) []byte {
	b := make([]byte, 0, len(certContext)+len(id)+8)
	b = append(b, certContext...)
	b = append(b, id...)
	return binary.BigEndian.AppendUint64(b, uint64(expiry))
}

// verifyCertificate checks that c is a certificate for id signed by one of
// keys, and returns its expiry.
func verifyCertificate(keys []ed25519.PublicKey, id peer.ID, c []byte) (time.Time, error) {
	if len(c) != certSize || c[0] != certVersion {
		return time.Time{}, fmt.Errorf("%w: malformed certificate (%d bytes)", ErrUnauthorized, len(c))
	}
	exp := int64(binary.BigEndian.Uint64(c[1:9]))
	signed := certSigned(id, exp)
	for _, k := range keys {
		if ed25519.Verify(k, signed, c[9:]) {
			return time.Unix(exp, 0), nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: certificate not signed by the app's topic key for publisher %s", ErrUnauthorized, id)
}

// Reasons of immense_overlay_messages_unauthorized_total.
const (
	reasonNoCredential = "no-credential"
	reasonCertificate  = "bad-certificate"
	reasonToken        = "bad-token"
	reasonScope        = "token-scope"
	reasonClock        = "clock"
	reasonUnsigned     = "token-unsigned"    // a bound token without the browser's signature
	reasonUnbound      = "token-unbound"     // a bearer token, with RequireBoundTokens
	reasonBrowserSig   = "browser-signature" // a signature that does not verify
	reasonReplay       = "replay"            // a browser's signed message seen before
)

// authError is a refusal and its metric reason.
type authError struct {
	reason string
	ignore bool // not forged: ignore rather than reject
	err    error
}

func (e *authError) Error() string { return e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

// authorizer holds an overlay's authorization state.
type authorizer struct {
	on          bool
	keys        []ed25519.PublicKey
	key         ed25519.PrivateKey
	open        []string
	verifyToken TokenVerifier
	cfg         Authorization
	self        peer.ID

	cert atomic.Pointer[ownCert]

	mu     sync.Mutex
	certs  map[string]time.Time  // peer id + certificate: expiry
	tokens map[string]TokenGrant // token: grant

	replays replayCache // browser signatures accepted
}

type ownCert struct {
	cert  []byte
	renew time.Time // issue another after this
	exp   time.Time
}

func newAuthorizer(a Authorization, self peer.ID) *authorizer {
	z := &authorizer{
		keys:        append([]ed25519.PublicKey(nil), a.PublicKeys...),
		key:         a.Key,
		open:        a.OpenTopics,
		verifyToken: a.VerifyToken,
		cfg:         a,
		self:        self,
		certs:       make(map[string]time.Time),
		tokens:      make(map[string]TokenGrant),
	}
	if a.Key != nil {
		z.keys = append(z.keys, a.Key.Public().(ed25519.PublicKey))
	}
	z.on = len(z.keys) > 0
	if len(a.Certificate) > 0 {
		if exp, err := verifyCertificate(z.keys, self, a.Certificate); err == nil {
			z.cert.Store(&ownCert{cert: a.Certificate, renew: exp, exp: exp})
		}
	}
	return z
}

// validate checks c's authorization fields.
func (a *Authorization) validate() []error {
	var errs []error
	if a.Key != nil && len(a.Key) != ed25519.PrivateKeySize {
		errs = append(errs, fmt.Errorf("Auth.Key: %d bytes, want %d", len(a.Key), ed25519.PrivateKeySize))
	}
	if len(a.PublicKeys) > MaxAppKeys {
		errs = append(errs, fmt.Errorf("Auth.PublicKeys: %d keys, at most %d", len(a.PublicKeys), MaxAppKeys))
	}
	for i, k := range a.PublicKeys {
		if len(k) != ed25519.PublicKeySize {
			errs = append(errs, fmt.Errorf("Auth.PublicKeys[%d]: %d bytes, want %d", i, len(k), ed25519.PublicKeySize))
		}
	}
	if len(a.Certificate) > 0 && len(a.Certificate) != certSize {
		errs = append(errs, fmt.Errorf("Auth.Certificate: %d bytes, want %d", len(a.Certificate), certSize))
	}
	for _, p := range a.OpenTopics {
		if err := topicname.CheckPattern(p); err != nil {
			errs = append(errs, fmt.Errorf("Auth.OpenTopics: %w: %v", ErrInvalidTopic, err))
		}
	}
	if a.CertificateTTL < time.Minute {
		errs = append(errs, fmt.Errorf("Auth.CertificateTTL must be >= 1m, got %v", a.CertificateTTL))
	}
	if a.MaxClockSkew <= 0 || a.MessageMaxAge <= 0 {
		errs = append(errs, fmt.Errorf("Auth.MaxClockSkew (%v) and Auth.MessageMaxAge (%v) must be > 0", a.MaxClockSkew, a.MessageMaxAge))
	}
	return errs
}

// isOpen reports whether topic may be published to without a credential.
func (z *authorizer) isOpen(topic string) bool {
	if !z.on {
		return true
	}
	return topicname.Match(z.open, topic)
}

// credential returns what this peer attaches to its own publish on topic:
// the browser's token (and signature, if it signed) if it relays one, else
// its certificate, or nothing on an open topic.
func (z *authorizer) credential(topic, token string, proof *BrowserProof, now time.Time) (credKind, []byte, error) {
	if token != "" {
		if len(token) > maxToken {
			return 0, nil, fmt.Errorf("%w: token of %d bytes, at most %d", ErrUnauthorized, len(token), maxToken)
		}
		if proof != nil {
			if len(proof.Sig) != ed25519.SignatureSize {
				return 0, nil, fmt.Errorf("%w: browser signature of %d bytes, want %d", ErrUnauthorized, len(proof.Sig), ed25519.SignatureSize)
			}
			return credBoundToken, append(slices.Clip(proof.Sig), token...), nil
		}
		return credToken, []byte(token), nil
	}
	if z.isOpen(topic) {
		return credNone, nil, nil
	}
	c := z.cert.Load()
	if z.key != nil && (c == nil || now.After(c.renew)) {
		exp := now.Add(z.cfg.CertificateTTL)
		c = &ownCert{cert: IssueCertificate(z.key, z.self, exp), renew: now.Add(z.cfg.CertificateTTL / 2), exp: exp.Truncate(time.Second)}
		z.cert.Store(c)
	}
	if c == nil || !now.Before(c.exp) {
		return 0, nil, fmt.Errorf("%w: this peer holds neither the app key nor a valid certificate, so it may publish only to open topics; %q is not one", ErrUnauthorized, topic)
	}
	return credPeer, c.cert, nil
}

// check decides whether a message on topic, published by from with
// envelope e, was published with the right to, and says who sent it.
func (z *authorizer) check(topic string, from peer.ID, e envelope, now time.Time) (Sender, error) {
	s := Sender{Peer: from}
	if !z.on {
		return s, nil
	}
	if e.published.After(now.Add(z.cfg.MaxClockSkew)) || now.Sub(e.published) > z.cfg.MessageMaxAge {
		return s, &authError{reasonClock, true, fmt.Errorf("%w: published at %s, out of the accepted window", ErrUnauthorized, e.published.UTC().Format(time.RFC3339Nano))}
	}
	if z.isOpen(topic) {
		return s, nil
	}
	switch e.kind {
	case credPeer:
		if err := z.checkCert(from, e.cred, now); err != nil {
			return s, &authError{reasonCertificate, false, err}
		}
		s.Kind = SenderPeer
		return s, nil
	case credToken, credBoundToken:
		token, sig := e.cred, []byte(nil)
		if e.kind == credBoundToken {
			sig, token = e.cred[:ed25519.SignatureSize], e.cred[ed25519.SignatureSize:]
		}
		g, err := z.grant(string(token), now)
		if err != nil {
			return s, &authError{reasonToken, false, err}
		}
		switch {
		case sig == nil && g.Key != nil:
			return s, &authError{reasonUnsigned, false, fmt.Errorf("%w: the token of %q is bound to a browser key, and the message carries no signature by it", ErrUnauthorized, g.Subject)}
		case sig == nil && z.cfg.RequireBoundTokens:
			return s, &authError{reasonUnbound, false, fmt.Errorf("%w: the token of %q is a bearer token (bound to no browser key), and this overlay requires bound tokens", ErrUnauthorized, g.Subject)}
		case sig != nil && g.Key == nil:
			return s, &authError{reasonToken, false, fmt.Errorf("%w: a signed message, but the token of %q is bound to no key", ErrUnauthorized, g.Subject)}
		}
		if !g.CanWrite(topic) {
			return s, &authError{reasonScope, false, fmt.Errorf("%w: token of %q does not allow publishing to %q", ErrUnauthorized, g.Subject, topic)}
		}
		if sig != nil {
			if err := browsersig.Verify(g.Key, topic, e.published, e.payload, sig); err != nil {
				return s, &authError{reasonBrowserSig, false, fmt.Errorf("%w: %w", ErrUnauthorized, err)}
			}
		}
		s.Kind, s.Subject = SenderBrowser, g.Subject
		return s, nil
	}
	return s, &authError{reasonNoCredential, false, fmt.Errorf("%w: no credential on app topic %q", ErrUnauthorized, topic)}
}

func (z *authorizer) checkCert(from peer.ID, c []byte, now time.Time) error {
	key := string(from) + string(c)
	z.mu.Lock()
	exp, ok := z.certs[key]
	z.mu.Unlock()
	if !ok {
		var err error
		if exp, err = verifyCertificate(z.keys, from, c); err != nil {
			return err
		}
		z.mu.Lock()
		if len(z.certs) >= maxAuthCache {
			clear(z.certs)
		}
		z.certs[key] = exp
		z.mu.Unlock()
	}
	if !now.Before(exp) {
		return fmt.Errorf("%w: certificate of %s expired at %s", ErrUnauthorized, from, exp.UTC().Format(time.RFC3339))
	}
	return nil
}

// grant returns what token grants, verifying it unless it was verified
// before.
func (z *authorizer) grant(token string, now time.Time) (TokenGrant, error) {
	z.mu.Lock()
	g, ok := z.tokens[token]
	z.mu.Unlock()
	if !ok {
		if z.verifyToken == nil {
			return TokenGrant{}, fmt.Errorf("%w: a browser token, but this peer verifies none", ErrUnauthorized)
		}
		var err error
		if g, err = z.verifyToken(token, now); err != nil {
			return TokenGrant{}, fmt.Errorf("%w: %w", ErrUnauthorized, err)
		}
		if g.CanWrite == nil {
			g.CanWrite = func(string) bool { return false }
		}
		if g.Subject == "" {
			h := sha256.Sum256([]byte(token))
			g.Subject = "#" + base64.RawURLEncoding.EncodeToString(h[:6])
		}
		z.mu.Lock()
		if len(z.tokens) >= maxAuthCache {
			clear(z.tokens)
		}
		z.tokens[token] = g
		z.mu.Unlock()
	}
	if !now.Before(g.ValidUntil) {
		return TokenGrant{}, fmt.Errorf("%w: token of %q expired", ErrUnauthorized, g.Subject)
	}
	return g, nil
}

// sender is who sent a message the validator accepted, for delivery.
func (z *authorizer) sender(topic string, from peer.ID, e envelope) Sender {
	s := Sender{Peer: from}
	if !z.on || z.isOpen(topic) {
		return s
	}
	switch e.kind {
	case credPeer:
		s.Kind = SenderPeer
	case credToken, credBoundToken:
		token := e.cred
		if e.kind == credBoundToken {
			token = e.cred[ed25519.SignatureSize:]
		}
		s.Kind = SenderBrowser
		z.mu.Lock()
		g, ok := z.tokens[string(token)]
		z.mu.Unlock()
		if !ok { // forgotten since validation (cache full): ask again
			g, _ = z.grant(string(token), time.Now())
		}
		s.Subject = g.Subject
	}
	return s
}

// authorize is the validator's authorization step (see the top of this
// file).
func (o *Overlay) authorize(topic string, msg *pubsub.Message, e envelope) pubsub.ValidationResult {
	now := time.Now()
	s, err := o.auth.check(topic, msg.GetFrom(), e, now)
	if err == nil && e.kind == credBoundToken && o.auth.on && !o.auth.isOpen(topic) {
		// A copy of a browser's signed message under another gossipsub id.
		forget := e.published.Add(o.auth.cfg.MessageMaxAge + o.auth.cfg.MaxClockSkew)
		if !o.auth.replays.add(e.cred[:ed25519.SignatureSize], forget, now) {
			err = &authError{reasonReplay, true, fmt.Errorf("%w: a browser's message seen before, under another id", ErrUnauthorized)}
		}
	}
	if err == nil {
		// What delivery needs, so that it decodes and authorizes nothing
		// again (pubsub hands this same *Message to the subscriptions).
		msg.ValidatorData = validated{sender: s, env: e}
		return pubsub.ValidationAccept
	}
	var ae *authError
	errors.As(err, &ae)
	o.metrics.unauthorized.WithLabelValues(ae.reason).Inc()
	o.metrics.rejected.WithLabelValues(o.metrics.label(topic)).Inc()
	o.log.Debug("message refused", "topic", topic, "from", msg.GetFrom(), "via", msg.ReceivedFrom, "reason", ae.reason, "err", err)
	if ae.ignore {
		return pubsub.ValidationIgnore
	}
	return pubsub.ValidationReject
}

// validated is what the validator learnt of an accepted message.
type validated struct {
	sender Sender
	env    envelope
}

// accepted returns m's envelope and sender as the validator found them
// (or works them out again, should ValidatorData be missing).
func (o *Overlay) accepted(topic string, m *pubsub.Message) (envelope, Sender, error) {
	if v, ok := m.ValidatorData.(validated); ok {
		return v.env, v.sender, nil
	}
	env, err := decodeEnvelope(m.Data)
	if err != nil {
		return envelope{}, Sender{}, err
	}
	return env, o.auth.sender(topic, m.GetFrom(), env), nil
}

// PublishToken publishes data to topic on behalf of a browser, with the
// browser's token as its credential, so that every receiver checks the
// browser's right to the topic. proof is the browser's signature of the
// message, required when its token is bound to a key (browserproof.go) and
// nil otherwise. It is Publish otherwise.
func (o *Overlay) PublishToken(ctx context.Context, topic string, data []byte, token string, proof *BrowserProof) error {
	if token == "" {
		return fmt.Errorf("%w: empty token", ErrUnauthorized)
	}
	return o.publish(ctx, topic, data, token, proof)
}

// seal wraps data for topic in an envelope with this peer's credential
// (or token's), and checks it as every receiver will, so that a message
// they would refuse (and dock our score for) fails here, with the reason.
func (o *Overlay) seal(topic string, data []byte, token string, proof *BrowserProof) ([]byte, error) {
	now := time.Now()
	kind, cred, err := o.auth.credential(topic, token, proof, now)
	if err != nil {
		return nil, err
	}
	published := now
	if proof != nil {
		published = proof.Time.Truncate(time.Millisecond)
	}
	e := envelope{published: published, kind: kind, cred: cred, payload: data}
	if kind == credToken || kind == credBoundToken {
		if _, err := o.auth.check(topic, o.host.ID(), e, now); err != nil {
			return nil, err
		}
	}
	return encodeEnvelope(published, kind, cred, data), nil
}
