// Package hostname holds the rule against DNS rebinding that every
// endpoint of a peer's HTTP port applies where it matters: a request's
// Host must name this server. A web page that rebinds its own name to
// 127.0.0.1 reaches the port, but sends its own name, and is refused.
package hostname

import (
	"net"
	"net/http"
	"slices"
	"strings"
)

// IsLocalhost reports whether name (a DNS name, any case, with or
// without a final dot) is localhost or under .localhost, which resolve to
// loopback only (RFC 6761; browsers never ask DNS for them), so no page
// can rebind them to itself.
func IsLocalhost(name string) bool {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	return name == "localhost" || strings.HasSuffix(name, ".localhost")
}

// Served reports whether r's Host (with or without a port) names this
// server: localhost (IsLocalhost), an IP literal that is a loopback address or the
// address the connection arrived on, or one of names (lower case, no
// port: names the operator gives, such as a DNS name or a proxy's).
func Served(r *http.Request, names []string) bool {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if IsLocalhost(host) || slices.Contains(names, host) {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	if ip == nil {
		return false
	}
	if ip.IsLoopback() {
		return true
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok && la.IP.Equal(ip) {
		return true
	}
	return false
}
