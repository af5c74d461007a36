package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
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
		srv, err := ServeHTTP("127.0.0.1:0", p.Handler(HTTPOptions{Topics: true}), quiet)
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
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (apt-get install chromium); .ci/run installs it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Keep WebRTC on loopback: offer 127.0.0.1 candidates, and do not
		// hide host addresses behind mDNS names.
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	// Start the browser on this context: the first Run's context owns the
	// browser, and the callers' per-step timeouts must not close it.
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// TestBrowsersChat: two Chromium browsers, each on the demo page of a
// different peer, chat both ways through the overlay.
func TestBrowsersChat(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	_, servers := loopbackNet(t, 2, nil)
	a, b := browser(t), browser(t)
	room := "test/chat"
	open := func(ctx context.Context, url string) {
		t.Helper()
		tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		err := chromedp.Run(tctx,
			chromedp.Navigate(url+"/?room="+room),
			chromedp.WaitVisible(`#state[data-state="open"]`, chromedp.ByQuery),
		)
		if err != nil {
			var state, errText string
			chromedp.Run(ctx, chromedp.Text("#state", &state, chromedp.ByID), chromedp.Text("#error", &errText, chromedp.ByID))
			t.Fatalf("open %s: %v (state %q, error %q)", url, err, state, errText)
		}
	}
	open(a, servers[0].URL())
	open(b, servers[1].URL())

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
