package overlay

import (
	"crypto/sha256"
	"sync"
	"time"
)

// A browser token may be bound to a key the browser holds (webrtc.Claims.Key,
// the token's "cnf" claim). Every message published with such a token then
// carries the browser's signature over the topic, the publication time and
// the payload (internal/browsersig), and every receiver checks it with the
// key the token names. The token alone is then worth nothing: a peer that
// relays the browser's messages, or any subscriber that sees the token in
// them, cannot publish messages of its own with it, because it lacks the
// private key. It can still drop the browser's messages, and resend one
// (under its own gossipsub id) while it is young: receivers remember the
// signatures they accepted (replayCache) and ignore a second copy.
//
// A bound token without a signature, or a bearer token when
// Authorization.RequireBoundTokens is set, is refused.

// BrowserProof is a browser's signature of one message
// (browsersig.Signed) with the key its token is bound to.
type BrowserProof struct {
	// Time is the publication time the browser signed, in whole
	// milliseconds; it becomes the message's publication time.
	Time time.Time
	// Sig is the Ed25519 signature.
	Sig []byte
}

// maxReplayCache caps the browser signatures remembered. Each costs about
// 80 bytes; a signature is needed only while its message is young enough
// to be accepted (MessageMaxAge plus MaxClockSkew, 3 min by default), so
// the cap covers 180 bound-token messages a second across all topics.
// Beyond that the oldest are forgotten first.
const maxReplayCache = 32768

// replayCache remembers the browser signatures accepted recently.
type replayCache struct {
	mu    sync.Mutex
	seen  map[[32]byte]time.Time // hash of the signature: when it may be forgotten
	order [][32]byte             // insertion order (a FIFO), for expiry and the cap
	head  int                    // order[head:] are live
}

// add records sig until forget, and reports false if it was already there.
func (c *replayCache) add(sig []byte, forget, now time.Time) bool {
	h := sha256.Sum256(sig)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = make(map[[32]byte]time.Time)
	}
	if until, ok := c.seen[h]; ok && now.Before(until) {
		return false
	}
	// Forget the expired and, over the cap, the oldest. Entries come in
	// roughly in time order, so the front is where the expired are.
	for c.head < len(c.order) {
		old := c.order[c.head]
		if until, ok := c.seen[old]; ok && now.Before(until) && len(c.seen) < maxReplayCache {
			break
		}
		delete(c.seen, old)
		c.head++
	}
	if c.head > len(c.order)/2 {
		c.order = append(c.order[:0], c.order[c.head:]...)
		c.head = 0
	}
	c.seen[h] = forget
	c.order = append(c.order, h)
	return true
}
