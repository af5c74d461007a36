package bytesize

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		// The commands' flags (cmd/internal/cli before it moved here).
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
		// The erasure package's parser, which only its test used. Its one
		// difference, a bare "2k" read as 2000, gives way to the flags'
		// meaning (2 KiB): operators' command lines must keep theirs.
		{"500MB", 500e6, false},
		{"1.5 KiB", 1536, false},
		{"2k", 2 << 10, false},
		{"3mi", 3 << 20, false},
		{"7b", 7, false},
		{" 1TB ", 1e12, false},
		{"0", 0, false},
		{"-1MB", 0, true},
		{"1XB", 0, true},
		// The simulator's scenarios (sim/scenario before it moved here).
		{"256", 256, false},
		{"4KiB", 4096, false},
		{"8MiB", 8 << 20, false},
		{"1GB", 1e9, false},
		{"1.5KB", 1500, false},
	} {
		got, err := Parse(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("Parse(%q) = %d, want error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestFormat(t *testing.T) {
	if Format(10<<30) != "10GiB" || Format(1536) != "1.5KiB" || Format(1234567) != "1.18MiB" {
		t.Errorf("Format: %s %s %s", Format(10<<30), Format(1536), Format(1234567))
	}
	for _, n := range []int64{0, 1, 1536, 10 << 30, 2 << 20} {
		if got, err := Parse(Format(n)); err != nil || got != n {
			t.Errorf("Parse(Format(%d)) = %d, %v", n, got, err)
		}
	}
}
