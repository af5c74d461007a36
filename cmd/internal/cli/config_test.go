package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/immense-p2p/immense/node"
)

// load parses args with env as the environment, over the default preset
// and the table's flags plus peer's own --data-dir and --preset.
func load(t *testing.T, args []string, env map[string]string) (node.Config, Sources, string, error) {
	t.Helper()
	c := presets()["default"]()
	fs := flag.NewFlagSet("peer", flag.ContinueOnError)
	var out bytes.Buffer
	fs.SetOutput(&out)
	preset := "default"
	Bind(fs, append([]Flag{{Name: "data-dir", Usage: "dir", Value: String(&c.DataDir)}, {Name: "preset", Usage: "preset", Value: String(&preset)}}, NodeFlags(&c)...)...)
	src, err := Load(fs, args, &c.Limits, func(k string) string { return env[k] })
	return c, src, out.String(), err
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "immense.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigPrecedence: flags > environment > file > preset, for scalars
// and lists, and the sources say where each value came from.
func TestConfigPrecedence(t *testing.T) {
	file := writeConfig(t, "data-dir: /from/file\nmax-conns: 300\nlisten: [/ip4/127.0.0.1/tcp/1, /ip4/127.0.0.1/tcp/2]\nzone: file-zone\nmax-upload: 1MiB/s\n")
	preset := presets()["default"]()
	for _, tc := range []struct {
		name     string
		args     []string
		env      map[string]string
		dataDir  string
		maxConns int
		listen   string
		zone     string
		src      map[string]string
	}{
		{name: "preset", dataDir: preset.DataDir, maxConns: preset.Limits.MaxConns, listen: strings.Join(preset.ListenAddrs, ","),
			src: map[string]string{"data-dir": "preset", "max-conns": "preset"}},
		{name: "file", args: []string{"--config", file}, dataDir: "/from/file", maxConns: 300,
			listen: "/ip4/127.0.0.1/tcp/1,/ip4/127.0.0.1/tcp/2", zone: "file-zone",
			src: map[string]string{"data-dir": "file " + file, "listen": "file " + file, "config": "flag"}},
		{name: "config from env", env: map[string]string{"IMMENSE_CONFIG": file}, dataDir: "/from/file", maxConns: 300,
			listen: "/ip4/127.0.0.1/tcp/1,/ip4/127.0.0.1/tcp/2", zone: "file-zone",
			src: map[string]string{"config": "env IMMENSE_CONFIG"}},
		{name: "env over file", args: []string{"--config", file},
			env:     map[string]string{"IMMENSE_DATA_DIR": "/from/env", "IMMENSE_LISTEN": "/ip4/127.0.0.1/tcp/3"},
			dataDir: "/from/env", maxConns: 300, listen: "/ip4/127.0.0.1/tcp/3", zone: "file-zone",
			src: map[string]string{"data-dir": "env IMMENSE_DATA_DIR", "listen": "env IMMENSE_LISTEN", "zone": "file " + file}},
		{name: "flag over env and file", args: []string{"--config", file, "--data-dir", "/from/flag", "--listen", "/ip4/127.0.0.1/tcp/4", "--max-conns", "200"},
			env:     map[string]string{"IMMENSE_DATA_DIR": "/from/env", "IMMENSE_MAX_CONNS": "100", "IMMENSE_ZONE": "env-zone"},
			dataDir: "/from/flag", maxConns: 200, listen: "/ip4/127.0.0.1/tcp/4", zone: "env-zone",
			src: map[string]string{"data-dir": "flag", "max-conns": "flag", "listen": "flag", "zone": "env IMMENSE_ZONE", "max-upload": "file " + file,
				"conn-high": "preset, fitted to --max-conns"}},
		{name: "env alone", env: map[string]string{"IMMENSE_MAX_CONNS": "100"}, dataDir: preset.DataDir, maxConns: 100,
			listen: strings.Join(preset.ListenAddrs, ","), src: map[string]string{"max-conns": "env IMMENSE_MAX_CONNS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, src, out, err := load(t, tc.args, tc.env)
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if c.DataDir != tc.dataDir || c.Limits.MaxConns != tc.maxConns || strings.Join(c.ListenAddrs, ",") != tc.listen || c.State.Zone != tc.zone {
				t.Errorf("data dir %q, max conns %d, listen %q, zone %q; want %q %d %q %q",
					c.DataDir, c.Limits.MaxConns, strings.Join(c.ListenAddrs, ","), c.State.Zone, tc.dataDir, tc.maxConns, tc.listen, tc.zone)
			}
			for name, want := range tc.src {
				if got := src.Source(name); got != want {
					t.Errorf("--%s came from %q, want %q", name, got, want)
				}
			}
			// --max-conns from any source fits the other limits.
			if l := c.Limits; l.MaxInboundConns > l.MaxConns || l.ConnHighWater > l.MaxConns {
				t.Errorf("limits %+v do not fit --max-conns", l)
			}
		})
	}
}

// TestConfigErrors: unknown keys and bad values are one-line errors naming
// where they came from; a bad flag prints a hint, not the whole usage.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown key", []string{"--config", writeConfig(t, "data-dir: x\nmax-conn: 5\n")}, nil, `unknown key "max-conn"`},
		{"bad file value", []string{"--config", writeConfig(t, "max-memory: lots\n")}, nil, "immense.yaml: max-memory"},
		{"nested value", []string{"--config", writeConfig(t, "zone: {a: b}\n")}, nil, "zone: want a scalar or a list"},
		{"not yaml", []string{"--config", writeConfig(t, "zone: [\n")}, nil, "immense.yaml"},
		{"missing file", []string{"--config", "/nonexistent/immense.yaml"}, nil, "--config: open /nonexistent"},
		{"bad env", nil, map[string]string{"IMMENSE_MAX_CONNS": "many"}, `environment IMMENSE_MAX_CONNS="many": want a whole number`},
		{"bad flag", []string{"--max-conns", "many"}, nil, "peer: invalid value \"many\" for flag -max-conns: want a whole number\nRun 'peer --help' for the flags.\n"},
		{"unknown flag", []string{"--bogus"}, nil, "peer: flag provided but not defined: -bogus\nRun 'peer --help' for the flags.\n"},
	} {
		_, _, out, err := load(t, tc.args, tc.env)
		if err == nil || ExitCode(err) != 2 {
			t.Errorf("%s: %v, want a usage error", tc.name, err)
		}
		if !strings.Contains(out, tc.want) || strings.Count(out, "\n") > 2 {
			t.Errorf("%s: output %q, want one line with %q", tc.name, out, tc.want)
		}
	}
}

// TestPrintConfig: peer config and bootstrap config name each value's
// source; a value nobody set is the preset's for a command with --preset
// (peer), and the command's default for one without (bootstrap, which has
// no preset), in the --config usage too.
func TestPrintConfig(t *testing.T) {
	for _, tc := range []struct {
		preset         bool
		want, wantNot  string
		wantPrecedence string
	}{
		{preset: true, want: "# preset", wantNot: "# default", wantPrecedence: "file > preset"},
		{preset: false, want: "# default", wantNot: "preset", wantPrecedence: "file > defaults"},
	} {
		c := presets()["default"]()
		fs := flag.NewFlagSet("peer", flag.ContinueOnError)
		flags := NodeFlags(&c)
		if tc.preset {
			p := "default"
			flags = append(flags, Flag{Name: "preset", Usage: "limits preset", Value: String(&p)})
		}
		Bind(fs, flags...)
		src, err := Load(fs, []string{"--zone", "z1"}, &c.Limits, func(k string) string {
			return map[string]string{"IMMENSE_MAX_CONNS": "100"}[k]
		})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		PrintConfig(&b, fs, src)
		for _, want := range []string{"# flag", "# env IMMENSE_MAX_CONNS", tc.want, tc.want + ", fitted to --max-conns"} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("--preset %v: no %q in\n%s", tc.preset, want, b.String())
			}
		}
		if strings.Contains(b.String(), tc.wantNot) {
			t.Errorf("--preset %v: %q in\n%s", tc.preset, tc.wantNot, b.String())
		}
		if u := fs.Lookup(configFlag).Usage; !strings.HasSuffix(u, tc.wantPrecedence) {
			t.Errorf("--preset %v: --config usage %q, want it to end %q", tc.preset, u, tc.wantPrecedence)
		}
	}
}
