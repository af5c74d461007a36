package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// loopback keeps a peer on 127.0.0.1 (no UPnP discovery on the host network).
var loopback = []string{"--listen", "/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/udp/0/quic-v1", "--http", "127.0.0.1:0", "--nat-portmap=false"}

// TestProcesses runs the overlay as real processes on 127.0.0.1: a bootstrap
// node and four peers, one of which starts before the bootstrap node does.
// A message published over HTTP on one peer reaches the other three over
// SSE; a restarted peer keeps its peer ID and rejoins.
func TestProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	peerBin, bootBin := binaries(t)
	bootDir := t.TempDir()

	// Start the bootstrap node once to learn its identity and port, then
	// stop it: the first peer will start while it is down.
	boot := start(t, "bootstrap", bootBin, append([]string{"--data-dir", bootDir}, loopback...)...)
	bootAddrs := boot.info.Addrs
	boot.stop()
	tcpAddr := ""
	for _, a := range bootAddrs {
		if strings.Contains(a, "/tcp/") {
			tcpAddr = a
		}
	}
	listen := strings.TrimSuffix(tcpAddr, "/p2p/"+boot.info.PeerID)

	peerArgs := func(dir string) []string {
		return append([]string{"--data-dir", dir, "--mode", "server", "--bootstrap", tcpAddr}, loopback...)
	}
	earlyDir := t.TempDir()
	early := start(t, "early-peer", peerBin, peerArgs(earlyDir)...)

	bootID := boot.info.PeerID
	boot = start(t, "bootstrap", bootBin, "--data-dir", bootDir, "--listen", listen, "--http", "127.0.0.1:0")
	if boot.info.PeerID != bootID {
		t.Fatalf("bootstrap identity changed across restart: %s -> %s", bootID, boot.info.PeerID)
	}
	early.waitLog("joined overlay", 90*time.Second) // backoff is at most 1 min

	peers := []*proc{early}
	for i := 1; i <= 3; i++ {
		p := start(t, fmt.Sprintf("peer%d", i), peerBin, peerArgs(t.TempDir())...)
		p.waitLog("joined overlay", 30*time.Second)
		peers = append(peers, p)
	}

	// Everyone follows "chat"; peer1 publishes.
	streams := make([]*sse, len(peers))
	for i, p := range peers {
		streams[i] = subscribe(t, p.info.HTTP, "chat")
	}
	waitTopicPeers(t, peers[1].info.HTTP, "chat", len(peers)-1)
	if resp := publish(t, peers[1].info.HTTP, "chat", "hello from peer1\nsecond line"); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish: %s", resp.Status)
	}
	for i, s := range streams {
		s.expect(t, peers[i].name, "hello from peer1\nsecond line")
	}

	// Restart the early peer: same identity, rejoins, receives again.
	oldID := early.info.PeerID
	streams[0].cancel()
	early.stop()
	early = start(t, "early-peer-restarted", peerBin, peerArgs(earlyDir)...)
	if early.info.PeerID != oldID {
		t.Fatalf("peer id changed across restart: %s -> %s", oldID, early.info.PeerID)
	}
	early.waitLog("joined overlay", 30*time.Second)
	s := subscribe(t, early.info.HTTP, "chat")
	waitTopicPeers(t, peers[2].info.HTTP, "chat", len(peers)-1)
	if resp := publish(t, peers[2].info.HTTP, "chat", "welcome back"); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish: %s", resp.Status)
	}
	// The restarted peer may first be sent the earlier message from the
	// others' gossip history (their mesh refuses its peer ID for a while
	// after the old one left, so it learns through gossip).
	s.expect(t, early.name, "welcome back", "hello from peer1\nsecond line")
	streams[1].expect(t, peers[1].name, "welcome back")

	for _, p := range append(peers[1:], early, boot) {
		p.stop()
	}
}

// TestBadInput checks that bad requests and flags get clear errors and leave
// the node running.
func TestBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	peerBin, _ := binaries(t)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bootstrap", "not-a-multiaddr"}, "bootstrap address"},
		{[]string{"--bootstrap", "/ip4/127.0.0.1/tcp/1"}, "must end in /p2p/"},
		{[]string{"--listen", "/ip4/999.0.0.1/tcp/0"}, "ListenAddrs"},
		{[]string{"--mode", "sideways"}, "unknown DHT mode"},
		{[]string{"--max-memory", "lots"}, "want a number"},
		{[]string{"--log-format", "xml"}, "--log-format"},
		{[]string{"--max-upload", "1KiB/s"}, "MaxUpload"},
	} {
		cmd := exec.Command(peerBin, append([]string{"--data-dir", t.TempDir(), "--http", ""}, tc.args...)...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("peer %v: succeeded, want an error", tc.args)
			continue
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("peer %v: output %q does not mention %q", tc.args, out, tc.want)
		}
	}

	p := start(t, "peer", peerBin, append([]string{"--data-dir", t.TempDir()}, loopback...)...)
	base := p.info.HTTP
	for _, tc := range []struct {
		topic, body string
		code        int
	}{
		{"chat", "", http.StatusBadRequest},
		{"chat", strings.Repeat("x", 1<<20+1), http.StatusRequestEntityTooLarge},
		{"bad%20topic", "x", http.StatusBadRequest},
		{"emoji%F0%9F%98%80", "x", http.StatusBadRequest},
		{"semi;colon", "x", http.StatusBadRequest},
		{strings.Repeat("a", 129), "x", http.StatusBadRequest},
		{"ok/nested.topic-1", "x", http.StatusAccepted},
	} {
		resp := publish(t, base, tc.topic, tc.body)
		if resp.StatusCode != tc.code {
			t.Errorf("POST %q (%d bytes): %s, want %d", tc.topic, len(tc.body), resp.Status, tc.code)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("POST %q: content type %q, want JSON", tc.topic, ct)
		}
	}
	resp, err := http.Get(base + "/v1/topics/bad%20topic")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET bad topic: %s", resp.Status)
	}
	if s := getStatus(t, base); s.PeerID != p.info.PeerID {
		t.Fatalf("status after bad input: %+v", s)
	}
	p.stop()
}

// TestLonePeer runs the one-laptop deployment: one peer process with no
// bootstrap and no other peer. Each HTTP publish reaches the local SSE
// subscriber before the next is sent. Publish used to wait 2 s per call for
// a remote subscriber (40 s for these 20). The bound, 1 s a message, is
// half that wait and far above a loopback round trip on a loaded machine.
func TestLonePeer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	peerBin, _ := binaries(t)
	args := append([]string{"--data-dir", t.TempDir()}, loopback...)
	p := start(t, "lone-peer", peerBin, args...)
	s := subscribe(t, p.info.HTTP, "demo/chat")
	began := time.Now()
	const n = 20
	for i := range n {
		body := fmt.Sprintf("message %d", i)
		if resp := publish(t, p.info.HTTP, "demo/chat", body); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("publish %d: %s", i, resp.Status)
		}
		s.expect(t, p.name, body)
	}
	if d := time.Since(began); d > n*time.Second {
		t.Errorf("%d publish-and-deliver round trips on a lone peer took %v (the 2 s discovery wait is back?)", n, d)
	}

	// State on a peer alone: it holds every shard itself (target_met
	// false), and reads, overwrites and deletes work.
	stateURL := p.info.HTTP + "/v1/state/notes"
	for _, v := range []string{"first", "second"} {
		req, _ := http.NewRequest(http.MethodPut, stateURL, strings.NewReader(v))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"target_met":false`) {
			t.Fatalf("PUT %q on a lone peer: %s %s", v, resp.Status, body)
		}
		resp, err = http.Get(stateURL)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(got) != v {
			t.Fatalf("GET after PUT %q on a lone peer: %s %q", v, resp.Status, got)
		}
	}
	p.stop()

	// Restarted, the peer's DHT is empty: the value is read from the
	// manifest record the peer kept, which it puts back.
	p = start(t, "lone-peer-restarted", peerBin, args...)
	resp, err := http.Get(p.info.HTTP + "/v1/state/notes")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(got) != "second" {
		t.Fatalf("GET after a lone peer's restart: %s %q, want \"second\"", resp.Status, got)
	}
	p.stop()
}
