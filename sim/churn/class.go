package churn

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"gonum.org/v1/gonum/stat/distuv"
)

// Availability bounds for a single node: a node online 0.1% of the time
// would take a thousand session lengths to come back, longer than any run.
const (
	minNodeAvailability = 0.01
	maxNodeAvailability = 0.99
)

// Class is the churn behaviour of a class of nodes (servers, volunteers).
type Class struct {
	// Availability is the mean long-run fraction of time a node of the
	// class is online. 1 means always on (Session and Downtime are then
	// ignored); 0 means "whatever Session and Downtime give", the same
	// for every node.
	Availability float64
	// Spread is the concentration c of the Beta(a*c, (1-a)*c) distribution
	// each node's availability is drawn from: small values (1-3) make
	// availability very uneven, as measured; 0 gives every node exactly
	// Availability.
	Spread float64
	// Session is the distribution of the time a node stays online.
	Session Dist
	// Downtime is the distribution of the time a node stays offline. With
	// Availability set, only its family and shape are used: each node's
	// mean is Session.Mean() * (1-a)/a for its availability a.
	Downtime Dist
	// Lifetime is how long a node stays in the system before leaving for
	// good (its data with it); nil means forever.
	Lifetime Dist
}

// Validate reports a class that cannot be simulated.
func (c Class) Validate() error {
	var errs []error
	if c.Availability < 0 || c.Availability > 1 {
		errs = append(errs, fmt.Errorf("availability %v must be in [0, 1]", c.Availability))
	}
	if c.Spread < 0 {
		errs = append(errs, fmt.Errorf("availability spread %v must not be negative", c.Spread))
	}
	if c.Availability < 1 {
		if c.Session == nil || c.Session.Mean() <= 0 {
			errs = append(errs, errors.New("session distribution with a positive mean is required"))
		}
		if c.Downtime == nil {
			errs = append(errs, errors.New("downtime distribution is required"))
		} else if c.Availability == 0 && c.Downtime.Mean() <= 0 {
			errs = append(errs, errors.New("downtime mean is required when availability is not given"))
		}
	}
	return errors.Join(errs...)
}

// MeanAvailability is the class's expected long-run availability.
func (c Class) MeanAvailability() float64 {
	if c.Availability > 0 {
		return c.Availability
	}
	s, d := c.Session.Mean().Seconds(), c.Downtime.Mean().Seconds()
	return s / (s + d)
}

// Profile is the churn behaviour of one node.
type Profile struct {
	// Availability is this node's long-run online fraction.
	Availability float64
	// AlwaysOn nodes never go offline (but may still leave for good).
	AlwaysOn bool
	Session  Dist
	Downtime Dist
	Lifetime Dist // nil: never leaves
}

// Node draws one node's profile: its availability from the class's Beta
// distribution and its downtime distribution scaled to match.
func (c Class) Node(r *rand.Rand) Profile {
	p := Profile{Lifetime: c.Lifetime, Session: c.Session, Downtime: c.Downtime}
	if c.Availability >= 1 {
		p.Availability, p.AlwaysOn = 1, true
		return p
	}
	if c.Availability == 0 {
		p.Availability = c.MeanAvailability()
		return p
	}
	a := c.Availability
	if c.Spread > 0 {
		b := distuv.Beta{Alpha: a * c.Spread, Beta: (1 - a) * c.Spread, Src: r}
		a = b.Rand()
	}
	a = min(max(a, minNodeAvailability), maxNodeAvailability)
	p.Availability = a
	s := c.Session.Mean()
	p.Downtime = c.Downtime.WithMean(time.Duration(float64(s) * (1 - a) / a))
	return p
}

// Period draws how long the node stays in its current state.
func (p Profile) Period(r *rand.Rand, online bool) time.Duration {
	if p.AlwaysOn {
		if online {
			return MaxDuration
		}
		return time.Millisecond
	}
	if online {
		return p.Session.Sample(r)
	}
	return p.Downtime.Sample(r)
}

// Initial draws the node's state at a random instant of its life and how
// long that state still lasts: online with probability Availability, for
// the residual of a period of that state. This is the stationary state of
// the alternating renewal process, so a run starts in steady state.
func (p Profile) Initial(r *rand.Rand) (online bool, first time.Duration) {
	if p.AlwaysOn {
		return true, MaxDuration
	}
	online = r.Float64() < p.Availability
	if online {
		return true, p.Session.Residual(r)
	}
	return false, p.Downtime.Residual(r)
}

// Life draws how long a newcomer stays in the system; MaxDuration if
// forever. ResidualLife is the same for a node already there at the start.
func (p Profile) Life(r *rand.Rand) time.Duration {
	if p.Lifetime == nil {
		return MaxDuration
	}
	return p.Lifetime.Sample(r)
}

// ResidualLife draws the remaining life of a node present at the start.
func (p Profile) ResidualLife(r *rand.Rand) time.Duration {
	if p.Lifetime == nil {
		return MaxDuration
	}
	return p.Lifetime.Residual(r)
}
