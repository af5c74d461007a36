package erasure

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sizeUnits maps unit suffixes to multipliers. Both SI (kB = 1000) and IEC
// (KiB = 1024) units are accepted, because operators write both; a bare
// number is bytes.
var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	// Longest suffixes first, so "MiB" is not read as "M" + "iB".
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40}, {"pib", 1 << 50},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12}, {"pb", 1e15},
	{"ki", 1 << 10}, {"mi", 1 << 20}, {"gi", 1 << 30}, {"ti", 1 << 40}, {"pi", 1 << 50},
	{"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"t", 1e12}, {"p", 1e15},
	{"b", 1},
}

// ParseSize parses a byte size such as "10GiB", "500MB", "1.5 TiB" or
// "4096". Units are case-insensitive; fractions are allowed and rounded
// down to whole bytes.
func ParseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	if t == "" {
		return 0, fmt.Errorf("parse size %q: no number", s)
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("parse size %q: not a number", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("parse size %q: negative", s)
	}
	b := math.Floor(v * mult)
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("parse size %q: too large", s)
	}
	return int64(b), nil
}

// FormatSize renders n bytes with the largest IEC unit that keeps it at
// least 1, rounded to two decimals, e.g. 10737418240 -> "10GiB",
// 1234567 -> "1.18MiB".
func FormatSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	v := float64(n)
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64) + units[i]
}
