package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// event is one Server-Sent Event with its type and id.
type event struct{ typ, id, data string }

// subscribeFrom opens GET /v1/topics/{topic} with Last-Event-ID lastID
// (none if empty) and returns its events, once the node has subscribed.
func subscribeFrom(t *testing.T, base, topic, lastID string) <-chan event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/v1/topics/"+topic, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("subscribe %s: %s", base, resp.Status)
	}
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || line != ": subscribed\n" {
		t.Fatalf("%s: subscribe: first line %q, %v", base, line, err)
	}
	out := make(chan event, 1000)
	go func() {
		defer resp.Body.Close()
		var e event
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			k, v, _ := strings.Cut(strings.TrimRight(line, "\n"), ": ")
			switch k {
			case "event":
				e.typ = v
			case "id":
				e.id = v
			case "data":
				e.data = v
			case "":
				if e.typ != "" {
					out <- e
				}
				e = event{}
			}
		}
	}()
	return out
}

// startBootstrap builds the binaries, starts a bootstrap node and returns
// the peer binary, the node and its TCP address.
func startBootstrap(t *testing.T) (peerBin string, boot *proc, tcpAddr string) {
	t.Helper()
	peerBin, bootBin := binaries(t)
	boot = start(t, "bootstrap", bootBin, append([]string{"--data-dir", t.TempDir()}, loopback...)...)
	for _, a := range boot.info.Addrs {
		if strings.Contains(a, "/tcp/") {
			tcpAddr = a
		}
	}
	return peerBin, boot, tcpAddr
}

// nextEvents reads n events, or fails after 30 s.
func nextEvents(t *testing.T, who string, c <-chan event, n int) []event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	var out []event
	for len(out) < n {
		select {
		case e := <-c:
			out = append(out, e)
		case <-deadline:
			t.Fatalf("%s: %d of %d events within 30 s: %v", who, len(out), n, out)
		}
	}
	return out
}

func expectMessages(t *testing.T, who string, es []event, from int) {
	t.Helper()
	for i, e := range es {
		if want := fmt.Sprintf("m%d", from+i); e.typ != "message" || e.data != want {
			t.Fatalf("%s: event %d is %s %q, want message %q", who, i, e.typ, e.data, want)
		}
	}
}

// TestSSEResumeAcrossPeers: an SSE client reading from peer A, which is
// killed, reconnects to peer B with the Last-Event-ID it had, as
// EventSource does, and gets exactly the messages published meanwhile,
// in order and once each, then the live ones.
func TestSSEResumeAcrossPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	peerBin, boot, tcpAddr := startBootstrap(t)
	args := func(dir string) []string {
		return append([]string{"--data-dir", dir, "--mode", "server", "--bootstrap", tcpAddr}, loopback...)
	}
	bDir := t.TempDir()
	var peers []*proc
	for _, name := range []string{"a", "b", "publisher"} {
		dir := t.TempDir()
		if name == "b" {
			dir = bDir
		}
		p := start(t, name, peerBin, args(dir)...)
		p.waitLog("joined overlay", 30*time.Second)
		peers = append(peers, p)
	}
	a, b, pub := peers[0], peers[1], peers[2]
	client := subscribeFrom(t, a.info.HTTP, "resume", "")
	// Other clients follow the topic on b, so b keeps its window, and on
	// the publisher.
	other := subscribeFrom(t, b.info.HTTP, "resume", "")
	subscribeFrom(t, pub.info.HTTP, "resume", "")
	waitTopicPeers(t, pub.info.HTTP, "resume", 2)
	waitTopicPeers(t, a.info.HTTP, "resume", 1)
	waitTopicPeers(t, b.info.HTTP, "resume", 1)
	for i := range 10 {
		if resp := publish(t, pub.info.HTTP, "resume", fmt.Sprintf("m%d", i)); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("publish: %s", resp.Status)
		}
	}
	got := nextEvents(t, "client on a", client, 10)
	expectMessages(t, "client on a", got, 0)
	lastID := got[9].id

	a.kill()
	for i := 10; i < 20; i++ {
		if resp := publish(t, pub.info.HTTP, "resume", fmt.Sprintf("m%d", i)); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("publish: %s", resp.Status)
		}
	}
	expectMessages(t, "other client on b", nextEvents(t, "other client on b", other, 20), 0)

	resumed := subscribeFrom(t, b.info.HTTP, "resume", lastID)
	expectMessages(t, "client resumed on b", nextEvents(t, "client resumed on b", resumed, 10), 10)
	if resp := publish(t, pub.info.HTTP, "resume", "m20"); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish: %s", resp.Status)
	}
	expectMessages(t, "client resumed on b", nextEvents(t, "client resumed on b", resumed, 1), 20)
	select {
	case e := <-resumed:
		t.Fatalf("client resumed on b: extra event %v", e)
	default:
	}

	// b restarts with nothing in memory: the client's next resume there
	// is served from the window b fetches from the publisher's peer over
	// /immense/history/1.0.0.
	b.stop()
	b = start(t, "b-restarted", peerBin, args(bDir)...)
	b.waitLog("joined overlay", 30*time.Second)
	again := subscribeFrom(t, b.info.HTTP, "resume", lastID)
	expectMessages(t, "client resumed on restarted b", nextEvents(t, "client resumed on restarted b", again, 11), 10)
	for _, p := range []*proc{b, pub, boot} {
		p.stop()
	}
}

// TestPresenceProcesses: two peers run with --presence; an SSE subscriber
// on each makes its peer a member, and GET /v1/topics/{topic}/presence on
// either lists both once the announcements have gone round; when one
// subscriber leaves, its peer goes from the other's list.
func TestPresenceProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	peerBin, boot, tcpAddr := startBootstrap(t)
	var peers []*proc
	for _, name := range []string{"a", "b"} {
		p := start(t, name, peerBin, append([]string{"--data-dir", t.TempDir(), "--mode", "server", "--bootstrap", tcpAddr, "--presence", "room*"}, loopback...)...)
		p.waitLog("joined overlay", 30*time.Second)
		peers = append(peers, p)
	}
	a, b := peers[0], peers[1]
	subscribeFrom(t, a.info.HTTP, "room1", "")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", b.info.HTTP+"/v1/topics/room1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	members := func(p *proc) map[string]bool {
		r, err := http.Get(p.info.HTTP + "/v1/topics/room1/presence")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		var body struct {
			Count   int `json:"count"`
			Members []struct {
				ID, Peer string
			} `json:"members"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Fatalf("%s: presence: %v", p.name, err)
		}
		out := map[string]bool{}
		for _, m := range body.Members {
			out[m.Peer] = true
		}
		return out
	}
	await := func(who *proc, want ...string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second) // discovery, meshes, then 5 s announcements
		for {
			got := members(who)
			ok := len(got) == len(want)
			for _, w := range want {
				ok = ok && got[w]
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s lists %v, want %v", who.name, got, want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	await(a, a.info.PeerID, b.info.PeerID)
	await(b, a.info.PeerID, b.info.PeerID)
	cancel() // b's subscriber leaves
	await(a, a.info.PeerID)
	for _, p := range []*proc{a, b, boot} {
		p.stop()
	}
}
