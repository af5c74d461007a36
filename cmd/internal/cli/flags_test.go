package cli

import (
	"flag"
	"io"
	"reflect"
	"testing"

	"github.com/immense-p2p/immense/node"
	"github.com/immense-p2p/immense/webrtc"
)

// presets are the configs the commands bind the table to; peer adds
// browsers to its node presets.
func presets() map[string]func() node.Config {
	withBrowsers := func(f func() node.Config) func() node.Config {
		return func() node.Config {
			c := f()
			b := webrtc.DefaultConfig()
			c.Browsers = &b
			return c
		}
	}
	return map[string]func() node.Config{
		"default":   withBrowsers(node.DefaultConfig),
		"volunteer": withBrowsers(node.VolunteerConfig),
		"bootstrap": node.BootstrapConfig,
		"devnet":    node.DevnetConfig,
	}
}

// table is the flag table a command binds to the preset: peer's presets
// add TopicFlags, bootstrap's does not.
func table(preset string, c *node.Config) []Flag {
	if preset == "bootstrap" {
		return NodeFlags(c)
	}
	return append(NodeFlags(c), TopicFlags(c)...)
}

func parse(t *testing.T, c *node.Config, args ...string) error {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	Bind(fs, NodeFlags(c)...)
	_, err := Load(fs, args, &c.Limits, func(string) string { return "" })
	return err
}

// TestDefaultsAreThePreset: with no flags the config is the preset, and
// every default --help shows parses back to the preset's value, so what
// the help says is what runs.
func TestDefaultsAreThePreset(t *testing.T) {
	for name, preset := range presets() {
		c := preset()
		if err := parse(t, &c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want := preset(); !reflect.DeepEqual(comparable(c), comparable(want)) {
			t.Errorf("%s: no flags changed the config:\n got %+v\nwant %+v", name, c, want)
		}
		for _, f := range table(name, &c) {
			def := f.Value.String()
			if _, secret := f.Value.(secretFile); secret {
				continue // nothing to read back
			}
			if err := f.Value.Set(def); err != nil {
				t.Errorf("%s: --%s: its default %q does not parse: %v", name, f.Name, def, err)
			}
			if got := f.Value.String(); got != def {
				t.Errorf("%s: --%s: default %q reads back as %q", name, f.Name, def, got)
			}
		}
		if want := preset(); !reflect.DeepEqual(comparable(c), comparable(want)) {
			t.Errorf("%s: setting every default changed the config:\n got %+v\nwant %+v", name, c, want)
		}
	}
}

// comparable drops what DeepEqual cannot compare (funcs) from c.
func comparable(c node.Config) node.Config {
	if c.State != nil {
		s := *c.State
		s.Now = nil
		c.State = &s
	}
	return c
}

func TestNodeFlagsSet(t *testing.T) {
	c := presets()["volunteer"]()
	err := parse(t, &c, "--listen", "/ip4/127.0.0.1/tcp/0", "--listen", "/ip4/127.0.0.1/udp/0/quic-v1",
		"--max-upload", "512KiB/s", "--max-memory", "512M", "--storage-quota", "1.5GB", "--mode", "server",
		"--join-rate", "0", "--zone", "eu-1", "--handoff-timeout", "1m", "--no-browsers", "--nat-portmap=false",
		"--max-message-size", "64KiB")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ListenAddrs) != 2 || c.ListenAddrs[0] != "/ip4/127.0.0.1/tcp/0" {
		t.Errorf("ListenAddrs %q: the flag replaces the preset's list, then adds to it", c.ListenAddrs)
	}
	if c.MaxUpload != 512<<10 || c.Limits.MaxMemory != 512<<20 || c.StorageQuota != 1_500_000_000 || c.Overlay.MaxMessageSize != 64<<10 {
		t.Errorf("sizes: upload %d, memory %d, quota %d, message %d", c.MaxUpload, c.Limits.MaxMemory, c.StorageQuota, c.Overlay.MaxMessageSize)
	}
	if c.Overlay.Mode.String() != "server" || c.Overlay.JoinRate != 0 || c.NAT.PortMap {
		t.Errorf("mode %v, join rate %v, port map %v", c.Overlay.Mode, c.Overlay.JoinRate, c.NAT.PortMap)
	}
	if c.State == nil || c.State.Zone != "eu-1" || c.State.HandoffTimeout.Minutes() != 1 || c.Browsers != nil {
		t.Errorf("state %+v, browsers %v", c.State, c.Browsers != nil)
	}

	for _, bad := range [][]string{
		{"--max-memory", "lots"},
		{"--handoff-timeout", "-1s"},
		{"--mode", "sideways"},
		{"--webrtc-udp-ports", "9-1"},
		{"--webrtc-udp-ports", "0-10"},
		{"--max-conns", "many"},
		{"stray"},
	} {
		c := presets()["default"]()
		if err := parse(t, &c, bad...); err == nil || ExitCode(err) != 2 {
			t.Errorf("%q: %v, want a usage error", bad, err)
		}
	}
	c = presets()["default"]()
	if err := parse(t, &c, "-h"); ExitCode(err) != 0 {
		t.Errorf("-h: %v, want exit code 0", err)
	}
}

// TestMaxConnsFits: --max-conns lowers the limits the preset sets above it,
// the same way on every preset, and keeps those given on the command line.
func TestMaxConnsFits(t *testing.T) {
	for _, tc := range []struct {
		preset                  string
		args                    []string
		max, inbound, low, high int
	}{
		// The volunteer preset's 100 inbound and 96 high water used to
		// make `peer --volunteer --max-conns 50` fail validation.
		{"volunteer", []string{"--max-conns", "50"}, 50, 50, 25, 50},
		{"bootstrap", []string{"--max-conns", "1000"}, 1000, 1000, 500, 1000},
		{"bootstrap", []string{"--max-conns", "100"}, 100, 100, 50, 100},
		{"default", []string{"--max-conns", "5000"}, 5000, 800, 200, 400},
		{"volunteer", []string{"--conn-high", "40", "--max-conns", "50"}, 50, 50, 20, 40},
		{"volunteer", []string{"--max-conns", "50", "--conn-high", "40"}, 50, 50, 20, 40},
		{"volunteer", []string{"--max-conns", "50", "--conn-low", "10", "--max-inbound-conns", "30"}, 50, 30, 10, 50},
		// A limit given explicitly above --max-conns is kept, for
		// validation to refuse.
		{"volunteer", []string{"--max-conns", "50", "--conn-high", "60"}, 50, 50, 30, 60},
		{"volunteer", []string{"--conn-high", "60"}, 150, 100, 48, 60},
	} {
		c := presets()[tc.preset]()
		if err := parse(t, &c, tc.args...); err != nil {
			t.Fatalf("%s %q: %v", tc.preset, tc.args, err)
		}
		l := c.Limits
		if l.MaxConns != tc.max || l.MaxInboundConns != tc.inbound || l.ConnLowWater != tc.low || l.ConnHighWater != tc.high {
			t.Errorf("%s %q: max %d inbound %d low %d high %d; want %d %d %d %d", tc.preset, tc.args,
				l.MaxConns, l.MaxInboundConns, l.ConnLowWater, l.ConnHighWater, tc.max, tc.inbound, tc.low, tc.high)
		}
	}
}

// TestHTTPConnsPerNetFits: --http-max-conns-per-ip above the preset's
// --http-max-conns-per-net raises it (a reverse proxy at a public address
// on another machine needed only the first before there was a cap per
// network), unless it is given too.
func TestHTTPConnsPerNetFits(t *testing.T) {
	for _, tc := range []struct {
		args          []string
		perIP, perNet int
	}{
		{nil, 128, 512},
		{[]string{"--http-max-conns-per-ip", "2000"}, 2000, 2000},
		{[]string{"--http-max-conns-per-ip", "64"}, 64, 512},
		{[]string{"--http-max-conns-per-net", "1000"}, 128, 1000},
		// Given both, kept for validation to refuse.
		{[]string{"--http-max-conns-per-net", "100", "--http-max-conns-per-ip", "2000"}, 2000, 100},
	} {
		c := presets()["default"]()
		if err := parse(t, &c, tc.args...); err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if l := c.Limits; l.HTTPMaxConnsPerIP != tc.perIP || l.HTTPMaxConnsPerNet != tc.perNet {
			t.Errorf("%q: per IP %d, per net %d; want %d and %d", tc.args, l.HTTPMaxConnsPerIP, l.HTTPMaxConnsPerNet, tc.perIP, tc.perNet)
		}
	}
}

// TestTableFollowsThePreset: storage and browser flags exist only where
// the preset has the part to set, and the topic flags only on peers: a
// bootstrap node joins no topic, so its --help should not offer
// --presence or --open-topics.
func TestTableFollowsThePreset(t *testing.T) {
	has := func(preset, name string) bool {
		c := presets()[preset]()
		for _, f := range table(preset, &c) {
			if f.Name == name {
				return true
			}
		}
		return false
	}
	for _, name := range []string{"storage-quota", "no-browsers", "presence", "open-topics", "app-pub", "require-bound-tokens"} {
		if has("bootstrap", name) {
			t.Errorf("bootstrap preset: --%s, which a bootstrap node has nothing to set with", name)
		}
	}
	for _, name := range []string{"storage-quota", "no-browsers", "presence", "open-topics", "app-pub", "require-bound-tokens"} {
		if !has("default", name) {
			t.Errorf("peer preset: --%s missing", name)
		}
	}
	if !has("devnet", "zone") || !has("devnet", "presence") {
		t.Error("devnet preset: --zone or --presence missing")
	}
}

// TestOverlayBudgetFlags: the overlay's budgets against strangers are
// flags too, landing in overlay.Config.
func TestOverlayBudgetFlags(t *testing.T) {
	c := presets()["default"]()
	err := parse(t, &c, "--dht-peer-max-bytes", "1MiB", "--dht-namespace-max-bytes", "8MiB", "--dht-put-rate", "5",
		"--rt-max-24", "3", "--gossip-topic-rate", "100", "--gossip-publisher-burst", "50")
	if err != nil {
		t.Fatal(err)
	}
	o := c.Overlay
	if o.DHTBudget.PeerMaxBytes != 1<<20 || o.DHTBudget.NamespaceMaxBytes != 8<<20 || o.DHTBudget.PutRate != 5 ||
		o.Diversity.Table24 != 3 || o.TopicMessageRate != 100 || o.PublisherMessageBurst != 50 {
		t.Errorf("overlay budgets: %+v %+v, topic rate %v, publisher burst %d", o.DHTBudget, o.Diversity, o.TopicMessageRate, o.PublisherMessageBurst)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("the budgets set do not validate: %v", err)
	}
}
