package webrtc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

var testClients = flag.Int("webrtc.clients", 50, "data channel clients in TestFanOutInOrder (the acceptance figure is 200)")

// seqPayload is a test message: its sequence number, padded to size.
func seqPayload(seq, size int) []byte {
	b := make([]byte, max(size, 8))
	binary.BigEndian.PutUint64(b, uint64(seq))
	return b
}

func payloadSeq(b []byte) int {
	if len(b) < 8 {
		return -1
	}
	return int(binary.BigEndian.Uint64(b))
}

// TestFanOutInOrder: many clients on one server all receive every message
// published on the overlay, in order, through one overlay subscription.
func TestFanOutInOrder(t *testing.T) {
	const topic, messages = "room", 100
	n := *testClients
	e := newTestEnv(t, nil)
	ctx := testContext(t)
	tok := e.token([]string{topic}, []string{topic})
	clients := e.dialMany(ctx, n, tok)
	for i, c := range clients {
		if err := c.Subscribe(ctx, topic); err != nil {
			t.Fatalf("client %d: Subscribe: %v", i, err)
		}
	}
	if got := e.bus.subscribes.Load(); got != 1 {
		t.Fatalf("%d clients made %d overlay subscriptions, want 1", n, got)
	}

	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for want := range messages {
				select {
				case m := <-c.Messages():
					if got := payloadSeq(m.Data); got != want || m.Topic != topic || m.From != e.bus.from || m.Time.IsZero() {
						errs <- fmt.Errorf("client %d: message %d is seq %d topic %q from %q", i, want, got, m.Topic, m.From)
						return
					}
				case <-ctx.Done():
					errs <- fmt.Errorf("client %d: got %d of %d messages", i, want, messages)
					return
				}
			}
		}()
	}
	// Published as fast as the bus takes them, as a remote peer would.
	for seq := range messages {
		if err := e.bus.Publish(ctx, topic, seqPayload(seq, 100), "", nil); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	m := e.srv.metrics
	if d := value(t, m.dropped.WithLabelValues(dropQueueFull)); d != 0 {
		t.Errorf("%v messages dropped for fast clients", d)
	}
	if d := value(t, m.delivered); d != float64(n*messages) {
		t.Errorf("delivered counter %v, want %d", d, n*messages)
	}
	t.Logf("%d clients, %d messages: %v data channel sends", n, messages, value(t, m.sends))

	// A browser's publish reaches every browser, itself included.
	if err := clients[0].Publish(ctx, topic, seqPayload(messages, 10)); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		if m := <-c.Messages(); payloadSeq(m.Data) != messages {
			t.Fatalf("client %d: got seq %d after a client's publish", i, payloadSeq(m.Data))
		}
	}

	// The overlay subscription goes when the last browser leaves.
	for i, c := range clients {
		if value(t, m.topics) != 1 {
			t.Fatalf("bridged topic dropped with %d browsers left", n-i)
		}
		if err := c.Unsubscribe(ctx, topic); err != nil {
			t.Fatal(err)
		}
	}
	if v := value(t, m.topics); v != 0 {
		t.Fatalf("%v bridged topics after every browser left", v)
	}
}

// TestSubscriptionLost: when the overlay ends a topic's subscription on its
// own, every browser following the topic is told (an unsolicited ERROR
// subscription-lost), the bridge lets the topic go, and a browser may
// subscribe again.
func TestSubscriptionLost(t *testing.T) {
	const topic = "news"
	e := newTestEnv(t, nil)
	ctx := testContext(t)
	tok := e.token([]string{topic}, nil)
	lost := make(chan *ServerError, 4)
	c := e.dial(ctx, tok, WithErrorHandler(func(err error) {
		var se *ServerError
		if errors.As(err, &se) {
			lost <- se
		}
	}))
	if err := c.Subscribe(ctx, topic); err != nil {
		t.Fatal(err)
	}
	e.bus.lose(topic)
	select {
	case se := <-lost:
		if se.Code != CodeSubscriptionLost || se.Topic != topic {
			t.Fatalf("got %v, want subscription-lost for %q", se, topic)
		}
	case <-ctx.Done():
		t.Fatal("no subscription-lost error")
	}
	if v := value(t, e.srv.metrics.topics); v != 0 {
		t.Fatalf("%v bridged topics after the overlay ended the only one", v)
	}
	if err := c.Subscribe(ctx, topic); err != nil {
		t.Fatal(err)
	}
	if err := e.bus.Publish(ctx, topic, seqPayload(7, 10), "", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-c.Messages():
		if payloadSeq(m.Data) != 7 {
			t.Fatalf("got seq %d after subscribing again", payloadSeq(m.Data))
		}
	case <-ctx.Done():
		t.Fatal("no message after subscribing again")
	}
}

// TestSlowConsumer: a client that stops reading neither delays the others
// nor makes the server queue without bound. Publishing is in lockstep with
// the fast clients (message i+1 goes out once every fast client has
// message i), so the test finishing proves that the stalled client never
// held up the fan-out; the counters prove it was throttled.
func TestSlowConsumer(t *testing.T) {
	for _, policy := range []SlowPolicy{DropOldest, Disconnect} {
		t.Run(policy.String(), func(t *testing.T) { testSlowConsumer(t, policy) })
	}
}

func testSlowConsumer(t *testing.T, policy SlowPolicy) {
	const topic, fast, messages, size = "feed", 8, 200, 2048
	e := newTestEnv(t, func(c *Config) {
		c.SlowPolicy = policy
		c.MaxFrameSize = 16 << 10
		c.MaxBufferedAmount = 32 << 10
		c.QueueLength = 32
		c.QueueBytes = 1 << 20
		c.StallTimeout = time.Hour // this test is about the queue, not stalls
	})
	ctx := testContext(t)
	tok := e.token([]string{topic}, nil)
	clients := e.dialMany(ctx, fast, tok)
	dropNotices := make(chan *ServerError, 16)
	slow := e.dial(ctx, tok,
		WithMessageBuffer(0),      // every message needs a reader...
		WithReceiveBuffer(64<<10), // ...and little is buffered below it
		WithErrorHandler(func(err error) {
			var se *ServerError
			if errors.As(err, &se) && se.Code == CodeMessagesDropped {
				select {
				case dropNotices <- se:
				default:
				}
			}
		}))
	for _, c := range append(clients, slow) {
		if err := c.Subscribe(ctx, topic); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan int, fast)
	errs := make(chan error, fast)
	for i, c := range clients {
		go func() {
			for want := range messages {
				select {
				case m := <-c.Messages():
					if s := payloadSeq(m.Data); s != want {
						errs <- fmt.Errorf("fast client %d: got seq %d, want %d", i, s, want)
						return
					}
					got <- want
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	for seq := range messages {
		if err := e.bus.Publish(ctx, topic, seqPayload(seq, size), "", nil); err != nil {
			t.Fatal(err)
		}
		for range fast {
			select {
			case <-got:
			case err := <-errs:
				t.Fatal(err)
			case <-ctx.Done():
				t.Fatalf("fast clients stuck at message %d", seq)
			}
		}
	}
	m := e.srv.metrics
	dropped := value(t, m.dropped.WithLabelValues(dropQueueFull))
	if dropped == 0 {
		t.Fatal("the stalled client cost no drops: it was not throttled")
	}

	switch policy {
	case Disconnect:
		if r := e.waitClose(ctx); r != closeSlow {
			t.Fatalf("slow session closed for %q, want %q", r, closeSlow)
		}
		if n := e.srv.Sessions(); n != fast {
			t.Fatalf("%d sessions, want the %d fast ones", n, fast)
		}
	case DropOldest:
		// The queue kept the newest messages: reading again, the client
		// sees an ordered stream with a gap, the drop notice, and the last
		// message.
		last, count := -1, 0
		for last != messages-1 {
			select {
			case msg := <-slow.Messages():
				s := payloadSeq(msg.Data)
				if s <= last {
					t.Fatalf("slow client: seq %d after %d", s, last)
				}
				last = s
				count++
			case <-ctx.Done():
				t.Fatalf("slow client never got the last message (at %d)", last)
			}
		}
		if count+int(dropped) != messages {
			t.Fatalf("slow client got %d messages and %v were dropped; want %d in all", count, dropped, messages)
		}
		select {
		case se := <-dropNotices:
			t.Logf("%d of %d delivered to the stalled client; notice: %s", count, messages, se.Reason)
		case <-ctx.Done():
			t.Fatal("no messages-dropped notice")
		}
		if n := e.srv.Sessions(); n != fast+1 {
			t.Fatalf("%d sessions, want %d", n, fast+1)
		}
	}
}

// TestAuthorizationPerFrame: a token for topic A cannot publish to B or
// read B, whatever frames the client sends.
func TestAuthorizationPerFrame(t *testing.T) {
	e := newTestEnv(t, nil)
	ctx := testContext(t)
	c := e.dial(ctx, e.token([]string{"a", "pub/*"}, []string{"a"}))
	seq := func() uint64 { e.bus.mu.Lock(); defer e.bus.mu.Unlock(); return e.bus.seq }

	err := c.Publish(ctx, "b", []byte("x"))
	var se *ServerError
	if !errors.As(err, &se) || se.Code != CodeForbidden || se.Topic != "b" {
		t.Fatalf("publish to b: %v, want forbidden", err)
	}
	if err := c.Subscribe(ctx, "b"); !errors.As(err, &se) || se.Code != CodeForbidden {
		t.Fatalf("subscribe to b: %v, want forbidden", err)
	}
	if seq() != 0 {
		t.Fatal("a forbidden publish reached the overlay")
	}
	if err := c.Subscribe(ctx, "pub/news"); err != nil {
		t.Fatalf("wildcard read: %v", err)
	}
	if err := c.Publish(ctx, "pub/news", []byte("x")); !errors.As(err, &se) || se.Code != CodeForbidden {
		t.Fatalf("publish to a read-only topic: %v", err)
	}
	if err := c.Subscribe(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, "a", []byte("ok")); err != nil {
		t.Fatal(err)
	}
	// The publish went to the overlay with the browser's token, for
	// every peer to check again; the message shows the verified sender.
	e.bus.mu.Lock()
	tokens := slices.Clone(e.bus.tokens)
	e.bus.mu.Unlock()
	if len(tokens) != 1 || tokens[0] == "" {
		t.Fatalf("the bus saw tokens %q, want the session's", tokens)
	}
	if m := <-c.Messages(); string(m.Data) != "ok" || m.Topic != "a" || m.From != "token:browser" {
		t.Fatalf("got %q on %q", m.Data, m.Topic)
	}
	if v := value(t, e.srv.metrics.publishes.WithLabelValues(publishForbidden)); v != 2 {
		t.Fatalf("forbidden publishes counted %v, want 2", v)
	}
}

// TestBadFramesKeepSession: malformed frames get ERROR frames and the
// session carries on.
func TestBadFramesKeepSession(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.MaxSubscriptions = 2 })
	ctx := testContext(t)
	errs := make(chan *ServerError, 32)
	c := e.dial(ctx, e.token([]string{"*"}, []string{"*"}), WithErrorHandler(func(err error) {
		var se *ServerError
		if errors.As(err, &se) {
			errs <- se
		}
	}))
	sub, _ := appendFrame(nil, &frame{typ: frameSubscribe, req: 0, topic: "t"})
	bad := []struct {
		name string
		b    []byte
		code ErrorCode
	}{
		{"garbage", []byte("\x01garbage"), CodeBadFrame},
		{"text", []byte("text"), CodeUnsupportedVersion},
		{"empty", []byte{}, CodeBadFrame},
		{"version 9", append([]byte{9}, sub[1:]...), CodeUnsupportedVersion},
		{"truncated", sub[:len(sub)-1], CodeBadFrame},
		{"bad topic", []byte{1, 1, 0, 0, 0, 0, 2, '*', '*'}, CodeInvalidTopic},
		{"server frame", []byte{1, 5, 0, 0, 0, 0}, CodeUnexpectedFrame},
		{"huge length", []byte{1, 3, 0, 0, 0, 0, 1, 't', 0xff, 0xff, 0xff, 0xff}, CodeBadFrame},
	}
	for _, b := range bad {
		if err := c.sendRaw(b.b); err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
		select {
		case se := <-errs:
			if se.Code != b.code {
				t.Errorf("%s: code %s, want %s (%s)", b.name, se.Code, b.code, se.Reason)
			}
		case <-ctx.Done():
			t.Fatalf("%s: no error frame", b.name)
		}
	}
	if err := c.dc.SendText("a text message"); err != nil {
		t.Fatal(err)
	}
	if se := <-errs; se.Code != CodeBadFrame {
		t.Errorf("text message: code %s, want bad-frame", se.Code)
	}
	if err := c.Subscribe(ctx, "t1"); err != nil {
		t.Fatalf("session unusable after bad frames: %v", err)
	}
	if err := c.Subscribe(ctx, "t1"); err != nil {
		t.Fatalf("resubscribe must be idempotent: %v", err)
	}
	if err := c.Subscribe(ctx, "t2"); err != nil {
		t.Fatal(err)
	}
	var se *ServerError
	if err := c.Subscribe(ctx, "t3"); !errors.As(err, &se) || se.Code != CodeTooManySubscriptions {
		t.Fatalf("third topic with MaxSubscriptions 2: %v", err)
	}
	if err := c.Publish(ctx, "t1", bytes.Repeat([]byte("x"), 70000)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("oversized publish: %v", err)
	}
	if v := value(t, e.srv.metrics.rejected.WithLabelValues(CodeBadFrame.String())); v != 5 {
		t.Fatalf("bad-frame rejections counted %v, want 5", v)
	}
}

func TestPublishErrorsAndRateLimit(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.PublishRate = 1; c.PublishBurst = 2 })
	ctx := testContext(t)
	c := e.dial(ctx, e.token(nil, []string{"t"}))
	var se *ServerError
	for i := range 2 {
		if err := c.Publish(ctx, "t", []byte("x")); err != nil {
			t.Fatalf("publish %d within burst: %v", i, err)
		}
	}
	if err := c.Publish(ctx, "t", []byte("x")); !errors.As(err, &se) || se.Code != CodeRateLimited {
		t.Fatalf("publish beyond burst: %v", err)
	}

	e2 := newTestEnv(t, nil)
	e2.bus.publishErr = errors.New("overlay: message too large")
	c2 := e2.dial(ctx, e2.token(nil, []string{"t"}))
	if err := c2.Publish(ctx, "t", []byte("x")); !errors.As(err, &se) || se.Code != CodePublishFailed || se.Reason != "overlay: message too large" {
		t.Fatalf("failing bus: %v", err)
	}
}

func TestTokenExpiryEndsSession(t *testing.T) {
	// Token times are whole seconds; the server's clock is set 300ms before
	// the token's expiry (plus skew), so the session ends 300ms in.
	base := time.Now().Truncate(time.Second)
	var mu sync.Mutex
	now := base.Add(700 * time.Millisecond)
	e := newTestEnv(t, func(c *Config) {
		c.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	ctx := testContext(t)
	tok, _ := Mint(testSecret, Claims{IssuedAt: base.Add(-time.Hour), ExpiresAt: base.Add(-ClockSkew + time.Second), Read: []string{"t"}})
	expired := make(chan struct{}, 1)
	c := e.dial(ctx, tok, WithErrorHandler(func(err error) {
		var se *ServerError
		if errors.As(err, &se) && se.Code == CodeTokenExpired {
			expired <- struct{}{}
		}
	}))
	if err := c.Subscribe(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if r := e.waitClose(ctx); r != closeTokenExpired {
		t.Fatalf("closed for %q", r)
	}
	select {
	case <-expired:
	case <-ctx.Done():
		t.Fatal("client was not told its token expired")
	}

	// A frame after expiry is refused even before the timer fires.
	mu.Lock()
	now = base.Add(time.Hour)
	mu.Unlock()
	tok2, _ := Mint(testSecret, Claims{IssuedAt: base, ExpiresAt: base.Add(30 * time.Minute), Read: []string{"t"}})
	if _, err := Dial(ctx, e.url, tok2, WithLoopbackOnly()); err == nil {
		t.Fatal("offer with a token expired by the server's clock accepted")
	}
}

func TestServerCloseIdempotent(t *testing.T) {
	e := newTestEnv(t, nil)
	ctx := testContext(t)
	c := e.dial(ctx, e.token([]string{"t"}, nil))
	if err := c.Subscribe(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	e.srv.Close()
	e.srv.Close()
	if n := e.srv.Sessions(); n != 0 {
		t.Fatalf("%d sessions after Close", n)
	}
	if v := value(t, e.srv.metrics.topics); v != 0 {
		t.Fatalf("%v topics after Close", v)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("client not disconnected by server Close")
	}
	if err := c.Subscribe(context.Background(), "t"); err == nil {
		t.Fatalf("Subscribe on a closed client: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if c := DefaultConfig(); c.validate() != nil {
		t.Fatalf("DefaultConfig: %v", c.validate())
	}
	if err := (&Config{}).validate(); err == nil {
		t.Fatal("the zero Config validated")
	}
	for name, mutate := range map[string]func(*Config){
		"short secret":   func(c *Config) { c.Secret = []byte("short") },
		"port range":     func(c *Config) { c.UDPPortMin = 50000 },
		"reversed ports": func(c *Config) { c.UDPPortMin, c.UDPPortMax = 50010, 50000 },
		"ice url":        func(c *Config) { c.ICEServers = []ICEServer{{URLs: []string{"http://x"}}} },
		"public ip":      func(c *Config) { c.PublicIPs = []string{"example.org"} },
		"frame size":     func(c *Config) { c.MaxFrameSize = 10 },
		"queue bytes":    func(c *Config) { c.QueueBytes = 100 },
		"policy":         func(c *Config) { c.SlowPolicy = 7 },
		"sessions":       func(c *Config) { c.MaxSessions = 0 },
		"burst":          func(c *Config) { c.PublishBurst = 0 },
	} {
		c := DefaultConfig()
		mutate(&c)
		if err := c.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(nil, DefaultConfig()); err == nil {
		t.Error("New accepted a nil Bus")
	}
}
