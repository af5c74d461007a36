package report

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// TestArrivalHistogram: quantiles are bucket upper edges, the last one the
// exact latest arrival; a share nobody reached is null.
func TestArrivalHistogram(t *testing.T) {
	h := NewArrivalHistogram(1, 100)
	for _, ms := range []float64{0.5, 3.2, 3.7, 10.1, 250} {
		h.Add(ms)
	}
	if got := h.TimeTo(0.5); got != 4 { // 3rd of 5 in [3, 4)
		t.Errorf("TimeTo(0.5) = %v, want 4", got)
	}
	if got := h.TimeTo(0.8); got != 11 {
		t.Errorf("TimeTo(0.8) = %v, want 11", got)
	}
	if got := h.TimeTo(1); got != 250 || h.Late != 1 {
		t.Errorf("TimeTo(1) = %v (late %d), want 250 (1)", got, h.Late)
	}
	if got := h.Share(4); got != 0.6 {
		t.Errorf("Share(4) = %v, want 0.6", got)
	}
	h.Miss()
	if !math.IsNaN(h.TimeTo(1)) || h.TimeTo(0.5) != 4 {
		t.Errorf("with a follower never reached: TimeTo(1) = %v, TimeTo(0.5) = %v", h.TimeTo(1), h.TimeTo(0.5))
	}
}

// TestCelebritySummaryJSON: the keys are top-level in summary.json.
func TestCelebritySummaryJSON(t *testing.T) {
	h := NewArrivalHistogram(1, 100)
	h.Add(7)
	a := h.Arrival()
	s := Summary{Mode: "model", Celebrity: &Celebrity{Followers: 1, Peers: 1, RelaysEnabled: true, Arrival: a, WithoutRelays: a}}
	b, err := s.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"followers", "peers", "relays_enabled", "time_to_50pct_ms", "time_to_99pct_ms", "time_to_all_ms"} {
		if _, ok := m[k]; !ok {
			t.Errorf("no top-level %s in %s", k, b)
		}
	}
	if w, ok := m["without_relays"].(map[string]any); !ok || w["time_to_all_ms"] != 7.0 {
		t.Errorf("without_relays = %v", m["without_relays"])
	}
	if !strings.Contains(SummaryTable(&s), "| time_to_99pct_ms | 7 | 7 |") {
		t.Errorf("table:\n%s", SummaryTable(&s))
	}
	if b, _ := (&Summary{}).JSON(); strings.Contains(string(b), "followers") {
		t.Errorf("a run of another kind has celebrity keys: %s", b)
	}
}
