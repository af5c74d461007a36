package webrtc

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/immense-p2p/immense/internal/browsertest"
)

// relayTestPage loads immense.js and waits for the test to start a
// client: window.got holds the sequence numbers (seqPayload) of the
// messages delivered, in delivery order.
const relayTestPage = `<!doctype html><meta charset="utf-8"><title>relay test</title>
<script type="module">
import { connect } from "/client.js";
window.got = [];
window.errors = [];
window.reports = [];
window.start = async (token, topic, relay) => {
  const client = connect(location.origin, { token, relay: relay || undefined });
  window.client = client;
  client.addEventListener("error", (e) => window.errors.push(String(e.detail.error)));
  client.addEventListener("disconnect", (e) => window.errors.push("disconnect: " + String(e.detail.error)));
  client.addEventListener("relayreport", (e) => window.reports.push(e.detail.reason));
  client.addEventListener("relayreport", (e) => window.errors.push("report: " + JSON.stringify(e.detail)));
  await client.subscribe(topic, (m) => window.got.push(Number(new DataView(m.data.buffer, m.data.byteOffset, 8).getBigUint64(0))));
  return client.transport;
};
window.fed = (topic) => client.relayStatus().topics.find((t) => t.topic === topic)?.fedBy ?? "peer";
window.children = () => client.relayStatus().children;
window.loaded = true;
</script>`

// browserTab is one Chromium tab running relayTestPage.
type browserTab struct {
	t      *testing.T
	name   string
	ctx    context.Context
	cancel context.CancelFunc
}

func (b *browserTab) run(what string, actions ...chromedp.Action) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		var errs []string
		ectx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		if err := chromedp.Run(ectx, chromedp.Evaluate(`[...window.errors, "state " + window.client?.state + " " + window.client?.transport + " " + JSON.stringify(window.client?.relayStatus()), "got " + JSON.stringify(window.got)]`, &errs)); err != nil {
			errs = append(errs, "reading the page: "+err.Error())
		}
		b.t.Fatalf("%s: %s: %v (page errors %q)", b.name, what, err, errs)
	}
}

// waitGot waits until the tab has n messages, then checks they are
// 0..n-1: each once, in order.
func (b *browserTab) waitGot(n int) {
	b.t.Helper()
	var ok bool
	b.run(fmt.Sprintf("receive %d messages", n), chromedp.Poll(fmt.Sprintf(`window.got.length >= %d`, n), &ok, polling))
	var got []int
	b.run("read messages", chromedp.Evaluate(`window.got`, &got))
	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(got, want) {
		b.t.Fatalf("%s got messages %v, want 0..%d once each in order", b.name, got, n-1)
	}
}

// waitFed waits until the tab's client says how topic is fed.
func (b *browserTab) waitFed(topic, how string) {
	b.t.Helper()
	var ok bool
	b.run("fed by "+how, chromedp.Poll(fmt.Sprintf(`window.fed(%q) === %q`, topic, how), &ok, polling))
}

// polling polls on a timer: the default, requestAnimationFrame, never
// fires in a background tab, and all tabs but one are.
var polling = chromedp.WithPollingInterval(20 * time.Millisecond)

func awaitPromise(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }

// relayBrowsers is a Server with relays on (DirectBudget 1, no uptime
// wait) behind an HTTP server with the relay test page, and a headless
// Chromium whose tabs open it.
type relayBrowsers struct {
	t      *testing.T
	e      *testEnv
	rounds chan struct{}
	ctx    context.Context
	url    string
	bctx   context.Context
}

func newRelayBrowsers(t *testing.T) *relayBrowsers {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	e, rounds := relayEnv(t, func(c *RelayConfig) {
		c.DirectBudget = 1
		// Chromium tabs on two loaded cores: the default HEAD interval,
		// well above what a tab takes to forward, so that a slow relay is
		// not taken for a stalled one (which would move its child for
		// good, losing nothing, but not testing what this test is about).
		c.HeadInterval = time.Second
	})
	t.Cleanup(func() { logRelayMetrics(t, e) })
	mux := http.NewServeMux()
	mux.Handle(OfferPath, e.srv)
	mux.Handle(WebSocketPath, e.srv.WebSocketHandler())
	mux.HandleFunc("/relay-test", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, relayTestPage)
	})
	mux.Handle("/", DemoHandler())
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	ctx := testContext(t)
	return &relayBrowsers{t: t, e: e, rounds: rounds, ctx: ctx, url: hs.URL + "/relay-test", bctx: browsertest.Start(t, ctx)}
}

// tab opens a tab that follows topic with token tok, offering to relay
// with relay (JS RelayOptions, or "null").
func (rb *relayBrowsers) tab(name, tok, topic, relay string) *browserTab {
	t := rb.t
	t.Helper()
	tctx, tcancel := chromedp.NewContext(rb.bctx) // a new tab of the same browser
	tab := &browserTab{t: t, name: name, ctx: tctx, cancel: tcancel}
	t.Cleanup(tcancel)
	// Open the tab on tctx: the context of a tab's first Run owns it, so
	// it must not be one of run's per-step timeouts.
	if err := chromedp.Run(tctx); err != nil {
		t.Fatalf("open tab %s: %v", name, err)
	}
	var ok bool
	var transport string
	tab.run("load", chromedp.Navigate(rb.url), chromedp.Poll(`window.loaded === true`, &ok, polling))
	tab.run("subscribe", chromedp.Evaluate(fmt.Sprintf(`start(%q, %q, %s)`, tok, topic, relay), &transport, awaitPromise))
	return tab
}

// TestBrowserRelay runs immense.js's relay roles in headless Chromium:
// four tabs follow one topic on a peer that feeds one itself; the tab
// whose user allowed relaying with the fastest upload feeds two others
// over browser-to-browser data channels, and every tab gets every
// message, in order, once, including those published while the tree
// formed. Then the relay tab closes: its children move (to the peer,
// then to the other tab that may relay) and lose nothing. Last, that
// relay forges records (a test hook): both children detect it, report
// it with the record as evidence, move, and the peer isolates it.
func TestBrowserRelay(t *testing.T) {
	const topic = "news"
	rb := newRelayBrowsers(t)
	e, rounds, ctx := rb.e, rb.rounds, rb.ctx
	tok := e.token([]string{topic}, nil)
	// The relay candidates report faster uploads than the others; a's is
	// the fastest, so the peer invites it first.
	a := rb.tab("a", tok, topic, `{maxChildren: 4, upload: 1 << 20}`)
	b := rb.tab("b", tok, topic, `{maxChildren: 4, upload: 512 << 10}`)
	c := rb.tab("c", tok, topic, `null`)
	d := rb.tab("d", tok, topic, `null`)

	// Published while the tree forms: subscribers switch from MESSAGE
	// frames to records without a gap or a duplicate.
	publishSeq(t, ctx, e, topic, 0, 10)
	st := waitStatus(t, ctx, e, rounds, topic, func(st RelayStatus) bool { return st.ViaRelays == 2 && st.Relays >= 1 })
	t.Logf("tree: %+v", st)
	c.waitFed(topic, "relay")
	d.waitFed(topic, "relay")
	var children int
	a.run("a feeds two", chromedp.Poll(`window.children() === 2`, nil, polling), chromedp.Evaluate(`window.children()`, &children))
	// Only the tabs whose page passed the relay option said RELAY-READY.
	e.srv.relays.mu.Lock()
	ready := len(e.srv.relays.ready)
	e.srv.relays.mu.Unlock()
	if ready != 2 {
		t.Errorf("%d sessions offered to relay, want 2 (a and b)", ready)
	}
	publishSeq(t, ctx, e, topic, 10, 20)
	for _, tab := range []*browserTab{a, b, c, d} {
		tab.waitGot(30)
	}
	var relayed float64
	a.run("relayed bytes", chromedp.Evaluate(`client.relayStatus().forwardedBytes`, &relayed))
	if relayed == 0 {
		t.Fatal("the relay tab forwarded nothing")
	}

	// The relay tab closes: its children are attached elsewhere and
	// resume after their last record.
	attachments := st.Attachments
	a.cancel()
	publishSeq(t, ctx, e, topic, 30, 20) // while they move
	for _, tab := range []*browserTab{b, c, d} {
		tab.waitGot(50)
	}
	st = waitStatus(t, ctx, e, rounds, topic, func(st RelayStatus) bool {
		return st.ViaRelays == 2 && st.Relays == 1 && st.Attachments > attachments
	})
	t.Logf("after the relay tab closed: %+v", st)
	c.waitFed(topic, "relay")
	d.waitFed(topic, "relay")
	b.run("b feeds two", chromedp.Poll(`window.children() === 2`, nil, polling))
	publishSeq(t, ctx, e, topic, 50, 10)
	for _, tab := range []*browserTab{b, c, d} {
		tab.waitGot(60)
	}

	// The remaining relay forges: both children detect it on the first
	// record, report it with the evidence, are moved to the peer, and
	// the peer isolates it (quorum 2). Nothing is lost.
	b.run("forge", chromedp.Evaluate(`client._relays.misbehave = "forge"`, nil))
	publishSeq(t, ctx, e, topic, 60, 10)
	for _, tab := range []*browserTab{b, c, d} {
		tab.waitGot(70)
	}
	waitIsolated(t, ctx, e, rounds, 1)
	for _, tab := range []*browserTab{c, d} {
		var reports []string
		tab.run("reports", chromedp.Evaluate(`window.reports`, &reports))
		if !slices.Contains(reports, "forged") {
			t.Errorf("%s reported %q, want forged", tab.name, reports)
		}
		tab.waitFed(topic, "peer")
	}
	if v := value(t, e.srv.relays.m.reports.WithLabelValues("forged")); v < 2 {
		t.Errorf("forged reports = %v, want 2", v)
	}
	publishSeq(t, ctx, e, topic, 70, 10)
	for _, tab := range []*browserTab{b, c, d} {
		tab.waitGot(80)
	}
	for _, tab := range []*browserTab{c, d} {
		var offered bool
		var forwarded float64
		tab.run("relayed nothing", chromedp.Evaluate(`client.relayStatus().offered`, &offered), chromedp.Evaluate(`client.relayStatus().forwardedBytes`, &forwarded))
		if offered || forwarded != 0 {
			t.Errorf("%s, never allowed to relay, offered %v and forwarded %v bytes", tab.name, offered, forwarded)
		}
	}
	t.Logf("final: %+v", e.srv.RelayStatus())
}

// TestBrowserRelayGo mixes the two clients in one tree: a Go relay (pion)
// feeds a Chromium relay, which feeds a Go child and a Chromium child; so
// records cross pion→Chromium and Chromium→pion links, each side
// verifying the other's forwarding of the peer's signatures, and all four
// get every message, in order, once. Then the Chromium relay stalls, and
// both children, Go and JS, detect it by the HEAD rule and move.
func TestBrowserRelayGo(t *testing.T) {
	const topic = "news"
	rb := newRelayBrowsers(t)
	e, rounds, ctx := rb.e, rb.rounds, rb.ctx
	tok := e.token([]string{topic}, nil)
	// Subscribed in this order, the Go relay (the fastest upload, one
	// child) is invited first and fed by the peer; the tab relay next,
	// under it (depth 2); the two plain clients under the tab (depth 3).
	goRelay := e.dial(ctx, tok, WithRelay(RelayOptions{MaxChildren: 1, Upload: 1 << 20}))
	if err := goRelay.Subscribe(ctx, topic); err != nil {
		t.Fatal(err)
	}
	tabRelay := rb.tab("relay", tok, topic, `{maxChildren: 4, upload: 512 << 10}`)
	goChild := e.dial(ctx, tok)
	if err := goChild.Subscribe(ctx, topic); err != nil {
		t.Fatal(err)
	}
	tabChild := rb.tab("child", tok, topic, `null`)

	st := waitStatus(t, ctx, e, rounds, topic, func(st RelayStatus) bool { return st.ViaRelays == 3 && st.Relays == 2 })
	t.Logf("tree: %+v", st)
	if st.MaxDepth != 3 {
		t.Fatalf("status %+v, want depth 3: Go relay, tab relay, children", st)
	}
	tabRelay.waitFed(topic, "relay")
	tabChild.waitFed(topic, "relay")
	tabRelay.run("the tab relay feeds two", chromedp.Poll(`window.children() === 2`, nil, polling))
	publishSeq(t, ctx, e, topic, 0, 30)
	receiveAll(t, ctx, []*Client{goRelay, goChild}, topic, 0, 30)
	tabRelay.waitGot(30)
	tabChild.waitGot(30)
	if goRelay.RelayedBytes() == 0 {
		t.Error("the Go relay forwarded nothing to the tab")
	}
	var relayed float64
	tabRelay.run("relayed bytes", chromedp.Evaluate(`client.relayStatus().forwardedBytes`, &relayed))
	if relayed == 0 {
		t.Error("the tab relay forwarded nothing")
	}

	// The tab relay stalls (a test hook): its Go and Chromium children see
	// the peer's HEADs run ahead, report it stalled, are moved, and get
	// what they missed from the peer's backlog; judged a few HEADs later,
	// the two reports isolate it.
	tabRelay.run("stall", chromedp.Evaluate(`client._relays.misbehave = "stall"`, nil))
	publishSeq(t, ctx, e, topic, 30, 10)
	receiveAll(t, ctx, []*Client{goRelay, goChild}, topic, 30, 10)
	tabRelay.waitGot(40)
	tabChild.waitGot(40)
	waitIsolated(t, ctx, e, rounds, 1)
	if v := value(t, e.srv.relays.m.reports.WithLabelValues("stalled")); v < 2 {
		t.Errorf("stalled reports = %v, want 2 (the Go child and the tab)", v)
	}
	var reports []string
	tabChild.run("reports", chromedp.Evaluate(`window.reports`, &reports))
	if !slices.Contains(reports, "stalled") {
		t.Errorf("the tab child reported %q, want stalled", reports)
	}
	publishSeq(t, ctx, e, topic, 40, 10)
	receiveAll(t, ctx, []*Client{goRelay, goChild}, topic, 40, 10)
	tabRelay.waitGot(50)
	tabChild.waitGot(50)
	t.Logf("final: %+v", e.srv.RelayStatus())
}
