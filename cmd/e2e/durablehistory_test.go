package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestDurableHistoryProcesses: app peers run with --durable-history; an
// SSE client that comes back with a Last-Event-ID older than the peers'
// windows (100 messages) gets exactly the messages it missed, from the
// durable history in the app's state, once each and in order, then the
// live ones, where it would otherwise get a gap.
func TestDurableHistoryProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	net := newStateNet(t)
	var ps []*proc
	for _, name := range []string{"a", "b", "publisher", "d"} {
		ps = append(ps, net.peer(name, t.TempDir(), anyPort, "--app-key", net.keyFile, "--durable-history", "log/*", "--handoff-timeout", "0"))
	}
	a, b, pub := ps[0], ps[1], ps[2]
	stateWaitConnected(t, pub, 4)
	const topic = "log/app"
	client := subscribeFrom(t, a.info.HTTP, topic, "")
	other := subscribeFrom(t, b.info.HTTP, topic, "")
	subscribeFrom(t, pub.info.HTTP, topic, "")
	waitTopicPeers(t, pub.info.HTTP, topic, 2)
	waitTopicPeers(t, a.info.HTTP, topic, 1)
	const total = 150
	for i := range total {
		if resp := publish(t, pub.info.HTTP, topic, fmt.Sprintf("m%d", i)); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("publish: %s", resp.Status)
		}
		// Publishing like a busy app, not a flood: the writers take the
		// windows' messages every 250 ms.
		time.Sleep(10 * time.Millisecond)
	}
	got := nextEvents(t, "client on a", client, total)
	expectMessages(t, "client on a", got, 0)
	expectMessages(t, "other client on b", nextEvents(t, "other client on b", other, total), 0)

	// The client comes back to b from m5, 45 messages before b's window.
	// Until the writers have stored their segments (every 5 s) that is a
	// gap; then it is the messages it missed.
	deadline := time.Now().Add(60 * time.Second)
	for {
		resumed := subscribeFrom(t, b.info.HTTP, topic, got[5].id)
		first := nextEvents(t, "client resumed on b", resumed, 1)
		if first[0].typ == "gap" {
			if time.Now().After(deadline) {
				t.Fatal("client resumed on b: still a gap after 60 s")
			}
			time.Sleep(time.Second)
			continue
		}
		rest := nextEvents(t, "client resumed on b", resumed, total-7)
		expectMessages(t, "client resumed on b", append(first, rest...), 6)
		if resp := publish(t, pub.info.HTTP, topic, fmt.Sprintf("m%d", total)); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("publish: %s", resp.Status)
		}
		expectMessages(t, "client resumed on b", nextEvents(t, "client resumed on b", resumed, 1), total)
		select {
		case e := <-resumed:
			t.Fatalf("client resumed on b: extra event %v", e)
		default:
		}
		break
	}
	for _, p := range append(ps, net.boot) {
		p.stop()
	}
}
