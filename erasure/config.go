package erasure

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Service. Start from DefaultConfig (or DevnetConfig)
// and change what you need; New validates it.
type Config struct {
	// DataShards is k, the shards any k of which rebuild a segment.
	// Default DefaultDataShards (4). When fewer than k+MinParity peers (or
	// MaxShards) are available, Put lowers k to keep MinParity parity
	// shards, down to k = 1.
	DataShards int
	// MaxDataShards is the largest k: Put raises k with the value's size
	// (ChooseDataShards) up to this, keeping shards of at least
	// MinShardSize. Default DefaultMaxDataShards (16); set it to
	// DataShards for a fixed k.
	MaxDataShards int
	// MinShardSize is the least shard size per segment k is raised for.
	// Default DefaultMinShardSize (16 KiB).
	MinShardSize int
	// MinParity is the least m whatever the availability estimates say.
	// Default DefaultMinParity (2).
	MinParity int
	// MaxShards caps k+m. Default MaxShards (32).
	MaxShards int
	// SegmentSize is the plaintext bytes per segment; Put doubles it for
	// values whose manifest would otherwise exceed MaxManifestSize. Default
	// DefaultSegmentSize (1 MiB).
	SegmentSize int
	// Target is the probability that at least k shards are online which Put
	// aims for when it picks m. Default DefaultTarget (0.9999).
	Target float64
	// MaxValueSize caps a value. Put holds the encoded value in memory
	// ((k+m)/k times the value) so that a holder that fails can be replaced
	// by another. Default 256 MiB.
	MaxValueSize int64

	// RequestTimeout bounds each shard request (one shard of one segment to
	// or from one peer). Default 30 s.
	RequestTimeout time.Duration
	// HedgeAfter: a Get that has not received k shards of a segment this
	// long after its last request asks one more holder. Default 2 s, a few
	// times a typical round trip, so hedging costs little bandwidth.
	HedgeAfter time.Duration
	// StoreAttempts is how many peers Put tries for each shard index before
	// giving up. Default 4.
	StoreAttempts int
	// QuotaBackoff is how long a peer that refused a shard for quota is not
	// offered another. Default 10 min.
	QuotaBackoff time.Duration
	// FailureBackoff is how long a peer whose shard request failed (no
	// answer, dial error, timeout) is not chosen as a new holder, by Put or
	// by repair. Placement is deterministic: without it, repair would pick
	// the same unreachable peer (the DHT still lists departed peers) on
	// every retry and never finish. Default 5 min.
	FailureBackoff time.Duration
	// Zone is this peer's own failure-domain label (--zone), used when it
	// is a candidate holder itself. It is the node's only zone field:
	// package node announces it to other peers too, in its identify agent
	// version, so that they spread shards over zones.
	Zone string
	// Zones are the failure domains of other peers as this peer's operator
	// knows them (peer id -> zone): the servers it runs, those of partners
	// it trusts. Only these (and Zone, for itself) spread shards over
	// zones, and peers with a zone here are exempt from the one holder per
	// network rule (see Place). ZonesFile adds the entries of a file (see
	// LoadZones), read once by New.
	Zones     map[peer.ID]string
	ZonesFile string
	// DeclaredZones counts the zones other peers declare (in their identify
	// agent version, see PeerInfo) as failure domains, for peers not in
	// Zones. Off by default: a stranger declares whatever zone draws
	// shards to it. For networks where every peer is the operator's.
	DeclaredZones bool

	// Server configures the shard protocol server every peer runs.
	Server ServerConfig
	// Repair holds the repair thresholds.
	Repair RepairPolicy
	// Scheduler paces repair checks and repairs.
	Scheduler SchedulerConfig
	// RepairTick is how often the repair loop asks the scheduler for due
	// objects. Default 10 s. DisableRepair turns the loop off (volunteers
	// without the app key have nothing to repair).
	RepairTick    time.Duration
	DisableRepair bool
	// RepublishInterval: the repair check re-puts an object's manifest at
	// least this often, because DHT records expire (kad-dht drops records
	// older than 48 h). Default 12 h.
	RepublishInterval time.Duration
	// GCInterval is how often the service garbage-collects its store (see
	// Service.CollectGarbage); 0 disables the loop. Default 6 h: GC costs a
	// DHT lookup per object held, and nothing is urgent about it until the
	// store is full.
	GCInterval time.Duration
	// GCMinAge protects young shards from garbage collection: a shard is
	// stored before the manifest that names it is published. Default 1 h.
	GCMinAge time.Duration
	// GCMissingGrace is how long an object's manifest must stay missing
	// from the DHT before GC deletes its shards. Long, because a missing
	// record may only mean the DHT lost it and the writer has not yet
	// republished. Default 7 days.
	GCMissingGrace time.Duration
	// HandoffTimeout bounds Service.Handoff, which a peer leaving on purpose
	// (SIGTERM) runs before it closes: it hands the shards it holds to other
	// peers for at most this long. 0 disables the handoff. Default 20 s:
	// enough to move a few hundred MiB over a fast link, well inside
	// systemd's default 90 s stop timeout; shards not handed off in time are
	// repaired the usual way once the grace period has passed.
	HandoffTimeout time.Duration

	// DelegateRepair, on a peer with the app key, is the lifetime of the
	// repair delegation it signs and keeps in the DHT (renewed at half
	// life by the repair loop): holders of the app's shards may then
	// regenerate lost ones while the app's peers are offline (see
	// Delegation). 0, the default, delegates nothing. A week outlasts a
	// server's maintenance window; a volunteer's repair counts only while
	// the delegation it carries is unexpired, so an app that stops
	// renewing takes volunteers off its objects within one lifetime.
	DelegateRepair time.Duration
	// DelegationBudget is how many shard indices of one object version
	// volunteers may place before the app folds them into a new manifest.
	// Default DefaultDelegationBudget (8).
	DelegationBudget int
	// VolunteerRepairInterval is how often this peer checks the objects of
	// other apps it holds shards of, repairing those whose app delegates
	// repair (Service.VolunteerRepair); 0 disables it. Default 1 h, the
	// repair scheduler's interval: a check costs a delegation and a
	// manifest lookup and one question to each holder.
	VolunteerRepairInterval time.Duration
	// VolunteerBackoff is how long the holder of rank r among an object's
	// healthy holders waits, times r, after it first saw the object need
	// repair, before it repairs it itself: rank 0 repairs at once, the
	// others only if it does not. Default 10 min, a few repairs' time.
	VolunteerBackoff time.Duration

	// Logger defaults to slog.Default(); the service logs with
	// component=erasure.
	Logger *slog.Logger
	// Registerer receives the service's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Now is the clock for manifests, scheduling and availability. Default
	// time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults for a peer on the open network.
func DefaultConfig() Config {
	return Config{
		DataShards:        DefaultDataShards,
		MaxDataShards:     DefaultMaxDataShards,
		MinShardSize:      DefaultMinShardSize,
		MinParity:         DefaultMinParity,
		MaxShards:         MaxShards,
		SegmentSize:       DefaultSegmentSize,
		Target:            DefaultTarget,
		MaxValueSize:      256 << 20,
		RequestTimeout:    30 * time.Second,
		HedgeAfter:        2 * time.Second,
		StoreAttempts:     4,
		QuotaBackoff:      10 * time.Minute,
		FailureBackoff:    5 * time.Minute,
		Server:            DefaultServerConfig(),
		Repair:            DefaultRepairPolicy(),
		Scheduler:         DefaultSchedulerConfig(),
		RepairTick:        10 * time.Second,
		RepublishInterval: 12 * time.Hour,
		GCInterval:        6 * time.Hour,
		GCMinAge:          time.Hour,
		GCMissingGrace:    7 * 24 * time.Hour,
		HandoffTimeout:    20 * time.Second,
		Now:               time.Now,

		DelegationBudget:        DefaultDelegationBudget,
		VolunteerRepairInterval: time.Hour,
		VolunteerBackoff:        10 * time.Minute,
	}
}

// DevnetConfig returns defaults compressed for a devnet or a test on
// loopback: every timer is short so repair and GC happen within seconds.
func DevnetConfig() Config {
	c := DefaultConfig()
	c.RequestTimeout = 5 * time.Second
	c.HedgeAfter = 500 * time.Millisecond
	c.QuotaBackoff = time.Minute
	c.FailureBackoff = 30 * time.Second
	c.Repair.GracePeriod = 30 * time.Second
	c.Scheduler.Interval = 20 * time.Second
	c.Scheduler.RetryAfter = 5 * time.Second
	c.Scheduler.RepairsPerSecond = 5
	c.RepairTick = time.Second
	c.GCInterval = time.Minute
	c.GCMinAge = 10 * time.Second
	c.GCMissingGrace = time.Minute
	c.VolunteerRepairInterval = 20 * time.Second
	c.VolunteerBackoff = 5 * time.Second
	return c
}

// Validate reports the first thing wrong with c, as New would; package
// node calls it to check a whole node configuration before it starts
// anything. It leaves c as it is (New fills in the defaults of nil
// fields).
func (c Config) Validate() error { return c.validate() }

func (c *Config) validate() error {
	switch {
	case c.DataShards < 1 || c.DataShards > MaxShards:
		return fmt.Errorf("config: DataShards %d must be in [1, %d]", c.DataShards, MaxShards)
	case c.MaxDataShards != 0 && (c.MaxDataShards < c.DataShards || c.MaxDataShards > MaxShards):
		return fmt.Errorf("config: MaxDataShards %d must be in [DataShards, %d]", c.MaxDataShards, MaxShards)
	case c.MinShardSize < 0:
		return fmt.Errorf("config: MinShardSize %d must not be negative", c.MinShardSize)
	case c.MinParity < 0:
		return fmt.Errorf("config: MinParity %d must not be negative", c.MinParity)
	case c.MaxShards < c.DataShards || c.MaxShards > MaxShards:
		return fmt.Errorf("config: MaxShards %d must be in [DataShards, %d]", c.MaxShards, MaxShards)
	case c.SegmentSize < MinSegmentSize || c.SegmentSize > MaxSegmentSize:
		return fmt.Errorf("config: SegmentSize %d must be in [%d, %d]", c.SegmentSize, MinSegmentSize, MaxSegmentSize)
	case c.Target <= 0 || c.Target >= 1:
		return fmt.Errorf("config: Target %v must be in (0, 1)", c.Target)
	case c.Zone != "" && checkZone(c.Zone) != nil:
		// It travels in the identify agent version, after a space.
		return fmt.Errorf("config: Zone %q: %w", c.Zone, errZone)
	case c.MaxValueSize < 0:
		return fmt.Errorf("config: MaxValueSize %d must not be negative", c.MaxValueSize)
	case c.RequestTimeout <= 0:
		return fmt.Errorf("config: RequestTimeout %v must be positive", c.RequestTimeout)
	case c.HedgeAfter <= 0:
		return fmt.Errorf("config: HedgeAfter %v must be positive", c.HedgeAfter)
	case c.StoreAttempts < 1:
		return fmt.Errorf("config: StoreAttempts %d must be at least 1", c.StoreAttempts)
	case c.QuotaBackoff < 0:
		return fmt.Errorf("config: QuotaBackoff %v must not be negative", c.QuotaBackoff)
	case c.FailureBackoff < 0:
		return fmt.Errorf("config: FailureBackoff %v must not be negative", c.FailureBackoff)
	case c.Repair.Target <= 0 || c.Repair.Target >= 1:
		return fmt.Errorf("config: Repair.Target %v must be in (0, 1)", c.Repair.Target)
	case c.Repair.GracePeriod < 0:
		return fmt.Errorf("config: Repair.GracePeriod %v must not be negative", c.Repair.GracePeriod)
	case !c.DisableRepair && c.RepairTick <= 0:
		return fmt.Errorf("config: RepairTick %v must be positive", c.RepairTick)
	case c.RepublishInterval <= 0:
		return fmt.Errorf("config: RepublishInterval %v must be positive", c.RepublishInterval)
	case c.GCInterval < 0 || c.GCMinAge < 0 || c.GCMissingGrace < 0:
		return fmt.Errorf("config: GCInterval %v, GCMinAge %v and GCMissingGrace %v must not be negative",
			c.GCInterval, c.GCMinAge, c.GCMissingGrace)
	case c.HandoffTimeout < 0:
		return fmt.Errorf("config: HandoffTimeout %v must not be negative", c.HandoffTimeout)
	case c.DelegateRepair < 0 || c.VolunteerRepairInterval < 0 || c.VolunteerBackoff < 0:
		return fmt.Errorf("config: DelegateRepair %v, VolunteerRepairInterval %v and VolunteerBackoff %v must not be negative",
			c.DelegateRepair, c.VolunteerRepairInterval, c.VolunteerBackoff)
	case c.DelegateRepair > 0 && (c.DelegationBudget < 1 || c.DelegationBudget > MaxShards):
		return fmt.Errorf("config: DelegationBudget %d must be in [1, %d]", c.DelegationBudget, MaxShards)
	}
	for p, z := range c.Zones {
		if err := checkZone(z); err != nil {
			return fmt.Errorf("config: Zones[%s]: %w", p, err)
		}
	}
	if c.ZonesFile != "" {
		if err := c.loadZonesFile(); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	if err := c.Server.validate(); err != nil {
		return err
	}
	if err := c.Scheduler.validate(); err != nil {
		return err
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}
