package node

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/immense-p2p/immense/overlay"
	"github.com/immense-p2p/immense/webrtc"
)

// TestBrowserReloadRecovers: the demo page is reloaded while 100 messages
// are published to its room; the reloaded page resumes after the last
// message the old one showed, and the conversation it shows holds each of
// the 100 once, in order.
func TestBrowserReloadRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	peers, servers := loopbackNet(t, 1, nil)
	b := browser(t)
	const room = "test/reload"
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		ctx, cancel := context.WithTimeout(b, 60*time.Second)
		defer cancel()
		if err := chromedp.Run(ctx, actions...); err != nil {
			var state, errText, msgs string
			chromedp.Run(b, chromedp.Text("#state", &state, chromedp.ByID), chromedp.Text("#error", &errText, chromedp.ByID), chromedp.Text("#messages", &msgs, chromedp.ByID))
			t.Fatalf("%s: %v (state %q, error %q, messages %q)", what, err, state, errText, msgs)
		}
	}
	awaitRoom := chromedp.Evaluate(`window.roomReady.then(() => true)`, nil, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) })
	run("open the demo", chromedp.Navigate(servers[0].URL()+"/?room="+room),
		chromedp.WaitVisible(`#state[data-state="open"]`, chromedp.ByQuery), awaitRoom)

	const n = 100
	halfway := make(chan struct{})
	published := make(chan error, 1)
	var sent atomic.Int64
	go func() {
		for i := range n {
			if i == n/3 {
				close(halfway)
			}
			if err := peers[0].Publish(context.Background(), room, fmt.Appendf(nil, `{"name":"go","text":"m%d"}`, i)); err != nil {
				published <- err
				return
			}
			sent.Add(1)
			time.Sleep(5 * time.Millisecond) // a steady stream, not a burst
		}
		published <- nil
	}()
	<-halfway
	before := sent.Load()
	run("reload", chromedp.Reload(), chromedp.WaitVisible(`#state[data-state="open"]`, chromedp.ByQuery), awaitRoom)
	t.Logf("%d messages published while the page reloaded", sent.Load()-before)
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	var done bool
	run("the last message arrives", chromedp.Poll(fmt.Sprintf(`document.getElementById("messages").textContent.includes("m%d")`, n-1), &done))
	var texts []string
	run("read the conversation", chromedp.Evaluate(`[...document.querySelectorAll("#messages li")].map((li) => li.lastChild.textContent)`, &texts))
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("m%d", i)
	}
	if fmt.Sprint(texts) != fmt.Sprint(want) {
		t.Fatalf("the reloaded page shows %d messages:\n%v\nwant each of m0..m%d once, in order", len(texts), texts, n-1)
	}
}

// pageServer serves html at path, beside the demo page and the JS client
// (at /client.js), on an origin of its own.
func pageServer(t *testing.T, path, html string) *httptest.Server {
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, html)
			return
		}
		webrtc.DemoHandler().ServeHTTP(w, r)
	}))
	t.Cleanup(page.Close)
	return page
}

// movePage follows a room through the JS client with a list of two peers,
// recording every message's text in window.got.
const movePage = `<!doctype html><script type="module">
import { connect } from "./client.js";
const q = new URLSearchParams(location.search);
const client = connect([q.get("a"), q.get("b")], { reconnect: { initialDelay: 100, maxDelay: 500 } });
window.got = [];
window.gaps = 0;
client.addEventListener("gap", () => window.gaps++);
window.roomReady = client.subscribe(q.get("room"), (m) => window.got.push(m.text));
</script>`

// TestBrowserMovesPeers: a browser connected to peer A, which is killed
// while 100 messages are published, fails over to peer B and gets every
// message once, in order, with no gap.
func TestBrowserMovesPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	peers, servers := loopbackNet(t, 2, nil)
	a, b := peers[0], peers[1]
	const room = "test/move"
	// Another client follows the room on b, so b keeps its window.
	other, err := b.Subscribe(t.Context(), room)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range other {
		}
	}()
	page := pageServer(t, "/move.html", movePage)
	br := browser(t)
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		ctx, cancel := context.WithTimeout(br, 60*time.Second)
		defer cancel()
		if err := chromedp.Run(ctx, actions...); err != nil {
			var got []string
			chromedp.Run(br, chromedp.Evaluate(`window.got`, &got))
			t.Fatalf("%s: %v (got %v)", what, err, got)
		}
	}
	awaitRoom := chromedp.Evaluate(`window.roomReady.then(() => true)`, nil, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) })
	run("open the page on a", chromedp.Navigate(fmt.Sprintf("%s/move.html?room=%s&a=%s&b=%s", page.URL, room, servers[0].URL(), servers[1].URL())), awaitRoom)
	// a's subscription reaches b's mesh before b publishes.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if slices.ContainsFunc(b.overlay.Topics(), func(ti overlay.TopicInfo) bool { return ti.Name == room && ti.Peers > 0 }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b never saw a subscribe to the room")
		}
		time.Sleep(50 * time.Millisecond)
	}

	const n = 100
	for i := range n {
		if i == n/3 {
			a.Close() // the browser's peer dies mid-stream
			servers[0].Close()
		}
		if err := b.Publish(t.Context(), room, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // a steady stream, not a burst
	}
	var done bool
	run("the last message arrives", chromedp.Poll(fmt.Sprintf(`window.got.includes("m%d")`, n-1), &done))
	var got []string
	var gaps int
	run("read what arrived", chromedp.Evaluate(`window.got`, &got), chromedp.Evaluate(`window.gaps`, &gaps))
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("m%d", i)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || gaps != 0 {
		t.Fatalf("the browser got %d messages, %d gaps:\n%v\nwant each of m0..m%d once, in order", len(got), gaps, got, n-1)
	}
}
