package live

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/internal/simtest"
	"github.com/immense-p2p/immense/node"
	"github.com/immense-p2p/immense/overlay"
	"github.com/immense-p2p/immense/sim/scenario"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/marcopolo/simnet"
)

// network is the simulated network and how to start a node on it.
type network struct {
	sc      *scenario.Scenario
	net     *simtest.Network
	region  map[[4]byte]int // node IP -> region
	dir     string
	nodeLog *slog.Logger
	// state configures erasure-coded storage on every node; nil when the
	// scenario stores no objects (it then costs nothing).
	state *erasure.Config
	// appKeyFile is the app key the servers share (they write, read and
	// repair the objects); volunteers store shards under keys of their own.
	appKeyFile string
}

func newNetwork(sc *scenario.Scenario, regions []int, dir, appKeyFile string, nodeLog *slog.Logger) *network {
	nw := &network{sc: sc, dir: dir, nodeLog: nodeLog, region: map[[4]byte]int{}, appKeyFile: appKeyFile}
	for i, r := range regions {
		nw.region[ipKey(simtest.IP(i))] = r
	}
	// The tests' harness, started without a test: a live run also runs on
	// the real clock, outside `go test`, and closes the network itself.
	nw.net = simtest.Start(simtest.Config{
		Bandwidth:   int(sc.Network.BandwidthMbps * simtest.Mbps),
		LatencyFunc: nw.latency,
		Logger:      nodeLog,
	})
	if sc.Storage.Objects > 0 {
		nw.state = stateConfig(sc.Storage)
	}
	return nw
}

// stateConfig is erasure's default configuration with the scenario's
// policy parameters, which for live runs compress hours into seconds.
func stateConfig(s scenario.Storage) *erasure.Config {
	c := erasure.DefaultConfig()
	c.DataShards, c.MinParity, c.MaxShards = s.DataShards, s.MinParity, s.MaxShards
	c.MaxDataShards, c.MinShardSize = s.MaxDataShards, int(s.MinShardSize)
	c.SegmentSize = int(s.SegmentSize)
	c.Target = s.Target
	c.Repair.Target = s.Target
	c.Repair.GracePeriod = s.GracePeriod.D()
	c.Scheduler.Interval = s.CheckInterval.D()
	c.Scheduler.Jitter = s.Jitter
	c.Scheduler.ChecksPerSecond, c.Scheduler.CheckBurst = s.ChecksPerSecond, s.CheckBurst
	c.Scheduler.RepairsPerSecond, c.Scheduler.RepairBurst = s.RepairsPerSecond, s.RepairBurst
	c.Scheduler.RetryAfter = s.RetryAfter.D()
	c.RepairTick = s.RepairTick.D()
	return &c
}

func ipKey(ip net.IP) (k [4]byte) {
	copy(k[:], ip.To4())
	return k
}

// latency is the one-way latency of a packet, from the regions of its ends.
func (nw *network) latency(p *simnet.Packet) time.Duration {
	from, to := 0, 0
	if a, ok := p.From.(*net.UDPAddr); ok {
		from = nw.region[ipKey(a.IP)]
	}
	if a, ok := p.To.(*net.UDPAddr); ok {
		to = nw.region[ipKey(a.IP)]
	}
	return nw.sc.Network.Latency(from, to)
}

func (nw *network) close() { nw.net.Close() }

// start starts node i (generation gen) with the given bootstrap addresses.
// Servers get node's DefaultConfig, volunteers its VolunteerConfig (the
// limits a volunteer's laptop runs with); all are DHT servers, since every
// simulated address is public.
func (nw *network) start(ctx context.Context, i, gen int, server bool, bootstrap []string) (*node.Node, error) {
	cfg := node.VolunteerConfig()
	if server {
		cfg = node.DefaultConfig()
	}
	cfg.DataDir = filepath.Join(nw.dir, fmt.Sprintf("node-%d-gen-%d", i, gen))
	cfg.ListenAddrs = []string{simtest.Addr(i)}
	cfg.Overlay.Mode = overlay.ModeServer
	cfg.Bootstrap = bootstrap
	// Every simulated address is public: no AutoNAT, hole punching or
	// relays. The links' bandwidth is simnet's, so node's own traffic caps
	// (a UDP wrapper simnet cannot carry) are off, and so are the
	// process-wide traffic meters, which cannot live in a synctest bubble.
	cfg.NAT = node.NATConfig{}
	cfg.MaxUpload, cfg.MaxDownload = 0, 0
	cfg.NoTrafficMeters = true
	cfg.State = nw.state
	if server && nw.state != nil {
		cfg.AppKeyFile = nw.appKeyFile
	}
	// Any node of the scenario publishes, volunteers too, as in an open
	// chat room: the servers, which know the app key, would otherwise
	// refuse the volunteers' messages (publish authorization). What
	// authorization costs is measured by overlay's BenchmarkPublishDeliver.
	cfg.Overlay.Auth.OpenTopics = []string{topicName}
	cfg.Logger = nw.nodeLog
	cfg.HostOptions = nw.net.HostOptions()
	g := nw.sc.GossipSub
	p := pubsub.DefaultGossipSubParams()
	p.D, p.Dlo, p.Dhi, p.Dlazy = g.D, g.Dlo, g.Dhi, g.Dlazy
	p.HeartbeatInterval = g.Heartbeat.D()
	p.HistoryGossip = g.HistoryGossip
	p.HistoryLength = max(p.HistoryLength, g.HistoryGossip)
	if p.Dscore > p.Dhi {
		p.Dscore = p.Dhi
	}
	// gossipsub requires Dout < Dlo and Dout < D/2.
	p.Dout = max(0, min(p.Dout, p.Dlo-1, p.D/2-1))
	cfg.Overlay.GossipSub = &p
	return node.New(ctx, cfg)
}

// forget removes the data directory of node i generation gen (it left for
// good; its newcomer gets a fresh identity).
func (nw *network) forget(i, gen int) {
	_ = os.RemoveAll(filepath.Join(nw.dir, fmt.Sprintf("node-%d-gen-%d", i, gen)))
}
