package webrtc

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/immense-p2p/immense/internal/browsersig"
	pion "github.com/pion/webrtc/v4"
)

// Client is a Go data channel client of a Server, for back-ends and load
// tests; browsers use client/immense.js, which speaks the same protocol.
// Unlike the JS client it does not reconnect: a closed Client reports why
// in Err, and the caller dials again.
type Client struct {
	pc         *pion.PeerConnection
	dc         *pion.DataChannel
	api        *pion.API // for links to other browsers (relayclient.go)
	iceServers []pion.ICEServer
	relay      *clientRelays
	log        *slog.Logger
	onError    func(error)
	key        ed25519.PrivateKey // signs publishes, if the token is bound to it
	maxOut     int                // largest frame the server accepts
	maxIn      int                // largest frame we accept
	msgs       chan Message
	done       chan struct{}
	closedWG   sync.WaitGroup // the shutdown goroutine

	nextReq atomic.Uint32

	mu       sync.Mutex
	pending  map[uint32]chan reply
	closed   bool
	err      error
	inflight sync.WaitGroup // message handlers that may send on msgs

	closeOnce sync.Once
}

// ClientOption configures Dial.
type ClientOption func(*clientConfig)

type clientConfig struct {
	httpClient    *http.Client
	iceServers    []ICEServer
	loopbackOnly  bool
	messageBuffer int
	receiveBuffer uint32
	onError       func(error)
	log           *slog.Logger
	key           ed25519.PrivateKey
	relay         *RelayOptions  // relayclient.go
	misdoer       relayBehaviour // tests
	probePace     time.Duration  // tests: spaces the upload probe's chunks
}

// WithHTTPClient sets the HTTP client used for signaling (default
// http.DefaultClient).
func WithHTTPClient(hc *http.Client) ClientOption {
	return func(c *clientConfig) { c.httpClient = hc }
}

// WithICEServers sets STUN/TURN servers for the client.
func WithICEServers(servers ...ICEServer) ClientOption {
	return func(c *clientConfig) { c.iceServers = servers }
}

// WithLoopbackOnly restricts the client to IPv4 loopback, as
// Config.LoopbackOnly does for the server.
func WithLoopbackOnly() ClientOption {
	return func(c *clientConfig) { c.loopbackOnly = true }
}

// WithMessageBuffer sets the capacity of the Messages channel (default
// 1024). When it is full the client stops reading the data channel, and
// the server's slow-consumer policy applies to it.
func WithMessageBuffer(n int) ClientOption {
	return func(c *clientConfig) { c.messageBuffer = max(n, 0) }
}

// WithReceiveBuffer sets the SCTP receive buffer in bytes (default 1 MiB):
// how much the server may send before the client reads it.
func WithReceiveBuffer(n int) ClientOption {
	return func(c *clientConfig) { c.receiveBuffer = uint32(max(n, 0)) }
}

// WithErrorHandler receives ERROR frames not tied to a request (dropped
// messages, a lost subscription, token expiry) and malformed frames from
// the server. It runs on the client's read goroutine: it must not block or
// call Close.
func WithErrorHandler(f func(error)) ClientOption {
	return func(c *clientConfig) { c.onError = f }
}

// WithBoundKey makes the client sign its publishes with key, the browser
// key its token is bound to (Claims.Key), as the JS client does with
// WebCrypto. A token bound to a key accepts only signed publishes.
func WithBoundKey(key ed25519.PrivateKey) ClientOption {
	return func(c *clientConfig) { c.key = key }
}

// WithClientLogger sets the logger (default slog.Default()).
func WithClientLogger(l *slog.Logger) ClientOption {
	return func(c *clientConfig) { c.log = l }
}

// SignalingError is an HTTP error answer to an offer: 401 for a missing or
// refused token, 503 when the server is full.
type SignalingError struct {
	StatusCode int
	Message    string
}

func (e *SignalingError) Error() string {
	return fmt.Sprintf("webrtc offer refused: %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// Dial connects to the server whose signaling endpoint is offerURL (for
// example "https://peer.example/v1/webrtc/offer"), presenting token (empty
// for a server in insecure-no-auth mode). It returns once the data channel
// is open. For a volunteer reached through another peer's SignalPath
// (offerURL ending in "?peer=<peer ID>"), the answer must be signed by the
// key that peer ID names, else Dial fails.
func Dial(ctx context.Context, offerURL, token string, opts ...ClientOption) (*Client, error) {
	cfg := clientConfig{httpClient: http.DefaultClient, messageBuffer: 1024}
	for _, o := range opts {
		o(&cfg)
	}
	log := cfg.log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "webrtc.client")
	api, err := newAPI(transportOptions{
		loopbackOnly:      cfg.loopbackOnly,
		maxMessageSize:    maxFrameSizeLimit,
		receiveBufferSize: cfg.receiveBuffer,
		log:               log,
	})
	if err != nil {
		return nil, err
	}
	ice := toPionICEServers(cfg.iceServers, cfg.loopbackOnly)
	pc, err := api.NewPeerConnection(pion.Configuration{ICEServers: ice})
	if err != nil {
		return nil, fmt.Errorf("new peer connection: %w", err)
	}
	// Ordered and reliable (the defaults): the protocol relies on both.
	dc, err := pc.CreateDataChannel(dataChannelLabel, nil)
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("create data channel: %w", err)
	}
	c := &Client{
		pc:         pc,
		dc:         dc,
		api:        api,
		iceServers: ice,
		log:        log,
		onError:    cfg.onError,
		key:        cfg.key,
		maxIn:      maxFrameSizeLimit,
		msgs:       make(chan Message, cfg.messageBuffer),
		done:       make(chan struct{}),
		pending:    make(map[uint32]chan reply),
	}
	c.relay = newClientRelays(c, &cfg)
	opened := make(chan struct{})
	dc.OnOpen(func() { close(opened) })
	dc.OnMessage(c.onMessage)
	dc.OnClose(func() { c.shutdown(errors.New("data channel closed by the server")) })
	pc.OnConnectionStateChange(func(st pion.PeerConnectionState) {
		if st == pion.PeerConnectionStateFailed {
			c.shutdown(errors.New("connection failed"))
		}
	})

	if err := negotiate(ctx, cfg.httpClient, pc, offerURL, token); err != nil {
		c.shutdown(err)
		c.closedWG.Wait()
		return nil, err
	}
	select {
	case <-opened:
	case <-ctx.Done():
		c.shutdown(ctx.Err())
		c.closedWG.Wait()
		return nil, fmt.Errorf("open data channel: %w", ctx.Err())
	case <-c.done:
		c.closedWG.Wait()
		return nil, fmt.Errorf("open data channel: %w", c.Err())
	}
	c.maxOut = int(pc.SCTP().GetCapabilities().MaxMessageSize)
	if c.maxOut == 0 || c.maxOut > maxFrameSizeLimit {
		c.maxOut = maxFrameSizeLimit
	}
	if err := c.relay.ready(ctx); err != nil {
		c.log.Info("the peer does not take this client as a relay", "err", err)
	}
	return c, nil
}

// negotiate creates pc's offer, gathers every candidate, posts the offer
// to offerURL and applies the server's answer.
func negotiate(ctx context.Context, hc *http.Client, pc *pion.PeerConnection, offerURL, token string) error {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("create offer: %w", err)
	}
	gathered := pion.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return fmt.Errorf("set local description: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return fmt.Errorf("gather candidates: %w", ctx.Err())
	}
	signer, err := relayedSigner(offerURL)
	if err != nil {
		return err
	}
	offerSDP := pc.LocalDescription().SDP
	body, _ := json.Marshal(offerRequest{SDP: offerSDP, Token: token})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, offerURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("offer: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("offer: %w", err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("offer: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e errorResponse
		if json.Unmarshal(rb, &e) != nil || e.Error == "" {
			e.Error = string(bytes.TrimSpace(rb))
		}
		return &SignalingError{StatusCode: resp.StatusCode, Message: e.Error}
	}
	var ans relayedAnswer
	if err := json.Unmarshal(rb, &ans); err != nil {
		return fmt.Errorf("offer: bad answer: %w", err)
	}
	if signer != nil {
		if err := signer.verify(offerSDP, &ans); err != nil {
			return err
		}
	}
	if err := pc.SetRemoteDescription(pion.SessionDescription{Type: pion.SDPTypeAnswer, SDP: ans.SDP}); err != nil {
		return fmt.Errorf("offer: apply answer: %w", err)
	}
	return nil
}

// Messages delivers the messages of subscribed topics in the order the
// server sent them. It is closed when the client closes.
func (c *Client) Messages() <-chan Message { return c.msgs }

// Done is closed when the client has closed, by Close or because the
// connection ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client closed, or nil while it is open.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Subscribe asks for the messages of topic and waits for the server's
// answer. A refusal is a *ServerError (CodeForbidden, CodeInvalidTopic...).
func (c *Client) Subscribe(ctx context.Context, topic string) error {
	return c.request(ctx, &frame{typ: frameSubscribe, topic: topic})
}

// SubscribeSince is Subscribe resuming after position since (a Message
// ID): the server sends the topic's messages after it that its history
// holds, then the live ones. If its history does not reach back to since,
// a *ServerError of CodeGap goes to the error handler first.
func (c *Client) SubscribeSince(ctx context.Context, topic, since string) error {
	return c.request(ctx, &frame{typ: frameSubscribe, topic: topic, since: since})
}

// Unsubscribe stops the messages of topic. Messages already on their way
// may still arrive.
func (c *Client) Unsubscribe(ctx context.Context, topic string) error {
	return c.request(ctx, &frame{typ: frameUnsubscribe, topic: topic})
}

// Publish publishes data on topic through the server and waits for the
// server's ACK, sent once the overlay accepted the message.
func (c *Client) Publish(ctx context.Context, topic string, data []byte) error {
	if data == nil {
		data = []byte{}
	}
	if c.key != nil {
		now := time.Now()
		return c.request(ctx, &frame{typ: frameSignedPublish, topic: topic, payload: data,
			time: now.UnixMilli(), sig: browsersig.Sign(c.key, topic, now, data)})
	}
	return c.request(ctx, &frame{typ: framePublish, topic: topic, payload: data})
}

// Close closes the connection and waits for the client's goroutines. It is
// idempotent and returns nil.
func (c *Client) Close() error {
	c.shutdown(ErrClosed)
	c.closedWG.Wait()
	return nil
}

// reply answers a request: an ACK (f nil), the frame that answers it
// (RELAY-PROBE's nonce), or an ERROR (err).
type reply struct {
	f   *frame
	err error
}

func (c *Client) request(ctx context.Context, f *frame) error {
	_, err := c.requestReply(ctx, f)
	return err
}

// requestReply sends f with a fresh request ID and waits for its answer:
// the answering frame, nil for an ACK.
func (c *Client) requestReply(ctx context.Context, f *frame) (*frame, error) {
	req := c.nextReq.Add(1)
	if req == 0 { // zero means "no ACK wanted"; skip it on wrap-around
		req = c.nextReq.Add(1)
	}
	f.req = req
	b, err := appendFrame(nil, f)
	if err != nil {
		return nil, err
	}
	if len(b) > c.maxOut {
		return nil, fmt.Errorf("%w: %d bytes, the server accepts %d", ErrFrameTooLarge, len(b), c.maxOut)
	}
	answer := make(chan reply, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.pending[req] = answer
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, req)
		c.mu.Unlock()
	}()
	if err := c.dc.Send(b); err != nil {
		return nil, fmt.Errorf("send %s: %w", f.typ, err)
	}
	select {
	case r := <-answer:
		return r.f, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.done:
		return nil, c.Err()
	}
}

// sendRaw sends b as is; tests use it to send malformed frames.
func (c *Client) sendRaw(b []byte) error { return c.dc.Send(b) }

func (c *Client) onMessage(msg pion.DataChannelMessage) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.inflight.Add(1)
	c.mu.Unlock()
	defer c.inflight.Done()
	f, err := decodeFrame(msg.Data, c.maxIn)
	if err != nil {
		c.report(fmt.Errorf("bad frame from server: %w", err))
		return
	}
	if f.typ == frameBatch {
		for i := range f.items {
			if !c.handle(&f.items[i]) {
				return
			}
		}
		return
	}
	c.handle(&f)
}

// handle processes one frame; false means the client is closing.
func (c *Client) handle(f *frame) bool {
	switch f.typ {
	case frameMessage:
		m := Message{Topic: f.topic, ID: f.id, From: f.from, Time: fromMicros(f.time), Data: f.payload}
		select {
		case c.msgs <- m:
		case <-c.done:
			return false
		}
	case framePresence:
		// Presence is for browsers (immense.js); this client ignores it.
	case frameAck:
		c.answer(f.req, reply{})
	case frameProbe:
		// The peer's nonce, answering a probe's start (relayclient.go);
		// the frame's buffer is pion's.
		f.relay.probe = bytes.Clone(f.relay.probe)
		c.answer(f.req, reply{f: f})
	case frameError:
		err := &ServerError{Code: f.code, Topic: f.topic, Reason: f.reason}
		if f.req == 0 {
			c.relay.onUncorrelated(err) // relayclient.go
		}
		if f.req == 0 || !c.answer(f.req, reply{err: err}) {
			c.report(err)
		}
	case frameRelayInvite, frameAttach, frameSignal, frameRecord, frameHead:
		c.relay.onFrame(f) // relayclient.go
	default:
		c.report(fmt.Errorf("%w: unexpected %s frame from server", ErrBadFrame, f.typ))
	}
	return true
}

// answer completes request req; false if nobody waits for it.
func (c *Client) answer(req uint32, r reply) bool {
	c.mu.Lock()
	ch, ok := c.pending[req]
	c.mu.Unlock()
	if ok {
		select {
		case ch <- r:
		default: // a second answer to the same request: ignore it
		}
	}
	return ok
}

func (c *Client) report(err error) {
	if c.onError != nil {
		c.onError(err)
		return
	}
	c.log.Debug("server error", "err", err)
}

// shutdown closes the client once, recording why. It may run on a pion
// callback, so the peer connection is closed on a goroutine of its own.
func (c *Client) shutdown(cause error) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.err = cause
		c.mu.Unlock()
		close(c.done)
		c.closedWG.Add(1)
		go func() {
			defer c.closedWG.Done()
			// Handlers blocked on a full Messages channel return on done;
			// after them nothing sends on msgs.
			c.inflight.Wait()
			c.relay.close()
			close(c.msgs)
			_ = c.pc.GracefulClose()
		}()
	})
}
