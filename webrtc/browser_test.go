package webrtc

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/immense-p2p/immense/internal/browsertest"
)

// TestBrowserClient runs the demo page and immense.js in headless
// Chromium against a Server: a token pasted into the page (one in the query
// string is ignored, a token URL on another origin refused), chat both
// ways with a Go client, and after the server drops the session, the
// browser's reconnect and resubscribe. (The node package's browser test
// covers two browsers on two peers of a real overlay.)
func TestBrowserClient(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	e := newTestEnv(t, nil)
	mux := http.NewServeMux()
	mux.Handle(OfferPath, e.srv)
	mux.Handle("/", DemoHandler())
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	ctx := testContext(t)

	const room = "test/chat"
	tok := e.token([]string{"test/*", "demo/*"}, []string{"test/*", "demo/*"})
	goClient := e.dial(ctx, e.token([]string{room}, []string{room}))
	if err := goClient.Subscribe(ctx, room); err != nil {
		t.Fatal(err)
	}

	bctx := browsertest.Start(t, ctx) // the per-step timeouts below derive from it
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Run(sctx, actions...); err != nil {
			var state, errText string
			_ = chromedp.Run(bctx, chromedp.Text("#state", &state, chromedp.ByID), chromedp.Text("#error", &errText, chromedp.ByID))
			t.Fatalf("%s: %v (page state %q, error %q)", what, err, state, errText)
		}
	}
	browserHears := func(text string) {
		t.Helper()
		var ok bool
		run("browser hears "+text, chromedp.Poll(fmt.Sprintf(`document.getElementById("messages").textContent.includes(%q)`, text), &ok))
	}
	goHears := func(text string) {
		t.Helper()
		for {
			select {
			case m := <-goClient.Messages():
				var chat struct{ Name, Text string }
				if err := json.Unmarshal(m.Data, &chat); err != nil {
					t.Fatalf("browser sent %q: %v", m.Data, err)
				}
				if chat.Text == text {
					return
				}
			case <-ctx.Done():
				t.Fatalf("Go client never got %q", text)
			}
		}
	}

	// A token in the query string is not taken (it would land in history,
	// logs and Referer headers); one pasted into the page is.
	run("a token in the query string is ignored", chromedp.Navigate(hs.URL+"/?room="+room+"&token="+tok),
		chromedp.WaitVisible(`#state[data-state="closed"]`, chromedp.ByQuery))
	run("open the demo with a pasted token", chromedp.Click("details summary", chromedp.ByQuery),
		chromedp.SetValue("#token", tok, chromedp.ByID), chromedp.Click("#token-form button", chromedp.ByQuery),
		chromedp.WaitVisible(`#state[data-state="open"]`, chromedp.ByQuery))
	run("chat", chromedp.SetValue("#name", "chromium", chromedp.ByID), chromedp.SendKeys("#text", "hello from the browser\n", chromedp.ByID))
	goHears("hello from the browser")
	browserHears("hello from the browser") // its own message, back through the overlay
	if err := goClient.Publish(ctx, room, []byte(`{"name":"go","text":"hello from Go"}`)); err != nil {
		t.Fatal(err)
	}
	browserHears("hello from Go")

	// The server drops every session: the page must reconnect and follow
	// the room again without being asked.
	e.srv.mu.Lock()
	var sessions []*session
	for _, s := range e.srv.sessions {
		sessions = append(sessions, s)
	}
	e.srv.mu.Unlock()
	for _, s := range sessions {
		if s.claims.CanRead("demo/pulse") { // the browser's, not the Go client's
			s.close(closeServer)
		}
	}
	run("reconnect", chromedp.WaitVisible(`#state[data-state="open"]`, chromedp.ByQuery))
	// Resubscription is asynchronous: keep publishing until one arrives.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		text := fmt.Sprintf("after reconnect %d", i)
		if err := goClient.Publish(ctx, room, []byte(`{"name":"go","text":"`+text+`"}`)); err != nil {
			t.Fatal(err)
		}
		var ok bool
		sctx, cancel := context.WithTimeout(bctx, 500*time.Millisecond)
		err := chromedp.Run(sctx, chromedp.Poll(fmt.Sprintf(`document.getElementById("messages").textContent.includes(%q)`, text), &ok))
		cancel()
		if err == nil {
			t.Logf("resubscribed after %d publishes", i+1)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the browser did not resubscribe after reconnecting")
		}
	}

	// A link naming a token URL on another origin must neither fetch it
	// (with the user's cookies) nor send what it returns anywhere.
	var foreignHits atomic.Int32
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		foreignHits.Add(1)
		fmt.Fprint(w, tok)
	}))
	t.Cleanup(foreign.Close)
	var refused bool
	run("a foreign tokenURL is refused", chromedp.Navigate(hs.URL+"/?room="+room+"&tokenURL="+url.QueryEscape(foreign.URL+"/token")),
		chromedp.Poll(`document.getElementById("error").textContent.includes("must be on this page's origin")`, &refused))
	if n := foreignHits.Load(); n != 0 {
		t.Errorf("the demo page fetched a token from another origin %d times", n)
	}
}
