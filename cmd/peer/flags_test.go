package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/immense-p2p/immense/node"
	"github.com/immense-p2p/immense/overlay"
)

// TestPresetChoice: the flags land on the preset the command line
// chooses, wherever the choosing flag stands, and --help shows that
// preset's defaults.
func TestPresetChoice(t *testing.T) {
	var errb bytes.Buffer
	o, err := parseArgs([]string{"--max-conns", "50", "--volunteer"}, &errb)
	if err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	v := node.VolunteerConfig()
	if o.node.Limits.MaxMemory != v.Limits.MaxMemory || o.node.MaxUpload != v.MaxUpload || o.node.Browsers == nil {
		t.Errorf("--volunteer: limits %+v, upload %d, browsers %v", o.node.Limits, o.node.MaxUpload, o.node.Browsers != nil)
	}
	if l := o.node.Limits; l.MaxConns != 50 || l.MaxInboundConns > 50 || l.ConnHighWater > 50 || l.ConnLowWater >= l.ConnHighWater {
		t.Errorf("--volunteer --max-conns 50: limits %+v do not fit", l)
	}

	o, err = parseArgs([]string{"--devnet", "3", "--no-browsers", "--storage-quota", "2GiB"}, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if o.devnet.Nodes != 3 || o.devnet.DataDir != "" || o.node.Browsers != nil || o.node.StorageQuota != 2<<30 ||
		o.node.Overlay.Mode != overlay.ModeServer || o.node.State.RepairTick != node.DevnetConfig().State.RepairTick {
		t.Errorf("--devnet 3: %+v", o)
	}

	if _, err := parseArgs([]string{"--preset", "laptop"}, &errb); err == nil {
		t.Error("--preset laptop accepted")
	}

	for preset, want := range map[string]string{"--volunteer": "(default 150)", "--preset=default": "(default 1000)"} {
		errb.Reset()
		code := run([]string{preset, "-h"}, &bytes.Buffer{}, &errb)
		_, help, _ := strings.Cut(errb.String(), "  -max-conns int") // not -http-max-conns
		help, _, _ = strings.Cut(help, "\n  -")
		if code != 0 || !strings.Contains(help, want) {
			t.Errorf("%s -h: exit %d, --max-conns does not show %s:\n%s", preset, code, want, errb.String())
		}
	}
}

// TestConfigNamesVolunteer: peer config says the preset came from
// --volunteer (it used to say "preset", as if nothing had chosen it).
func TestConfigNamesVolunteer(t *testing.T) {
	for _, args := range [][]string{{"config", "--volunteer"}, {"config", "--preset", "default", "--volunteer"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, errb.String())
		}
		var line string
		for l := range strings.Lines(out.String()) {
			if strings.HasPrefix(l, "preset ") {
				line = strings.Join(strings.Fields(l), " ")
			}
		}
		if want := "preset volunteer # flag (--volunteer)"; line != want {
			t.Errorf("%q: %q, want %q", args, line, want)
		}
	}
}
