package erasure

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/immense-p2p/immense/internal/netprefix"
	"github.com/immense-p2p/immense/internal/slots"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// ShardProtocol is the libp2p protocol id of the shard protocol.
const ShardProtocol protocol.ID = "/immense/shard/1.0.0"

// ServerConfig configures a ShardServer.
type ServerConfig struct {
	// RequestTimeout bounds one request, from the stream opening to the
	// last byte of the response. Default 60 s: a 16 MiB shard over a
	// 4 Mbit/s uplink takes ~35 s.
	RequestTimeout time.Duration
	// MaxConcurrent caps requests read and served at once; more are
	// answered StatusBusy before their body is read. With frames of up to
	// 16 MiB it also caps the memory requests can pin (16 x 16 MiB).
	// Default 16.
	MaxConcurrent int
	// MaxPerPeer caps the slots one peer holds at once: past it, its
	// requests are answered StatusBusy before their body is read, so that
	// one peer cannot take every slot. Default 8, half of them (clients
	// send a busy request again a few times, backing off).
	MaxPerPeer int
	// MaxPerAddr caps the slots the peers on one machine hold together:
	// those whose connection comes from one IPv4 address or IPv6 /56
	// (netprefix.MachineOf, the prefixes node's connections per IP count
	// by), and all relayed connections together, since a relayed
	// connection shows only its relay's address and our clients never
	// send shard requests over relays. Past it their requests are answered
	// StatusBusy before their body is read, so that identities, which are
	// free, take no more together than one does. Loopback, private and
	// link-local addresses (devnets, the operator's LAN) are not capped.
	// Default 8, as MaxPerPeer (0: MaxPerPeer).
	MaxPerAddr int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// headerTimeout is how long a peer may take to send the first bytes of its
// request once it opened the stream: a stream that says nothing is
// dropped long before RequestTimeout.
const headerTimeout = 10 * time.Second

// minBodyRate is the slowest a request's body may come, after the
// headerTimeout any request gets: a peer that trickles a small body keeps
// its slot about headerTimeout, not RequestTimeout.
const minBodyRate = 64 << 10 // bytes a second

// DefaultServerConfig returns the server defaults.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{RequestTimeout: 60 * time.Second, MaxConcurrent: 16, MaxPerPeer: 8, MaxPerAddr: 8}
}

func (c *ServerConfig) validate() error {
	if c.RequestTimeout <= 0 {
		return fmt.Errorf("server config: RequestTimeout %v must be positive", c.RequestTimeout)
	}
	if c.MaxConcurrent < 1 {
		return fmt.Errorf("server config: MaxConcurrent %d must be at least 1", c.MaxConcurrent)
	}
	if c.MaxPerPeer == 0 {
		c.MaxPerPeer = max(c.MaxConcurrent/2, 1)
	}
	if c.MaxPerPeer < 1 {
		return fmt.Errorf("server config: MaxPerPeer %d must be at least 1", c.MaxPerPeer)
	}
	if c.MaxPerAddr == 0 {
		c.MaxPerAddr = c.MaxPerPeer
	}
	if c.MaxPerAddr < 1 {
		return fmt.Errorf("server config: MaxPerAddr %d must be at least 1", c.MaxPerAddr)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// ShardServer answers the shard protocol from a Store: every peer runs one,
// whether or not it holds an app key.
type ShardServer struct {
	h       host.Host
	store   *Store
	cfg     ServerConfig
	log     *slog.Logger
	metrics *metrics
	slots   *slots.Keyed[slotKey] // requests read and served, and answers written
	// leaving makes the server refuse new shards (busy): set by a handoff,
	// so that writers do not place shards on a peer about to exit.
	leaving atomic.Bool

	mu      sync.Mutex
	closed  bool
	streams map[network.Stream]struct{} // in progress, reset by Close
	wg      sync.WaitGroup
	once    sync.Once
}

// NewShardServer registers the shard protocol on h, serving from store.
func NewShardServer(h host.Host, store *Store, cfg ServerConfig) (*ShardServer, error) {
	return newShardServer(h, store, cfg, nil)
}

func newShardServer(h host.Host, store *Store, cfg ServerConfig, m *metrics) (*ShardServer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &ShardServer{h: h, store: store, cfg: cfg, metrics: m,
		log:     cfg.Logger.With("component", "erasure.server"),
		streams: map[network.Stream]struct{}{}}
	s.slots = slots.NewPerKey(cfg.MaxConcurrent, func(k slotKey) int {
		if k.addr != "" {
			return cfg.MaxPerAddr
		}
		return cfg.MaxPerPeer
	})
	h.SetStreamHandler(ShardProtocol, s.handle)
	return s, nil
}

// slotKey is what a request's slot counts against: its peer, or the
// machine its connection comes from (addrKey).
type slotKey struct {
	peer peer.ID
	addr string
}

// relayedAddr is the addrKey of every relayed connection.
const relayedAddr = "relayed"

// addrKey is the machine a connection from remote counts against for
// MaxPerAddr: its IPv4 address or IPv6 /56, or "" (not capped) for a
// loopback, private or link-local address, or one with no IP. A relayed
// connection's address is the relay's, which any number of strangers can
// come through, so all relayed connections count as one machine: counted
// by the relay, an attacker would take a share through each relay it
// finds. Our clients never send shard requests over a relay (their
// streams do not allow limited connections: libp2p waits for a direct one,
// by hole punching or reversal, or fails), so what comes relayed is a
// stranger's own doing, and gets one machine's share at most.
func addrKey(remote ma.Multiaddr) string {
	if _, err := remote.ValueForProtocol(ma.P_CIRCUIT); err == nil {
		return relayedAddr
	}
	ip, err := manet.ToIP(remote)
	if err != nil {
		return ""
	}
	return netprefix.MachineOf(ip)
}

// takeSlot takes a slot for a request on c: one of MaxConcurrent, counted
// against its peer and, unless exempt, its machine.
func (s *ShardServer) takeSlot(c network.Conn) (release func(), ok bool) {
	keys := []slotKey{{peer: c.RemotePeer()}}
	if a := addrKey(c.RemoteMultiaddr()); a != "" {
		keys = append(keys, slotKey{addr: a})
	}
	return s.slots.Take(keys...)
}

// Close unregisters the protocol, resets the streams of requests in
// progress and waits for their handlers to return.
func (s *ShardServer) Close() error {
	s.once.Do(func() {
		s.h.RemoveStreamHandler(ShardProtocol)
		s.mu.Lock()
		s.closed = true
		for st := range s.streams {
			st.Reset()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return nil
}

func (s *ShardServer) handle(st network.Stream) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		st.Reset()
		return
	}
	s.wg.Add(1)
	s.streams[st] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.streams, st)
		s.mu.Unlock()
		s.wg.Done()
	}()

	// Memory is reserved before a request is read: the frame's length, the
	// version and the type come first, within headerTimeout; a request is
	// read only into one of MaxConcurrent slots, at most MaxPerPeer of
	// them one peer's and MaxPerAddr one machine's, and otherwise
	// answered busy without reading its body. The slot is held until the response is written, so at most
	// MaxConcurrent frames of up to maxFrame bytes are held, requests and
	// responses together, whether or not the peer reads its answers.
	st.SetDeadline(time.Now().Add(min(headerTimeout, s.cfg.RequestTimeout)))
	var head [4 + 2]byte
	if _, err := io.ReadFull(st, head[:]); err != nil {
		s.log.Debug("read request header", "peer", st.Conn().RemotePeer(), "err", err)
		st.Reset()
		return
	}
	n := binary.BigEndian.Uint32(head[:4])
	typ := head[5] &^ msgResponse
	if n < 2 || n > maxFrame {
		s.log.Debug("read request", "peer", st.Conn().RemotePeer(), "err", badf("frame of %d bytes, over %d", n, maxFrame))
		st.Reset()
		return
	}
	release, ok := s.takeSlot(st.Conn())
	if !ok {
		s.metrics.refused("busy")
		s.respond(st, &response{typ: typ, status: StatusBusy, msg: "server busy"})
		return
	}
	defer release()
	resp := s.readAndServe(st, head, int(n))
	if resp == nil {
		st.Reset()
		return
	}
	s.respond(st, resp)
}

// respond writes resp and closes st, or resets it if the write fails.
func (s *ShardServer) respond(st network.Stream, resp *response) {
	if err := writeFrame(st, resp.encode()); err != nil {
		s.log.Debug("write response", "peer", st.Conn().RemotePeer(), "err", err)
		st.Reset()
		return
	}
	st.Close()
}

// readAndServe reads the rest of a request whose first bytes are head and
// whose frame is n bytes long, and serves it. A nil response means the
// stream failed and is to be reset.
func (s *ShardServer) readAndServe(st network.Stream, head [6]byte, n int) *response {
	now := time.Now()
	st.SetWriteDeadline(now.Add(s.cfg.RequestTimeout))
	st.SetReadDeadline(now.Add(min(s.cfg.RequestTimeout, headerTimeout+time.Duration(n)*time.Second/minBodyRate)))
	body := make([]byte, n)
	copy(body, head[4:])
	if _, err := io.ReadFull(st, body[2:]); err != nil {
		s.log.Debug("read request", "peer", st.Conn().RemotePeer(), "err", err)
		return nil
	}
	q, err := decodeRequest(body)
	if err != nil {
		return &response{typ: body[1] &^ msgResponse, status: StatusBadRequest, msg: err.Error()}
	}
	return s.serve(st.Conn().RemotePeer(), q)
}

func (s *ShardServer) serve(from peer.ID, q *request) *response {
	r := &response{typ: q.typ}
	fail := func(err error) *response {
		r.status, r.msg = statusOf(err), err.Error()
		return r
	}
	switch q.typ {
	case msgStore:
		if s.leaving.Load() {
			s.metrics.refused("busy")
			return fail(fmt.Errorf("%w: leaving the network", ErrBusy))
		}
		if err := s.store.Put(q.hash, q.ref, q.data); err != nil {
			s.metrics.refused(refuseReason(err))
			if errors.Is(err, ErrQuotaExceeded) {
				s.log.Debug("store refused: quota exceeded", "peer", from, "used", s.store.Used(), "quota", s.store.Quota())
			}
			return fail(err)
		}
		s.metrics.stored()
	case msgFetch:
		info, data, err := s.store.Get(q.hash)
		if err != nil {
			return fail(err)
		}
		r.ref, r.data = info.Ref, data
		s.metrics.served()
	case msgCheck:
		r.checks = make([]CheckResult, len(q.hashes))
		for i, h := range q.hashes {
			info, ok := s.store.Stat(h)
			if ok && q.verify {
				ok = s.store.Verify(h) == nil
			}
			if ok {
				r.checks[i] = CheckResult{Present: true, Size: info.Size}
			}
		}
	case msgDelete:
		info, ok := s.store.Stat(q.hash)
		if !ok {
			return fail(fmt.Errorf("shard %s: %w", q.hash, ErrNotFound))
		}
		// A delete removes only the refs of the signer's namespace: the
		// same bytes stored under another namespace (by a peer that
		// fetched them, say) neither block the owner's delete nor can be
		// used to delete the owner's copy.
		ns := NamespaceOf(q.pub)
		if !hasNamespace(info.Refs, ns) || !ed25519.Verify(q.pub, deleteMessage(q.hash), q.sig) {
			s.metrics.deleted("unauthorized")
			s.log.Debug("delete refused: not signed by the owner of a namespace the shard is stored under", "peer", from, "hash", q.hash)
			return fail(fmt.Errorf("%w: delete of shard %s not signed by the owner of a namespace it is stored under", ErrUnauthorized, q.hash))
		}
		gone, err := s.store.Unref(q.hash, ns)
		if err != nil {
			return fail(err)
		}
		if gone {
			s.metrics.deleted("removed")
		} else {
			s.metrics.deleted("unref")
		}
	}
	return r
}

// hasNamespace reports whether a ref of ns is among refs.
func hasNamespace(refs []StoredRef, ns NamespaceID) bool {
	for _, r := range refs {
		if r.Namespace == ns {
			return true
		}
	}
	return false
}

func refuseReason(err error) string {
	switch {
	case errors.Is(err, ErrTooManyRefs):
		return "refs"
	case errors.Is(err, ErrQuotaExceeded):
		return "quota"
	case errors.Is(err, ErrHashMismatch):
		return "hash"
	case errors.Is(err, ErrBusy):
		return "busy"
	}
	return "error"
}

// Client speaks the shard protocol to other peers.
type Client struct {
	h       host.Host
	timeout time.Duration
}

// NewClient returns a client that gives each request at most timeout.
func NewClient(h host.Host, timeout time.Duration) *Client {
	return &Client{h: h, timeout: timeout}
}

// roundTrip sends one request on a new stream and reads the response.
// busyRetries is how many times a request answered busy is sent again,
// after busyBackoff, doubled each time, with jitter: a holder answers busy
// while all its slots, or the slots it gives one peer, are taken, which a
// moment later they often are not (a node reading several objects from
// one holder at once meets its per-peer share).
const (
	busyRetries = 3
	busyBackoff = 50 * time.Millisecond
)

func (c *Client) roundTrip(ctx context.Context, p peer.ID, q *request) (*response, error) {
	for attempt := 0; ; attempt++ {
		r, err := c.roundTripOnce(ctx, p, q)
		if err != nil || r.status != StatusBusy || attempt == busyRetries {
			return r, err
		}
		wait := busyBackoff << attempt
		wait += time.Duration(mrand.Int64N(int64(wait)))
		select {
		case <-ctx.Done():
			return r, nil
		case <-time.After(wait):
		}
	}
}

func (c *Client) roundTripOnce(ctx context.Context, p peer.ID, q *request) (*response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// Relayed (limited) connections are not used: relays cap a circuit at
	// about 128 KiB, less than one shard.
	st, err := c.h.NewStream(ctx, p, ShardProtocol)
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	st.SetDeadline(deadline)
	// A cancelled ctx must end a request stuck on a peer that hangs.
	stop := context.AfterFunc(ctx, func() { st.Reset() })
	defer stop()
	if err := writeFrame(st, q.encode()); err != nil {
		st.Reset()
		return nil, err
	}
	// The server may already have read the whole frame, answered and closed
	// its read side, in which case closing ours reports a cancelled stream;
	// the response is what counts, so the error is not fatal.
	_ = st.CloseWrite()
	body, err := readFrame(st, maxFrame)
	if err != nil {
		st.Reset()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	st.Close()
	return decodeResponse(body, q.typ)
}

// Store asks p to store a shard. A peer at its quota answers an error
// wrapping ErrQuotaExceeded.
func (c *Client) Store(ctx context.Context, p peer.ID, h Hash, ref ShardRef, data []byte) error {
	r, err := c.roundTrip(ctx, p, &request{typ: msgStore, hash: h, ref: ref, data: data})
	if err == nil {
		err = r.err()
	}
	if err != nil {
		return fmt.Errorf("store shard %s on %s: %w", h, p, err)
	}
	return nil
}

// Fetch gets a shard from p and checks it against h: bytes that do not
// match give ErrHashMismatch, so the caller can blame p.
func (c *Client) Fetch(ctx context.Context, p peer.ID, h Hash) ([]byte, error) {
	r, err := c.roundTrip(ctx, p, &request{typ: msgFetch, hash: h})
	if err == nil {
		err = r.err()
	}
	if err != nil {
		return nil, fmt.Errorf("fetch shard %s from %s: %w", h, p, err)
	}
	if HashShard(r.data) != h {
		return nil, fmt.Errorf("fetch shard %s from %s: %w", h, p, ErrHashMismatch)
	}
	return r.data, nil
}

// Check asks p which of hashes it holds; with verify set, p reads and
// hashes each shard first (and drops corrupt ones). More than
// MaxCheckHashes hashes (MaxVerifyHashes with verify) are asked in several
// requests.
func (c *Client) Check(ctx context.Context, p peer.ID, hashes []Hash, verify bool) ([]CheckResult, error) {
	out := make([]CheckResult, 0, len(hashes))
	for len(hashes) > 0 {
		n := min(len(hashes), MaxCheckHashes)
		if verify {
			n = min(n, MaxVerifyHashes)
		}
		r, err := c.roundTrip(ctx, p, &request{typ: msgCheck, hashes: hashes[:n], verify: verify})
		if err == nil {
			err = r.err()
		}
		if err == nil && len(r.checks) != n {
			err = fmt.Errorf("%w: %d answers to %d hashes", ErrBadMessage, len(r.checks), n)
		}
		if err != nil {
			return nil, fmt.Errorf("check shards on %s: %w", p, err)
		}
		out = append(out, r.checks...)
		hashes = hashes[n:]
	}
	return out, nil
}

// Delete asks p to delete a shard, with a request signed by key; p obeys
// only if key owns the namespace the shard was stored under.
func (c *Client) Delete(ctx context.Context, p peer.ID, h Hash, key *AppKey) error {
	q := &request{typ: msgDelete, hash: h, pub: key.PublicKey(), sig: key.Sign(deleteMessage(h))}
	r, err := c.roundTrip(ctx, p, q)
	if err == nil {
		err = r.err()
	}
	if err != nil {
		return fmt.Errorf("delete shard %s on %s: %w", h, p, err)
	}
	return nil
}
