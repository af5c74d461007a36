// Package bytesize reads and writes byte counts the way operators and
// scenario files write them: "512MiB", "10GiB", "1.5GB", "4096". It is the
// one parser of sizes in the module, used by the commands' flags and the
// simulator's scenarios alike, so that a size means the same everywhere.
package bytesize

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// units maps suffixes to multipliers, longest first so that "MiB" is not
// read as "M" + "iB". IEC units (KiB) are powers of 1024 and SI units (KB)
// powers of 1000, because operators write both. A bare K, M, G, T or P is
// read as KiB, MiB...: that is what the commands' --max-memory or
// --storage-quota 512M has always meant, and a flag value must keep its
// meaning.
var units = []struct {
	suffix string
	mult   float64
}{
	{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"TIB", 1 << 40}, {"PIB", 1 << 50},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"PB", 1e15},
	{"KI", 1 << 10}, {"MI", 1 << 20}, {"GI", 1 << 30}, {"TI", 1 << 40}, {"PI", 1 << 50},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"P", 1 << 50},
	{"B", 1},
}

// Units is the sentence the commands' help and the docs use to describe
// what Parse accepts.
const Units = "B; KiB, MiB, GiB, TiB (powers of 1024); KB, MB, GB, TB (powers of 1000); K, M, G, T as KiB, MiB, GiB, TiB; case-insensitive"

// max keeps sizes well inside int64 after any arithmetic a caller does on
// them (a quota plus a shard, a rate times a second).
const limit = 1 << 62

// Parse parses a byte count with an optional unit (see Units), e.g.
// "10GiB", "1.5 GB" or "4096". Fractions are allowed and rounded down to
// whole bytes.
func Parse(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := 1.0
	upper := strings.ToUpper(t)
	for _, u := range units {
		if strings.HasSuffix(upper, u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: want a number with an optional unit, e.g. 512MiB or 10GiB", s)
	}
	n := math.Floor(f * mult)
	if !(n >= 0 && n <= limit) { // also refuses NaN
		return 0, fmt.Errorf("size %q out of range", s)
	}
	return int64(n), nil
}

// Format writes n with the largest IEC unit that keeps it at least 1,
// rounded to two decimals: 10737418240 is "10GiB", 1234567 "1.18MiB". Parse
// reads it back (to within the rounding).
func Format(n int64) string {
	names := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	v := float64(n)
	i := 0
	for v >= 1024 && i < len(names)-1 {
		v /= 1024
		i++
	}
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64) + names[i]
}
