package webrtc

import (
	"testing"
	"time"
)

// TestFanoutIntervalPacesDataChannels: with a FanoutInterval, a data
// channel browser gets the first message of a quiet topic at once and the
// ones after it held for the interval (here an hour, so held until the
// fan-out's hold is full), then all of them in order; a WebSocket browser
// on the same topic gets every message at once.
func TestFanoutIntervalPacesDataChannels(t *testing.T) {
	const topic = "room"
	e, url := wsEnv(t, nil)
	// Longer than Config allows, so that nothing here depends on timing;
	// set before any topic's fan-out starts, which reads it once.
	e.srv.cfg.FanoutInterval = time.Hour
	e.srv.cfg.FanoutPacketRate = 0 // every round held the whole interval
	ctx := testContext(t)
	tok := e.token([]string{topic}, nil)
	dc := e.dial(ctx, tok)
	if err := dc.Subscribe(ctx, topic); err != nil {
		t.Fatal(err)
	}
	ws, err := wsDial(t, url, tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f := wsRequest(t, ws, frame{typ: frameSubscribe, req: 1, topic: topic}); f.typ != frameAck {
		t.Fatalf("subscribe answered %+v", f)
	}
	publish := func(seq int) {
		t.Helper()
		if err := e.bus.Publish(ctx, topic, seqPayload(seq, 50), "", nil); err != nil {
			t.Fatal(err)
		}
	}
	publish(0)
	if m := <-dc.Messages(); payloadSeq(m.Data) != 0 {
		t.Fatalf("data channel got seq %d first, want 0", payloadSeq(m.Data))
	}
	// Messages 1..maxDrain are held for the data channel, not for the
	// WebSocket.
	for seq := 1; seq <= maxDrain; seq++ {
		publish(seq)
	}
	for want := 0; want <= maxDrain; want++ {
		if m := wsNext(t, ws); m.typ != frameMessage || payloadSeq(m.payload) != want {
			t.Fatalf("WebSocket got %s seq %d, want message %d", m.typ, payloadSeq(m.payload), want)
		}
	}
	select {
	case m := <-dc.Messages():
		t.Fatalf("data channel got seq %d within the interval", payloadSeq(m.Data))
	default:
	}
	// One more than the hold takes: everything held goes out, in order.
	publish(maxDrain + 1)
	for want := 1; want <= maxDrain+1; want++ {
		select {
		case m := <-dc.Messages():
			if payloadSeq(m.Data) != want {
				t.Fatalf("data channel got seq %d, want %d", payloadSeq(m.Data), want)
			}
		case <-ctx.Done():
			t.Fatalf("data channel got %d of %d messages", want-1, maxDrain+1)
		}
	}
}
