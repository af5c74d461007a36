package node

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/immense-p2p/immense/webrtc"
)

// TestBrowserFanout: 200 data channel clients (Go, pion) on one peer all
// receive, in order, every one of 100 messages published on another peer,
// while one more client that never reads is dropped or throttled without
// holding the others back.
func TestBrowserFanout(t *testing.T) {
	if testing.Short() {
		t.Skip("200 WebRTC sessions")
	}
	const (
		clients  = 200
		messages = 100
		size     = 2 << 10
		rate     = 100 // messages per second, as a busy topic would carry
	)
	// Default queues (1024 messages, 1 MiB per session): a healthy client
	// never loses a message to a burst. The stalled client fills its SCTP
	// window (8 KiB below) and the server's send buffer, then makes no
	// progress: after StallTimeout the peer disconnects it.
	// 8 s: long enough that a healthy client on a loaded test machine
	// (whose reading goroutine may not run for a second or two) is never
	// taken for a stalled one.
	peers, servers := loopbackNet(t, 2, func(c *Config) {
		c.Browsers.StallTimeout = 8 * time.Second
	})
	pub, sub := peers[0], peers[1]
	offer := servers[1].URL() + "/v1/webrtc/offer"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	dial := func(opts ...webrtc.ClientOption) *webrtc.Client {
		c, err := webrtc.Dial(ctx, offer, "", append(opts, webrtc.WithLoopbackOnly())...)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Subscribe(ctx, "load"); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		return c
	}
	// The stalled client: a tiny receive window and message buffer, and
	// nobody reading it.
	dial(webrtc.WithMessageBuffer(1), webrtc.WithReceiveBuffer(8<<10))
	cs := make([]*webrtc.Client, clients)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16) // DTLS handshakes are CPU-bound
	for i := range cs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cs[i] = dial()
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// The publishing peer must know the subscribing peer before it sends.
	if err := pub.Publish(ctx, "load", []byte("warm-up")); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if m := <-c.Messages(); string(m.Data) != "warm-up" {
			t.Fatalf("first message %q", m.Data)
		}
	}
	payload := func(i int) []byte {
		b := make([]byte, size)
		copy(b, strconv.Itoa(i)+":")
		return b
	}
	errs := make(chan error, clients)
	for ci, c := range cs {
		go func() {
			for i := range messages {
				select {
				case m, ok := <-c.Messages():
					if !ok {
						errs <- fmt.Errorf("client %d: closed after %d messages: %v", ci, i, c.Err())
						return
					}
					want := strconv.Itoa(i) + ":"
					if string(m.Data[:len(want)]) != want || m.From != pub.ID().String() {
						got := []string{string(m.Data[:4])}
						for len(got) < 6 {
							select {
							case m2 := <-c.Messages():
								got = append(got, string(m2.Data[:4]))
							case <-time.After(2 * time.Second):
								got = append(got, "timeout")
							}
						}
						errs <- fmt.Errorf("client %d: message %d is %q from %s; next: %q", ci, i, m.Data[:8], m.From, got)
						return
					}
				case <-ctx.Done():
					errs <- fmt.Errorf("client %d: got %d of %d messages", ci, i, messages)
					return
				}
			}
			errs <- nil
		}()
	}
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	for i := range messages {
		<-tick.C
		if err := pub.Publish(ctx, "load", payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	for range cs {
		if err := <-errs; err != nil {
			time.Sleep(3 * time.Second)
			t.Fatalf("%v (overlay delivered %v messages to the subscribing peer; bridge dropped %v)", err,
				metricSum(t, sub, "immense_overlay_messages_received_total"), metricSum(t, sub, "immense_webrtc_messages_dropped_total"))
		}
	}
	// The healthy clients are done. The stalled one has absorbed what fits
	// in its client-side buffers; keep publishing until the peer, seeing
	// its data channel back up, drops messages for it or disconnects it.
	slowCloses := func() float64 {
		n := 0.0
		mfs, _ := sub.Registry().Gather()
		for _, mf := range mfs {
			if mf.GetName() != "immense_webrtc_sessions_closed_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" && (l.GetValue() == "slow" || l.GetValue() == "stalled") {
						n += m.GetCounter().GetValue()
					}
				}
			}
		}
		return n
	}
	var dropped, slow float64
	for i := 0; ; i++ {
		dropped, slow = metricSum(t, sub, "immense_webrtc_messages_dropped_total"), slowCloses()
		if dropped > 0 || slow > 0 {
			break
		}
		if i == 5000 {
			t.Fatalf("the stalled client was neither dropped from nor disconnected after %d more messages", i)
		}
		<-tick.C
		if err := pub.Publish(ctx, "load", payload(messages+i)); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("stalled client: %v messages dropped, %v slow/stalled closes", dropped, slow)
}
