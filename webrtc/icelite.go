package webrtc

import (
	"crypto/rand"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v3"
)

// ICE-lite (RFC 8445 section 2.5): a server with an address every browser
// can reach needs no ICE agent. It advertises that one host candidate and
// a=ice-lite; the browser, then always the controlling agent, sends its
// connectivity checks, and the server only answers them. A liteConn does
// that inside the DTLS connection's reads: each packet from the shared UDP
// mux is either a STUN binding request, answered on the spot, or a DTLS
// record from an address that passed a check, handed to DTLS. Against
// pion's agent this saves, per browser, four goroutines (the agent's task
// loop, its connectivity-check ticker, the candidate's reader, a context
// watcher), an 8 KiB read buffer, the ICE connection's packet buffer, and
// the agent's state and timers.
//
// It cannot open a NAT: a server behind one needs its own checks and
// server-reflexive candidates, so with ICEServers configured the server
// runs pion's full agent instead (dclink.go).

// Consent (RFC 7675): a browser checks every 5 s that the server still
// answers; a session with no packet from the browser for iceFailedTimeout
// is failed, as pion's agent would declare it. liteConsentCheck is how
// often that is checked: a timer per session, no goroutine.
const liteConsentCheck = 5 * time.Second

// noLiteHints turns the binding request of hint off, for
// BenchmarkBrowserConnect to measure what it saves.
var noLiteHints atomic.Bool

// maxLiteAddrs bounds the remote addresses a session keeps as checked:
// a browser checks one pair per candidate of its own.
const maxLiteAddrs = 8

// liteConn is one browser's ICE-lite endpoint: the net.PacketConn its DTLS
// connection reads and writes.
type liteConn struct {
	conn      net.PacketConn // the UDP mux's connection for ufrag
	username  string         // what the browser's checks must carry: ufrag ":" its ufrag
	integrity stun.MessageIntegrity
	// The browser's credentials, for the one binding request that tells
	// its agent a checked pair works (handleSTUN).
	remoteUser      string // its ufrag ":" ufrag
	remoteIntegrity stun.MessageIntegrity
	onFailed        func()
	lastSeen        atomic.Int64 // unix nanoseconds of the last packet from a checked address
	timer           *time.Timer

	mu       sync.Mutex
	checked  []*net.UDPAddr // remote addresses that passed a check, newest last
	selected *net.UDPAddr   // where DTLS writes go: the browser's latest
	hints    int            // binding requests sent (hint), at most maxLiteAddrs
	done     bool           // failed or closed: the consent timer stops
}

// errLiteNoAddress: DTLS wrote before any check arrived (it should not:
// the server is the DTLS server and speaks only when spoken to).
var errLiteNoAddress = errors.New("ICE-lite: no checked address to write to")

// newLiteConn registers ufrag with the mux at local and returns the
// browser's endpoint. onFailed is called once (on a timer) if the browser
// falls silent.
func newLiteConn(mux interface {
	GetConn(string, net.Addr) (net.PacketConn, error)
}, local net.Addr, ufrag, pwd, remoteUfrag, remotePwd string, onFailed func()) (*liteConn, error) {
	pc, err := mux.GetConn(ufrag, local)
	if err != nil {
		return nil, err
	}
	c := &liteConn{
		conn:            pc,
		username:        ufrag + ":" + remoteUfrag,
		integrity:       stun.NewShortTermIntegrity(pwd),
		remoteUser:      remoteUfrag + ":" + ufrag,
		remoteIntegrity: stun.NewShortTermIntegrity(remotePwd),
		onFailed:        onFailed,
	}
	c.lastSeen.Store(time.Now().UnixNano())
	c.mu.Lock()
	c.timer = time.AfterFunc(liteConsentCheck, c.checkConsent)
	c.mu.Unlock()
	return c, nil
}

// checkConsent fails the session if the browser has been silent for
// iceFailedTimeout, and checks again later otherwise.
func (c *liteConn) checkConsent() {
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return
	}
	if time.Since(time.Unix(0, c.lastSeen.Load())) < iceFailedTimeout {
		c.timer.Reset(liteConsentCheck)
		c.mu.Unlock()
		return
	}
	c.done = true
	c.mu.Unlock()
	c.onFailed()
}

// ReadFrom returns the next DTLS packet from a checked address, answering
// the STUN binding requests that come before it.
func (c *liteConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.conn.ReadFrom(b)
		if err != nil {
			return n, addr, err
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok {
			continue
		}
		if stun.IsMessage(b[:n]) {
			c.handleSTUN(b[:n], ua)
			continue
		}
		if c.fromChecked(ua) {
			return n, ua, nil
		}
	}
}

// fromChecked reports whether addr passed a check, and makes it where
// replies go: the browser sends from the pair it uses.
func (c *liteConn) fromChecked(addr *net.UDPAddr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.checked {
		if a.Port == addr.Port && a.IP.Equal(addr.IP) {
			c.selected = a
			c.lastSeen.Store(time.Now().UnixNano())
			return true
		}
	}
	return false
}

// handleSTUN answers a browser's binding request: the right username and
// the server's password (message integrity), else nothing. A request with
// USE-CANDIDATE (the browser nominating the pair) selects its address.
func (c *liteConn) handleSTUN(raw []byte, addr *net.UDPAddr) {
	m := &stun.Message{Raw: raw}
	if err := m.Decode(); err != nil || m.Type != stun.BindingRequest {
		return // responses and indications (keepalives) need no answer
	}
	var user stun.Username
	if err := user.GetFrom(m); err != nil || string(user) != c.username {
		return
	}
	if err := c.integrity.Check(m); err != nil {
		return
	}
	if m.Contains(stun.AttrFingerprint) {
		if err := stun.Fingerprint.Check(m); err != nil {
			return
		}
	}
	out, err := stun.Build(stun.NewTransactionIDSetter(m.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: addr.IP, Port: addr.Port}, c.integrity, stun.Fingerprint)
	if err != nil {
		return
	}
	nominated := m.Contains(stun.AttrUseCandidate)
	c.mu.Lock()
	known := false
	for _, a := range c.checked {
		if a.Port == addr.Port && a.IP.Equal(addr.IP) {
			known, addr = true, a
			break
		}
	}
	hint := !noLiteHints.Load() && !known && c.hints < maxLiteAddrs
	if hint {
		c.hints++
	}
	if !known {
		if len(c.checked) == maxLiteAddrs {
			c.checked = append(c.checked[:0], c.checked[1:]...)
		}
		c.checked = append(c.checked, addr)
	}
	if nominated || c.selected == nil {
		c.selected = addr
	}
	c.mu.Unlock()
	c.lastSeen.Store(time.Now().UnixNano())
	_, _ = c.conn.WriteTo(out.Raw, addr) // also registers addr with the mux
	if hint {
		c.hint(addr)
	}
}

// hint sends the browser one binding request on a pair that just passed
// its check. A lite agent need not check (RFC 8445, section 2.5), and the
// browser ignores the answer's absence; but pion's controlling agent
// nominates a pair that worked only on its next tick, 200 ms later, unless
// the other side's request shows the pair works both ways, when it
// nominates at once: the Go client connected in 205-210 ms to an ICE-lite
// server against 4-6 ms with full ICE, before this. One request per newly
// checked address, maxLiteAddrs in a session's life (only a sender with
// the session's password gets one); the answer is dropped with the other
// responses. PRIORITY is a peer-reflexive candidate's (RFC 8445, section
// 7.1.1).
func (c *liteConn) hint(addr *net.UDPAddr) {
	var tie [8]byte
	_, _ = rand.Read(tie[:])
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername(c.remoteUser),
		stun.RawAttribute{Type: stun.AttrICEControlled, Value: tie[:]},
		stun.RawAttribute{Type: stun.AttrPriority, Value: []byte{0x6e, 0xff, 0xff, 0xff}}, // type preference 110
		c.remoteIntegrity, stun.Fingerprint)
	if err != nil {
		return
	}
	_, _ = c.conn.WriteTo(req.Raw, addr)
}

// WriteTo sends b to the browser's selected address, whatever addr DTLS
// gives (the placeholder it was created with).
func (c *liteConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.mu.Lock()
	to := c.selected
	c.mu.Unlock()
	if to == nil {
		return 0, errLiteNoAddress
	}
	return c.conn.WriteTo(b, to)
}

// Close unregisters the session from the mux, which ends a blocked
// ReadFrom.
func (c *liteConn) Close() error {
	c.mu.Lock()
	c.done = true
	c.timer.Stop()
	c.mu.Unlock()
	return c.conn.Close()
}

func (c *liteConn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// The mux's connections have no deadlines; DTLS ends a read by closing.
func (c *liteConn) SetDeadline(time.Time) error      { return nil }
func (c *liteConn) SetReadDeadline(time.Time) error  { return nil }
func (c *liteConn) SetWriteDeadline(time.Time) error { return nil }

// iceCharset are the characters of ICE credentials (RFC 8839 ice-char).
const iceCharset = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// newICECredentials returns a random ufrag (16 characters, 96 bits) and
// password (32 characters: RFC 8839 asks at least 22).
func newICECredentials() (ufrag, pwd string) {
	return randomICEString(16), randomICEString(32)
}

func randomICEString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail
	for i := range b {
		b[i] = iceCharset[b[i]%64]
	}
	return string(b)
}
