package webrtc

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// TestICELiteAndFullICE: a browser (the Go client, pion's full ICE agent)
// connects and gets messages both when the server answers as ICE-lite and
// when it runs a full agent per session; with ICE-lite no session has an
// agent.
func TestICELiteAndFullICE(t *testing.T) {
	for _, lite := range []bool{true, false} {
		t.Run(fmt.Sprintf("lite=%v", lite), func(t *testing.T) {
			const topic = "room"
			e := newTestEnv(t, func(c *Config) { c.ICELite = lite })
			ctx := testContext(t)
			c := e.dial(ctx, e.token([]string{topic}, nil))
			if err := c.Subscribe(ctx, topic); err != nil {
				t.Fatal(err)
			}
			if err := e.bus.Publish(ctx, topic, []byte("hello"), "", nil); err != nil {
				t.Fatal(err)
			}
			select {
			case m := <-c.Messages():
				if string(m.Data) != "hello" {
					t.Fatalf("got %q", m.Data)
				}
			case <-ctx.Done():
				t.Fatal("no message")
			}
			e.srv.mu.Lock()
			defer e.srv.mu.Unlock()
			for _, s := range e.srv.sessions {
				if (s.link.lite != nil) != lite || (s.link.agent == nil) != lite {
					t.Errorf("ICELite %v: session has lite endpoint %v, ICE agent %v", lite, s.link.lite != nil, s.link.agent != nil)
				}
			}
		})
	}
}

// packetPipe is an in-memory net.PacketConn: ReadFrom returns what the
// test queued, WriteTo records what was written.
type packetPipe struct {
	in      chan pipePacket
	written []pipePacket
}

type pipePacket struct {
	b    []byte
	addr net.Addr
}

func (p *packetPipe) ReadFrom(b []byte) (int, net.Addr, error) {
	pkt, ok := <-p.in
	if !ok {
		return 0, nil, io.EOF
	}
	return copy(b, pkt.b), pkt.addr, nil
}

func (p *packetPipe) WriteTo(b []byte, addr net.Addr) (int, error) {
	p.written = append(p.written, pipePacket{append([]byte(nil), b...), addr})
	return len(b), nil
}
func (p *packetPipe) Close() error                     { return nil }
func (p *packetPipe) LocalAddr() net.Addr              { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (p *packetPipe) SetDeadline(time.Time) error      { return nil }
func (p *packetPipe) SetReadDeadline(time.Time) error  { return nil }
func (p *packetPipe) SetWriteDeadline(time.Time) error { return nil }

// TestLiteConnChecks: the ICE-lite endpoint answers only binding requests
// with the right username and password, answers them with the browser's
// address under the same password, and hands DTLS only packets from
// addresses that passed a check; writes go to the nominated address. Each
// newly checked address also gets one binding request under the browser's
// credentials (the hint that makes pion's agent nominate at once).
func TestLiteConnChecks(t *testing.T) {
	const ufrag, pwd, remoteUfrag, remotePwd = "serverufrag", "serverpassword0123456789", "browser", "browserpassword0123456789"
	pipe := &packetPipe{in: make(chan pipePacket, 16)}
	c := &liteConn{conn: pipe, username: ufrag + ":" + remoteUfrag, integrity: stun.NewShortTermIntegrity(pwd), onFailed: func() {},
		remoteUser: remoteUfrag + ":" + ufrag, remoteIntegrity: stun.NewShortTermIntegrity(remotePwd)}
	request := func(user, key string, nominate bool) []byte { return bindingRequest(t, user, key, nominate) }
	a := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4001}
	b := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4002}
	stranger := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4003}
	dtlsRecord := func(tag byte) []byte { return []byte{22, 0xfe, 0xfd, tag} } // a handshake record's first bytes

	pipe.in <- pipePacket{request(ufrag+":"+remoteUfrag, "wrong password", false), stranger}
	pipe.in <- pipePacket{request("other:"+remoteUfrag, pwd, false), stranger}
	pipe.in <- pipePacket{dtlsRecord(1), stranger} // no check passed: dropped
	pipe.in <- pipePacket{request(ufrag+":"+remoteUfrag, pwd, false), a}
	pipe.in <- pipePacket{request(ufrag+":"+remoteUfrag, pwd, true), b} // nominated
	pipe.in <- pipePacket{dtlsRecord(2), a}
	close(pipe.in)

	buf := make([]byte, 1500)
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf[:n], dtlsRecord(2)) || from.String() != a.String() {
		t.Fatalf("DTLS got %x from %v, want %x from %v", buf[:n], from, dtlsRecord(2), a)
	}
	if len(pipe.written) != 4 {
		t.Fatalf("%d packets written, want 4 (an answer and a hint for each check with the right credentials)", len(pipe.written))
	}
	for i, want := range []*net.UDPAddr{a, b} {
		h := pipe.written[2*i+1]
		hm := &stun.Message{Raw: h.b}
		var u stun.Username
		if err := hm.Decode(); err != nil || hm.Type != stun.BindingRequest || h.addr.String() != want.String() ||
			u.GetFrom(hm) != nil || string(u) != remoteUfrag+":"+ufrag || !hm.Contains(stun.AttrICEControlled) ||
			stun.NewShortTermIntegrity(remotePwd).Check(hm) != nil || stun.Fingerprint.Check(hm) != nil {
			t.Errorf("hint %d to %v: %v %q %v, want a binding request to %v under the browser's credentials", i, h.addr, hm.Type, u, err, want)
		}
		w := pipe.written[2*i]
		if w.addr.String() != want.String() {
			t.Errorf("answer %d went to %v, want %v", i, w.addr, want)
		}
		m := &stun.Message{Raw: w.b}
		if err := m.Decode(); err != nil || m.Type != stun.BindingSuccess {
			t.Fatalf("answer %d: %v %v", i, m.Type, err)
		}
		if err := stun.NewShortTermIntegrity(pwd).Check(m); err != nil {
			t.Errorf("answer %d: integrity: %v", i, err)
		}
		var xor stun.XORMappedAddress
		if err := xor.GetFrom(m); err != nil || xor.Port != want.Port || !xor.IP.Equal(want.IP) {
			t.Errorf("answer %d: mapped address %v (%v), want %v", i, xor, err, want)
		}
	}
	// The last packet came from a, so DTLS answers go there.
	if _, err := c.WriteTo([]byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	if got := pipe.written[4].addr.String(); got != a.String() {
		t.Errorf("DTLS write went to %v, want %v (the browser's latest address)", got, a)
	}
	if _, _, err := c.ReadFrom(buf); err != io.EOF {
		t.Errorf("after the mux closed the connection: %v, want EOF", err)
	}
}

// TestLiteAddress: ICE-lite serves a host with one IPv4 address among its
// sockets (IPv6 ones beside it are not advertised), advertising it or the
// public IPs with its port, and not a host with two, where it cannot tell
// which one browsers reach, nor one with a private address and no public
// IP given (behind a NAT).
func TestLiteAddress(t *testing.T) {
	v4 := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5000}
	v4b := &net.UDPAddr{IP: net.IPv4(172, 17, 0, 1), Port: 5000}
	v6 := &net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 5000}
	home := &net.UDPAddr{IP: net.IPv4(192, 168, 1, 2), Port: 5000}
	carrier := &net.UDPAddr{IP: net.IPv4(100, 70, 0, 9), Port: 5000}
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}
	for _, c := range []struct {
		addrs  []net.Addr
		public []string
		want   net.Addr
		cands  []string
	}{
		{[]net.Addr{v4}, nil, v4, []string{"1 1 udp 2130706431 192.0.2.1 5000 typ host"}},
		{[]net.Addr{v6, v4}, nil, v4, []string{"1 1 udp 2130706431 192.0.2.1 5000 typ host"}},
		{[]net.Addr{v4}, []string{"198.51.100.7"}, v4, []string{"1 1 udp 2130706431 198.51.100.7 5000 typ host"}},
		{[]net.Addr{v4, v4b}, nil, nil, nil},
		{[]net.Addr{v6}, nil, nil, nil},
		// Private, CGNAT: behind a NAT, full ICE; unless the operator
		// gave the public IP (1:1 NAT); loopback (tests, devnets): lite.
		{[]net.Addr{home}, nil, nil, nil},
		{[]net.Addr{carrier}, nil, nil, nil},
		{[]net.Addr{home}, []string{"198.51.100.7"}, home, []string{"1 1 udp 2130706431 198.51.100.7 5000 typ host"}},
		{[]net.Addr{lo}, nil, lo, []string{"1 1 udp 2130706431 127.0.0.1 5000 typ host"}},
	} {
		got, cands := liteAddress(c.addrs, c.public)
		if fmt.Sprint(got) != fmt.Sprint(c.want) || fmt.Sprint(cands) != fmt.Sprint(c.cands) {
			t.Errorf("liteAddress(%v, %v) = %v %q, want %v %q", c.addrs, c.public, got, cands, c.want, c.cands)
		}
	}
}

// bindingRequest returns a binding request as a browser sends it:
// USERNAME user (the server's ufrag and its own), integrity with pwd, and
// (with nominate) USE-CANDIDATE.
func bindingRequest(tb testing.TB, user, pwd string, nominate bool) []byte {
	tb.Helper()
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest, stun.NewUsername(user)}
	if nominate {
		setters = append(setters, stun.RawAttribute{Type: stun.AttrUseCandidate})
	}
	setters = append(setters, stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		tb.Fatal(err)
	}
	return m.Raw
}

// FuzzLiteSTUN: whatever a stranger sends to the ICE-lite endpoint, it
// does not panic, and it takes the sender's address (and answers) only for
// a binding request with the right username and message integrity; seeds
// in testdata/fuzz/FuzzLiteSTUN and below.
func FuzzLiteSTUN(f *testing.F) {
	const user, pwd = "serverufrag:browser", "serverpasswordserverpassword1234"
	f.Add(bindingRequest(f, user, pwd, false))
	f.Add(bindingRequest(f, user, pwd, true))
	f.Add(bindingRequest(f, user, "wrongpasswordwrongpasswordwrong1", true))
	f.Add(bindingRequest(f, "serverufrag:other", pwd, false))
	f.Add([]byte{0x16, 0xfe, 0xfd, 0, 0}) // a DTLS record
	f.Fuzz(func(t *testing.T, b []byte) {
		pipe := &packetPipe{}
		c := &liteConn{conn: pipe, username: user, integrity: stun.NewShortTermIntegrity(pwd)}
		addr := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000}
		c.handleSTUN(append([]byte(nil), b...), addr)
		// Judge it independently: a binding request, this username, a
		// valid integrity.
		m := &stun.Message{Raw: append([]byte(nil), b...)}
		var u stun.Username
		valid := m.Decode() == nil && m.Type == stun.BindingRequest &&
			u.GetFrom(m) == nil && string(u) == user && stun.NewShortTermIntegrity(pwd).Check(m) == nil &&
			(!m.Contains(stun.AttrFingerprint) || stun.Fingerprint.Check(m) == nil)
		taken := len(c.checked) > 0
		switch {
		case taken && !valid:
			t.Fatalf("took %v from a packet that is not a valid check: %x", c.checked, b)
		case valid && (!taken || len(pipe.written) != 2 || c.selected == nil):
			t.Fatalf("a valid check: taken %v, answer and hint %d, selected %v", taken, len(pipe.written), c.selected)
		case len(pipe.written) > 0 && !taken:
			t.Fatalf("answered a packet it did not take: %x", b)
		}
	})
}
