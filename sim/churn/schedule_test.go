package churn

import (
	"math/rand/v2"
	"testing"
	"time"
)

func testConfig(n int) Config {
	sess, _ := NewWeibull(0.5, time.Hour)
	down, _ := NewWeibull(0.5, time.Hour)
	vol := Class{Availability: 0.3, Spread: 2, Session: sess, Downtime: down, Lifetime: Exponential{M: 30 * 24 * time.Hour}}
	srv := Class{Availability: 1}
	cfg := Config{Classes: []Class{srv, vol}}
	for i := range n {
		c := 1
		if i < 5 {
			c = 0
		}
		cfg.Members = append(cfg.Members, Member{Class: c, Region: i % 2})
	}
	return cfg
}

// TestScheduleConsistent: transitions come in time order, alternate
// properly per node, and the time-averaged share of online volunteers
// matches their mean availability.
func TestScheduleConsistent(t *testing.T) {
	const n = 2000
	s, err := NewSchedule(testConfig(n), rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	online := make([]bool, n)
	gen := make([]int, n)
	count := 0
	for i := range n {
		online[i] = s.Online(i)
		if online[i] {
			count++
		}
	}
	var last time.Duration
	onTime := 0.0 // node-seconds online
	end := 200 * 24 * time.Hour
	replaced := 0
	s.Until(end, func(tr Transition) {
		if tr.At < last {
			t.Fatalf("transition at %v after one at %v", tr.At, last)
		}
		// Integrate the number of online volunteers over time.
		onTime += float64(count-5) * (tr.At - last).Seconds()
		last = tr.At
		switch tr.Kind {
		case Up:
			if online[tr.Node] {
				t.Fatalf("node %d up twice", tr.Node)
			}
			online[tr.Node] = true
			count++
		case Down:
			if !online[tr.Node] {
				t.Fatalf("node %d down twice", tr.Node)
			}
			online[tr.Node] = false
			count--
		case Replace:
			if online[tr.Node] {
				t.Fatalf("node %d replaced while online", tr.Node)
			}
			if tr.Gen != gen[tr.Node]+1 {
				t.Fatalf("node %d generation %d after %d", tr.Node, tr.Gen, gen[tr.Node])
			}
			gen[tr.Node] = tr.Gen
			replaced++
		}
		if tr.Node < 5 && tr.Kind != Up {
			t.Fatalf("server %d: %v", tr.Node, tr.Kind)
		}
	})
	avg := onTime / last.Seconds() / (n - 5)
	within(t, "time-averaged online share", avg, 0.3, 0.05)
	// Lifetime 30 days over 200 days: each slot is replaced about 6.7 times.
	within(t, "replacements per volunteer", float64(replaced)/(n-5), 200.0/30, 0.05)
}

// TestScheduleMassEvents: a dark region is entirely offline during its
// outage and back after; a mass reboot takes the chosen share of online
// nodes down within the window.
func TestScheduleMassEvents(t *testing.T) {
	const n = 1000
	cfg := testConfig(n)
	for i := range cfg.Classes {
		cfg.Classes[i].Lifetime = nil
	}
	day := 24 * time.Hour
	cfg.Outages = []Outage{{At: 10 * day, Region: 0, Duration: 6 * time.Hour}}
	cfg.Reboots = []Reboot{{At: 20 * day, Within: time.Hour, Downtime: 2 * time.Minute, Share: 1, Classes: []int{1}}}
	s, err := NewSchedule(cfg, rand.New(rand.NewPCG(2, 2)))
	if err != nil {
		t.Fatal(err)
	}
	online := func() (r0, r1 int) {
		for i := range n {
			if s.Online(i) {
				if cfg.Members[i].Region == 0 {
					r0++
				} else {
					r1++
				}
			}
		}
		return
	}
	s.Until(10*day+time.Hour, func(Transition) {})
	if r0, r1 := online(); r0 != 0 || r1 < 50 {
		t.Errorf("during the outage region 0 has %d online (want 0), region 1 %d", r0, r1)
	}
	s.Until(10*day+7*time.Hour, func(Transition) {})
	if r0, _ := online(); r0 < 50 {
		t.Errorf("after the outage region 0 has only %d online", r0)
	}
	s.Until(20*day-time.Millisecond, func(Transition) {})
	before := 0
	for i := 5; i < n; i++ {
		if s.Online(i) {
			before++
		}
	}
	downs := map[int]bool{}
	s.Until(20*day+time.Hour+time.Millisecond, func(tr Transition) {
		if tr.Kind == Down {
			downs[tr.Node] = true
		}
		if tr.Node < 5 {
			t.Errorf("server %d rebooted; servers do not take part", tr.Node)
		}
	})
	// Every volunteer online at the event went down (some would have
	// anyway; a few came up meanwhile and were not part of it).
	if len(downs) < before {
		t.Errorf("%d volunteers went down during the reboot window, want at least the %d online at its start", len(downs), before)
	}
}

// TestScheduleDeterministic: the same seed gives the same transitions.
func TestScheduleDeterministic(t *testing.T) {
	run := func() []Transition {
		s, err := NewSchedule(testConfig(300), rand.New(rand.NewPCG(3, 3)))
		if err != nil {
			t.Fatal(err)
		}
		var out []Transition
		s.Until(30*24*time.Hour, func(tr Transition) { out = append(out, tr) })
		return out
	}
	a, b := run(), run()
	if len(a) != len(b) || len(a) == 0 {
		t.Fatalf("lengths %d and %d", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("transition %d differs: %+v vs %+v", i, a[i], b[i])
		}
	}
}
