package slots

import (
	"context"
	"testing"
)

// TestKeyed: a key holds at most PerKey slots, all keys together at most
// Max; a slot taken for two keys counts once in all and once for each; a
// release gives back exactly what was taken, once; an idle key is
// forgotten.
func TestKeyed(t *testing.T) {
	s := New[string](3, 2)
	a1, ok1 := s.Take("a")
	_, ok2 := s.Take("a")
	if !ok1 || !ok2 {
		t.Fatal("a key's first slots refused")
	}
	if _, ok := s.Take("a"); ok {
		t.Fatal("a key took more than PerKey")
	}
	b, ok := s.Take("b", "target")
	if !ok {
		t.Fatal("another key refused with a slot free")
	}
	if _, ok := s.Take("c"); ok {
		t.Fatal("more than Max slots taken")
	}
	if total, ofB := s.InUse("b"); total != 3 || ofB != 1 {
		t.Fatalf("in use %d, of b %d; want 3 and 1", total, ofB)
	}
	b()
	b() // a second release gives nothing back
	if total, _ := s.InUse("b"); total != 2 || len(s.held) != 1 {
		t.Fatalf("after b's release: %d in use, keys %v; want 2, and only a's", total, s.held)
	}
	a1()
	if _, ok := s.Take("a"); !ok {
		t.Fatal("a released slot not given back")
	}
	if _, ok := New[string](2, 0).Take("x", "x"); !ok {
		t.Fatal("no per-key cap: refused")
	}
}

// TestKeyedWait: Wait takes a slot at once when there is one, waits for a
// release when the key holds its share, and gives up when its context
// ends.
func TestKeyedWait(t *testing.T) {
	s := New[string](10, 1)
	first, err := s.Wait(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		r, err := s.Wait(context.Background(), "a")
		if err == nil {
			r()
		}
		got <- err
	}()
	first()
	if err := <-got; err != nil {
		t.Fatalf("waiting for a released slot: %v", err)
	}
	hold, _ := s.Take("a")
	defer hold()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Wait(ctx, "a"); err == nil {
		t.Fatal("Wait took a slot the key had no share left for")
	}
}

// TestKeyedPerKey: keys of two kinds with caps of their own, taken
// together: a slot refused for one key takes nothing for the other.
func TestKeyedPerKey(t *testing.T) {
	// Peers "p..." get 2, networks "n..." 3; "-" is not capped.
	s := NewPerKey(10, func(k string) int {
		switch k[0] {
		case 'p':
			return 2
		case 'n':
			return 3
		}
		return 0
	})
	for _, p := range []string{"p1", "p1", "p2"} {
		if _, ok := s.Take(p, "net"); !ok {
			t.Fatalf("%s on net refused with its shares free", p)
		}
	}
	if _, ok := s.Take("p2", "net"); ok {
		t.Fatal("a network took more than its 3")
	}
	if total, ofP2 := s.InUse("p2"); total != 3 || ofP2 != 1 {
		t.Fatalf("after a refusal: %d in use, %d of p2; want 3 and 1", total, ofP2)
	}
	if _, ok := s.Take("p1", "n2"); ok {
		t.Fatal("a peer took more than its 2 from another network")
	}
	if _, ok := s.Take("p2", "n2"); !ok {
		t.Fatal("a peer refused on another network with both shares free")
	}
	for range 6 {
		if _, ok := s.Take("-"); !ok {
			t.Fatal("an uncapped key refused with slots free")
		}
	}
	if _, ok := s.Take("-"); ok {
		t.Fatal("more than Max slots taken")
	}
}
