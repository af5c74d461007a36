// Package slots bounds work a node does for others at once: so many in
// all, and so many for any one key (a peer, an address), so that one
// stranger cannot take every slot. A slot is held from Take to its
// release, and the key's count is forgotten when it has none.
package slots

import (
	"context"
	"sync"
)

// Keyed holds up to Max slots in all, at most PerKey of them for one key.
// The zero value is not usable; use New or NewPerKey.
type Keyed[K comparable] struct {
	mu     sync.Mutex
	max    int
	perKey func(K) int
	total  int
	held   map[K]int
	freed  chan struct{} // closed (and replaced) when a slot is released
}

// New returns slots of max in all and perKey per key (0: no cap per key).
func New[K comparable](max, perKey int) *Keyed[K] {
	return NewPerKey(max, func(K) int { return perKey })
}

// NewPerKey returns slots of max in all and perKey(k) for key k (0: no
// cap), for keys of kinds capped apart: a peer, and the network it comes
// from.
func NewPerKey[K comparable](max int, perKey func(K) int) *Keyed[K] {
	return &Keyed[K]{max: max, perKey: perKey, held: make(map[K]int), freed: make(chan struct{})}
}

// Take takes a slot for each of keys (one slot in all), unless every slot
// is taken or one of the keys holds its PerKey already: all of them or
// none. Release gives it back; calls after the first do nothing.
func (s *Keyed[K]) Take(keys ...K) (release func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.takeLocked(keys)
}

// Wait takes a slot for keys as Take does, waiting for one to be released
// while there is none, until ctx is done.
func (s *Keyed[K]) Wait(ctx context.Context, keys ...K) (release func(), err error) {
	for {
		s.mu.Lock()
		release, ok := s.takeLocked(keys)
		freed := s.freed
		s.mu.Unlock()
		if ok {
			return release, nil
		}
		select {
		case <-freed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (s *Keyed[K]) takeLocked(keys []K) (release func(), ok bool) {
	if s.total >= s.max {
		return nil, false
	}
	for _, k := range keys {
		if c := s.perKey(k); c > 0 && s.held[k] >= c {
			return nil, false
		}
	}
	s.total++
	for _, k := range keys {
		s.held[k]++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.total--
			for _, k := range keys {
				if s.held[k]--; s.held[k] <= 0 {
					delete(s.held, k)
				}
			}
			close(s.freed)
			s.freed = make(chan struct{})
		})
	}, true
}

// InUse returns the slots taken, in all and by key.
func (s *Keyed[K]) InUse(key K) (total, ofKey int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total, s.held[key]
}
