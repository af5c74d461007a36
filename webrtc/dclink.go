package webrtc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/datachannel"
	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/fingerprint"
	dtlsnet "github.com/pion/dtls/v3/pkg/net"
	"github.com/pion/ice/v4"
	"github.com/pion/sctp"
	"github.com/pion/stun/v3"
	"github.com/pion/transport/v4/stdnet"
)

// The server's data channel stack is built from pion's parts, without a
// pion PeerConnection: an ICE agent on the shared UDP mux, a DTLS server,
// an SCTP association and the one data channel. A PeerConnection also
// starts, for every browser and whether or not it carries media, SRTP and
// SRTCP sessions, an RTP/RTCP demultiplexer, undeclared-media readers and
// a data channel acceptor (nine goroutines and about 40 KiB); none of
// them serves a data channel. The Go client (client.go) and the
// benchmark's bare-pion baseline still use pion's PeerConnection.

// dcStack is what every session's link shares: the UDP sockets, the ICE
// options, the DTLS certificate.
type dcStack struct {
	mux         *udpMux
	agentOpts   []ice.AgentOption
	cert        tls.Certificate
	fingerprint string // of cert, "sha-256 AB:CD:..."
	// maxMessageSize is advertised as a=max-message-size: a conforming
	// browser sends no larger message.
	maxMessageSize int
	// receiveBuffer bounds what SCTP holds of a browser's unread data.
	receiveBuffer uint32
	logs          pionLogFactory
	// lite is the one local address of ICE-lite sessions (icelite.go),
	// nil when every session runs pion's full ICE agent; liteCandidates
	// are the host candidates the answer gives for it.
	lite           net.Addr
	liteCandidates []string
}

// sctpPort is the SCTP port of both ends: pion's association uses 5000
// and nothing else, so an offer must too (browsers do).
const sctpPort = 5000

// sctpMTU is pion's: small enough for any path (RFC 8831 section 5).
const sctpMTU = 1200

// maxRemoteCandidates bounds the candidates taken from an offer: each
// is a pair the ICE agent checks.
const maxRemoteCandidates = 32

// ICE timing on the server: pion's disconnected and failed timeouts (5 s,
// 25 s), and a keepalive every 10 s (serverKeepAlive).
const (
	iceDisconnectedTimeout = 5 * time.Second
	iceFailedTimeout       = 25 * time.Second
)

// serverKeepAlive is how often the server sends an ICE keepalive on an idle
// session. Browsers check consent every 5 s on their own (RFC 7675), which
// keeps NAT bindings open; pion's default of 2 s adds a timer and a packet
// per session for nothing.
const serverKeepAlive = 10 * time.Second

// newDCStack binds the shared UDP sockets and makes the certificate.
// Every session shares one UDP socket per local address (ICE UDP mux); no
// mDNS (the server only answers: a browser's mDNS-named candidates become
// peer-reflexive ones when its checks arrive); UDP only.
func newDCStack(o transportOptions, servers []ICEServer) (*dcStack, error) {
	urls, err := stunURIs(servers, o.loopbackOnly)
	if err != nil {
		return nil, err
	}
	cert, fp, err := newCertificate()
	if err != nil {
		return nil, err
	}
	// One view of the host's interfaces for every agent: an agent makes
	// its own otherwise, a netlink dump (CPU and 6 KiB kept) per browser.
	ifaces, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("network interfaces: %w", err)
	}
	mux, err := listenUDPMux(o)
	if err != nil {
		return nil, err
	}
	st := &dcStack{
		mux:            mux,
		cert:           cert,
		fingerprint:    fp,
		maxMessageSize: o.maxMessageSize,
		receiveBuffer:  o.receiveBufferSize,
		logs:           newPionLogFactory(o.log),
	}
	networks := []ice.NetworkType{ice.NetworkTypeUDP4, ice.NetworkTypeUDP6}
	if o.loopbackOnly {
		networks = networks[:1]
	}
	st.agentOpts = []ice.AgentOption{
		ice.WithUDPMux(mux),
		ice.WithNet(ifaces),
		ice.WithLoggerFactory(st.logs),
		ice.WithMulticastDNSMode(ice.MulticastDNSModeDisabled),
		ice.WithNetworkTypes(networks),
		ice.WithUrls(urls),
		ice.WithPortRange(o.portMin, o.portMax), // server-reflexive gathering's own socket
		ice.WithDisconnectedTimeout(iceDisconnectedTimeout),
		ice.WithFailedTimeout(iceFailedTimeout),
		ice.WithKeepaliveInterval(serverKeepAlive),
	}
	if o.loopbackOnly {
		st.agentOpts = append(st.agentOpts, ice.WithIncludeLoopback(),
			ice.WithIPFilter(func(ip net.IP) bool { return ip.IsLoopback() && ip.To4() != nil }))
	}
	if len(o.publicIPs) > 0 {
		st.agentOpts = append(st.agentOpts, ice.WithAddressRewriteRules(ice.AddressRewriteRule{
			External: o.publicIPs, AsCandidateType: ice.CandidateTypeHost,
		}))
	}
	if o.iceLite && len(urls) == 0 {
		st.lite, st.liteCandidates = liteAddress(mux.GetListenAddresses(), o.publicIPs)
	}
	return st, nil
}

// liteAddress returns the address of ICE-lite sessions and its
// candidates, or nil if ICE-lite cannot serve this host: one whose
// address is private (behind a NAT, unless PublicIPs says how it is
// reached), or that has several. An ICE-lite
// session reads one socket, so the mux must have exactly one IPv4 address
// (its IPv6 ones, if any, are not advertised: every browser has IPv4): on
// a host with several (a bridge for containers beside the public
// interface) the server cannot tell which one browsers reach, and runs
// full ICE, which advertises and checks them all. The candidates are that
// address, or the public IPs with its port.
func liteAddress(addrs []net.Addr, publicIPs []string) (net.Addr, []string) {
	var pick *net.UDPAddr
	for _, a := range addrs {
		ua, ok := a.(*net.UDPAddr)
		if !ok || ua.IP.To4() == nil {
			continue
		}
		if pick != nil {
			return nil, nil
		}
		pick = ua
	}
	if pick == nil {
		return nil, nil
	}
	if len(publicIPs) == 0 && !pick.IP.IsLoopback() && !reachableIP(pick.IP) {
		// A private address: the host is most likely behind a NAT (a
		// volunteer at home), which only the server's own checks open.
		return nil, nil
	}
	ips := publicIPs
	if len(ips) == 0 {
		ips = []string{pick.IP.String()}
	}
	cands := make([]string, len(ips))
	for i, ip := range ips {
		// Foundation, component 1, UDP, the highest host priority
		// (RFC 8445 section 5.1.2.1: type 126, local preference 65535).
		cands[i] = strconv.Itoa(i+1) + " 1 udp 2130706431 " + ip + " " + strconv.Itoa(pick.Port) + " typ host"
	}
	return pick, cands
}

// cgnat is the shared address space of carrier-grade NAT (RFC 6598).
var cgnat = net.IPNet{IP: net.IPv4(100, 64, 0, 0), Mask: net.CIDRMask(10, 32)}

// reachableIP reports whether browsers elsewhere can send to ip directly:
// a global unicast address, not a private (RFC 1918), carrier-grade NAT or
// link-local one.
func reachableIP(ip net.IP) bool {
	return ip.IsGlobalUnicast() && !ip.IsPrivate() && !cgnat.Contains(ip)
}

func (st *dcStack) close() error { return st.mux.Close() }

// stunURIs converts the configured STUN and TURN servers for the ICE
// agent (Config.validate has checked them).
func stunURIs(servers []ICEServer, loopbackOnly bool) ([]*stun.URI, error) {
	if loopbackOnly {
		return nil, nil // nothing off the host may be contacted
	}
	var out []*stun.URI
	for _, s := range servers {
		for _, u := range s.URLs {
			uri, err := stun.ParseURI(u)
			if err != nil {
				return nil, fmt.Errorf("ICE server %q: %w", u, err)
			}
			uri.Username, uri.Password = s.Username, s.Credential
			out = append(out, uri)
		}
	}
	return out, nil
}

// newCertificate makes the server's DTLS certificate, shared by every
// session (a browser checks it against the fingerprint of the answer,
// not a CA; it does the same with its own, as pion does per connection).
func newCertificate() (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("DTLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("DTLS certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "immense"},
		NotBefore:    now.Add(-24 * time.Hour),
		NotAfter:     now.AddDate(10, 0, 0), // browsers check the fingerprint, not the dates
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("DTLS certificate: %w", err)
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("DTLS certificate: %w", err)
	}
	fp, err := fingerprint.Fingerprint(parsed, crypto.SHA256)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("DTLS certificate fingerprint: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, "sha-256 " + strings.ToUpper(fp), nil
}

// dcLink is one browser's connection: its ICE agent, and once connected
// its DTLS connection, SCTP association and data channel.
type dcLink struct {
	st    *dcStack
	offer remoteOffer
	agent *ice.Agent // nil for an ICE-lite link
	lite  *liteConn  // nil for a full ICE link

	mu     sync.Mutex
	closed bool
	dtls   *dtls.Conn
	assoc  *sctp.Association
	dc     *datachannel.DataChannel
}

// newLink starts an ICE agent for offer, gathers its candidates (within
// gatherTimeout) and returns the link with the SDP answer. onFailed is
// called (on the agent's goroutine) when ICE fails.
func (st *dcStack) newLink(ctx context.Context, offer remoteOffer, gatherTimeout time.Duration, onFailed func()) (*dcLink, string, error) {
	if st.lite != nil {
		ufrag, pwd := newICECredentials()
		lc, err := newLiteConn(st.mux, st.lite, ufrag, pwd, offer.ufrag, offer.pwd, onFailed)
		if err != nil {
			return nil, "", fmt.Errorf("ICE-lite: %w", err)
		}
		l := &dcLink{st: st, offer: offer, lite: lc}
		return l, buildAnswer(offer, true, ufrag, pwd, st.fingerprint, st.maxMessageSize, st.liteCandidates), nil
	}
	agent, err := ice.NewAgentWithOptions(st.agentOpts...)
	if err != nil {
		return nil, "", fmt.Errorf("ICE agent: %w", err)
	}
	l := &dcLink{st: st, offer: offer, agent: agent}
	var (
		mu       sync.Mutex
		cands    []string
		gathered = make(chan struct{})
	)
	err = agent.OnCandidate(func(c ice.Candidate) {
		mu.Lock()
		defer mu.Unlock()
		if c == nil {
			close(gathered)
			return
		}
		cands = append(cands, c.Marshal())
	})
	if err == nil {
		err = agent.OnConnectionStateChange(func(s ice.ConnectionState) {
			if s == ice.ConnectionStateFailed {
				onFailed()
			}
		})
	}
	if err == nil {
		err = agent.GatherCandidates()
	}
	if err != nil {
		_ = agent.Close()
		return nil, "", fmt.Errorf("ICE gathering: %w", err)
	}
	timer := time.NewTimer(gatherTimeout)
	defer timer.Stop()
	select {
	case <-gathered:
	case <-timer.C:
		// Answer with what was gathered: host candidates come first and
		// are often enough; a slow STUN server should not fail the offer.
		st.logs.log.Warn("ICE gathering timed out; answering with the candidates gathered so far (is a STUN server unreachable?)", "timeout", gatherTimeout)
	case <-ctx.Done():
		_ = agent.Close()
		return nil, "", ctx.Err()
	}
	for _, raw := range offer.candidates {
		c, err := ice.UnmarshalCandidate(raw)
		if err != nil || c.NetworkType().IsTCP() {
			continue // a candidate we cannot use (TCP, or a browser's newer syntax): others may do
		}
		_ = agent.AddRemoteCandidate(c)
	}
	ufrag, pwd, err := agent.GetLocalUserCredentials()
	if err != nil {
		_ = agent.Close()
		return nil, "", fmt.Errorf("ICE credentials: %w", err)
	}
	mu.Lock()
	answer := buildAnswer(offer, false, ufrag, pwd, st.fingerprint, st.maxMessageSize, cands)
	mu.Unlock()
	return l, answer, nil
}

// errClosedLink: the session closed while its link was connecting.
var errClosedLink = errors.New("closed while connecting")

// connect waits for the browser's ICE checks, then does the DTLS
// handshake (as server: the answer says setup:passive), the SCTP
// association and the data channel's opening, and returns the first
// channel accept takes. Other channels are refused. close (from another
// goroutine, e.g. the connect timer) ends it.
func (l *dcLink) connect(ctx context.Context, accept func(*datachannel.DataChannel) bool) (*datachannel.DataChannel, error) {
	var (
		pconn net.PacketConn
		raddr net.Addr
	)
	if l.lite != nil {
		// The browser's checks select the address (liteConn.WriteTo).
		pconn, raddr = l.lite, &net.UDPAddr{IP: net.IPv4zero}
	} else {
		conn, err := l.agent.Accept(ctx, l.offer.ufrag, l.offer.pwd)
		if err != nil {
			return nil, fmt.Errorf("ICE: %w", err)
		}
		pconn, raddr = dtlsnet.PacketConnFromConn(conn), conn.RemoteAddr()
	}
	st := l.st
	dc, err := dtls.Server(pconn, raddr, &dtls.Config{
		Certificates: []tls.Certificate{st.cert},
		// Browsers offer SRTP in every handshake; one is selected so that
		// none refuses the connection, but no SRTP session is started.
		SRTPProtectionProfiles: []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80},
		ClientAuth:             dtls.RequireAnyClientCert,
		// The browser's certificate is self-signed; what authenticates it
		// is the fingerprint its offer gave.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error { return l.offer.verifyCertificate(raw) },
		LoggerFactory:         st.logs,
	})
	if err != nil {
		return nil, fmt.Errorf("DTLS: %w", err)
	}
	if !l.set(func() { l.dtls = dc }) {
		_ = dc.Close()
		return nil, errClosedLink
	}
	if err := dc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("DTLS handshake: %w", err)
	}
	// Closing the DTLS connection (l.close) ends a handshake in progress.
	assoc, err := sctp.Client(sctp.Config{
		NetConn:              dc,
		MaxReceiveBufferSize: st.receiveBuffer,
		MaxMessageSize:       l.offer.maxMessageSize,
		EnableZeroChecksum:   true, // where the browser agrees: DTLS already authenticates every packet
		LoggerFactory:        st.logs,
		MTU:                  sctpMTU,
	})
	if err != nil {
		return nil, fmt.Errorf("SCTP: %w", err)
	}
	if !l.set(func() { l.assoc = assoc }) {
		assoc.Abort("")
		return nil, errClosedLink
	}
	for {
		ch, err := datachannel.Accept(assoc, &datachannel.Config{LoggerFactory: st.logs})
		if err != nil {
			return nil, fmt.Errorf("data channel: %w", err)
		}
		if accept(ch) {
			if !l.set(func() { l.dc = ch }) {
				return nil, errClosedLink
			}
			return ch, nil
		}
		_ = ch.Close()
	}
}

// set runs f under the link's lock unless it is closed.
func (l *dcLink) set(f func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	f()
	return true
}

// close ends the link: the data channel, an SCTP ABORT, a DTLS
// close_notify, the ICE agent. It waits for pion's goroutines, so it must
// not run on one of them.
func (l *dcLink) close() {
	l.mu.Lock()
	l.closed = true
	dc, assoc, conn := l.dc, l.assoc, l.dtls
	l.mu.Unlock()
	if dc != nil {
		_ = dc.Close()
	}
	if assoc != nil {
		assoc.Abort("")
	}
	if conn != nil {
		_ = conn.Close()
	}
	if l.lite != nil {
		_ = l.lite.Close()
		return
	}
	_ = l.agent.GracefulClose()
}

// localPort is the local port of the selected ICE candidate pair, 0
// before there is one.
func (l *dcLink) localPort() int {
	if l.lite != nil {
		return l.lite.LocalAddr().(*net.UDPAddr).Port
	}
	pair, err := l.agent.GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return 0
	}
	return pair.Local.Port()
}

// buildAnswer writes the SDP answer to offer: one data channel section,
// DTLS server (setup:passive), every local candidate, gathering complete;
// lite says the server is an ICE-lite endpoint.
func buildAnswer(o remoteOffer, lite bool, ufrag, pwd, fp string, maxMessageSize int, cands []string) string {
	var b strings.Builder
	w := func(lines ...string) {
		for _, l := range lines {
			b.WriteString(l)
			b.WriteString("\r\n")
		}
	}
	w("v=0",
		"o=- "+strconv.FormatUint(mrand.Uint64()>>1, 10)+" 2 IN IP4 0.0.0.0", // the session id: any number below 2^63
		"s=-",
		"t=0 0")
	if lite {
		w("a=ice-lite")
	}
	if o.bundle {
		w("a=group:BUNDLE " + o.mid)
	}
	w("a=fingerprint:"+fp,
		"m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
		"c=IN IP4 0.0.0.0",
		"a=setup:passive",
		"a=mid:"+o.mid,
		"a=sendrecv",
		"a=sctp-port:"+strconv.Itoa(sctpPort),
		"a=max-message-size:"+strconv.Itoa(maxMessageSize),
		"a=ice-ufrag:"+ufrag,
		"a=ice-pwd:"+pwd)
	for _, c := range cands {
		w("a=candidate:" + c)
	}
	w("a=end-of-candidates")
	return b.String()
}
