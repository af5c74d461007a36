package progress

import (
	"strings"
	"testing"
)

// TestLines: off a terminal the bar prints one line per 10%, never more.
func TestLines(t *testing.T) {
	var b strings.Builder
	bar := NewWriter(&b, "run")
	for i := range 1001 {
		bar.Set(float64(i)/1000, "x")
	}
	bar.Done("")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 11 || !strings.HasPrefix(lines[0], "run   0%") || !strings.HasPrefix(lines[10], "run 100%") {
		t.Errorf("%d lines:\n%s", len(lines), b.String())
	}
	var nilBar *Bar
	nilBar.Set(0.5, "") // a nil bar draws nothing
	nilBar.Done("")
}
