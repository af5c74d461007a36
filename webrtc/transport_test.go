package webrtc

import (
	"net"
	"testing"
)

// TestSessionsShareOneSocket: every browser session of a server uses the
// same local UDP port (ICE UDP mux), in the configured range; Close
// releases it.
func TestSessionsShareOneSocket(t *testing.T) {
	probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(probe.LocalAddr().(*net.UDPAddr).Port)
	probe.Close()
	e := newTestEnv(t, func(c *Config) { c.UDPPortMin, c.UDPPortMax = port, port })
	ctx := testContext(t)
	e.dialMany(ctx, 3, e.token([]string{"a"}, nil))

	e.srv.mu.Lock()
	sessions := make([]*session, 0, len(e.srv.sessions))
	for _, s := range e.srv.sessions {
		sessions = append(sessions, s)
	}
	e.srv.mu.Unlock()
	if len(sessions) != 3 {
		t.Fatalf("%d sessions, want 3", len(sessions))
	}
	for _, s := range sessions {
		if got := s.link.localPort(); got != int(port) {
			t.Errorf("a session uses local port %d, want the shared %d", got, port)
		}
	}

	// Taken: a second server on the same single port fails, clearly.
	if _, err := New(newMemBus(), func() Config { c := testConfig(t); c.UDPPortMin, c.UDPPortMax = port, port; return c }()); err == nil {
		t.Error("a second server bound the same port")
	}
	e.srv.Close()
	again, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
	if err != nil {
		t.Fatalf("port %d still taken after Close: %v", port, err)
	}
	again.Close()
}
