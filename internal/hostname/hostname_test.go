package hostname

import (
	"context"
	"net"
	"net/http"
	"testing"
)

// TestServed: localhost, loopback IPs, the IP the connection arrived on
// and the names given are this server; another IP or any other name (a
// DNS-rebound page's) is not.
func TestServed(t *testing.T) {
	local := &net.TCPAddr{IP: net.ParseIP("192.168.1.5"), Port: 8080}
	for host, want := range map[string]bool{
		"localhost:8080":         true,
		"LOCALHOST.":             true,
		"127.0.0.1:8080":         true,
		"[::1]:8080":             true,
		"192.168.1.5:8080":       true,
		"devbox":                 true,
		"192.168.1.6:8080":       false,
		"evil.example:8080":      false,
		"127.0.0.1.nip.io":       false,
		"devbox.evil.example":    false,
		"app.localhost:3000":     true, // RFC 6761: resolves to loopback only
		"localhost.evil.example": false,
	} {
		r, _ := http.NewRequestWithContext(context.WithValue(context.Background(), http.LocalAddrContextKey, local), http.MethodGet, "/", nil)
		r.Host = host
		if got := Served(r, []string{"devbox"}); got != want {
			t.Errorf("Host %q: served %v, want %v", host, got, want)
		}
	}
}
