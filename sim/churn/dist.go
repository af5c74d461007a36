package churn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"gonum.org/v1/gonum/stat/distuv"
)

// Dist is a distribution of durations: session lengths, downtimes,
// lifetimes.
type Dist interface {
	// Sample draws one duration, at least a millisecond and at most
	// MaxDuration.
	Sample(r *rand.Rand) time.Duration
	// Mean is the distribution's mean (before clamping, which only matters
	// for absurd parameters).
	Mean() time.Duration
	// Residual draws the time left in a period seen at a random instant
	// (the renewal process's residual life: a uniform fraction of a
	// length-biased sample). A run starts from it, so it starts in steady
	// state.
	Residual(r *rand.Rand) time.Duration
	// WithMean returns the same family and shape scaled to mean m.
	WithMean(m time.Duration) Dist
	String() string
}

// MaxDuration caps a sample: a century is forever for any run.
const MaxDuration = 100 * 365 * 24 * time.Hour

func clampSample(seconds float64) time.Duration {
	switch {
	case math.IsNaN(seconds) || seconds < 1e-3:
		return time.Millisecond
	case seconds > MaxDuration.Seconds():
		return MaxDuration
	}
	return time.Duration(seconds * float64(time.Second))
}

// Exponential is the memoryless distribution with the given mean.
type Exponential struct{ M time.Duration }

func (e Exponential) Sample(r *rand.Rand) time.Duration {
	return clampSample(r.ExpFloat64() * e.M.Seconds())
}
func (e Exponential) Mean() time.Duration { return e.M }

// Residual of an exponential is exponential with the same mean (memoryless).
func (e Exponential) Residual(r *rand.Rand) time.Duration { return e.Sample(r) }
func (e Exponential) WithMean(m time.Duration) Dist       { return Exponential{M: m} }
func (e Exponential) String() string                      { return fmt.Sprintf("exponential(mean %v)", e.M) }

// Weibull has shape k and scale lambda (seconds); k < 1 is heavy-tailed:
// most sessions are short, a few very long. NewWeibull sets lambda from the
// mean.
type Weibull struct{ d distuv.Weibull }

// NewWeibull returns the Weibull distribution with shape k and the given
// mean: lambda = mean / Γ(1 + 1/k).
func NewWeibull(k float64, mean time.Duration) (Weibull, error) {
	if !(k > 0) || mean <= 0 {
		return Weibull{}, fmt.Errorf("weibull: need shape > 0 and mean > 0, got shape %v mean %v", k, mean)
	}
	return Weibull{distuv.Weibull{K: k, Lambda: mean.Seconds() / math.Gamma(1+1/k)}}, nil
}

// Shape returns k; Scale returns lambda.
func (w Weibull) Shape() float64       { return w.d.K }
func (w Weibull) Scale() time.Duration { return clampSample(w.d.Lambda) }

func (w Weibull) Sample(r *rand.Rand) time.Duration { return clampSample(w.d.Quantile(r.Float64())) }
func (w Weibull) Mean() time.Duration               { return clampSample(w.d.Mean()) }

// Residual: if X is Weibull(k, λ), (X/λ)^k is Exp(1), and for the
// length-biased X* it is Gamma(1+1/k, 1).
func (w Weibull) Residual(r *rand.Rand) time.Duration {
	g := distuv.Gamma{Alpha: 1 + 1/w.d.K, Beta: 1, Src: r}.Rand()
	return clampSample(r.Float64() * w.d.Lambda * math.Pow(g, 1/w.d.K))
}
func (w Weibull) WithMean(m time.Duration) Dist {
	n, err := NewWeibull(w.d.K, m)
	if err != nil {
		return Fixed{D: m}
	}
	return n
}
func (w Weibull) String() string {
	return fmt.Sprintf("weibull(shape %.2f, scale %v, mean %v)", w.d.K, w.Scale().Round(time.Second), w.Mean().Round(time.Second))
}

// LogNormal is the log-normal distribution: ln(X) ~ N(mu, sigma²).
// Stutzbach & Rejaie found it fits session lengths about as well as Weibull.
type LogNormal struct{ d distuv.LogNormal }

// NewLogNormal returns the log-normal distribution with parameter sigma and
// the given mean: mu = ln(mean) - sigma²/2.
func NewLogNormal(sigma float64, mean time.Duration) (LogNormal, error) {
	if !(sigma > 0) || mean <= 0 {
		return LogNormal{}, fmt.Errorf("lognormal: need sigma > 0 and mean > 0, got sigma %v mean %v", sigma, mean)
	}
	return LogNormal{distuv.LogNormal{Mu: math.Log(mean.Seconds()) - sigma*sigma/2, Sigma: sigma}}, nil
}

func (l LogNormal) Sample(r *rand.Rand) time.Duration {
	return clampSample(math.Exp(l.d.Mu + l.d.Sigma*r.NormFloat64()))
}
func (l LogNormal) Mean() time.Duration { return clampSample(l.d.Mean()) }

// Residual: the length-biased log-normal(mu, sigma) is log-normal(mu+sigma², sigma).
func (l LogNormal) Residual(r *rand.Rand) time.Duration {
	x := math.Exp(l.d.Mu + l.d.Sigma*l.d.Sigma + l.d.Sigma*r.NormFloat64())
	return clampSample(r.Float64() * x)
}
func (l LogNormal) WithMean(m time.Duration) Dist {
	n, err := NewLogNormal(l.d.Sigma, m)
	if err != nil {
		return Fixed{D: m}
	}
	return n
}
func (l LogNormal) String() string {
	return fmt.Sprintf("lognormal(sigma %.2f, mean %v)", l.d.Sigma, l.Mean().Round(time.Second))
}

// Fixed always returns D. Tests and scripted scenarios use it.
type Fixed struct{ D time.Duration }

func (f Fixed) Sample(*rand.Rand) time.Duration { return max(f.D, time.Millisecond) }
func (f Fixed) Mean() time.Duration             { return f.D }
func (f Fixed) WithMean(m time.Duration) Dist   { return Fixed{D: m} }
func (f Fixed) String() string                  { return fmt.Sprintf("fixed(%v)", f.D) }

// Residual of a fixed period is uniform in [0, D).
func (f Fixed) Residual(r *rand.Rand) time.Duration {
	return max(time.Duration(r.Float64()*float64(f.D)), time.Millisecond)
}
