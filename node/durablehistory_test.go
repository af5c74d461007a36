package node

import (
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/immense-p2p/immense/erasure"
)

// durableNet starts n app peers with state, windows of 10 messages and
// durable history for the topic "room".
func durableNet(t *testing.T, n int) *simNet {
	t.Helper()
	keyFile := seededAppKey(t, "durable")
	net := newStateNet(t, n, func(i int, c *Config) {
		c.AppKeyFile = keyFile
		sc := erasure.DevnetConfig()
		sc.DataShards, sc.MinParity, sc.MaxShards = 2, 1, 3
		sc.GCInterval = 0
		sc.Scheduler.Seed = uint64(i + 1)
		c.State = &sc
		c.Overlay.History.Default.Messages = 10
		c.DurableHistory = DurableHistoryConfig{Topics: []string{"room"}, FlushInterval: time.Second}
	})
	for _, nd := range net.nodes {
		<-nd.n.Joined()
	}
	time.Sleep(10 * time.Second)
	return net
}

// receive reads want messages from ch within a minute of virtual time.
func receive(t *testing.T, ch <-chan *Message, want int) []*Message {
	t.Helper()
	var out []*Message
	timeout := time.After(time.Minute)
	for range want {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatalf("subscription ended after %d messages", len(out))
			}
			out = append(out, m)
		case <-timeout:
			t.Fatalf("%d messages within a minute, want %d: %v", len(out), want, payloads(out))
		}
	}
	return out
}

func payloads(msgs []*Message) []string {
	var out []string
	for _, m := range msgs {
		if m.Gap {
			out = append(out, "gap")
		} else {
			out = append(out, string(m.Data))
		}
	}
	return out
}

// expectRun checks that msgs are the messages with payloads from..to-1,
// in order, none a gap.
func expectRun(t *testing.T, msgs []*Message, from, to int) {
	t.Helper()
	if len(msgs) != to-from {
		t.Fatalf("%d messages, want %d", len(msgs), to-from)
	}
	for i, m := range msgs {
		if m.Gap || string(m.Data) != strconv.Itoa(from+i) {
			t.Logf("got %v", payloads(msgs))
			t.Fatalf("message %d: %q (gap %v), want %d", i, m.Data, m.Gap, from+i)
		}
	}
}

// TestDurableHistoryResume: a subscriber that resumes, at another peer,
// from a position older than the window of 10 gets exactly the messages
// it missed from the durable history, in order, each once, then the live
// ones; on a topic without durable history the same resume is a gap.
func TestDurableHistoryResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := durableNet(t, 4)
		pub, a, b := net.nodes[0].n, net.nodes[1].n, net.nodes[2].n
		ctx := t.Context()
		room, err := a.Subscribe(ctx, "room")
		if err != nil {
			t.Fatal(err)
		}
		plain, err := a.Subscribe(ctx, "plain")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		for i := range 30 {
			for _, topic := range []string{"room", "plain"} {
				if err := pub.Publish(ctx, topic, []byte(strconv.Itoa(i))); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(300 * time.Millisecond)
		}
		t.Log("published")
		seen := receive(t, room, 30)
		expectRun(t, seen, 0, 30)
		seenPlain := receive(t, plain, 30)
		time.Sleep(15 * time.Second) // a stores its segments

		resumed, err := b.Subscribe(ctx, "room", Since(seen[5].Position))
		if err != nil {
			t.Fatal(err)
		}
		t.Log("resuming")
		expectRun(t, receive(t, resumed, 24), 6, 30)
		if err := pub.Publish(ctx, "room", []byte("30")); err != nil {
			t.Fatal(err)
		}
		expectRun(t, receive(t, resumed, 1), 30, 31)

		gapped, err := b.Subscribe(ctx, "plain", Since(seenPlain[5].Position))
		if err != nil {
			t.Fatal(err)
		}
		if m := <-gapped; !m.Gap {
			t.Fatalf("resume of plain beyond its window: %q, want a gap", m.Data)
		}
		expectRun(t, receive(t, gapped, 10), 20, 30)

		time.Sleep(5 * time.Second)
		select {
		case m := <-resumed:
			t.Fatalf("extra message %q", m.Data)
		default:
		}
	})
}
