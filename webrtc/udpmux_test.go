package webrtc

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// TestUDPMuxRoutes: a STUN check from a new address reaches the session
// whose ufrag its USERNAME names; once the session has written to an
// address, everything from it reaches that session; packets for no
// session are dropped; a closed session's connection ends its reader and
// its address is forgotten.
func TestUDPMuxRoutes(t *testing.T) {
	socks, err := bindUDP([]net.IP{net.IPv4(127, 0, 0, 1)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	m := newUDPMux(socks)
	defer m.Close()
	local := m.GetListenAddresses()[0]
	a, err := m.GetConn("ufragA", local)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := m.GetConn("ufragB", local)
	if again, _ := m.GetConn("ufragA", local); again != a {
		t.Fatal("GetConn made a second connection for the same ufrag")
	}

	browser, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer browser.Close()
	send := func(p []byte) {
		t.Helper()
		if _, err := browser.WriteTo(p, local); err != nil {
			t.Fatal(err)
		}
	}
	check, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername("ufragB:browser"), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	send([]byte("not STUN, from an unknown address")) // dropped
	send(check.Raw)
	buf := make([]byte, 1500)
	n, from, err := b.ReadFrom(buf)
	if err != nil || string(buf[:n]) != string(check.Raw) {
		t.Fatalf("session B read %q, %v; want the check", buf[:n], err)
	}
	if from.String() != browser.LocalAddr().String() {
		t.Fatalf("from %v, want %v", from, browser.LocalAddr())
	}
	// B answers: the address is B's from now on.
	if _, err := b.WriteTo([]byte("answer"), from); err != nil {
		t.Fatal(err)
	}
	browser.SetReadDeadline(time.Now().Add(10 * time.Second)) // a bound on a broken test, not a timing assertion
	if n, _, err := browser.ReadFrom(buf); err != nil || string(buf[:n]) != "answer" {
		t.Fatalf("browser read %q, %v", buf[:n], err)
	}
	send([]byte("dtls"))
	if n, _, err := b.ReadFrom(buf); err != nil || string(buf[:n]) != "dtls" {
		t.Fatalf("session B read %q, %v; want dtls", buf[:n], err)
	}

	// Closing B ends a blocked read and forgets its address.
	done := make(chan error, 1)
	go func() {
		_, _, err := b.ReadFrom(buf)
		done <- err
	}()
	b.Close()
	if err := <-done; err != errMuxClosed {
		t.Fatalf("read after close: %v, want errMuxClosed", err)
	}
	m.mu.Lock()
	left := len(m.byAddr) + len(m.byUfrag)
	m.mu.Unlock()
	if left != 1 { // A's ufrag
		t.Fatalf("%d routes left after closing B, want 1", left)
	}
	a.Close()
}

// TestUDPMuxQueueBound: a session that does not read holds at most
// muxQueueLength packets.
func TestUDPMuxQueueBound(t *testing.T) {
	c := &muxConn{mux: &udpMux{}, ready: make(chan struct{}, 1)}
	for range muxQueueLength + 10 {
		c.push([]byte("x"), netipAddrPort(t, "127.0.0.1:9"))
	}
	if len(c.queue) != muxQueueLength {
		t.Fatalf("%d packets queued, want %d", len(c.queue), muxQueueLength)
	}
}

func netipAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}
