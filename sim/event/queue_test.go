package event

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestQueueOrdersByTimeThenInsertion(t *testing.T) {
	var q Queue[string]
	q.Push(3*time.Second, "c")
	q.Push(time.Second, "a1")
	q.Push(2*time.Second, "b")
	q.Push(time.Second, "a2") // same time as a1: comes after it
	q.Push(0, "zero")
	var got []string
	for {
		_, v, ok := q.Pop()
		if !ok {
			break
		}
		got = append(got, v)
	}
	want := []string{"zero", "a1", "a2", "b", "c"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, _, ok := q.Pop(); ok {
		t.Fatal("Pop on an empty queue succeeded")
	}
	if _, ok := q.Peek(); ok {
		t.Fatal("Peek on an empty queue succeeded")
	}
}

// TestQueueMatchesSort pushes and pops at random and checks every pop
// against a sorted reference, including the FIFO tie-break.
func TestQueueMatchesSort(t *testing.T) {
	type ev struct {
		at  time.Duration
		seq int
	}
	rng := rand.New(rand.NewPCG(7, 7))
	var q Queue[ev]
	var ref []ev
	seq := 0
	now := time.Duration(0)
	for range 20000 {
		if rng.IntN(3) > 0 || len(ref) == 0 {
			// Events are never scheduled in the past, as in a simulation;
			// coarse times make ties frequent.
			e := ev{at: now + time.Duration(rng.IntN(50))*time.Millisecond, seq: seq}
			seq++
			q.Push(e.at, e)
			ref = append(ref, e)
			continue
		}
		slices.SortStableFunc(ref, func(a, b ev) int {
			if a.at != b.at {
				return int(a.at - b.at)
			}
			return a.seq - b.seq
		})
		if at, ok := q.Peek(); !ok || at != ref[0].at {
			t.Fatalf("Peek = %v, %v; want %v", at, ok, ref[0].at)
		}
		at, e, ok := q.Pop()
		if !ok || e != ref[0] || at != e.at {
			t.Fatalf("Pop = %v %+v %v; want %+v", at, e, ok, ref[0])
		}
		now = at
		ref = ref[1:]
		if q.Len() != len(ref) {
			t.Fatalf("Len = %d, want %d", q.Len(), len(ref))
		}
	}
}

func BenchmarkQueue(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	var q Queue[int]
	for i := range 100000 {
		q.Push(time.Duration(rng.Int64N(int64(time.Hour))), i)
	}
	b.ResetTimer()
	for i := range b.N {
		at, _, _ := q.Pop()
		q.Push(at+time.Duration(rng.Int64N(int64(time.Hour))), i)
	}
}
