package webrtc

import (
	"bytes"
	"testing"
)

// TestLargePublish: a browser's publish larger than the session's 2 KiB
// read buffer (up to MaxFrameSize) arrives whole, and the session goes on.
func TestLargePublish(t *testing.T) {
	e := newTestEnv(t, nil)
	ctx := testContext(t)
	c := e.dial(ctx, e.token([]string{"a"}, []string{"a"}))
	if err := c.Subscribe(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{100, readBufferSize + 1, 40 << 10, e.srv.cfg.MaxFrameSize - 64} {
		p := bytes.Repeat([]byte{byte(size)}, size)
		if err := c.Publish(ctx, "a", p); err != nil {
			t.Fatalf("publish of %d bytes: %v", size, err)
		}
		if m := <-c.Messages(); !bytes.Equal(m.Data, p) {
			t.Fatalf("publish of %d bytes: got %d bytes back", size, len(m.Data))
		}
	}
}
