package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/overlay"
	"github.com/immense-p2p/immense/webrtc"
	"github.com/libp2p/go-libp2p/core/peer"
)

// appKeyFiles writes a new app key and its public half (app.key.pub)
// into a temporary directory, as peer keygen does.
func appKeyFiles(t *testing.T) (*erasure.AppKey, string) {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "app.key")
	key, err := erasure.GenerateAppKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := erasure.SaveAppKey(keyFile, key); err != nil {
		t.Fatal(err)
	}
	if err := WriteAppPublicKey(AppPublicKeyFile(keyFile), key); err != nil {
		t.Fatal(err)
	}
	return key, keyFile
}

// TestVolunteerRelaysBrowser: an app peer (--app-key), a volunteer given
// only the public key (--app-pub) and a stranger with no key. The
// volunteer admits a browser whose EdDSA token allows writing chat/* and
// relays its message, which the app peer receives as the browser's (sender
// token:alice, relayed by the volunteer). The browser cannot get a message
// into admin/x: the volunteer refuses the frame, and when the stranger
// relays it with the same token anyway, every peer that knows the key
// refuses it and counts it, while the app peer's own admin/x message
// arrives. The stranger's own messages to the app's topics arrive nowhere
// that checks; the volunteer, holding no key, cannot publish to them.
func TestVolunteerRelaysBrowser(t *testing.T) {
	key, keyFile := appKeyFiles(t)
	i := 0
	peers, servers := loopbackNet(t, 3, func(c *Config) {
		switch i {
		case 0: // the app peer
			c.AppKeyFile = keyFile
		case 1: // the volunteer: public key only, browsers need a token
			c.AppPubFiles = []string{AppPublicKeyFile(keyFile)}
			c.Browsers.InsecureNoAuth = false
		}
		i++
	})
	app, volunteer, stranger := peers[0], peers[1], peers[2]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	chat, err := app.Subscribe(ctx, "chat/lobby")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := app.Subscribe(ctx, "admin/x")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := webrtc.MintEdDSA(key.TopicKey(), webrtc.Claims{Subject: "alice", IssuedAt: now, ExpiresAt: now.Add(time.Hour),
		Read: []string{"chat/*"}, Write: []string{"chat/*"}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := webrtc.Dial(ctx, servers[1].URL()+"/v1/webrtc/offer", tok, webrtc.WithLoopbackOnly())
	if err != nil {
		t.Fatalf("the volunteer refused a browser with an EdDSA token: %v", err)
	}
	defer c.Close()

	// The browser's message, through the volunteer, reaches the app peer
	// as the browser's. Until the topic's mesh has formed a publish may
	// reach nobody: repeat until one arrives.
	got := func(msgs <-chan *Message, want string, publish func() error) *Message {
		t.Helper()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		if err := publish(); err != nil {
			t.Fatal(err)
		}
		for {
			select {
			case m := <-msgs:
				if strings.HasPrefix(string(m.Data), "forged") {
					t.Fatalf("%s delivered %q from %s", m.Topic, m.Data, m.Sender)
				}
				if string(m.Data) == want {
					return m
				}
			case <-tick.C:
				if err := publish(); err != nil {
					t.Fatal(err)
				}
			case <-ctx.Done():
				t.Fatalf("%q never arrived", want)
			}
		}
	}
	m := got(chat, "hi from alice", func() error { return c.Publish(ctx, "chat/lobby", []byte("hi from alice")) })
	if m.Sender.Kind != overlay.SenderBrowser || m.Sender.String() != "token:alice" || m.From != volunteer.ID() {
		t.Errorf("browser's message: sender %+v (%s) from %s, want token:alice relayed by the volunteer %s", m.Sender, m.Sender, m.From, volunteer.ID())
	}

	// The volunteer refuses the frame itself.
	var se *webrtc.ServerError
	if err := c.Publish(ctx, "admin/x", []byte("forged: browser")); !errors.As(err, &se) || se.Code != webrtc.CodeForbidden {
		t.Fatalf("browser's publish to admin/x: %v, want forbidden", err)
	}
	// A relay that ignores the token's scope: the stranger sends the
	// browser's token with a message for admin/x. It checks nothing, so
	// its own publish succeeds; the peers that know the key refuse it.
	before := metricSum(t, app, "immense_overlay_messages_unauthorized_total")
	for range 3 {
		if err := stranger.overlay.PublishToken(ctx, "admin/x", []byte("forged: stretched token"), tok, nil); err != nil {
			t.Fatal(err)
		}
		if err := stranger.Publish(ctx, "chat/lobby", []byte("forged: no credential")); err != nil {
			t.Fatal(err)
		}
	}
	if err := volunteer.Publish(ctx, "chat/lobby", []byte("forged: volunteer")); !errors.Is(err, overlay.ErrUnauthorized) {
		t.Fatalf("volunteer's own publish to an app topic: %v, want ErrUnauthorized", err)
	}
	// Honest traffic beside it.
	m = got(admin, "honest admin", func() error { return app.Publish(ctx, "admin/x", []byte("honest admin")) })
	if m.Sender.Kind != overlay.SenderPeer || m.Sender.Peer != app.ID() {
		t.Errorf("app peer's message: sender %+v", m.Sender)
	}
	// The forgeries reached the app peer and were refused and counted.
	for metricSum(t, app, "immense_overlay_messages_unauthorized_total") == before {
		select {
		case m := <-admin:
			t.Fatalf("admin/x delivered %q from %s", m.Data, m.Sender)
		case m := <-chat:
			if strings.HasPrefix(string(m.Data), "forged") {
				t.Fatalf("chat/lobby delivered %q from %s", m.Data, m.Sender)
			}
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("the stranger's forgeries were never refused by the app peer")
		}
	}
}

// TestAppPublicKeyFile: peer keygen's .pub file round-trips, and nothing
// else passes for one (not the private key file either).
func TestAppPublicKeyFile(t *testing.T) {
	dir := t.TempDir()
	key, err := erasure.GenerateAppKey()
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "app.key.pub")
	if err := WriteAppPublicKey(pub, key); err != nil {
		t.Fatal(err)
	}
	got, err := LoadAppPublicKey(pub)
	if err != nil || !got.Equal(key.TopicKey().Public()) {
		t.Fatalf("load = %x, %v", got, err)
	}
	if err := WriteAppPublicKey(pub, key); err == nil {
		t.Error("WriteAppPublicKey overwrote a file")
	}
	priv, _ := key.Marshal()
	for name, data := range map[string]string{
		"private key": string(priv),
		"empty":       "",
		"short key":   `{"type":"immense-app-pub","version":1,"topic_key":"AAAA"}`,
		"unknown":     `{"type":"immense-app-pub","version":1,"topic_key":"","extra":1}`,
		"version":     `{"type":"immense-app-pub","version":2}`,
	} {
		if _, err := ParseAppPublicKey([]byte(data)); err == nil {
			t.Errorf("%s accepted as an app public key", name)
		}
	}
	// The topic key is not the namespace key.
	if key.TopicKey().Public().(ed25519.PublicKey).Equal(key.PublicKey()) {
		t.Error("the topic key is the namespace signing key")
	}
}

// TestSSESender: SSE events say who sent a message and when, in fields
// that readers of data lines ignore, and as JSON with ?format=json.
func TestSSESender(t *testing.T) {
	const id = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
	p, err := peer.Decode(id)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	m := &Message{Topic: "chat/lobby", ID: "0a", From: p, Published: at, Data: []byte("hi\nthere"),
		Sender: overlay.Sender{Kind: overlay.SenderBrowser, Peer: p, Subject: "alice"}}
	var b strings.Builder
	writeEvent(&b, m, m.ID, false)
	want := "id: 0a\nevent: message\nsender: token:alice\nsender-kind: browser\ntime: 2026-01-02T03:04:05.000006Z\ndata: hi\ndata: there\n\n"
	if b.String() != want {
		t.Errorf("text event\n%q, want\n%q", b.String(), want)
	}
	b.Reset()
	writeJSONEvent(&b, m, m.ID)
	want = `id: 0a` + "\nevent: message\ndata: " + `{"id":"0a","topic":"chat/lobby","sender":"token:alice","sender_kind":"browser","from":"` + id + `","time":"2026-01-02T03:04:05.000006Z","text":"hi\nthere"}` + "\n\n"
	if b.String() != want {
		t.Errorf("JSON event\n%q, want\n%q", b.String(), want)
	}
}

// TestBrowserTokenKeys: the bridge and the overlay verify browser tokens
// with one list: the browser config's keys then the app's, each once, and
// a list longer than a verifier takes is refused with an error instead of
// cut (each place used to cut a different key).
func TestBrowserTokenKeys(t *testing.T) {
	gen := func(n int) []ed25519.PublicKey {
		var ks []ed25519.PublicKey
		for range n {
			pub, _, err := ed25519.GenerateKey(nil)
			if err != nil {
				t.Fatal(err)
			}
			ks = append(ks, pub)
		}
		return ks
	}
	app := gen(2)
	own := append(gen(webrtc.MaxPublicKeys-2), app[1]) // app[1] twice
	got, err := browserTokenKeys(&webrtc.Config{PublicKeys: own}, app)
	if err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(own), app[0])
	if !slices.EqualFunc(got, want, func(a, b ed25519.PublicKey) bool { return a.Equal(b) }) {
		t.Fatalf("keys: got %d, want the browser keys then the new app key (%d)", len(got), len(want))
	}
	if got, err := browserTokenKeys(nil, app); err != nil || len(got) != 2 {
		t.Fatalf("no browser config: %d keys, %v", len(got), err)
	}
	_, err = browserTokenKeys(&webrtc.Config{PublicKeys: gen(webrtc.MaxPublicKeys)}, app)
	if err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("too many keys: %v", err)
	}
	// New refuses such a config with the same error, naming the cause.
	_, keyFile := appKeyFiles(t)
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.AppKeyFile = keyFile
	b := webrtc.DefaultConfig()
	b.PublicKeys = gen(webrtc.MaxPublicKeys)
	cfg.Browsers = &b
	if _, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "browser token keys") {
		t.Fatalf("New with too many keys: %v", err)
	}
}
