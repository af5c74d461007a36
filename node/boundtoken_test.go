package node

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/immense-p2p/immense/overlay"
	"github.com/immense-p2p/immense/webrtc"
)

// TestBrowserBoundToken: in Chromium, the JS client hands its WebCrypto
// Ed25519 public key to the app's token endpoint, gets a token bound to it,
// and publishes through a volunteer that holds only the app's public key;
// every publish is signed, and the app peer delivers it as the browser's.
// The overlay requires bound tokens, so the same token without the
// browser's key (what the volunteer, or any peer that sees the message,
// could try) is refused.
func TestBrowserBoundToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	key, keyFile := appKeyFiles(t)
	i := 0
	peers, servers := loopbackNet(t, 2, func(c *Config) {
		c.Overlay.Auth.RequireBoundTokens = true
		if i == 0 {
			c.AppKeyFile = keyFile
		} else {
			c.AppPubFiles = []string{AppPublicKeyFile(keyFile)}
			c.Browsers.InsecureNoAuth = false
		}
		i++
	})
	app, volunteer := peers[0], peers[1]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	msgs, err := app.Subscribe(ctx, "chat/lobby")
	if err != nil {
		t.Fatal(err)
	}

	// The app's token endpoint: binds each token to the key it is given.
	var minted atomic.Value // string
	mint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		pub, err := base64.RawURLEncoding.DecodeString(r.URL.Query().Get("key"))
		if err != nil || len(pub) != ed25519.PublicKeySize {
			http.Error(w, "key: want a base64url Ed25519 public key", http.StatusBadRequest)
			return
		}
		now := time.Now()
		tok, err := webrtc.MintEdDSA(key.TopicKey(), webrtc.Claims{Subject: "alice", IssuedAt: now, ExpiresAt: now.Add(time.Hour),
			Read: []string{"chat/*"}, Write: []string{"chat/*"}, Key: pub})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		minted.Store(tok)
		fmt.Fprint(w, tok)
	}))
	defer mint.Close()

	b := browser(t)
	page := fmt.Sprintf(`(async () => {
  const { connect } = await import(%q);
  const c = connect(location.origin, { token: async ({ publicKey }) => (await fetch(%q + "?key=" + publicKey)).text() });
  await c.ready;
  window.client = c;
  return "open";
})()`, servers[1].URL()+"/client.js", mint.URL)
	var state string
	if err := chromedp.Run(b, chromedp.Navigate(servers[1].URL()+"/"), chromedp.Evaluate(page, &state, awaitPromise)); err != nil || state != "open" {
		t.Fatalf("connect: %q, %v", state, err)
	}
	// Until the topic's mesh forms a publish may reach nobody: publish
	// again every second until one arrives.
	publish := func() {
		var ok bool
		if err := chromedp.Run(b, chromedp.Evaluate(`window.client.publish("chat/lobby", "signed by alice").then(() => true)`, &ok, awaitPromise)); err != nil || !ok {
			t.Fatalf("publish from Chromium: %v", err)
		}
	}
	publish()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for got := false; !got; {
		select {
		case m := <-msgs:
			if string(m.Data) != "signed by alice" {
				continue
			}
			if m.Sender.Kind != overlay.SenderBrowser || m.Sender.String() != "token:alice" || m.From != volunteer.ID() {
				t.Errorf("sender %s (%v) from %s, want token:alice relayed by the volunteer", m.Sender, m.Sender.Kind, m.From)
			}
			got = true
		case <-tick.C:
			publish()
		case <-ctx.Done():
			t.Fatal("the browser's signed message never reached the app peer")
		}
	}
	// The volunteer saw the token; without the browser's key it is useless.
	if err := volunteer.overlay.PublishToken(ctx, "chat/lobby", []byte("forged by the volunteer"), minted.Load().(string), nil); err == nil {
		t.Error("the volunteer published with the browser's bound token, unsigned")
	}
}

// awaitPromise makes chromedp.Evaluate wait for the promise the script
// returns.
func awaitPromise(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }
