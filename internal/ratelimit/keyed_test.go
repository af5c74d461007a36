package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

// TestKeyed: a bucket per key, refilled at the rate up to the burst, at
// most max keys with the least recently used forgotten.
func TestKeyed(t *testing.T) {
	l := NewKeyed[string](10, 2, 2, EvictOldest)
	t0 := time.Unix(0, 0)
	for i, want := range []bool{true, true, false} {
		if got := l.Allow("a", t0); got != want {
			t.Fatalf("take %d at t0: %v, want %v", i, got, want)
		}
	}
	if !l.Allow("a", t0.Add(100*time.Millisecond)) || l.Allow("a", t0.Add(100*time.Millisecond)) {
		t.Error("one token should refill in 100 ms at 10/s")
	}
	l.Allow("b", t0)
	l.Allow("c", t0) // forgets a
	if l.Len() != 2 {
		t.Errorf("%d keys, want 2", l.Len())
	}
	if !l.Allow("a", t0.Add(100*time.Millisecond)) || !l.Allow("a", t0.Add(100*time.Millisecond)) {
		t.Error("a forgotten key starts with a full burst")
	}
	if off := NewKeyed[string](0, 0, 1, RefuseNew); !off.Allow("x", t0) || !off.Allow("y", t0) {
		t.Error("rate 0 should allow everything")
	}
}

// TestKeyedRefuseNew: with the table full, a new key is refused while the
// oldest bucket is still refilling, and served (the oldest forgotten) once
// it has refilled; rotating addresses never resets a bucket in use.
func TestKeyedRefuseNew(t *testing.T) {
	const max = 1000
	l := NewKeyed[string](1, 1, max, RefuseNew)
	now := time.Unix(0, 0)
	for i := range max {
		if !l.Allow(fmt.Sprint("10.0.", i), now) {
			t.Fatalf("client %d refused", i)
		}
	}
	if l.Allow("192.0.2.1", now) {
		t.Error("a new key was tracked beyond max while no bucket had refilled")
	}
	if l.Allow("10.0.0", now.Add(500*time.Millisecond)) {
		t.Error("a refused newcomer reset the oldest key's bucket")
	}
	if !l.Allow("192.0.2.1", now.Add(2*time.Second)) || l.Len() != max {
		t.Errorf("after refill: a new key refused or %d keys tracked, want %d", l.Len(), max)
	}
}
