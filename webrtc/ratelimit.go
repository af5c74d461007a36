package webrtc

import (
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxTrackedClients bounds the addresses offerLimiter remembers. Beyond it,
// addresses whose bucket has refilled are forgotten; if none has, new
// addresses are refused until one does (a flood from that many addresses
// is refused rather than allowed to grow the map).
const maxTrackedClients = 16384

// offerLimiter is a token bucket per client address for signaling offers.
type offerLimiter struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	clients map[string]*clientBucket
}

type clientBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// newOfferLimiter returns a limiter of perSecond offers (burst) per client;
// nil, which allows everything, if perSecond is 0.
func newOfferLimiter(perSecond float64, burst int) *offerLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &offerLimiter{limit: rate.Limit(perSecond), burst: burst, clients: make(map[string]*clientBucket)}
}

// allow reports whether the client at remote (host:port) may send an offer
// at now, and takes a token if so.
func (l *offerLimiter) allow(remote string, now time.Time) bool {
	if l == nil {
		return true
	}
	key := clientKey(remote)
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.clients[key]
	if !ok {
		if len(l.clients) >= maxTrackedClients {
			l.prune(now)
		}
		if len(l.clients) >= maxTrackedClients {
			return false
		}
		c = &clientBucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.clients[key] = c
	}
	c.seen = now
	return c.lim.AllowN(now, 1)
}

// prune forgets clients idle long enough for their bucket to be full: to
// forget them changes nothing. l.mu must be held.
func (l *offerLimiter) prune(now time.Time) {
	refill := time.Duration(float64(l.burst) / float64(l.limit) * float64(time.Second))
	for k, c := range l.clients {
		if now.Sub(c.seen) > refill {
			delete(l.clients, k)
		}
	}
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
