package overlay

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/immense-p2p/immense/internal/browsersig"
)

// TestBoundTokens: a browser whose token is bound to its key signs its
// messages; the volunteer that relays one gets it delivered with the
// browser as sender. A stranger that sees the token in that message can
// do nothing with it: not publish with it as a bearer token, not sign a
// message of its own (it lacks the key), not move the signature to another
// payload, topic or time, and a copy of the browser's message under its
// own gossipsub id is ignored, not delivered twice. Each is counted; the
// relay cannot publish with the bound token unsigned either.
func TestBoundTokens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newAuthNet(t)
		ctx := t.Context()
		sub, err := n.app.Subscribe("chat/lobby")
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range []*Overlay{n.volunteer, n.stranger} {
			s, err := o.Subscribe("chat/lobby")
			if err != nil {
				t.Fatal(err)
			}
			defer s.Cancel()
		}
		time.Sleep(5 * time.Second) // subscriptions and meshes form
		synctest.Wait()

		now := time.Now().Truncate(time.Millisecond)
		signed := func(topic string, t time.Time, data string) []byte {
			return browsersig.Sign(browserKey, topic, t, []byte(data))
		}
		sig := signed("chat/lobby", now, "from bob")
		if err := n.volunteer.PublishToken(ctx, "chat/lobby", []byte("from bob"), "bound-token", &BrowserProof{Time: now, Sig: sig}); err != nil {
			t.Fatal(err)
		}
		// The relay cannot use the bound token unsigned, nor sign wrongly.
		if err := n.volunteer.PublishToken(ctx, "chat/lobby", []byte("relay: unsigned"), "bound-token", nil); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("relay's unsigned publish with a bound token: %v, want ErrUnauthorized", err)
		}
		if err := n.volunteer.PublishToken(ctx, "chat/lobby", []byte("relay: moved signature"), "bound-token", &BrowserProof{Time: now, Sig: sig}); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("relay's publish with a signature of another message: %v, want ErrUnauthorized", err)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()

		// The stranger saw the message, token and signature. A copy first
		// (ignored: no penalty), then what costs it score.
		cred := append(append([]byte(nil), sig...), "bound-token"...)
		raw(t, n.stranger, "chat/lobby", encodeEnvelope(now, credBoundToken, cred, []byte("from bob")))
		time.Sleep(5 * time.Second)
		synctest.Wait()
		raw(t, n.stranger, "chat/lobby", encodeEnvelope(time.Now(), credToken, []byte("bound-token"), []byte("forged: as bearer")))
		_, own, _ := ed25519.GenerateKey(rand.Reader)
		t2 := time.Now().Truncate(time.Millisecond)
		ownSig := browsersig.Sign(own, "chat/lobby", t2, []byte("forged: own key"))
		raw(t, n.stranger, "chat/lobby", encodeEnvelope(t2, credBoundToken, append(ownSig, "bound-token"...), []byte("forged: own key")))
		raw(t, n.stranger, "chat/lobby", encodeEnvelope(now, credBoundToken, cred, []byte("forged: other payload")))
		raw(t, n.stranger, "chat/lobby", encodeEnvelope(now.Add(time.Millisecond), credBoundToken, cred, []byte("from bob")))
		raw(t, n.stranger, "chat/other", encodeEnvelope(now, credBoundToken, cred, []byte("from bob")))
		time.Sleep(5 * time.Second)
		synctest.Wait()

		var got []string
		for {
			m, ok := sub.TryNext()
			if !ok {
				break
			}
			got = append(got, string(m.Data))
			if m.Sender.String() != "token:bob" || m.From != n.volunteer.Host().ID() {
				t.Errorf("message %q: sender %s from %s", m.Data, m.Sender, m.From)
			}
		}
		if fmt.Sprint(got) != "[from bob]" {
			t.Errorf("the app peer got %q, want the browser's message once", got)
		}
		for reason, want := range map[string]float64{reasonReplay: 1, reasonUnsigned: 1, reasonBrowserSig: 3} {
			if c := counter(t, n.app, reason); c != want {
				t.Errorf("app peer counted %v messages refused for %s, want %v", c, reason, want)
			}
		}
	})
}

// TestRequireBoundTokens: with RequireBoundTokens a bearer token is
// refused, a bound one accepted when signed.
func TestRequireBoundTokens(t *testing.T) {
	cfg := DefaultConfig().Auth
	cfg.PublicKeys = []ed25519.PublicKey{browserKey.Public().(ed25519.PublicKey)} // any key turns authorization on
	cfg.VerifyToken = chatVerifier
	cfg.RequireBoundTokens = true
	z := newAuthorizer(cfg, "relay")
	now := time.Now().Truncate(time.Millisecond)
	_, err := z.check("chat/a", "relay", envelope{published: now, kind: credToken, cred: []byte("chat-token"), payload: []byte("x")}, now)
	var ae *authError
	if !errors.As(err, &ae) || ae.reason != reasonUnbound || !strings.Contains(err.Error(), "bearer") {
		t.Errorf("bearer token with RequireBoundTokens: %v", err)
	}
	cred := append(browsersig.Sign(browserKey, "chat/a", now, []byte("x")), "bound-token"...)
	if s, err := z.check("chat/a", "relay", envelope{published: now, kind: credBoundToken, cred: cred, payload: []byte("x")}, now); err != nil || s.Subject != "bob" {
		t.Errorf("signed bound token: %+v, %v", s, err)
	}
}

// TestReplayCache: a signature is refused while remembered, forgotten
// when it expires, and the cache never holds more than its cap.
func TestReplayCache(t *testing.T) {
	var c replayCache
	t0 := time.Unix(1000, 0)
	sig := func(i int) []byte { return []byte(fmt.Sprint("sig-", i)) }
	if !c.add(sig(0), t0.Add(time.Minute), t0) || c.add(sig(0), t0.Add(time.Minute), t0.Add(time.Second)) {
		t.Fatal("a signature seen twice was not refused the second time")
	}
	if !c.add(sig(0), t0.Add(3*time.Minute), t0.Add(2*time.Minute)) {
		t.Fatal("an expired signature is still refused")
	}
	for i := 1; i < 2*maxReplayCache; i++ {
		c.add(sig(i), t0.Add(time.Hour), t0.Add(2*time.Minute))
	}
	if len(c.seen) > maxReplayCache || len(c.order)-c.head != len(c.seen) {
		t.Errorf("cache holds %d (order %d), at most %d", len(c.seen), len(c.order)-c.head, maxReplayCache)
	}
	if c.add(sig(2*maxReplayCache-1), t0.Add(time.Hour), t0.Add(2*time.Minute)) {
		t.Error("the newest signature was forgotten")
	}
}
