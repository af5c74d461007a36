package webrtc

import (
	"testing"
	"time"
)

// TestPacerGap: the gap between rounds grows with the data channel
// sessions of the topic, k/packetRate, up to maxHold; with no packet rate
// every round waits maxHold.
func TestPacerGap(t *testing.T) {
	for _, c := range []struct {
		maxHold time.Duration
		rate    float64
		k       int
		want    time.Duration
	}{
		{100 * time.Millisecond, 20000, 0, 0},
		{100 * time.Millisecond, 20000, 1, 50 * time.Microsecond},
		{100 * time.Millisecond, 20000, 100, 5 * time.Millisecond},
		{100 * time.Millisecond, 20000, 500, 25 * time.Millisecond},
		{100 * time.Millisecond, 20000, 2000, 100 * time.Millisecond},
		{100 * time.Millisecond, 20000, 100000, 100 * time.Millisecond}, // capped
		{30 * time.Millisecond, 0, 1, 30 * time.Millisecond},            // no rate: always maxHold
		{0, 20000, 2000, 0}, // no pacing
	} {
		p := pacer{maxHold: c.maxHold, packetRate: c.rate}
		if got := p.gap(c.k); got != c.want {
			t.Errorf("maxHold %v rate %v k=%d: gap %v, want %v", c.maxHold, c.rate, c.k, got, c.want)
		}
	}
}

// TestPacerHoldsOnlyUnderLoad drives the decision with an injected clock,
// as bridge.run does with the wall clock: a topic whose messages come
// further apart than its gap gets every one at once; one whose messages
// come faster gets rounds one gap apart, each carrying what arrived.
func TestPacerHoldsOnlyUnderLoad(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	// rounds simulates messages every `every` for `n` messages to k
	// sessions, and returns the rounds sent and the longest any message
	// waited.
	rounds := func(p pacer, k int, every time.Duration, n int) (int, time.Duration) {
		var (
			sent    int
			held    []time.Time // arrival times of held messages
			due     time.Time
			maxWait time.Duration
		)
		flush := func(now time.Time) {
			for _, a := range held {
				maxWait = max(maxWait, now.Sub(a))
			}
			held = held[:0]
			sent++
			p.sent(now)
		}
		for i := range n {
			now := t0.Add(time.Duration(i) * every)
			if len(held) > 0 && !now.Before(due) {
				flush(due) // the hold timer fired before this message came
			}
			switch {
			case len(held) == 0 && p.ready(now, k):
				sent++
				p.sent(now)
			case len(held) == 0:
				held = append(held, now)
				due = p.due(k)
			default:
				held = append(held, now)
			}
		}
		if len(held) > 0 {
			flush(due)
		}
		return sent, maxWait
	}
	newPacer := func() pacer {
		return pacer{maxHold: 100 * time.Millisecond, packetRate: 20000, last: t0.Add(-time.Hour)}
	}

	// K=100 at 200 messages/s: 20,000 packets/s, within the rate: nothing
	// held.
	if sent, wait := rounds(newPacer(), 100, 5*time.Millisecond, 1000); sent != 1000 || wait != 0 {
		t.Errorf("K=100 at 200/s: %d rounds for 1000 messages, longest wait %v; want 1000 and 0", sent, wait)
	}
	// K=500 at 200/s: the gap is 25 ms, so the first message at once and
	// then five a round, none waiting longer than the gap.
	if sent, wait := rounds(newPacer(), 500, 5*time.Millisecond, 1000); sent != 201 || wait > 25*time.Millisecond {
		t.Errorf("K=500 at 200/s: %d rounds for 1000 messages, longest wait %v; want 201, at most 25ms", sent, wait)
	}
	// K=500 at 20 messages/s: 10,000 packets/s, within the rate.
	if sent, wait := rounds(newPacer(), 500, 50*time.Millisecond, 100); sent != 100 || wait != 0 {
		t.Errorf("K=500 at 20/s: %d rounds for 100 messages, longest wait %v; want 100 and 0", sent, wait)
	}
	// K=10,000 at 200/s: held up to maxHold, ten rounds a second.
	if sent, wait := rounds(newPacer(), 10000, 5*time.Millisecond, 1000); sent != 51 || wait > 100*time.Millisecond {
		t.Errorf("K=10000 at 200/s: %d rounds for 1000 messages (5 s), longest wait %v; want 51, at most 100ms", sent, wait)
	}
}
