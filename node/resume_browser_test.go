package node

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
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
