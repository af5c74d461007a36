package webrtc

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/pion/stun/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// SlowPolicy says what the server does with a session whose queue is full
// because the browser reads slower than its topics publish.
type SlowPolicy int

const (
	// DropOldest discards the oldest queued messages to make room, and
	// tells the browser how many with an ERROR frame of code
	// CodeMessagesDropped. A live view (chat, tickers, game state) wants
	// the newest messages more than a complete history. A session whose
	// data channel makes no progress at all for StallTimeout is closed.
	DropOldest SlowPolicy = iota
	// Disconnect closes the session as soon as its queue overflows. For
	// applications that cannot tolerate gaps: the client reconnects and
	// resynchronises from its own source of truth.
	Disconnect
)

func (p SlowPolicy) String() string {
	switch p {
	case DropOldest:
		return "drop-oldest"
	case Disconnect:
		return "disconnect"
	}
	return fmt.Sprintf("SlowPolicy(%d)", int(p))
}

// ParseSlowPolicy parses "drop-oldest" or "disconnect".
func ParseSlowPolicy(s string) (SlowPolicy, error) {
	switch s {
	case "drop-oldest":
		return DropOldest, nil
	case "disconnect":
		return Disconnect, nil
	}
	return 0, fmt.Errorf("unknown slow-consumer policy %q (want drop-oldest or disconnect)", s)
}

// ICEServer is a STUN or TURN server, as in the browser's RTCIceServer.
type ICEServer struct {
	// URLs are stun:, stuns:, turn: or turns: URIs, e.g. "stun:stun.example.org:3478".
	URLs []string
	// Username and Credential authenticate to a TURN server.
	Username   string
	Credential string
}

// Config configures a Server. Start from DefaultConfig or DevnetConfig;
// the zero value is not valid.
type Config struct {
	// PublicKeys verify EdDSA browser tokens: the public half of the app's
	// token key (at most MaxPublicKeys, for rotation). A peer holding only
	// these can admit browsers but cannot mint tokens, so volunteers get
	// them freely. See MintEdDSA.
	PublicKeys []ed25519.PublicKey
	// Secret verifies HS256 browser tokens (at least MinSecretSize bytes);
	// load it with LoadSecret. Whoever holds it can mint tokens: give it
	// only to peers you run. Without a secret or public keys every offer is
	// refused, unless InsecureNoAuth is set.
	Secret []byte
	// MaxTokenTTL is the longest lifetime (exp - iat) of a token accepted;
	// 0 means DefaultMaxTokenTTL (24 h).
	MaxTokenTTL time.Duration
	// RevokedTokens lists token ids (jti) refused before they expire.
	RevokedTokens []string
	// InsecureNoAuth admits browsers without a token and lets them read and
	// write every topic. For devnets only; the server logs a warning.
	InsecureNoAuth bool
	// AllowedHosts are host names (lower case, no port) besides localhost
	// and IP addresses by which a peer with InsecureNoAuth may be reached
	// (a devnet behind a name, a VM, a proxy): its other requests are
	// refused, against DNS rebinding. Without InsecureNoAuth tokens decide
	// and this is not used. peer sets it from --http-allowed-hosts.
	AllowedHosts []string

	// ICEServers help the server discover its public address (STUN) or
	// relay through a TURN server. A peer with a public IP needs none.
	ICEServers []ICEServer
	// UDPPortMin and UDPPortMax are the ports the server may take for its
	// one UDP socket per local address, which every browser session shares
	// (ICE UDP mux): the first free port of the range, so that operators
	// open one port in a firewall (give min = max to name it). Both zero
	// lets the operating system choose.
	UDPPortMin, UDPPortMax uint16
	// PublicIPs are advertised instead of the local addresses, for a peer
	// behind a 1:1 NAT (a cloud VM with an elastic IP).
	PublicIPs []string
	// LoopbackOnly restricts ICE to IPv4 loopback (127.0.0.0/8), with mDNS
	// off: for tests and single-machine devnets, where no packet may leave
	// the host.
	LoopbackOnly bool
	// ICELite makes the server an ICE-lite endpoint (RFC 8445 section
	// 2.5, webrtc/icelite.go) for browsers' data channels: it advertises
	// one address (its IPv4 one, or PublicIPs with that port) and only
	// answers the browser's connectivity checks, with no ICE agent per
	// browser (4 goroutines and about 20 KiB less per browser). That
	// needs an address browsers reach directly, so it is ignored when
	// ICEServers are set or the host's address is private (RFC 1918,
	// carrier-grade NAT) and no PublicIPs are given (a peer behind a NAT
	// runs full ICE, whose own checks open the NAT), and on a host with
	// more than one IPv4 address among those the UDP sockets bind, where
	// the server cannot tell which one browsers reach. Default true.
	ICELite bool

	// MaxSessions caps concurrent browser sessions; further offers get 503.
	// Default 1000: at about 130 KiB of WebRTC state per session that is
	// some 130 MiB, which a small server can afford.
	MaxSessions int
	// MaxSessionsPerSubject caps the sessions one token subject (sub, or
	// the token itself when it names none) holds at once, so that one
	// token holder cannot take every slot. 0: no cap. Default 16 (tabs and
	// devices of one user). Not applied with InsecureNoAuth.
	MaxSessionsPerSubject int
	// MaxPendingSessions caps sessions answered but not yet open (ICE and
	// DTLS under way): a handshake that never finishes holds its slot for
	// ConnectTimeout, and a flood of them must not crowd out open
	// sessions. 0: no cap beyond MaxSessions. Default 64.
	MaxPendingSessions int
	// MaxPendingPerClient caps the pending sessions of one client address
	// (IP, or /64 for IPv6; for a relayed offer, the forwarding peer), so
	// that one client cannot hold every MaxPendingSessions slot with
	// handshakes it never finishes. 0: no cap. Default 16. Behind a reverse
	// proxy every browser shares the proxy's address: raise it there
	// (peer --browser-max-pending-per-address).
	MaxPendingPerClient int
	// OfferRate and OfferBurst limit the offers from one IP address (one
	// /64 for IPv6), per second and in a burst; further ones get 429.
	// Each offer costs ICE gathering and a DTLS key, and needs no token to
	// send. 0: no limit. Defaults 5/s, burst 20. Behind a reverse proxy
	// every browser shares the proxy's address: raise them there.
	OfferRate  float64
	OfferBurst int
	// GatherTimeout bounds ICE candidate gathering while answering an
	// offer. Host candidates gather in milliseconds; STUN may take a round
	// trip or two. Default 5s.
	GatherTimeout time.Duration
	// ConnectTimeout closes a session whose data channel is not open this
	// long after the answer was sent (a browser that went away, or a
	// firewall in the way). Default 20s, above ICE's own failure timeout.
	ConnectTimeout time.Duration
	// MaxOfferSize caps the signaling request body. Offers are 1-4 KiB;
	// default 64 KiB.
	MaxOfferSize int
	// AllowedOrigins are the browser origins allowed to POST offers
	// cross-origin (CORS). "*" allows every origin, which is safe because
	// authority comes from the token in the body, never from cookies.
	// Default ["*"].
	AllowedOrigins []string

	// MaxFrameSize caps every data channel frame in both directions, and
	// is advertised to browsers as the SCTP max-message-size. Default
	// 65535: the size every WebRTC stack accepts without negotiation
	// (RFC 8841). A publish payload may be up to MaxFrameSize minus its
	// topic and 11 bytes of framing.
	MaxFrameSize int
	// MaxSubscriptions caps the topics one session may follow. Default 64.
	MaxSubscriptions int
	// PublishRate limits each session's publishes per second (token
	// bucket of PublishBurst). Zero means unlimited. Default 100/s, burst
	// 200: far above a chat user, well below what floods an overlay.
	PublishRate  float64
	PublishBurst int
	// PublishTimeout bounds one publish into the overlay. Default 5s.
	PublishTimeout time.Duration

	// QueueLength and QueueBytes bound the messages waiting for a session's
	// data channel; when either is reached SlowPolicy applies. Default 1024
	// messages and 1 MiB: several seconds of a busy topic, and a memory
	// bound of about 1 MiB per slow browser.
	QueueLength int
	QueueBytes  int
	// MaxBufferedAmount is how many bytes the server lets the data channel
	// (SCTP) hold unacknowledged before it stops writing and queues
	// instead. Writing resumes when the buffer drains below a quarter of
	// it. Default 128 KiB: over 1 MB/s per browser at a 100 ms round trip,
	// yet small enough that a backlog forms in the session's queue, where
	// it is coalesced and the slow-consumer policy applies, rather than in
	// SCTP, where it can only wait.
	MaxBufferedAmount int
	// SlowPolicy is what happens when a session's queue is full. Default
	// DropOldest.
	SlowPolicy SlowPolicy
	// StallTimeout closes a session whose data channel has not drained for
	// this long, whatever the policy: the browser is gone or stuck, and its
	// state is better freed. Default 30s.
	StallTimeout time.Duration
	// FanoutInterval is the most a message waits for a topic's next
	// fan-out round to its data channel browsers (pacing.go). Rounds to k
	// data channel browsers are at least k/FanoutPacketRate seconds apart,
	// and never more than this: a message that follows the last round
	// sooner waits for the rest of that gap and goes out with whatever
	// else arrived meanwhile as one BATCH frame per browser; the first
	// message after a longer pause goes at once. Every data channel
	// message costs the server a packet per browser (SCTP, DTLS
	// encryption, a system call, and the browser's acknowledgement to
	// read), whatever its size, so on a busy topic with many browsers
	// this divides the server's CPU per delivery by the messages per
	// round, for at most this much latency. WebSocket browsers get every
	// round at once. 0: every round at once. Default 100ms: the gap of
	// 1,000 browsers at the default FanoutPacketRate; at most 1s.
	FanoutInterval time.Duration
	// FanoutPacketRate is the data channel packets a second one topic's
	// fan-out rounds aim to stay under, by spacing rounds to k browsers
	// k/FanoutPacketRate apart (up to FanoutInterval). A topic below it
	// is never held: 50 browsers of a topic of 200 messages/s, or 1,000
	// of a topic of 10 messages/s, get every message at once. 0: every
	// round is held FanoutInterval after the last. Default 10000: about
	// a quarter of a core of the machine of docs/performance.md, where
	// BenchmarkFanout (100 browsers, 200 messages/s) had a lower p99 and
	// used less CPU with it (10 ms gaps) than with 20000 (no holding).
	FanoutPacketRate float64

	// Registerer receives the server's metrics (immense_webrtc_*). Nil
	// means the metrics are kept but not registered.
	Registerer prometheus.Registerer
	// Logger is the logger; nil means slog.Default(). The server logs with
	// the attribute component=webrtc.
	Logger *slog.Logger
	// Now is the clock used for token checks; nil means time.Now.
	Now func() time.Time

	// Relay configures browser relays (relayconfig.go); off by default.
	Relay RelayConfig
}

// DefaultConfig returns the configuration of a production peer: tokens
// required (set Secret), every network interface, OS-chosen ports.
func DefaultConfig() Config {
	return Config{
		MaxSessions:           1000,
		MaxSessionsPerSubject: 16,
		MaxPendingSessions:    64,
		MaxPendingPerClient:   16,
		OfferRate:             5,
		OfferBurst:            20,
		GatherTimeout:         5 * time.Second,
		ConnectTimeout:        20 * time.Second,
		MaxOfferSize:          64 << 10,
		AllowedOrigins:        []string{"*"},
		MaxFrameSize:          65535,
		MaxSubscriptions:      64,
		PublishRate:           100,
		PublishBurst:          200,
		PublishTimeout:        5 * time.Second,
		QueueLength:           1024,
		QueueBytes:            1 << 20,
		MaxBufferedAmount:     128 << 10,
		SlowPolicy:            DropOldest,
		StallTimeout:          30 * time.Second,
		FanoutInterval:        100 * time.Millisecond,
		FanoutPacketRate:      10000,
		ICELite:               true,
		Relay:                 DefaultRelayConfig(),
	}
}

// DevnetConfig returns DefaultConfig with InsecureNoAuth set: any browser
// may connect and use any topic; offers are not rate-limited.
func DevnetConfig() Config {
	c := DefaultConfig()
	c.InsecureNoAuth = true
	c.OfferRate = 0 // every browser of a devnet comes from 127.0.0.1
	// The demo's consent box works: beyond 4 tabs on one peer, those whose
	// user ticked it feed the others (after 5 s).
	c.Relay.Enabled = true
	c.Relay.DirectBudget = 4
	c.Relay.MinUptime = 5 * time.Second
	return c
}

const (
	minFrameSize = 1024
	// maxFrameSizeLimit keeps frames well inside what browsers accept
	// (Chrome advertises 256 KiB) and what one send can hold up.
	maxFrameSizeLimit = 256 << 10
)

// Validate reports what is wrong with c, every field at once, as New
// would; package node calls it to check a whole node configuration before
// it starts anything.
func (c Config) Validate() error { return c.validate() }

func (c *Config) validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("webrtc config: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if len(c.Secret) > 0 && len(c.Secret) < MinSecretSize {
		bad("Secret", "%d bytes, at least %d required", len(c.Secret), MinSecretSize)
	}
	if _, err := NewVerifier(c.Secret, c.PublicKeys, c.MaxTokenTTL, c.RevokedTokens); err != nil {
		bad("PublicKeys/MaxTokenTTL", "%v", err)
	}
	for i, s := range c.ICEServers {
		if len(s.URLs) == 0 {
			bad("ICEServers", "server %d has no URLs", i)
		}
		for _, u := range s.URLs {
			if _, err := stun.ParseURI(u); err != nil {
				bad("ICEServers", "%q: %v", u, err)
			}
		}
	}
	if (c.UDPPortMin == 0) != (c.UDPPortMax == 0) || c.UDPPortMin > c.UDPPortMax {
		bad("UDPPortMin/UDPPortMax", "%d-%d is not a port range (set both, min <= max, or neither)", c.UDPPortMin, c.UDPPortMax)
	}
	for _, ip := range c.PublicIPs {
		if net.ParseIP(ip) == nil {
			bad("PublicIPs", "%q is not an IP address", ip)
		}
	}
	if c.MaxSessions < 1 {
		bad("MaxSessions", "%d, must be at least 1", c.MaxSessions)
	}
	if c.GatherTimeout <= 0 {
		bad("GatherTimeout", "%v, must be positive", c.GatherTimeout)
	}
	if c.MaxSessionsPerSubject < 0 || c.MaxPendingSessions < 0 || c.MaxPendingPerClient < 0 {
		bad("MaxSessionsPerSubject/MaxPendingSessions/MaxPendingPerClient", "negative (0 means no cap)")
	}
	if c.OfferRate < 0 || c.OfferBurst < 0 || (c.OfferRate > 0 && c.OfferBurst < 1) {
		bad("OfferRate/OfferBurst", "%v/s burst %d: both positive, or OfferRate 0 for no limit", c.OfferRate, c.OfferBurst)
	}
	if c.FanoutInterval < 0 || c.FanoutInterval > time.Second {
		bad("FanoutInterval", "%v, must be from 0 to 1s", c.FanoutInterval)
	}
	if c.FanoutPacketRate < 0 {
		bad("FanoutPacketRate", "%v, must not be negative", c.FanoutPacketRate)
	}
	if c.ConnectTimeout <= 0 {
		bad("ConnectTimeout", "%v, must be positive", c.ConnectTimeout)
	}
	if c.MaxOfferSize < 1024 {
		bad("MaxOfferSize", "%d, must be at least 1024", c.MaxOfferSize)
	}
	if c.MaxFrameSize < minFrameSize || c.MaxFrameSize > maxFrameSizeLimit {
		bad("MaxFrameSize", "%d, must be in [%d, %d]", c.MaxFrameSize, minFrameSize, maxFrameSizeLimit)
	}
	if c.MaxSubscriptions < 1 {
		bad("MaxSubscriptions", "%d, must be at least 1", c.MaxSubscriptions)
	}
	if c.PublishRate < 0 {
		bad("PublishRate", "%v, must not be negative", c.PublishRate)
	}
	if c.PublishRate > 0 && c.PublishBurst < 1 {
		bad("PublishBurst", "%d, must be at least 1 when PublishRate is set", c.PublishBurst)
	}
	if c.PublishTimeout <= 0 {
		bad("PublishTimeout", "%v, must be positive", c.PublishTimeout)
	}
	if c.QueueLength < 1 {
		bad("QueueLength", "%d, must be at least 1", c.QueueLength)
	}
	if c.QueueBytes < c.MaxFrameSize {
		bad("QueueBytes", "%d, must hold at least one frame of MaxFrameSize %d", c.QueueBytes, c.MaxFrameSize)
	}
	if c.MaxBufferedAmount < c.MaxFrameSize {
		bad("MaxBufferedAmount", "%d, must be at least MaxFrameSize %d", c.MaxBufferedAmount, c.MaxFrameSize)
	}
	if c.SlowPolicy != DropOldest && c.SlowPolicy != Disconnect {
		bad("SlowPolicy", "unknown policy %d", int(c.SlowPolicy))
	}
	if c.StallTimeout <= 0 {
		bad("StallTimeout", "%v, must be positive", c.StallTimeout)
	}
	c.Relay.validate(bad)
	if c.Relay.Enabled && c.MaxFrameSize < maxProbeFrame {
		bad("MaxFrameSize", "%d, must take an upload probe's frame (%d bytes) when relays are on", c.MaxFrameSize, maxProbeFrame)
	}
	return errors.Join(errs...)
}
