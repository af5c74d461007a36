package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/immense-p2p/immense/internal/browsertest"
	"github.com/immense-p2p/immense/overlay"
	"github.com/immense-p2p/immense/webrtc"
)

// loopbackNet starts a bootstrap node and n peers on 127.0.0.1, each peer
// with the browser bridge (adjust may change its config) and its HTTP API.
func loopbackNet(t *testing.T, n int, adjust func(*Config)) ([]*Node, []*HTTPServer) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	loopback := []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	bcfg := BootstrapConfig()
	bcfg.DataDir = t.TempDir()
	bcfg.ListenAddrs = loopback
	bcfg.Logger = quiet
	boot, err := New(context.Background(), bcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { boot.Close() })
	var peers []*Node
	var servers []*HTTPServer
	for range n {
		cfg := DefaultConfig()
		cfg.DataDir = t.TempDir()
		cfg.ListenAddrs = loopback
		cfg.Overlay.Mode = overlay.ModeServer
		cfg.NAT.PortMap = false
		cfg.Bootstrap = []string{boot.Addrs()[0].String()}
		cfg.Logger = quiet
		bc := webrtc.DevnetConfig()
		bc.LoopbackOnly = true
		cfg.Browsers = &bc
		if adjust != nil {
			adjust(&cfg)
		}
		p, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		srv, err := p.StartHTTP("127.0.0.1:0", HTTPOptions{Topics: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		<-p.Joined()
		peers = append(peers, p)
		servers = append(servers, srv)
	}
	return peers, servers
}

// browser starts a headless Chromium of its own (profile and all).
func browser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	return browsertest.Start(t, context.Background(), extra...)
}

// TestBrowsersChat: two Chromium browsers, each on the demo page of a
// different peer, one over a WebSocket and one over WebRTC, chat both ways
// through the overlay.
func TestBrowsersChat(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	_, servers := loopbackNet(t, 2, nil)
	a, b := browser(t), browser(t)
	room := "test/chat"
	// The same page: alice's browser picks its transport (a WebSocket: the
	// peer is reachable), bob's is told to use WebRTC.
	open := func(ctx context.Context, url, query, wantTransport string) {
		t.Helper()
		tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		var transport string
		err := chromedp.Run(tctx,
			chromedp.Navigate(url+"/?room="+room+query),
			chromedp.WaitVisible(`#state[data-state="open"]`, chromedp.ByQuery),
			chromedp.AttributeValue("#transport", "data-transport", &transport, nil, chromedp.ByQuery),
		)
		if err != nil {
			var state, errText string
			chromedp.Run(ctx, chromedp.Text("#state", &state, chromedp.ByID), chromedp.Text("#error", &errText, chromedp.ByID))
			t.Fatalf("open %s: %v (state %q, error %q)", url, err, state, errText)
		}
		if transport != wantTransport {
			t.Errorf("%s connected over %q, want %q", url, transport, wantTransport)
		}
	}
	open(a, servers[0].URL(), "", "websocket")
	open(b, servers[1].URL(), "&transport=webrtc", "webrtc")

	say := func(ctx context.Context, name, text string) {
		t.Helper()
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Run(tctx,
			chromedp.SetValue("#name", name, chromedp.ByID),
			chromedp.SendKeys("#text", text+"\n", chromedp.ByID),
		); err != nil {
			t.Fatalf("%s says %q: %v", name, text, err)
		}
	}
	hears := func(ctx context.Context, who, text string) {
		t.Helper()
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var ok bool
		js := fmt.Sprintf(`document.getElementById("messages").textContent.includes(%q)`, text)
		if err := chromedp.Run(tctx, chromedp.Poll(js, &ok)); err != nil {
			var msgs string
			chromedp.Run(ctx, chromedp.Text("#messages", &msgs, chromedp.ByID))
			t.Fatalf("%s never saw %q: %v (messages: %q)", who, text, err, msgs)
		}
	}
	// Each browser sees its own message (it is subscribed to the room)
	// before the other's is checked, so both ends are known to be live.
	say(a, "alice", "hello from alice")
	hears(a, "alice", "hello from alice")
	hears(b, "bob", "hello from alice")
	say(b, "bob", "hi alice, bob here")
	hears(b, "bob", "hi alice, bob here")
	hears(a, "alice", "hi alice, bob here")
}

// attackPage is a page on another origin that tries the control API of the
// peer named in its query string: a form-like cross-origin POST (no CORS
// preflight needed), and a read of state.
const attackPage = `<!doctype html><script>
window.results = (async () => {
  const peer = new URLSearchParams(location.search).get("peer");
  const out = {};
  try {
    await fetch(peer + "/v1/topics/victim", {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: "from a web page"});
    out.post = "sent";
  } catch (e) { out.post = "error"; }
  try {
    const r = await fetch(peer + "/v1/state/secret");
    out.read = "read " + r.status;
  } catch (e) { out.read = "blocked"; }
  return out;
})();
</script>`

// TestControlAPIFromWebPages: in Chromium, a page from another origin and a
// page whose DNS name was rebound to 127.0.0.1 can neither publish nor read
// through a local peer, even one whose control API needs no token: the
// Host and Origin checks alone keep them out. The operator, beside them,
// publishes as usual.
func TestControlAPIFromWebPages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	peers, servers := loopbackNet(t, 1, nil)
	nd := peers[0]
	open, err := nd.StartHTTP("127.0.0.1:0", HTTPOptions{Topics: true, NoAPIToken: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { open.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs, err := nd.Subscribe(ctx, "victim")
	if err != nil {
		t.Fatal(err)
	}
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, attackPage)
	}))
	t.Cleanup(evil.Close)

	// evil.test resolves to 127.0.0.1, as a rebinding attacker's name does
	// once the page has loaded.
	b := browser(t, chromedp.Flag("host-resolver-rules", "MAP evil.test 127.0.0.1"))
	run := func(what string, actions ...chromedp.Action) {
		t.Helper()
		sctx, cancel := context.WithTimeout(b, 30*time.Second)
		defer cancel()
		if err := chromedp.Run(sctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	await := func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }

	var cross map[string]string
	run("cross-origin page", chromedp.Navigate(evil.URL+"/?peer="+open.URL()),
		chromedp.Evaluate(`window.results`, &cross, await))
	t.Logf("cross-origin page: %v", cross)

	var rebound []int
	port := open.Addr()[strings.LastIndex(open.Addr(), ":")+1:]
	run("rebound page", chromedp.Navigate("http://evil.test:"+port+"/"),
		chromedp.Evaluate(`(async () => [
			(await fetch("/v1/state/secret")).status,
			(await fetch("/v1/topics/victim", {method: "POST", body: "rebound"})).status,
			(await fetch("/v1/status")).status,
		])()`, &rebound, await))
	for i, code := range rebound {
		if code != http.StatusForbidden {
			t.Errorf("rebound page, request %d: status %d, want 403", i, code)
		}
	}

	req, _ := http.NewRequest("POST", servers[0].URL()+"/v1/topics/victim", strings.NewReader("honest"))
	req.Header.Set("Authorization", "Bearer "+nd.APIToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("operator's publish: %s", resp.Status)
	}
	if m := <-msgs; string(m.Data) != "honest" {
		t.Fatalf("first message on the topic: %q, want the operator's", m.Data)
	}
	if got := metricSum(t, nd, "immense_http_control_refused_total"); got < 4 {
		t.Errorf("refusals counted: %v, want at least 4 (1 origin, 3 host)", got)
	}
}
