package overlay

import (
	"testing"
	"time"
)

var t0 = time.Date(2007, 8, 16, 12, 0, 0, 0, time.UTC)

// TestAdmissionTokenBucket: the burst is admitted at once, then one join
// per 1/rate; refusals get successive retry slots, 1/rate apart, from the
// minimum hint on.
func TestAdmissionTokenBucket(t *testing.T) {
	a := newAdmission(1, 2, 0, time.Second, time.Minute)
	for i := range 2 {
		if ok, _ := a.admit(t0, 1); !ok {
			t.Fatalf("join %d of the burst refused", i)
		}
	}
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second} {
		ok, retry := a.admit(t0, 1)
		if ok || retry != want {
			t.Errorf("refusal %d: admit = %v, retry %v; want refused, retry %v", i, ok, retry, want)
		}
	}
	if ok, _ := a.admit(t0.Add(time.Second), 1); !ok {
		t.Error("refused after the bucket refilled one token")
	}
	if ok, _ := a.admit(t0.Add(time.Second), 1); ok {
		t.Error("admitted a second join in the same second")
	}
}

// TestAdmissionMaxPeers: above the peer cap every join is refused, without
// spending the tokens that later joins need.
func TestAdmissionMaxPeers(t *testing.T) {
	a := newAdmission(1, 1, 10, time.Second, time.Minute)
	if ok, retry := a.admit(t0, 11); ok || retry < time.Second {
		t.Fatalf("11 peers over a cap of 10: admit = %v, retry %v", ok, retry)
	}
	if ok, _ := a.admit(t0, 10); !ok {
		t.Fatal("refused at the cap although the bucket is full")
	}
	// No rate limit, only the cap.
	a = newAdmission(0, 0, 3, time.Second, time.Minute)
	for i := range 100 {
		if ok, _ := a.admit(t0, 3); !ok {
			t.Fatalf("join %d refused with no rate limit", i)
		}
	}
	if ok, _ := a.admit(t0, 4); ok {
		t.Fatal("admitted over the cap")
	}
}

// TestAdmissionRetryCap: hints never exceed the maximum; once the queue
// reaches it, later refusals all get the maximum and the queue stops
// growing.
func TestAdmissionRetryCap(t *testing.T) {
	a := newAdmission(1, 1, 0, time.Second, 5*time.Second)
	a.admit(t0, 1)
	var hints []time.Duration
	for range 8 {
		_, retry := a.admit(t0, 1)
		hints = append(hints, retry)
	}
	want := []time.Duration{1, 2, 3, 4, 5, 5, 5, 5}
	for i := range want {
		if hints[i] != want[i]*time.Second {
			t.Fatalf("hints %v, want %v seconds", hints, want)
		}
	}
}

// TestAdmissionCrowdReturns: a crowd refused at one instant that comes
// back when told is admitted on its return, in about crowd/rate: the
// retry slots drain exactly as fast as the bucket refills.
func TestAdmissionCrowdReturns(t *testing.T) {
	const (
		crowd = 200
		rate  = 20
		burst = 40
	)
	a := newAdmission(rate, burst, 0, time.Second, 5*time.Minute)
	type ret struct {
		at time.Time
		i  int
	}
	var returns []ret
	admitted := 0
	for i := range crowd {
		if ok, retry := a.admit(t0, 1); ok {
			admitted++
		} else {
			returns = append(returns, ret{t0.Add(retry), i})
		}
	}
	if admitted != burst {
		t.Fatalf("admitted %d at once, want the burst %d", admitted, burst)
	}
	var last time.Time
	for _, r := range returns { // already in time order
		ok, retry := a.admit(r.at, 1)
		if !ok {
			t.Fatalf("peer %d refused again on its return at +%v (retry %v)", r.i, r.at.Sub(t0), retry)
		}
		last = r.at
	}
	took := last.Sub(t0)
	if ideal := time.Duration(crowd-burst) * time.Second / rate; took > ideal+2*time.Second {
		t.Errorf("crowd admitted in %v, want about %v", took, ideal)
	}
	t.Logf("%d peers at %d/s, burst %d: %d at once, the rest on their first return, last after %v", crowd, rate, burst, burst, took)
}
