package churn

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

func within(t *testing.T, what string, got, want, relTol float64) {
	t.Helper()
	if math.Abs(got-want) > relTol*math.Abs(want) {
		t.Errorf("%s = %.4g, want %.4g ± %.1f%%", what, got, want, 100*relTol)
	} else {
		t.Logf("%s = %.4g (want %.4g)", what, got, want)
	}
}

func sampleMean(d Dist, r *rand.Rand, n int) float64 {
	sum := 0.0
	for range n {
		sum += d.Sample(r).Seconds()
	}
	return sum / float64(n)
}

// TestDistMeans: the sample mean of each distribution matches the mean it
// was built for. The tolerance is several standard errors at the
// distribution's own variance (Weibull with shape 0.34 has a coefficient of
// variation above 4).
func TestDistMeans(t *testing.T) {
	mean := 2 * time.Hour
	w34, _ := NewWeibull(0.34, mean)
	w59, _ := NewWeibull(0.59, mean)
	w15, _ := NewWeibull(1.5, mean)
	ln, _ := NewLogNormal(1.5, mean)
	cases := []struct {
		d   Dist
		tol float64
	}{
		{Exponential{M: mean}, 0.01},
		{w34, 0.04},
		{w59, 0.02},
		{w15, 0.01},
		{ln, 0.03},
		{Fixed{D: mean}, 0},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range cases {
		t.Run(c.d.String(), func(t *testing.T) {
			if got := c.d.Mean(); got.Round(time.Second) != mean {
				t.Errorf("Mean() = %v, want %v", got, mean)
			}
			within(t, "sample mean (s)", sampleMean(c.d, r, 1_000_000), mean.Seconds(), c.tol)
		})
	}
}

// TestWeibullShape: the fraction of samples below the median is a half,
// and below the scale 1-1/e, whatever the shape: the samples come from
// the right distribution, not just one with the right mean.
func TestWeibullShape(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, k := range []float64{0.34, 0.5, 1} {
		w, err := NewWeibull(k, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		scale := w.Scale()
		below := 0
		const n = 200_000
		for range n {
			if w.Sample(r) <= scale {
				below++
			}
		}
		within(t, "P(X <= scale)", float64(below)/n, 1-1/math.E, 0.01)
	}
	if _, err := NewWeibull(0, time.Hour); err == nil {
		t.Error("shape 0 accepted")
	}
}

// TestClassAvailability: per-node availabilities average to the class
// mean, and a node's alternating on/off process spends that fraction of
// its time online.
func TestClassAvailability(t *testing.T) {
	sess, _ := NewWeibull(0.5, 2*time.Hour)
	down, _ := NewWeibull(0.5, time.Hour) // mean replaced per node
	c := Class{Availability: 0.2, Spread: 2, Session: sess, Downtime: down}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	const nodes = 20000
	sumA, minA, maxA := 0.0, 1.0, 0.0
	profiles := make([]Profile, nodes)
	for i := range profiles {
		profiles[i] = c.Node(r)
		a := profiles[i].Availability
		sumA += a
		minA, maxA = min(minA, a), max(maxA, a)
	}
	// Clamping at 0.01 lifts the mean a little above 0.2.
	within(t, "mean node availability", sumA/nodes, 0.2, 0.03)
	if minA > 0.02 || maxA < 0.7 {
		t.Errorf("spread 2 should make availability uneven, got range [%.3f, %.3f]", minA, maxA)
	}
	// Time online of one node over many cycles.
	p := profiles[0]
	for _, pr := range profiles {
		if math.Abs(pr.Availability-0.3) < 0.01 {
			p = pr
			break
		}
	}
	var on, total time.Duration
	online, d := p.Initial(r)
	for total < 200000*time.Hour {
		if online {
			on += d
		}
		total += d
		online = !online
		d = p.Period(r, online)
	}
	within(t, "time online of one node", on.Seconds()/total.Seconds(), p.Availability, 0.05)

	// Availability 0: derived from the two means, the same for everyone.
	c2 := Class{Session: Exponential{M: time.Hour}, Downtime: Exponential{M: 3 * time.Hour}}
	if got := c2.Node(r).Availability; got != 0.25 {
		t.Errorf("derived availability = %v, want 0.25", got)
	}
	// Always on.
	srv := Class{Availability: 1}.Node(r)
	if on, _ := srv.Initial(r); !on || !srv.AlwaysOn {
		t.Error("availability 1 should be always on")
	}
}

// TestInitialState: the share of nodes online at the start matches their
// availability.
func TestInitialState(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	p := Profile{Availability: 0.2, Session: Exponential{M: time.Hour}, Downtime: Exponential{M: 4 * time.Hour}}
	on := 0
	const n = 100000
	for range n {
		if o, first := p.Initial(r); o {
			on++
			if first <= 0 {
				t.Fatal("non-positive first period")
			}
		}
	}
	within(t, "initially online", float64(on)/n, 0.2, 0.02)
}

func TestClassValidate(t *testing.T) {
	bad := []Class{
		{Availability: 1.5},
		{Availability: 0.2, Spread: -1, Session: Exponential{M: time.Hour}, Downtime: Exponential{M: time.Hour}},
		{Availability: 0.2, Downtime: Exponential{M: time.Hour}},
		{Session: Exponential{M: time.Hour}, Downtime: Exponential{}},
	}
	for i, c := range bad {
		if c.Validate() == nil {
			t.Errorf("class %d accepted: %+v", i, c)
		}
	}
}

// TestResidualMeans: the residual of a period seen at a random instant has
// mean E[X²]/(2E[X]) (the inspection paradox): the mean itself for an
// exponential, (1+CV²)/2 times the mean in general.
func TestResidualMeans(t *testing.T) {
	mean := time.Hour
	w, _ := NewWeibull(0.5, mean)  // CV² = Γ(5)/Γ(3)² - 1 = 5
	ln, _ := NewLogNormal(1, mean) // CV² = e^1 - 1
	cases := []struct {
		d    Dist
		want float64 // in units of the mean
		tol  float64
	}{
		{Exponential{M: mean}, 1, 0.01},
		{w, 3, 0.03},
		{ln, math.E / 2, 0.02},
		{Fixed{D: mean}, 0.5, 0.01},
	}
	r := rand.New(rand.NewPCG(9, 10))
	for _, c := range cases {
		sum := 0.0
		const n = 500_000
		for range n {
			sum += c.d.Residual(r).Seconds()
		}
		within(t, c.d.String()+" residual mean / mean", sum/n/mean.Seconds(), c.want, c.tol)
	}
}
