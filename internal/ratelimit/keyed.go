// Package ratelimit holds token buckets kept per key (a peer, an address,
// a topic) for what strangers can make a node do, with a bound on the keys
// remembered. Callers pass the time, so tests and simulated clocks drive
// them.
package ratelimit

import (
	"container/list"
	"sync"
	"time"
)

// bucket is a token bucket. It holds no clock: callers pass the time.
type bucket struct {
	tokens float64
	last   time.Time
}

// take removes one token if there is one, after refilling at rate per
// second up to burst since the last call.
func (b *bucket) take(now time.Time, rate, burst float64) bool {
	b.refill(now, rate, burst)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *bucket) refill(now time.Time, rate, burst float64) {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(burst, b.tokens+dt*rate)
		b.last = now
	}
}

// WhenFull says what Allow does with a new key when the limiter tracks
// its maximum of keys and the least recently used one's bucket has not
// refilled yet. (A refilled bucket is always forgotten: a new one would be
// the same.)
type WhenFull int

const (
	// EvictOldest forgets the least recently used key anyway and serves
	// the new one: right where a key is cheap to have but costly to
	// refuse, such as a topic or a connected peer.
	EvictOldest WhenFull = iota
	// RefuseNew refuses new keys until the oldest bucket refills: right
	// for addresses of strangers, where rotating through more addresses
	// than the table holds must not reset anyone's bucket.
	RefuseNew
)

// Keyed is a token bucket per key, rate per second up to burst, for at
// most max keys. A zero rate allows everything. Allow and Len are O(1)
// and safe for concurrent use.
type Keyed[K comparable] struct {
	rate, burst float64
	max         int
	full        WhenFull

	mu  sync.Mutex
	m   map[K]*list.Element
	lru list.List // of *entry[K], most recent first
}

type entry[K comparable] struct {
	key K
	b   bucket
}

// NewKeyed returns a limiter of rate per second (burst) per key, tracking
// at most size keys (at least 1).
func NewKeyed[K comparable](rate float64, burst, size int, full WhenFull) *Keyed[K] {
	return &Keyed[K]{rate: rate, burst: float64(burst), max: max(1, size), full: full, m: make(map[K]*list.Element)}
}

// Allow takes a token from key's bucket at now, and reports whether there
// was one.
func (l *Keyed[K]) Allow(key K, now time.Time) bool {
	if l.rate == 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.m[key]
	if ok {
		l.lru.MoveToFront(e)
	} else {
		if len(l.m) >= l.max {
			old := l.lru.Back()
			ob := &old.Value.(*entry[K]).b
			ob.refill(now, l.rate, l.burst)
			if ob.tokens < l.burst && l.full == RefuseNew {
				return false
			}
			delete(l.m, old.Value.(*entry[K]).key)
			l.lru.Remove(old)
		}
		e = l.lru.PushFront(&entry[K]{key: key, b: bucket{tokens: l.burst, last: now}})
		l.m[key] = e
	}
	return e.Value.(*entry[K]).b.take(now, l.rate, l.burst)
}

// Len returns the number of keys tracked.
func (l *Keyed[K]) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
