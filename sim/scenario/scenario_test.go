package scenario

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/immense-p2p/immense/erasure"
)

// TestShippedScenarios: every file in sim/scenarios parses and validates.
func TestShippedScenarios(t *testing.T) {
	files, _ := filepath.Glob("../scenarios/*")
	if len(files) < 5 {
		t.Fatalf("found %d scenario files", len(files))
	}
	for _, f := range files {
		sc, err := Load(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if sc.Name == "" || sc.Description == "" {
			t.Errorf("%s: name and description are required of shipped scenarios", f)
		}
		if _, _, err := sc.Schedule(1); err != nil {
			t.Errorf("%s: schedule: %v", f, err)
		}
	}
}

func TestUnits(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"90s": 90 * time.Second, "2h30m": 150 * time.Minute, "1.5d": 36 * time.Hour,
		"2w": 14 * 24 * time.Hour, "1y": 365 * 24 * time.Hour,
	} {
		got, err := ParseDuration(in)
		if err != nil || got.D() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "-1d", "3 parsecs", "1x"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
	for in, want := range map[string]ByteSize{"256": 256, "4KiB": 4096, "8MiB": 8 << 20, "1GB": 1e9, "1.5KB": 1500} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if FormatDuration(365*24*time.Hour) != "1y" || FormatDuration(48*time.Hour) != "2d" || FormatDuration(90*time.Second) != "1m30s" {
		t.Error("FormatDuration")
	}
}

const minimal = `
name: t
mode: model
nodes: 100
duration: 10d
servers: {count: 2}
volunteers:
  availability: 0.3
  session: {dist: exponential, mean: 1h}
  downtime: {dist: exponential}
storage: {objects: 10}
`

// TestDefaults: what a scenario leaves out is erasure's default, and the
// mode picks the time scales.
func TestDefaults(t *testing.T) {
	sc, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	ed := erasure.DefaultConfig()
	s := sc.Storage
	if s.DataShards != ed.DataShards || s.MinParity != ed.MinParity || s.MaxShards != ed.MaxShards ||
		s.Target != ed.Target || s.GracePeriod.D() != ed.Repair.GracePeriod || s.CheckInterval.D() != ed.Scheduler.Interval ||
		s.RepairsPerSecond != ed.Scheduler.RepairsPerSecond || int(s.SegmentSize) != ed.SegmentSize {
		t.Errorf("storage defaults differ from erasure's: %+v", s)
	}
	if sc.Warmup.D() != 3*24*time.Hour || sc.SampleEvery.D() != 24*time.Hour || sc.Seed != 1 || sc.Runs != 1 {
		t.Errorf("model defaults: warmup %v sample %v seed %d runs %d", sc.Warmup, sc.SampleEvery, sc.Seed, sc.Runs)
	}
	if sc.Servers.Availability != 1 {
		t.Errorf("servers without a session should be always on, got availability %v", sc.Servers.Availability)
	}
	if len(sc.Network.Regions) != 1 || sc.Network.Latency(0, 0) != 10*time.Millisecond {
		t.Errorf("network defaults: %+v", sc.Network)
	}
	if sc.VolunteerCount() != 98 {
		t.Errorf("VolunteerCount = %d", sc.VolunteerCount())
	}
	if s.RepairTick.D() != time.Minute || s.WriteWithin.D() != 24*time.Hour {
		t.Errorf("model storage timing defaults: repair_tick %v, write_within %v", s.RepairTick, s.WriteWithin)
	}
	// Live runs last minutes: the repair loop ticks as erasure's does, and
	// the objects are written within seconds of the warm-up.
	live, err := Parse([]byte(strings.Replace(minimal, "mode: model", "mode: live", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if live.Storage.RepairTick.D() != ed.RepairTick || live.Storage.WriteWithin.D() != 10*time.Second {
		t.Errorf("live storage timing defaults: repair_tick %v, write_within %v", live.Storage.RepairTick, live.Storage.WriteWithin)
	}
}

// TestInvalid: mistakes are reported with the field they concern.
func TestInvalid(t *testing.T) {
	cases := map[string]string{
		"mode: model\n":                      "mode",
		"nodes: 1\n":                         "nodes",
		"bogus_field: 3\n":                   "bogus_field",
		"duration: 10 days\n":                "duration",
		"events: [{kind: meteor, at: 1d}]\n": "meteor",
		"events: [{kind: region_dark, region: mars, at: 1d, duration: 1h}]\n":                              "mars",
		"storage: {objects: 10, data_shards: 40}\n":                                                        "k+m",
		"volunteers: {availability: 0.3, session: {dist: weibull, mean: 1h}, downtime: {dist: weibull}}\n": "shape",
		"network: {regions: [{name: a, share: 0.5}]}\n":                                                    "shares",
		"gossipsub: {d: 20}\n":                         "d_lo",
		"storage: {objects: 10, server_subnets: -1}\n": "server_subnets",
	}
	for patch, want := range cases {
		// Later keys override earlier ones in the minimal scenario.
		doc := minimal
		key := strings.SplitN(patch, ":", 2)[0]
		var kept []string
		skip := false
		for _, line := range strings.Split(doc, "\n") {
			if strings.HasPrefix(line, key+":") {
				skip = true
				continue
			}
			if skip && strings.HasPrefix(line, "  ") {
				continue
			}
			skip = false
			kept = append(kept, line)
		}
		doc = strings.Join(kept, "\n") + "\n" + patch
		if key == "mode" {
			doc = strings.Replace(doc, "mode: model", "mode: simulated", 1)
		}
		_, err := Parse([]byte(doc))
		if err == nil {
			t.Errorf("%q accepted", patch)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %q does not mention %q", patch, err, want)
		}
	}
}

func TestLoadMissing(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "none.yaml")); !os.IsNotExist(errorsUnwrap(err)) {
		t.Errorf("missing file: %v", err)
	}
}

func errorsUnwrap(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}
