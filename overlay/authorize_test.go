package overlay

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// authNet is an app peer (holding the topic key), a volunteer (given only
// its public half), and a stranger with no key, all connected.
type authNet struct {
	app, volunteer, stranger *Overlay
	key                      ed25519.PrivateKey
}

// chatVerifier is a stand-in for webrtc.Verifier: "chat-token" grants
// chat/* to alice, anything else is refused, except that
// "bound-token" grants the same to bob, bound to browserKey.
func chatVerifier(token string, now time.Time) (TokenGrant, error) {
	chat := func(t string) bool { return strings.HasPrefix(t, "chat/") }
	switch token {
	case "chat-token":
		return TokenGrant{Subject: "alice", ValidUntil: now.Add(time.Hour), CanWrite: chat}, nil
	case "bound-token":
		return TokenGrant{Subject: "bob", ValidUntil: now.Add(time.Hour), CanWrite: chat, Key: browserKey.Public().(ed25519.PublicKey)}, nil
	}
	return TokenGrant{}, errors.New("bad signature")
}

// browserKey is the key "bound-token" is bound to.
var browserKey = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))

func newAuthNet(t *testing.T) *authNet {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := newSimNet(t)
	reg := func(c *Config) { c.Registerer = prometheus.NewRegistry() }
	n := &authNet{key: key}
	n.app = s.overlay(nil, func(c *Config) {
		reg(c)
		c.Auth.Key = key
		c.Auth.VerifyToken = chatVerifier
		c.Auth.OpenTopics = []string{"demo/*"}
	})
	n.volunteer = s.overlay(n.app, func(c *Config) {
		reg(c)
		c.Auth.PublicKeys = []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}
		c.Auth.VerifyToken = chatVerifier
		c.Auth.OpenTopics = []string{"demo/*"}
	})
	n.stranger = s.overlay(n.app, reg)
	waitJoined(t, 30*time.Second, n.volunteer, n.stranger)
	ctx := t.Context()
	for _, o := range []*Overlay{n.volunteer, n.stranger} {
		if err := n.app.Host().Connect(ctx, peer.AddrInfo{ID: o.Host().ID(), Addrs: o.Host().Addrs()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.stranger.Host().Connect(ctx, peer.AddrInfo{ID: n.volunteer.Host().ID(), Addrs: n.volunteer.Host().Addrs()}); err != nil {
		t.Fatal(err)
	}
	return n
}

// raw publishes env on topic from o as it is, past o's own checks: what a
// modified peer can send.
func raw(t *testing.T, o *Overlay, topic string, env []byte) {
	t.Helper()
	o.mu.Lock()
	ts, err := o.join(topic, false)
	o.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.topic.Publish(t.Context(), env); err != nil {
		t.Fatal(err)
	}
}

func drain(sub *Subscription) map[string]*Message {
	got := map[string]*Message{}
	for {
		m, ok := sub.TryNext()
		if !ok {
			return got
		}
		got[string(m.Data)] = m
	}
}

func counter(t *testing.T, o *Overlay, reason string) float64 {
	t.Helper()
	var d dto.Metric
	if err := o.metrics.unauthorized.WithLabelValues(reason).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

// TestAuthorizePublish: on an app topic, a stranger with no key cannot get
// a message delivered (with no credential, with a certificate of its own
// making, with an app peer's certificate copied, with a browser token
// stretched to a topic it does not grant), each refused and counted at
// the volunteer, which holds only the public key; the app peer's message
// and a browser's message relayed with its token beside them are
// delivered with their verified sender. An open topic stays open.
func TestAuthorizePublish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newAuthNet(t)
		ctx := t.Context()
		var subs []*Subscription
		for _, topic := range []string{"chat/lobby", "admin/x", "demo/chat"} {
			for _, o := range []*Overlay{n.app, n.volunteer} {
				s, err := o.Subscribe(topic)
				if err != nil {
					t.Fatal(err)
				}
				subs = append(subs, s)
			}
		}
		time.Sleep(5 * time.Second) // subscriptions and meshes form
		synctest.Wait()

		// What the stranger may do, first (its forgeries below will cost
		// it its score): relay a browser's message with the browser's
		// token, allowed on chat/*, and publish to an open topic.
		raw(t, n.stranger, "chat/lobby", encodeEnvelope(time.Now(), credToken, []byte("chat-token"), []byte("relayed")))
		if err := n.stranger.Publish(ctx, "demo/chat", []byte("open")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()

		// A message dated an hour ago (a replay): ignored, no penalty.
		raw(t, n.stranger, "chat/lobby", encodeEnvelope(time.Now().Add(-time.Hour), credToken, []byte("chat-token"), []byte("forged: old")))
		// The stranger, through the ordinary API: it has no right.
		if err := n.stranger.Publish(ctx, "chat/lobby", []byte("forged: none")); err != nil {
			t.Fatal(err) // it knows no key, so its own checks pass
		}
		now := time.Now()
		// A certificate signed by a key of its own.
		_, own, _ := ed25519.GenerateKey(rand.Reader)
		raw(t, n.stranger, "chat/lobby", encodeEnvelope(now, credPeer, IssueCertificate(own, n.stranger.Host().ID(), now.Add(time.Hour)), []byte("forged: own cert")))
		// The app peer's certificate, copied: bound to the app peer.
		appCert := IssueCertificate(n.key, n.app.Host().ID(), now.Add(time.Hour))
		raw(t, n.stranger, "chat/lobby", encodeEnvelope(now, credPeer, appCert, []byte("forged: copied cert")))
		// A browser token for chat/* carried into admin/x.
		raw(t, n.stranger, "admin/x", encodeEnvelope(now, credToken, []byte("chat-token"), []byte("forged: token scope")))
		// A token nobody signed.
		raw(t, n.stranger, "chat/lobby", encodeEnvelope(now, credToken, []byte("made-up"), []byte("forged: bad token")))
		// Honest traffic beside it.
		if err := n.app.Publish(ctx, "chat/lobby", []byte("honest")); err != nil {
			t.Fatal(err)
		}
		if err := n.app.Publish(ctx, "admin/x", []byte("honest admin")); err != nil {
			t.Fatal(err)
		}
		// The volunteer holds no key: it may not publish to app topics.
		if err := n.volunteer.Publish(ctx, "chat/lobby", []byte("volunteer")); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("volunteer's publish to an app topic: %v, want ErrUnauthorized", err)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()

		for i, s := range subs {
			got := drain(s)
			for data := range got {
				if strings.HasPrefix(data, "forged") {
					t.Errorf("subscription %d of %s delivered %q", i, s.topic, data)
				}
			}
			want := map[string]string{"chat/lobby": "honest", "admin/x": "honest admin", "demo/chat": "open"}[s.topic]
			m := got[want]
			if m == nil {
				t.Errorf("subscription %d of %s: %q not delivered (got %d messages)", i, s.topic, want, len(got))
				continue
			}
			switch s.topic {
			case "demo/chat":
				if m.Sender.Kind != SenderUnverified || m.Sender.Peer != n.stranger.Host().ID() {
					t.Errorf("open topic sender %+v", m.Sender)
				}
			default:
				if m.Sender.Kind != SenderPeer || m.Sender.Peer != n.app.Host().ID() || m.Sender.String() != n.app.Host().ID().String() {
					t.Errorf("app peer's sender %+v", m.Sender)
				}
			}
			if s.topic == "chat/lobby" {
				r := got["relayed"]
				if r == nil {
					t.Errorf("subscription %d: the browser's relayed message was not delivered", i)
				} else if r.Sender.Kind != SenderBrowser || r.Sender.String() != "token:alice" || r.From != n.stranger.Host().ID() {
					t.Errorf("browser sender %+v from %s", r.Sender, r.From)
				}
			}
		}
		for reason, min := range map[string]float64{reasonNoCredential: 1, reasonCertificate: 2, reasonScope: 1, reasonToken: 1, reasonClock: 1} {
			if got := counter(t, n.volunteer, reason); got < min {
				t.Errorf("volunteer counted %v messages refused for %s, want >= %v", got, reason, min)
			}
		}
	})
}

// TestCertificate: a certificate binds a peer id and an expiry to the
// topic key; anything else fails.
func TestCertificate(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	s := newSimNet(t)
	a, b := s.host(), s.host()
	exp := time.Unix(2_000_000_000, 0)
	c := IssueCertificate(key, a.ID(), exp)
	if got, err := verifyCertificate([]ed25519.PublicKey{other, pub}, a.ID(), c); err != nil || !got.Equal(exp) {
		t.Fatalf("verify = %v, %v", got, err)
	}
	if _, err := verifyCertificate([]ed25519.PublicKey{pub}, b.ID(), c); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("certificate accepted for another peer: %v", err)
	}
	if _, err := verifyCertificate([]ed25519.PublicKey{other}, a.ID(), c); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("certificate accepted under another key: %v", err)
	}
	c[5] ^= 1 // the expiry
	if _, err := verifyCertificate([]ed25519.PublicKey{pub}, a.ID(), c); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("certificate with a changed expiry accepted: %v", err)
	}
	if _, err := verifyCertificate([]ed25519.PublicKey{pub}, a.ID(), c[:10]); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("short certificate accepted: %v", err)
	}
}
