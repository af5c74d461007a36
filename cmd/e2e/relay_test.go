package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/immense-p2p/immense/webrtc"
)

// TestBrowserRelaysProcess: a real peer process run with --browser-relays
// feeds six Go clients acting as browsers (two willing to relay) over
// WebRTC; beyond its direct budget of two it attaches the others to the
// relays, which /v1/status shows; messages published over HTTP reach
// every client in order, and when a relay closes its children move and
// lose nothing, then go under the other relay.
func TestBrowserRelaysProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	const topic = "chat/room"
	peerBin, _ := binaries(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "app.key")
	if out, err := exec.Command(peerBin, "keygen", "--out", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("peer keygen: %v\n%s", err, out)
	}
	out, err := exec.Command(peerBin, "token", "--app-key", keyFile, "--sub", "fans", "--read", "chat/*").Output()
	if err != nil {
		t.Fatalf("peer token: %v", err)
	}
	token := strings.TrimSpace(string(out))
	p := start(t, "peer", peerBin, append([]string{"--data-dir", filepath.Join(dir, "data"), "--app-key", keyFile,
		"--browser-relays", "--browser-relay-direct-budget", "2", "--browser-relay-min-uptime", "0s"}, loopback...)...)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dial := func(opts ...webrtc.ClientOption) *webrtc.Client {
		t.Helper()
		c, err := webrtc.Dial(ctx, p.info.HTTP+webrtc.OfferPath, token, append(opts, webrtc.WithLoopbackOnly())...)
		if err != nil {
			t.Fatalf("dial: %v\n%s", err, p.dump())
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Subscribe(ctx, topic); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		return c
	}
	relayOpts := webrtc.WithRelay(webrtc.RelayOptions{MaxChildren: 4, Upload: 1 << 20})
	relays := []*webrtc.Client{dial(relayOpts), dial(relayOpts)}
	var plain []*webrtc.Client
	for range 4 {
		plain = append(plain, dial())
	}
	all := append(append([]*webrtc.Client{}, relays...), plain...)

	st := waitRelayStatus(t, p, topic, func(st relayStatus) bool { return st.ViaRelays == 4 && st.Direct == 2 })
	t.Logf("relayed: %+v", st)
	publishAll := func(from, n int) {
		for i := from; i < from+n; i++ {
			if resp := publish(t, p.info.HTTP, topic, fmt.Sprintf("m%03d", i)); resp.StatusCode != http.StatusAccepted {
				t.Fatalf("publish: %s", resp.Status)
			}
		}
	}
	receiveAll := func(clients []*webrtc.Client, from, n int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, len(clients))
		for i, c := range clients {
			wg.Go(func() {
				for want := from; want < from+n; want++ {
					select {
					case m := <-c.Messages():
						if got := string(m.Data); got != fmt.Sprintf("m%03d", want) {
							errs <- fmt.Errorf("client %d: got %q, want m%03d", i, got, want)
							return
						}
					case <-ctx.Done():
						errs <- fmt.Errorf("client %d: m%03d never came", i, want)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	publishAll(0, 20)
	receiveAll(all, 0, 20)
	var relayed int64
	for _, r := range relays {
		relayed += r.RelayedBytes()
	}
	if relayed == 0 {
		t.Error("the relays forwarded nothing")
	}

	relays[0].Close()
	publishAll(20, 20) // while its children move
	receiveAll(append([]*webrtc.Client{relays[1]}, plain...), 20, 20)
	// The orphans went back to the peer; within a few rounds the tree
	// forms again under the relay left.
	st = waitRelayStatus(t, p, topic, func(st relayStatus) bool { return st.Direct == 2 && st.ViaRelays == 3 })
	t.Logf("after the relay left: %+v", st)
	publishAll(40, 10)
	receiveAll(append([]*webrtc.Client{relays[1]}, plain...), 40, 10)
}

// relayStatus is one topic of /v1/status's browser_relays.
type relayStatus struct {
	Topic       string `json:"topic"`
	Direct      int    `json:"direct"`
	ViaRelays   int    `json:"via_relays"`
	Relays      int    `json:"relays"`
	MaxDepth    int    `json:"max_depth"`
	Attachments int    `json:"attachments"`
}

// waitRelayStatus polls the peer's /v1/status until topic's relay status
// satisfies ok.
func waitRelayStatus(t *testing.T, p *proc, topic string, ok func(relayStatus) bool) relayStatus {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last []relayStatus
	for time.Now().Before(deadline) {
		resp, err := http.Get(p.info.HTTP + "/v1/status")
		if err != nil {
			t.Fatal(err)
		}
		var s struct {
			BrowserRelays []relayStatus `json:"browser_relays"`
		}
		err = json.NewDecoder(resp.Body).Decode(&s)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		last = s.BrowserRelays
		for _, st := range last {
			if st.Topic == topic && ok(st) {
				return st
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("browser_relays never as wanted: %+v\n%s", last, p.dump())
	return relayStatus{}
}
