package webrtc

import (
	"net"
	"time"

	"github.com/immense-p2p/immense/internal/ratelimit"
)

// maxTrackedClients bounds the addresses offerLimiter remembers. Beyond
// it, the least recently seen address is forgotten if its bucket has
// refilled; if not, new addresses are refused until it has (a flood from
// that many addresses is refused rather than allowed to grow the table or
// reset anyone's bucket).
const maxTrackedClients = 16384

// offerLimiter is a token bucket per client address (clientKey) for
// signaling offers and WebSocket upgrades; nil allows everything.
type offerLimiter struct {
	keys *ratelimit.Keyed[string]
}

// newOfferLimiter returns a limiter of perSecond offers (burst) per client;
// nil, which allows everything, if perSecond is 0.
func newOfferLimiter(perSecond float64, burst int) *offerLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &offerLimiter{keys: ratelimit.NewKeyed[string](perSecond, burst, maxTrackedClients, ratelimit.RefuseNew)}
}

// allow reports whether the client at remote (host:port) may send an offer
// at now, and takes a token if so.
func (l *offerLimiter) allow(remote string, now time.Time) bool {
	return l == nil || l.keys.Allow(clientKey(remote), now)
}

// clientKey is the address a client is counted under: its IP, or its /64
// for IPv6, since one host is commonly given a whole /64.
func clientKey(remote string) string {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return ip.String()
}
