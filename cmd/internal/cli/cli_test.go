package cli

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"4096", 4096, false},
		{"10GiB", 10 << 30, false},
		{"512MiB", 512 << 20, false},
		{"1.5GB", 1_500_000_000, false},
		{"2mib", 2 << 20, false},
		{"100B", 100, false},
		{"", 0, true},
		{"GiB", 0, true},
		{"-1MiB", 0, true},
		{"ten", 0, true},
		{"10x", 0, true},
		{"NaN", 0, true},
		{"1e30", 0, true},
	} {
		got, err := ParseSize(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseSize(%q) = %d, want error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}
