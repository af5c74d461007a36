package scenario

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/immense-p2p/immense/internal/bytesize"
	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as in Go ("90s", "2h30m") or with
// the longer units simulations need: "d" (24 h), "w" (7 d) and "y" (365 d),
// e.g. "1.5d", "52w", "1y".
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return FormatDuration(time.Duration(d)) }

// FormatDuration writes d with the largest unit that keeps it short.
func FormatDuration(d time.Duration) string {
	day := 24 * time.Hour
	switch {
	case d >= 365*day && d%(365*day) == 0:
		return fmt.Sprintf("%dy", d/(365*day))
	case d >= day && d%day == 0:
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}

// ParseDuration parses a Duration.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	units := map[byte]time.Duration{'d': 24 * time.Hour, 'w': 7 * 24 * time.Hour, 'y': 365 * 24 * time.Hour}
	if n := len(s); n > 1 {
		if u, ok := units[s[n-1]]; ok {
			f, err := strconv.ParseFloat(s[:n-1], 64)
			if err != nil || f < 0 {
				return 0, fmt.Errorf("duration %q: want a non-negative number before %q", s, s[n-1:])
			}
			return Duration(f * float64(u)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: %w (units: ms, s, m, h, d, w, y)", s, err)
	}
	return Duration(d), nil
}

// UnmarshalYAML accepts a duration string; a bare 0 is also allowed.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: duration must be a string such as \"2h\" or \"30d\"", n.Line)
	}
	if n.Value == "0" {
		*d = 0
		return nil
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = v
	return nil
}

// MarshalYAML writes the duration back in the same form.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalText lets JSON encode a Duration as a string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// ByteSize is a size in bytes, written as a number or with a unit: "256",
// "4KiB", "8MiB", "1GB" (the units of bytesize.Units, as on the commands'
// flags).
type ByteSize int64

// ParseByteSize parses a ByteSize.
func ParseByteSize(s string) (ByteSize, error) {
	n, err := bytesize.Parse(s)
	return ByteSize(n), err
}

// UnmarshalYAML accepts a number of bytes or a string with a unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: size must be a number or a string such as \"4KiB\"", n.Line)
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}
