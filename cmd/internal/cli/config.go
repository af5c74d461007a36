package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/immense-p2p/immense/node"
)

// A command's flags can also be set from the environment and from a YAML
// file, generically: every flag of the flag set, whoever added it, gets an
// environment variable and a file key named after it.
//
//   - Environment: IMMENSE_ and the flag's name in upper case with '-'
//     as '_': --data-dir is IMMENSE_DATA_DIR, --http IMMENSE_HTTP.
//   - File: --config FILE (or IMMENSE_CONFIG), a YAML mapping whose keys
//     are flag names without dashes; a value is a scalar, as on the command
//     line, or a list for a list flag:
//
//     data-dir: /var/lib/immense
//     listen: [/ip4/0.0.0.0/tcp/4001, /ip4/0.0.0.0/udp/4001/quic-v1]
//     max-upload: 2MiB/s
//
// Precedence is flags > environment > file > defaults (a preset's, for a
// command with a --preset flag). A flag is set from
// one source only, so a list flag given on the command line replaces the
// file's list rather than adding to it. An unknown key in the file, or a
// value the flag refuses from any source, is an error naming the source.

// EnvPrefix starts the environment variable of every flag.
const EnvPrefix = "IMMENSE_"

// configFlag is the flag that names the configuration file.
const configFlag = "config"

// EnvName is the environment variable for the flag called name.
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Sources says where each flag's value came from: "flag", "env NAME",
// "file PATH", or the command's defaults: "preset" for a command that
// chooses them with --preset (peer), "default" for one without (bootstrap).
type Sources map[string]string

// Source returns where the flag called name got its value.
func (s Sources) Source(name string) string {
	if src, ok := s[name]; ok {
		return src
	}
	return "default"
}

// defaultsName is what a flag nobody set takes its value from, for
// Sources and the --config usage: a preset's if fs chooses one (a
// --preset flag), else the command's defaults.
func defaultsName(fs *flag.FlagSet) string {
	if fs.Lookup("preset") != nil {
		return "preset"
	}
	return "default"
}

// Load parses args into the fields bound on fs, then sets every flag not
// on the command line from the environment (read through getenv) or, failing
// that, from the --config file; then it refuses stray arguments and fits
// limits to --max-conns (see fitConns; nil: no limits bound). It binds
// --config itself. A bad flag is reported on fs's output in one line and a
// hint to --help, not the whole usage. It returns flag.ErrHelp after -h
// and a usage error after anything else it refused, both already reported:
// see ExitCode.
func Load(fs *flag.FlagSet, args []string, limits *node.Limits, getenv func(string) string) (Sources, error) {
	var file string
	defaults := defaultsName(fs)
	if fs.Lookup(configFlag) == nil {
		last := "preset"
		if defaults != last {
			last = "defaults"
		}
		fs.Var(String(&file), configFlag, "YAML `file` of flag values, keys named as the flags (also "+EnvName(configFlag)+"); precedence: flags > "+EnvPrefix+"* environment > file > "+last)
	}
	// The flag package reports an error with the whole usage: keep its
	// one line, prefixed with the command, and print a hint instead.
	full, out := fs.Usage, fs.Output()
	var msg strings.Builder
	fs.Usage = func() {}
	fs.SetOutput(&msg)
	err := fs.Parse(args)
	fs.Usage = full
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		if full != nil {
			full()
		} else {
			PrintDefaults(fs)
		}
		return nil, err
	case err != nil:
		fmt.Fprintf(out, "%s: %s\n", fs.Name(), strings.TrimSpace(msg.String()))
		usageHint(fs)
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		usageHint(fs)
		return nil, errUsage
	}
	src := Sources{}
	fs.Visit(func(f *flag.Flag) { src[f.Name] = "flag" })
	if err := applyEnv(fs, src, getenv); err != nil {
		return nil, report(fs, err)
	}
	path := fs.Lookup(configFlag).Value.String()
	if path != "" {
		if err := applyFile(fs, src, path); err != nil {
			return nil, report(fs, err)
		}
	}
	if limits != nil {
		given := map[string]bool{}
		for name := range src {
			given[name] = true
		}
		fitConns(limits, given)
		if given["max-conns"] {
			for _, name := range []string{"max-inbound-conns", "conn-high", "conn-low"} {
				if !given[name] {
					src[name] = defaults + ", fitted to --max-conns"
				}
			}
		}
		if given["http-max-conns-per-ip"] && !given["http-max-conns-per-net"] {
			src["http-max-conns-per-net"] = defaults + ", fitted to --http-max-conns-per-ip"
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := src[f.Name]; !ok {
			src[f.Name] = defaults
		}
	})
	return src, nil
}

// Parse is Load with the process' environment.
func Parse(fs *flag.FlagSet, args []string, limits *node.Limits) error {
	_, err := Load(fs, args, limits, os.Getenv)
	return err
}

func report(fs *flag.FlagSet, err error) error {
	fmt.Fprintf(fs.Output(), "%s: %v\n", fs.Name(), err)
	return errUsage
}

func usageHint(fs *flag.FlagSet) {
	fmt.Fprintf(fs.Output(), "Run '%s --help' for the flags.\n", strings.Fields(fs.Name())[0])
}

// applyEnv sets each flag not yet in src from its environment variable.
func applyEnv(fs *flag.FlagSet, src Sources, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if _, done := src[f.Name]; done || err != nil {
			return
		}
		env := EnvName(f.Name)
		v := getenv(env)
		if v == "" {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("environment %s=%q: %v", env, v, e)
			return
		}
		src[f.Name] = "env " + env
	})
	return err
}

// maxConfigFile caps the configuration file read.
const maxConfigFile = 1 << 20

// applyFile sets each flag not yet in src from the YAML file at path.
func applyFile(fs *flag.FlagSet, src Sources, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	if len(b) > maxConfigFile {
		return fmt.Errorf("config file %s: larger than %d bytes", path, maxConfigFile)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("config file %s: %v", path, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == configFlag || fs.Lookup(k) == nil {
			return fmt.Errorf("config file %s: unknown key %q (keys are %s's flag names)", path, k, fs.Name())
		}
		v, err := configValue(m[k])
		if err != nil {
			return fmt.Errorf("config file %s: %s: %v", path, k, err)
		}
		if _, done := src[k]; done {
			continue
		}
		if err := fs.Set(k, v); err != nil {
			return fmt.Errorf("config file %s: %s: %q: %v", path, k, v, err)
		}
		src[k] = "file " + path
	}
	return nil
}

// configValue turns a YAML value into the flag's text: a scalar as
// written, a list joined by commas.
func configValue(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case bool, int, int64, uint64, float64:
		return fmt.Sprint(v), nil
	case []any:
		parts := make([]string, len(v))
		for i, x := range v {
			s, err := configValue(x)
			if _, nested := x.([]any); err != nil || nested {
				return "", errors.New("a list holds scalars only")
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("want a scalar or a list, got %T", v)
}

// PrintConfig writes the effective value of every flag of fs and where it
// came from, one per line. No flag takes a secret itself: secrets (the
// token secret, the app key) are named by their files, and only the file
// names are printed.
func PrintConfig(w io.Writer, fs *flag.FlagSet, src Sources) {
	width := 0
	fs.VisitAll(func(f *flag.Flag) { width = max(width, len(f.Name)) })
	fs.VisitAll(func(f *flag.Flag) {
		v := f.Value.String()
		if v == "" {
			v = `""`
		}
		fmt.Fprintf(w, "%-*s  %-30s  # %s\n", width, f.Name, v, src.Source(f.Name))
	})
}
