package churn

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/immense-p2p/immense/sim/event"
)

// Member places one node: its churn class and its region.
type Member struct {
	Class  int
	Region int
}

// Outage takes every node of Region offline during [At, At+Duration): a
// region going dark.
type Outage struct {
	At       time.Duration
	Region   int
	Duration time.Duration
}

// Reboot restarts a share of the nodes online at At, each at a uniform
// time in [At, At+Within] and for Downtime: everyone rebooting after an
// update, as in Skype's outage of August 2007.
type Reboot struct {
	At       time.Duration
	Within   time.Duration
	Downtime time.Duration
	Share    float64
	// Classes that take part; empty = all.
	Classes []int
}

// Config describes a population.
type Config struct {
	Classes []Class
	Members []Member
	Outages []Outage
	Reboots []Reboot
}

// Kind is what happens to a node.
type Kind uint8

const (
	// Up: the node comes online.
	Up Kind = iota
	// Down: the node goes offline, keeping its identity and data.
	Down
	// Replace: the node leaves for good, with its data; a newcomer (next
	// generation, fresh profile, new identity) takes its slot, offline
	// until an Up.
	Replace
)

func (k Kind) String() string {
	switch k {
	case Up:
		return "up"
	case Down:
		return "down"
	case Replace:
		return "replace"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Transition is one change of a node's state.
type Transition struct {
	At   time.Duration
	Node int
	// Gen is the node's generation after the transition (Replace
	// increments it).
	Gen  int
	Kind Kind
}

type nodeState struct {
	profile Profile
	natural bool   // online by its own rhythm
	forced  int32  // outages and reboots in progress
	gen     int32  // generation (incremented by Replace)
	epoch   uint32 // invalidates queued natural flips
	online  bool   // effective: natural && forced == 0
}

type evKind uint8

const (
	evFlip evKind = iota
	evLeave
	evForceOn
	evForceOff
	evReboot
	evOutage
)

type ev struct {
	kind  evKind
	node  int32
	epoch uint32 // evFlip: the node's epoch when queued; evLeave: its generation
	idx   int32  // evReboot, evOutage: index in Config
}

// Schedule generates the online/offline transitions of a population, mass
// events included, in time order. Time 0 is the start of the run; each
// node starts in its stationary state (see Profile.Initial). It is
// deterministic for a given Config and seed, and not safe for concurrent
// use.
type Schedule struct {
	cfg   Config
	r     *rand.Rand
	nodes []nodeState
	q     event.Queue[ev]
}

// NewSchedule draws every node's profile and initial state.
func NewSchedule(cfg Config, r *rand.Rand) (*Schedule, error) {
	for i, c := range cfg.Classes {
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("class %d: %w", i, err)
		}
	}
	s := &Schedule{cfg: cfg, r: r, nodes: make([]nodeState, len(cfg.Members))}
	for i, m := range cfg.Members {
		if m.Class < 0 || m.Class >= len(cfg.Classes) {
			return nil, fmt.Errorf("member %d: class %d out of range", i, m.Class)
		}
		n := &s.nodes[i]
		n.profile = cfg.Classes[m.Class].Node(r)
		on, first := n.profile.Initial(r)
		n.natural, n.online = on, on
		s.q.Push(first, ev{kind: evFlip, node: int32(i)})
		if life := n.profile.ResidualLife(r); life < MaxDuration {
			s.q.Push(life, ev{kind: evLeave, node: int32(i)})
		}
	}
	for i, o := range cfg.Outages {
		s.q.Push(o.At, ev{kind: evOutage, idx: int32(i)})
	}
	for i, rb := range cfg.Reboots {
		s.q.Push(rb.At, ev{kind: evReboot, idx: int32(i)})
	}
	return s, nil
}

// Len returns the number of nodes.
func (s *Schedule) Len() int { return len(s.nodes) }

// Online reports whether node i is online now.
func (s *Schedule) Online(i int) bool { return s.nodes[i].online }

// Gen returns node i's generation.
func (s *Schedule) Gen(i int) int { return int(s.nodes[i].gen) }

// Profile returns node i's current profile.
func (s *Schedule) Profile(i int) Profile { return s.nodes[i].profile }

// Peek returns the time of the next internal event (which may or may not
// produce a transition), and false when there is none.
func (s *Schedule) Peek() (time.Duration, bool) { return s.q.Peek() }

// Step processes the next internal event and appends the transitions it
// causes (none, one or two) to buf.
func (s *Schedule) Step(buf []Transition) []Transition {
	at, e, ok := s.q.Pop()
	if !ok {
		return buf
	}
	i := int(e.node)
	n := &s.nodes[i]
	switch e.kind {
	case evFlip:
		if e.epoch != n.epoch {
			return buf // the node was replaced since
		}
		n.natural = !n.natural
		s.q.Push(at+n.profile.Period(s.r, n.natural), ev{kind: evFlip, node: e.node, epoch: n.epoch})
		return s.settle(buf, at, i)
	case evLeave:
		if uint32(n.gen) != e.epoch {
			return buf
		}
		if n.online {
			n.online = false
			buf = append(buf, Transition{At: at, Node: i, Gen: int(n.gen), Kind: Down})
		}
		n.gen++
		n.epoch++
		n.profile = s.cfg.Classes[s.cfg.Members[i].Class].Node(s.r)
		buf = append(buf, Transition{At: at, Node: i, Gen: int(n.gen), Kind: Replace})
		// The newcomer joins now and then follows its own rhythm.
		n.natural = true
		s.q.Push(at+n.profile.Period(s.r, true), ev{kind: evFlip, node: e.node, epoch: n.epoch})
		if life := n.profile.Life(s.r); life < MaxDuration {
			s.q.Push(at+life, ev{kind: evLeave, node: e.node, epoch: uint32(n.gen)})
		}
		return s.settle(buf, at, i)
	case evForceOff:
		n.forced++
		return s.settle(buf, at, i)
	case evForceOn:
		n.forced--
		return s.settle(buf, at, i)
	case evOutage:
		o := s.cfg.Outages[e.idx]
		for j, m := range s.cfg.Members {
			if m.Region == o.Region {
				s.q.Push(at, ev{kind: evForceOff, node: int32(j)})
				s.q.Push(at+o.Duration, ev{kind: evForceOn, node: int32(j)})
			}
		}
	case evReboot:
		rb := s.cfg.Reboots[e.idx]
		for j, m := range s.cfg.Members {
			if !s.nodes[j].online || !takesPart(rb.Classes, m.Class) || s.r.Float64() >= rb.Share {
				continue
			}
			t := at + time.Duration(s.r.Float64()*float64(rb.Within))
			s.q.Push(t, ev{kind: evForceOff, node: int32(j)})
			s.q.Push(t+rb.Downtime, ev{kind: evForceOn, node: int32(j)})
		}
	}
	return buf
}

func takesPart(classes []int, c int) bool {
	if len(classes) == 0 {
		return true
	}
	for _, x := range classes {
		if x == c {
			return true
		}
	}
	return false
}

// settle recomputes node i's effective state and reports a change.
func (s *Schedule) settle(buf []Transition, at time.Duration, i int) []Transition {
	n := &s.nodes[i]
	on := n.natural && n.forced == 0
	if on == n.online {
		return buf
	}
	n.online = on
	k := Down
	if on {
		k = Up
	}
	return append(buf, Transition{At: at, Node: i, Gen: int(n.gen), Kind: k})
}

// Until runs the schedule up to and including time end, calling f for
// every transition in order.
func (s *Schedule) Until(end time.Duration, f func(Transition)) {
	var buf []Transition
	for {
		at, ok := s.Peek()
		if !ok || at > end {
			return
		}
		buf = s.Step(buf[:0])
		for _, t := range buf {
			f(t)
		}
	}
}
