//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/immense-p2p/immense/internal/browsertest"
)

// TestNATBrowsers: in the NAT lab, one Chromium page on the internet (the
// public server's namespace) runs the project's JS client twice with the
// same code: transport "auto" picks a WebSocket for the public peer, and
// WebRTC with relayed signaling (through the public peer) for a volunteer
// behind its home NAT, which it learns from the public peer's list of
// peers (listed as private). Both receive a message published on another
// NAT'd peer; the volunteer's browser publishes and the public peer's
// browser receives it; a bad token is refused the same way on both (a
// SignalingError 401 that closes the client); and when both clients are
// cut off while far more than their queues is published, both peers apply
// the same slow-consumer policy (drop-oldest, reported to the client).
func TestNATBrowsers(t *testing.T) {
	lab := newNATLab(t, 2)
	peerBin, _ := binaries(t)
	keyFile := filepath.Join(t.TempDir(), "app.key")
	if out, err := exec.Command(peerBin, "keygen", "--out", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("peer keygen: %v: %s", err, out)
	}
	out, err := exec.Command(peerBin, "token", "--app-key", keyFile, "--sub", "carol", "--read", "lab/*", "--write", "lab/*").Output()
	if err != nil {
		t.Fatalf("peer token: %v", err)
	}
	token := strings.TrimSpace(string(out))
	nn := startNATNet(t, lab, []string{"--app-key", keyFile}, func(int) []string { return []string{"--volunteer", "--app-key", keyFile} })
	nn.waitRelayed(t)
	pub, vol, other := nn.public, nn.homes[0], nn.homes[1]

	// Every peer follows the topic, so that the mesh is formed before the
	// browsers subscribe, and the volunteer is connected to the public peer
	// (a topic peer), which forwards only to peers it is connected to.
	const topic = "lab/news"
	subscribeNS(t, pub, topic)
	subscribeNS(t, vol, topic)
	otherSSE := subscribeNS(t, other, topic)
	waitTopicPeersNS(t, pub, topic, 2)
	waitTopicPeersNS(t, vol, topic, 1)
	waitTopicPeersNS(t, other, topic, 1)
	waitSignalPeer(t, pub, vol.info.PeerID, "private")

	ctx := labBrowser(t, lab.public)
	// A same-origin page with no script of its own: the peer's client
	// types, served as text.
	run := func(what string, timeout time.Duration, actions ...chromedp.Action) {
		t.Helper()
		tctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := chromedp.Run(tctx, actions...); err != nil {
			var log string
			chromedp.Run(ctx, chromedp.Evaluate(`JSON.stringify(window.log ?? null)`, &log))
			t.Fatalf("%s: %v\npage log: %s\npublic peer:\n%s\nvolunteer:\n%s", what, err, log, pub.dump(), vol.dump())
		}
	}
	awaitJS := func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }
	run("open the page", 30*time.Second, chromedp.Navigate(pub.info.HTTP+"/immense.d.ts"))

	var opened struct {
		WS, RTC struct {
			Transport, Signaling string
			Peer                 *string
		}
		Reachability string
	}
	setup := fmt.Sprintf(`(async () => {
  const m = await import("/client.js");
  window.m = m;
  window.log = [];
  window.got = {ws: [], rtc: []};
  const track = (name, c) => {
    for (const ev of ["open", "disconnect", "close", "error"]) {
      c.addEventListener(ev, (e) => log.push([name, ev, e.detail?.error ? String(e.detail.error) : e.detail]));
    }
    return c;
  };
  const peers = await m.discoverPeers(location.origin);
  const vol = peers.find((p) => p.peer === %q);
  if (!vol) throw new Error("volunteer not listed: " + JSON.stringify(peers));
  window.ws = track("ws", m.connect(location.origin, {token: %q}));
  window.rtc = track("rtc", m.connect(vol, {token: %q}));
  await Promise.all([ws.ready, rtc.ready]);
  await ws.subscribe(%q, (msg) => got.ws.push(msg.text));
  await rtc.subscribe(%q, (msg) => got.rtc.push(msg.text));
  return {ws: {transport: ws.transport, signaling: ws.signaling, peer: ws.peer},
          rtc: {transport: rtc.transport, signaling: rtc.signaling, peer: rtc.peer},
          reachability: vol.reachability};
})()`, vol.info.PeerID, token, token, topic, topic)
	run("connect both clients", 90*time.Second, chromedp.Evaluate(setup, &opened, awaitJS))
	if opened.WS.Transport != "websocket" || opened.WS.Signaling != "direct" || opened.WS.Peer != nil {
		t.Errorf("public peer's client: %+v, want websocket, direct", opened.WS)
	}
	if opened.RTC.Transport != "webrtc" || opened.RTC.Signaling != "relayed" || opened.RTC.Peer == nil || *opened.RTC.Peer != vol.info.PeerID {
		t.Errorf("volunteer's client: %+v, want webrtc, relayed to %s", opened.RTC, vol.info.PeerID)
	}
	if opened.Reachability != "private" {
		t.Errorf("the volunteer is listed as %q, want private", opened.Reachability)
	}
	// The volunteer's session is its own: the volunteer admitted it, and
	// ICE ran browser <-> volunteer (its router holds the flow that the
	// volunteer's checks opened towards the browser).
	if n := metricSum(t, vol, "immense_webrtc_relayed_offers_total", `result="answered"`); n < 1 {
		t.Errorf("the volunteer counted %v answered relayed offers", n)
	}
	var ice []string
	for _, f := range lab.conntrack(lab.homes[0].router, "udp", "src="+lab.homes[0].lanIP, "dst="+publicIP) {
		if !strings.Contains(f, "dport=4001 ") { // not libp2p's QUIC to the public peer
			ice = append(ice, f)
		}
	}
	if len(ice) == 0 {
		t.Errorf("the volunteer's router has no UDP flow to the browser at %s: ICE did not run browser <-> volunteer", publicIP)
	}

	// Published on another NAT'd peer: both browsers get it.
	publishNS(t, other, topic, "from home2")
	waitPage := func(what, cond string) {
		t.Helper()
		var ok bool
		run(what, 30*time.Second, chromedp.Poll(cond, &ok))
	}
	waitPage("both clients receive home2's message", `got.ws.includes("from home2") && got.rtc.includes("from home2")`)
	// The volunteer's browser publishes: it reaches the public peer's
	// browser and an SSE subscriber on the other home.
	var done bool
	run("publish from the volunteer's browser", 30*time.Second, chromedp.Evaluate(`rtc.publish("lab/news", "from the volunteer's browser").then(() => true)`, &done, awaitJS))
	waitPage("the public peer's client receives it", `got.ws.includes("from the volunteer's browser")`)
	expectNS(t, other, otherSSE, "from home2")
	expectNS(t, other, otherSSE, "from the volunteer's browser")

	// A bad token: refused by each peer the same way, and the client
	// closes (a fixed token that was refused would be refused again).
	var refused map[string]string
	bad := fmt.Sprintf(`(async () => {
  const vol = {url: location.origin, peer: %q};
  const closed = (c) => new Promise((resolve) => c.addEventListener("close", (e) => resolve(e.detail.error), {once: true}));
  const a = m.connect(location.origin, {token: "not-a-token"});
  const b = m.connect(vol, {token: "not-a-token"});
  const [ea, eb] = await Promise.all([closed(a), closed(b)]);
  const show = (e) => e.name + " " + e.status;
  return {ws: show(ea), wsTransport: String(a.transport), rtc: show(eb)};
})()`, vol.info.PeerID)
	run("bad tokens", 60*time.Second, chromedp.Evaluate(bad, &refused, awaitJS))
	if refused["ws"] != "SignalingError 401" || refused["rtc"] != "SignalingError 401" {
		t.Errorf("bad token: public peer %q, volunteer %q; want SignalingError 401 from both", refused["ws"], refused["rtc"])
	}
	if n := metricSum(t, vol, "immense_webrtc_offers_total", `result="unauthorized"`); n < 1 {
		t.Errorf("the volunteer counted %v unauthorized offers: the token was not checked there", n)
	}

	// Backpressure: both clients stop reading (the network drops what
	// their peers send them), far more than a session's queue is
	// published, then the network comes back. Each peer applies the same
	// slow-consumer policy (drop-oldest): the client is told how many
	// messages were dropped (ERROR messages-dropped) and gets the newest.
	const flood, floodSize = 800, 16 << 10
	run("follow the flood topic", 30*time.Second, chromedp.Evaluate(`(async () => {
  window.dropped = {ws: 0, rtc: 0};
  window.flood = {ws: [], rtc: []};
  for (const [name, c] of [["ws", ws], ["rtc", rtc]]) {
    c.addEventListener("error", (e) => { if (e.detail.error.code === m.ErrorCode.MESSAGES_DROPPED) dropped[name]++; });
    await c.subscribe("lab/flood", (msg) => flood[name].push(msg.text.slice(0, 10)));
  }
  return true;
})()`, &done, awaitJS))
	waitTopicPeersNS(t, pub, "lab/flood", 1)
	publishNS(t, pub, "lab/flood", "warm-up")
	waitPage("both clients receive the warm-up", `flood.ws.includes("warm-up") && flood.rtc.includes("warm-up")`)
	// Cut off: what the public peer sends to Chromium's connections (not
	// to the test's, which publishes through the same port), and what the
	// volunteer sends from anything but its libp2p port (its ICE socket).
	_, httpPort, _ := net.SplitHostPort(strings.TrimPrefix(pub.info.HTTP, "http://"))
	ss := lab.must("ip", "netns", "exec", lab.public.name, "ss", "-tnpH", "state", "established", "( dport = :"+httpPort+" )")
	var browserPorts []string
	for _, l := range strings.Split(ss, "\n") {
		if f := strings.Fields(l); len(f) >= 4 && strings.Contains(l, `"chrom`) {
			if _, p, err := net.SplitHostPort(f[2]); err == nil {
				browserPorts = append(browserPorts, p)
			}
		}
	}
	if len(browserPorts) == 0 {
		t.Fatalf("no Chromium connection to the public peer's port %s:\n%s", httpPort, ss)
	}
	stall := filepath.Join(t.TempDir(), "stall.nft")
	rules := fmt.Sprintf(`table inet stall {
  chain out { type filter hook output priority 0; policy accept; tcp sport %s tcp dport { %s } drop; }
  chain in { type filter hook input priority 0; policy accept; ip saddr %s udp sport != 4001 drop; }
}
`, httpPort, strings.Join(browserPorts, ", "), lab.homes[0].wanIP)
	if err := os.WriteFile(stall, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	lab.must("ip", "netns", "exec", lab.public.name, "nft", "-f", stall)
	payload := strings.Repeat(".", floodSize)
	for i := range flood {
		publishNS(t, pub, "lab/flood", fmt.Sprintf("flood-%04d", i)+payload)
	}
	lab.must("ip", "netns", "exec", lab.public.name, "nft", "delete", "table", "inet", "stall")
	publishNS(t, pub, "lab/flood", "the end")
	waitPage("both clients catch up", `flood.ws.includes("the end") && flood.rtc.includes("the end")`)
	var result struct {
		Dropped  struct{ WS, RTC int }
		Received struct{ WS, RTC int }
	}
	run("read the outcome", 10*time.Second, chromedp.Evaluate(`({dropped, received: {ws: flood.ws.length, rtc: flood.rtc.length}})`, &result))
	t.Logf("of %d messages of %d KiB published while the clients were cut off: WebSocket client got %d and %d drop reports, WebRTC client got %d and %d drop reports",
		flood, floodSize>>10, result.Received.WS, result.Dropped.WS, result.Received.RTC, result.Dropped.RTC)
	if result.Dropped.WS == 0 || result.Dropped.RTC == 0 || result.Received.WS >= flood || result.Received.RTC >= flood {
		t.Errorf("backpressure differs from drop-oldest: %+v", result)
	}
	for _, n := range []*labNode{pub, vol} {
		if d := metricSum(t, n, "immense_webrtc_messages_dropped_total", `reason="queue_full"`); d == 0 {
			t.Errorf("%s dropped no message for its cut-off client", n.name)
		}
	}
}

// waitSignalPeer polls the node's list of peers for relayed signaling
// until id is listed with the given reachability (the list follows
// identify's address updates, which have no event a process outside the
// node can wait on).
func waitSignalPeer(t *testing.T, n *labNode, id, reachability string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := n.get(ctx, "/v1/webrtc/peers")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(b)
			var list struct {
				Peers []struct{ ID, Reachability string }
			}
			if json.Unmarshal(b, &list) == nil {
				for _, p := range list.Peers {
					if p.ID == id && p.Reachability == reachability {
						cancel()
						return
					}
				}
			}
		}
		cancel()
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s never listed %s as %s for relayed signaling; last list: %s", n.name, id, reachability, last)
}

// labBrowser starts a headless Chromium inside namespace ns (through a
// wrapper that runs it under ip netns exec) and returns its context. Its
// DevTools endpoint listens on the namespace's loopback; a proxy on the
// test's loopback, at the same port, forwards to it, so chromedp connects
// to the address Chromium reports.
func labBrowser(t *testing.T, ns netns) context.Context {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	var wg sync.WaitGroup
	pctx, stop := context.WithCancel(context.Background())
	t.Cleanup(func() {
		stop()
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				d, err := ns.dial(pctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
				if err != nil {
					return
				}
				defer d.Close()
				context.AfterFunc(pctx, func() { c.Close(); d.Close() })
				done := make(chan struct{}, 2)
				go func() { io.Copy(d, c); done <- struct{}{} }()
				go func() { io.Copy(c, d); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	wrapper := filepath.Join(t.TempDir(), "chromium-in-netns")
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s chromium \"$@\"\n", ns.name)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return browsertest.Start(t, context.Background(), chromedp.ExecPath(wrapper), chromedp.Flag("remote-debugging-port", strconv.Itoa(port)))
}
