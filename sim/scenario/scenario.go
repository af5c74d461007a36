// Package scenario reads the scenario files of sim/scenarios: who is in the
// network and how they come and go, the mass events, the objects stored and
// the topic and lookup traffic, and the parameters of the code under test.
// One file drives both modes, so a live run and a model run of the same
// file can be compared.
//
// Files are YAML (JSON is YAML too). Unknown fields are errors; every field
// left out takes the default documented on it, which for the storage policy
// is erasure's own default.
package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/sim/churn"
	"gopkg.in/yaml.v3"
)

// Mode says how a scenario runs.
type Mode string

const (
	// Live runs real nodes (the node package) on go-libp2p's simulated
	// network.
	Live Mode = "live"
	// Model runs the discrete-event model, which calls erasure's policy
	// code and models DHT lookups and gossipsub fan-out.
	Model Mode = "model"
)

// Scenario is one simulated situation.
type Scenario struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Mode is live or model; `sim run --mode` overrides it.
	Mode Mode `yaml:"mode"`
	// Seed seeds every random choice of the run. Default 1.
	Seed uint64 `yaml:"seed"`
	// Runs repeats a live scenario with seeds Seed, Seed+1, ... and reports
	// the mean and spread of each figure. Default 1. A model run is
	// deterministic, so repeating it with the same seed is pointless.
	Runs int `yaml:"runs"`

	// Nodes is the number of nodes, servers included.
	Nodes int `yaml:"nodes"`
	// Duration is how long the measured part of the run lasts (virtual time
	// in model mode, real time in `sim run` live mode).
	Duration Duration `yaml:"duration"`
	// Warmup runs churn (and, live, the nodes) before measuring, so the run
	// starts from a network in steady state. Default 3d in model mode, 30s
	// live.
	Warmup Duration `yaml:"warmup"`
	// SampleEvery is the time-series resolution. Default 1d in model mode,
	// 10s live.
	SampleEvery Duration `yaml:"sample_every"`

	// Servers are always-on (or nearly) peers run by the application; they
	// are the bootstrap nodes and the peers that hold the app key, write the
	// objects and repair them.
	Servers Class `yaml:"servers"`
	// Volunteers are all the other nodes.
	Volunteers Class `yaml:"volunteers"`

	Network   Network   `yaml:"network"`
	Events    []Event   `yaml:"events"`
	Storage   Storage   `yaml:"storage"`
	Topic     Topic     `yaml:"topic"`
	Lookups   Lookups   `yaml:"lookups"`
	GossipSub GossipSub `yaml:"gossipsub"`
	// Sweep is read by `sim sweep` only.
	Sweep Sweep `yaml:"sweep"`
	// Celebrity, when set, makes this a celebrity-post scenario (issue
	// 15), run by model.RunCelebrity; see celebrity.go.
	Celebrity *Celebrity `yaml:"celebrity"`

	// Path is the file the scenario was read from.
	Path string `yaml:"-"`
}

// Class describes one class of nodes; see churn.Class.
type Class struct {
	// Count is the number of servers (ignored for volunteers, who are
	// Nodes - Servers.Count).
	Count int `yaml:"count"`
	// Availability is the mean fraction of time online; 1 = always on.
	// Servers default to 1 when no session is given.
	Availability float64 `yaml:"availability"`
	// AvailabilitySpread is the Beta concentration of per-node availability
	// (smaller = more uneven); 0 = every node the same.
	AvailabilitySpread float64  `yaml:"availability_spread"`
	Session            DistSpec `yaml:"session"`
	// Downtime: with availability given, only its family and shape count.
	Downtime DistSpec `yaml:"downtime"`
	// Lifetime is the time until a node leaves for good, with its data; it
	// is replaced by a newcomer so the population stays the same. Empty =
	// never leaves.
	Lifetime DistSpec `yaml:"lifetime"`
}

// DistSpec names a duration distribution.
type DistSpec struct {
	// Dist is exponential, weibull, lognormal or fixed.
	Dist string `yaml:"dist"`
	// Mean of the distribution (the value, for fixed).
	Mean Duration `yaml:"mean"`
	// Shape is Weibull's k (< 1: heavy-tailed).
	Shape float64 `yaml:"shape"`
	// Sigma is the log-normal's standard deviation of ln(X).
	Sigma float64 `yaml:"sigma"`
}

// IsZero reports whether the spec was left out.
func (s DistSpec) IsZero() bool { return s == DistSpec{} }

// Build returns the distribution. fallbackMean is used when Mean is not
// given (downtimes whose mean is set per node).
func (s DistSpec) Build(fallbackMean time.Duration) (churn.Dist, error) {
	mean := s.Mean.D()
	if mean == 0 {
		mean = fallbackMean
	}
	if mean <= 0 {
		return nil, fmt.Errorf("%s: mean is required", s.Dist)
	}
	switch s.Dist {
	case "exponential":
		return churn.Exponential{M: mean}, nil
	case "weibull":
		return churn.NewWeibull(s.Shape, mean)
	case "lognormal":
		return churn.NewLogNormal(s.Sigma, mean)
	case "fixed":
		return churn.Fixed{D: mean}, nil
	case "":
		return nil, errors.New("dist is required (exponential, weibull, lognormal or fixed)")
	}
	return nil, fmt.Errorf("unknown dist %q (want exponential, weibull, lognormal or fixed)", s.Dist)
}

// Churn converts the class to its churn description.
func (c Class) Churn() (churn.Class, error) {
	out := churn.Class{Availability: c.Availability, Spread: c.AvailabilitySpread}
	var errs []error
	if c.Availability < 1 {
		var err error
		if out.Session, err = c.Session.Build(0); err != nil {
			errs = append(errs, fmt.Errorf("session: %w", err))
		}
		fallback := time.Duration(0)
		if c.Availability > 0 && out.Session != nil {
			fallback = out.Session.Mean() // replaced per node
		}
		if out.Downtime, err = c.Downtime.Build(fallback); err != nil {
			errs = append(errs, fmt.Errorf("downtime: %w", err))
		}
	}
	if !c.Lifetime.IsZero() {
		var err error
		if out.Lifetime, err = c.Lifetime.Build(0); err != nil {
			errs = append(errs, fmt.Errorf("lifetime: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return out, err
	}
	return out, out.Validate()
}

// Network describes the simulated links.
type Network struct {
	// Regions partition the nodes (servers are spread over them too).
	// Default: one region, "global".
	Regions []Region `yaml:"regions"`
	// LatencyMS[i][j] is the one-way latency in milliseconds from region i
	// to region j. Default 10 ms everywhere.
	LatencyMS [][]float64 `yaml:"latency_ms"`
	// BandwidthMbps is every node's uplink and downlink. Default 20.
	BandwidthMbps float64 `yaml:"bandwidth_mbps"`
}

// Region is a share of the nodes, the unit of a region_dark event.
type Region struct {
	Name  string  `yaml:"name"`
	Share float64 `yaml:"share"`
}

// Latency returns the one-way latency from region a to region b.
func (n Network) Latency(a, b int) time.Duration {
	return time.Duration(n.LatencyMS[a][b] * float64(time.Millisecond))
}

// RegionIndex returns the index of the region named name, or -1.
func (n Network) RegionIndex(name string) int {
	for i, r := range n.Regions {
		if r.Name == name {
			return i
		}
	}
	return -1
}

// EventKind names a mass event.
type EventKind string

const (
	// RegionDark takes every node of a region offline at once (a power or
	// network outage) for Duration.
	RegionDark EventKind = "region_dark"
	// MassReboot restarts a share of the online nodes within a short window,
	// as the Windows Update reboot that took Skype down for two days on
	// 16 August 2007: each goes down at a uniform time in [At, At+Within]
	// and is back Downtime later.
	MassReboot EventKind = "mass_reboot"
)

// Event is a mass event.
type Event struct {
	Kind EventKind `yaml:"kind"`
	// At is the time of the event, from the end of the warm-up.
	At Duration `yaml:"at"`
	// Region (region_dark).
	Region string `yaml:"region"`
	// Duration of the outage (region_dark).
	Duration Duration `yaml:"duration"`
	// Share of online nodes that reboot (mass_reboot). Default 1.
	Share float64 `yaml:"share"`
	// Within is the window the reboots fall in (mass_reboot). Default 0:
	// all at once.
	Within Duration `yaml:"within"`
	// Downtime of each rebooting node (mass_reboot). Default 2m.
	Downtime Duration `yaml:"downtime"`
	// Servers: whether servers take part too (mass_reboot). Default false.
	Servers bool `yaml:"servers"`
}

// Storage describes the objects stored and the erasure policy parameters.
// The defaults are erasure's defaults, so a scenario that leaves them out
// tests what ships.
type Storage struct {
	// Objects is the number of objects written; 0 leaves storage out.
	Objects int `yaml:"objects"`
	// SizeMin and SizeMax bound object sizes, drawn log-uniformly. Default
	// 1 MiB each.
	SizeMin ByteSize `yaml:"size_min"`
	SizeMax ByteSize `yaml:"size_max"`
	// WriteWithin spreads the writes over this long after the warm-up.
	// Default 1d in model mode, 10s live.
	WriteWithin Duration `yaml:"write_within"`

	DataShards int `yaml:"data_shards"` // least k; default erasure.DefaultDataShards
	// MaxDataShards is the largest k, MinShardSize the least shard size k
	// is raised for (erasure.ChooseDataShards); defaults erasure's. Set
	// max_data_shards to data_shards for a fixed k (the sweep over k).
	MaxDataShards int      `yaml:"max_data_shards"`
	MinShardSize  ByteSize `yaml:"min_shard_size"`
	MinParity     int      `yaml:"min_parity"`   // default erasure.DefaultMinParity
	MaxShards     int      `yaml:"max_shards"`   // default erasure.MaxShards
	SegmentSize   ByteSize `yaml:"segment_size"` // default erasure.DefaultSegmentSize
	Target        float64  `yaml:"target"`       // default erasure.DefaultTarget
	GracePeriod   Duration `yaml:"grace_period"` // default erasure.DefaultRepairPolicy().GracePeriod
	// AvailabilityHalfLife and AvailabilityConfidence configure the
	// trackers (erasure.AvailabilityConfig HalfLife and Confidence, the z
	// of the lower bound the policy places on); defaults erasure's. A
	// negative confidence places on the mean estimate.
	AvailabilityHalfLife   Duration `yaml:"availability_half_life"`
	AvailabilityConfidence float64  `yaml:"availability_confidence"`

	// Repair scheduling (erasure.SchedulerConfig); defaults are erasure's.
	CheckInterval    Duration `yaml:"check_interval"`
	Jitter           float64  `yaml:"jitter"`
	ChecksPerSecond  float64  `yaml:"checks_per_second"`
	CheckBurst       int      `yaml:"check_burst"`
	RepairsPerSecond float64  `yaml:"repairs_per_second"`
	RepairBurst      int      `yaml:"repair_burst"`
	RetryAfter       Duration `yaml:"retry_after"`
	// RepairTick is how often each app server asks its scheduler for due
	// objects (erasure.Config.RepairTick). Default 10s live, erasure's
	// default; 1m in the model (checks are rate limited either way, and a
	// coarser tick keeps year-long runs fast).
	RepairTick Duration `yaml:"repair_tick"`

	// Candidates is how many online peers closest to an object's key (what
	// a DHT lookup returns) the writer and the repairer consider as holders,
	// besides themselves. Default 20, kad-dht's bucket size.
	Candidates int `yaml:"candidates"`
	// ConnectedPeers is how many online peers a server is connected to,
	// which node's StoragePeers offers as candidates too (model). Servers
	// are the bootstrap nodes, so every volunteer dials one; default 200,
	// the connection manager's low-water mark of node.DefaultConfig.
	ConnectedPeers int `yaml:"connected_peers"`
	// ServersHoldShards: servers store shards themselves (default true, a
	// server runs node.DefaultConfig with a storage quota). False models
	// servers with no quota: durability then rests on volunteers alone.
	ServersHoldShards *bool `yaml:"servers_hold_shards"`
	// ServerSubnets is how many /24 networks the app servers sit in
	// (model): server i in network i mod ServerSubnets, so that erasure's
	// placement, which gives an object at most one holder per network
	// among peers without an operator-given zone, gives it at most this
	// many server holders. 0 (default) gives each server a network of its
	// own, as live mode's simulated addresses do. Volunteers are spread
	// over 2^22 networks (home connections) at random.
	ServerSubnets int `yaml:"server_subnets"`
	// AppServers is how many of the servers hold the app key: they write
	// and repair the objects, and are connected to each other (model).
	// Default servers.count. The other servers are always-on peers that
	// hold shards like any other (hosted nodes, "a few percent servers").
	AppServers int `yaml:"app_servers"`
	// VolunteerQuota and ServerQuota are the bytes of shards one volunteer
	// or server accepts (model; erasure.StoreConfig.Quota). A peer whose
	// quota would overflow is not a candidate, and placement favours peers
	// with room (erasure.Candidate.Used). 0 (default): no quota.
	VolunteerQuota ByteSize `yaml:"volunteer_quota"`
	ServerQuota    ByteSize `yaml:"server_quota"`
	// RepairBy is who pays a repair's bytes (model): "app_servers" (default,
	// today: the app server that checks fetches k shards and uploads the
	// regenerated ones) or "volunteers" (a volunteer holding a healthy
	// shard regenerates under the app's delegation, fetching k-1 shards;
	// the app server still decides, so only the accounting changes).
	RepairBy string `yaml:"repair_by"`
	// Observe is how app peers learn availability: "probes" (default) feeds
	// each app peer's erasure.AvailabilityTracker only with what its own
	// requests see, as the service does; "full" feeds it every
	// connect and disconnect in the network, an optimistic bound.
	Observe string `yaml:"observe"`
}

// Topic describes the topic traffic.
type Topic struct {
	// PublishEvery is the time between two publishes, network-wide, each
	// from a random online node; 0 disables topic traffic.
	PublishEvery Duration `yaml:"publish_every"`
	// MessageSize in bytes. Default 256.
	MessageSize ByteSize `yaml:"message_size"`
	// Settle: a subscriber counts for a message only if it has been online
	// and subscribed for this long at publish time (a peer that has just
	// come back has not joined a mesh yet). Default 10s.
	Settle Duration `yaml:"settle"`
	// Deadline: a delivery later than this after publication counts as
	// lost, and a subscriber that leaves before it does not count. Default
	// 10s.
	Deadline Duration `yaml:"deadline"`
	// Samples is how many publishes the model simulates. Default 100.
	Samples int `yaml:"samples"`
}

// Lookups describes the DHT lookup traffic.
type Lookups struct {
	// Every is the time between two lookups, network-wide; 0 disables.
	Every Duration `yaml:"every"`
	// Timeout of one lookup. Default 30s.
	Timeout Duration `yaml:"timeout"`
	// Samples is how many lookups the model simulates. Default 300.
	Samples int `yaml:"samples"`
	// Refresh is how often a routing table is refreshed in the model.
	// Default 10m, kad-dht's routing table refresh period.
	Refresh Duration `yaml:"refresh"`
}

// GossipSub holds the gossipsub parameters: live mode passes them to the
// nodes, the model uses them for fan-out.
type GossipSub struct {
	D             int      `yaml:"d"`              // default 6, go-libp2p-pubsub's
	Dlo           int      `yaml:"d_lo"`           // default 5
	Dhi           int      `yaml:"d_hi"`           // default 12
	Dlazy         int      `yaml:"d_lazy"`         // default 6
	Heartbeat     Duration `yaml:"heartbeat"`      // default 1s
	HistoryGossip int      `yaml:"history_gossip"` // default 3
	// PerHopCost is the time a node spends on a message before it
	// forwards or delivers it (validation, signature check, queues), as
	// calibrated from a live run (report.md of a live run prints it).
	// Model only. Default 0.
	PerHopCost Duration `yaml:"per_hop_cost"`
}

// Sweep says how `sim sweep` scales a scenario: for every node count N,
// the scenario is run with N nodes, N*ObjectsPerNode objects and
// max(servers.count, N*ServersPerNode) servers, so that the load per node
// stays the same and only the size changes.
type Sweep struct {
	Nodes          []int   `yaml:"nodes"`
	ObjectsPerNode float64 `yaml:"objects_per_node"`
	ServersPerNode float64 `yaml:"servers_per_node"`
}

// Load reads and validates a scenario file.
func Load(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	sc, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", path, err)
	}
	sc.Path = path
	return sc, nil
}

// Parse decodes and validates a scenario, filling in defaults.
func Parse(b []byte) (*Scenario, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var sc Scenario
	if err := dec.Decode(&sc); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if err := sc.Prepare(); err != nil {
		return nil, err
	}
	return &sc, nil
}

// Prepare fills in defaults and validates. Call it again after changing
// fields (the sweep does).
func (sc *Scenario) Prepare() error {
	sc.celebrityDefaults()
	sc.setDefaults()
	return errors.Join(sc.validate(), sc.validateCelebrity())
}

func (sc *Scenario) setDefaults() {
	model := sc.Mode == Model
	pick := func(d *Duration, modelDef, liveDef time.Duration) {
		if *d == 0 {
			if model {
				*d = Duration(modelDef)
			} else {
				*d = Duration(liveDef)
			}
		}
	}
	if sc.Seed == 0 {
		sc.Seed = 1
	}
	if sc.Runs == 0 {
		sc.Runs = 1
	}
	pick(&sc.Warmup, 3*24*time.Hour, 30*time.Second)
	pick(&sc.SampleEvery, 24*time.Hour, 10*time.Second)
	if sc.Servers.Count > 0 && sc.Servers.Availability == 0 && sc.Servers.Session.IsZero() {
		sc.Servers.Availability = 1
	}

	n := &sc.Network
	if len(n.Regions) == 0 {
		n.Regions = []Region{{Name: "global", Share: 1}}
	}
	if len(n.LatencyMS) == 0 {
		n.LatencyMS = make([][]float64, len(n.Regions))
		for i := range n.LatencyMS {
			n.LatencyMS[i] = make([]float64, len(n.Regions))
			for j := range n.LatencyMS[i] {
				n.LatencyMS[i][j] = 10
			}
		}
	}
	if n.BandwidthMbps == 0 {
		n.BandwidthMbps = 20
	}
	for i := range sc.Events {
		e := &sc.Events[i]
		if e.Kind == MassReboot {
			if e.Share == 0 {
				e.Share = 1
			}
			if e.Downtime == 0 {
				e.Downtime = Duration(2 * time.Minute)
			}
		}
	}

	s := &sc.Storage
	ed := erasure.DefaultConfig()
	setInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setF := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	setD := func(v *Duration, d time.Duration) {
		if *v == 0 {
			*v = Duration(d)
		}
	}
	if s.SizeMin == 0 {
		s.SizeMin = 1 << 20
	}
	if s.SizeMax == 0 {
		s.SizeMax = max(s.SizeMin, 1<<20)
	}
	pick(&s.WriteWithin, 24*time.Hour, 10*time.Second)
	setInt(&s.DataShards, ed.DataShards)
	setInt(&s.MaxDataShards, max(s.DataShards, ed.MaxDataShards))
	if s.MinShardSize == 0 {
		s.MinShardSize = ByteSize(ed.MinShardSize)
	}
	setInt(&s.AppServers, sc.Servers.Count)
	if s.RepairBy == "" {
		s.RepairBy = "app_servers"
	}
	if s.MinParity == 0 {
		s.MinParity = ed.MinParity
	}
	setInt(&s.MaxShards, ed.MaxShards)
	if s.SegmentSize == 0 {
		s.SegmentSize = ByteSize(ed.SegmentSize)
	}
	setF(&s.Target, ed.Target)
	setD(&s.GracePeriod, ed.Repair.GracePeriod)
	setD(&s.AvailabilityHalfLife, erasure.DefaultAvailabilityConfig().HalfLife)
	setF(&s.AvailabilityConfidence, erasure.DefaultConfidence)
	setD(&s.CheckInterval, ed.Scheduler.Interval)
	setF(&s.Jitter, ed.Scheduler.Jitter)
	setF(&s.ChecksPerSecond, ed.Scheduler.ChecksPerSecond)
	setInt(&s.CheckBurst, ed.Scheduler.CheckBurst)
	setF(&s.RepairsPerSecond, ed.Scheduler.RepairsPerSecond)
	setInt(&s.RepairBurst, ed.Scheduler.RepairBurst)
	setD(&s.RetryAfter, ed.Scheduler.RetryAfter)
	pick(&s.RepairTick, time.Minute, ed.RepairTick)
	setInt(&s.Candidates, 20)
	if s.ConnectedPeers == 0 {
		s.ConnectedPeers = 200
	}
	if s.ServersHoldShards == nil {
		yes := true
		s.ServersHoldShards = &yes
	}
	if s.Observe == "" {
		s.Observe = "probes"
	}

	t := &sc.Topic
	if t.MessageSize == 0 {
		t.MessageSize = 256
	}
	setD(&t.Settle, 10*time.Second)
	setD(&t.Deadline, 10*time.Second)
	setInt(&t.Samples, 100)

	l := &sc.Lookups
	setD(&l.Timeout, 30*time.Second)
	setInt(&l.Samples, 300)
	setD(&l.Refresh, 10*time.Minute)

	g := &sc.GossipSub
	setInt(&g.D, 6)
	setInt(&g.Dlo, 5)
	setInt(&g.Dhi, 12)
	setInt(&g.Dlazy, 6)
	setD(&g.Heartbeat, time.Second)
	setInt(&g.HistoryGossip, 3)
}

func (sc *Scenario) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if sc.Mode != Live && sc.Mode != Model {
		bad("mode %q: want live or model", sc.Mode)
	}
	if sc.Runs < 1 || sc.Runs > 100 {
		bad("runs %d: want 1 to 100", sc.Runs)
	}
	if sc.Nodes < 2 {
		bad("nodes %d: need at least 2", sc.Nodes)
	}
	if sc.Mode == Live && sc.Nodes > 2000 {
		bad("nodes %d: live mode runs every node in this process; use model mode above 2000", sc.Nodes)
	}
	if sc.Mode == Model && sc.Nodes > 5_000_000 {
		bad("nodes %d: the model holds every node in memory; 5e6 at most", sc.Nodes)
	}
	if sc.Duration <= 0 {
		bad("duration is required")
	}
	if sc.SampleEvery <= 0 || sc.SampleEvery > sc.Duration {
		bad("sample_every %v must be in (0, duration]", sc.SampleEvery)
	}
	if sc.Servers.Count < 0 || sc.Servers.Count > sc.Nodes {
		bad("servers.count %d must be in [0, nodes]", sc.Servers.Count)
	}
	if sc.Mode == Live && sc.Servers.Count < 1 {
		bad("servers.count: live mode needs at least one server (the bootstrap node)")
	}
	if sc.Servers.Count > 0 {
		if _, err := sc.Servers.Churn(); err != nil {
			bad("servers: %w", err)
		}
	}
	if sc.Nodes > sc.Servers.Count {
		if _, err := sc.Volunteers.Churn(); err != nil {
			bad("volunteers: %w", err)
		}
	}

	n := sc.Network
	share := 0.0
	names := map[string]bool{}
	for _, r := range n.Regions {
		if r.Name == "" || names[r.Name] {
			bad("network.regions: names must be unique and non-empty (%q)", r.Name)
		}
		names[r.Name] = true
		if r.Share <= 0 {
			bad("network.regions: %s share %v must be positive", r.Name, r.Share)
		}
		share += r.Share
	}
	if math.Abs(share-1) > 1e-6 {
		bad("network.regions: shares add up to %v, want 1", share)
	}
	if len(n.LatencyMS) != len(n.Regions) {
		bad("network.latency_ms: want a %dx%d matrix", len(n.Regions), len(n.Regions))
	}
	for _, row := range n.LatencyMS {
		if len(row) != len(n.Regions) {
			bad("network.latency_ms: want a %dx%d matrix", len(n.Regions), len(n.Regions))
			break
		}
		for _, v := range row {
			if v < 0 || v > 10000 {
				bad("network.latency_ms: %v ms out of [0, 10000]", v)
			}
		}
	}
	if n.BandwidthMbps <= 0 {
		bad("network.bandwidth_mbps must be positive")
	}

	for i, e := range sc.Events {
		if e.At < 0 || e.At > sc.Duration {
			bad("events[%d]: at %v outside [0, duration]", i, e.At)
		}
		switch e.Kind {
		case RegionDark:
			if n.RegionIndex(e.Region) < 0 {
				bad("events[%d]: unknown region %q", i, e.Region)
			}
			if e.Duration <= 0 {
				bad("events[%d]: region_dark needs a duration", i)
			}
		case MassReboot:
			if e.Share <= 0 || e.Share > 1 {
				bad("events[%d]: share %v must be in (0, 1]", i, e.Share)
			}
			if e.Within < 0 || e.Downtime <= 0 {
				bad("events[%d]: mass_reboot needs within >= 0 and downtime > 0", i)
			}
		default:
			bad("events[%d]: unknown kind %q (want region_dark or mass_reboot)", i, e.Kind)
		}
	}

	s := sc.Storage
	if s.Objects < 0 {
		bad("storage.objects must not be negative")
	}
	if s.Objects > 0 {
		if sc.Servers.Count < 1 {
			bad("storage: objects are written and repaired by servers; need servers.count >= 1")
		}
		p := erasure.Params{DataShards: s.DataShards, ParityShards: s.MinParity, SegmentSize: int(s.SegmentSize)}
		if err := p.Validate(); err != nil {
			bad("storage: %w", err)
		}
		if s.MaxShards < s.DataShards+s.MinParity || s.MaxShards > erasure.MaxShards {
			bad("storage.max_shards %d must be in [data_shards+min_parity, %d]", s.MaxShards, erasure.MaxShards)
		}
		if s.SizeMin < 1 || s.SizeMax < s.SizeMin {
			bad("storage: need 1 <= size_min <= size_max")
		}
		if s.Target <= 0 || s.Target >= 1 {
			bad("storage.target %v must be in (0, 1)", s.Target)
		}
		if s.MaxDataShards < s.DataShards || s.MaxDataShards > s.MaxShards-s.MinParity {
			bad("storage.max_data_shards %d must be in [data_shards, max_shards-min_parity]", s.MaxDataShards)
		}
		if s.AppServers < 1 || s.AppServers > sc.Servers.Count {
			bad("storage.app_servers %d must be in [1, servers.count]", s.AppServers)
		}
		if s.VolunteerQuota < 0 || s.ServerQuota < 0 {
			bad("storage: quotas must not be negative")
		}
		if s.RepairBy != "app_servers" && s.RepairBy != "volunteers" {
			bad("storage.repair_by %q: want app_servers or volunteers", s.RepairBy)
		}
		if s.Candidates < s.DataShards {
			bad("storage.candidates %d must be at least data_shards", s.Candidates)
		}
		if s.ConnectedPeers < 0 {
			bad("storage.connected_peers must not be negative")
		}
		if s.ServerSubnets < 0 {
			bad("storage.server_subnets must not be negative")
		}
		if s.Observe != "probes" && s.Observe != "full" {
			bad("storage.observe %q: want probes or full", s.Observe)
		}
		if s.RepairTick <= 0 || s.CheckInterval <= 0 {
			bad("storage: repair_tick and check_interval must be positive")
		}
		sch := erasure.DefaultSchedulerConfig()
		sch.Interval, sch.Jitter = s.CheckInterval.D(), s.Jitter
		sch.ChecksPerSecond, sch.CheckBurst = s.ChecksPerSecond, s.CheckBurst
		sch.RepairsPerSecond, sch.RepairBurst = s.RepairsPerSecond, s.RepairBurst
		sch.RetryAfter = s.RetryAfter.D()
		if _, err := erasure.NewRepairScheduler(sch); err != nil {
			bad("storage: %w", err)
		}
	}

	t := sc.Topic
	if t.PublishEvery < 0 || t.MessageSize < 1 || t.MessageSize > 1<<20 {
		bad("topic: need publish_every >= 0 and message_size in [1, 1 MiB]")
	}
	if t.Samples < 1 || t.Settle < 0 || t.Deadline <= 0 {
		bad("topic: need samples >= 1, settle >= 0, deadline > 0")
	}
	l := sc.Lookups
	if l.Every < 0 || l.Timeout <= 0 || l.Samples < 1 || l.Refresh <= 0 {
		bad("lookups: need every >= 0, timeout > 0, samples >= 1, refresh > 0")
	}
	g := sc.GossipSub
	if !(g.Dlo <= g.D && g.D <= g.Dhi) || g.Dlo < 2 || g.Dlazy < 0 || g.HistoryGossip < 1 {
		bad("gossipsub: need 2 <= d_lo <= d <= d_hi, d_lazy >= 0, history_gossip >= 1")
	}
	if g.Heartbeat <= 0 || g.PerHopCost < 0 {
		bad("gossipsub: need heartbeat > 0 and per_hop_cost >= 0")
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid scenario: %w", err)
	}
	return nil
}

// VolunteerCount returns the number of volunteer nodes.
func (sc *Scenario) VolunteerCount() int { return sc.Nodes - sc.Servers.Count }
