package erasure

import (
	"errors"
	"testing"
)

// TestDecideRepair walks every way a repair check can end, as RepairObject
// carries it out.
func TestDecideRepair(t *testing.T) {
	regErr := errors.New("shard 3 to peer: timeout")
	cases := []struct {
		name string
		w    repairWork
		want repairDecision
		err  string
	}{
		{"healthy", repairWork{action: RepairNone},
			repairDecision{outcome: outcomeHealthy, republish: true}, ""},
		{"blocked", repairWork{action: RepairBlocked},
			repairDecision{outcome: outcomeBlocked, retry: true}, ""},
		// The scheduler moved the next check when it refused.
		{"rate limited", repairWork{action: RepairNow},
			repairDecision{outcome: outcomeDeferred}, ""},
		{"repaired", repairWork{action: RepairNow, allowed: true, moved: 2},
			repairDecision{outcome: outcomeRepaired, publish: true}, ""},
		{"partly repaired", repairWork{action: RepairNow, allowed: true, moved: 1, regErr: regErr},
			repairDecision{outcome: outcomeRepaired, publish: true, retry: true}, ""},
		{"nothing regenerated", repairWork{action: RepairNow, allowed: true, regErr: regErr},
			repairDecision{outcome: outcomeFailed, retry: true}, regErr.Error()},
		{"nothing regenerated, no error", repairWork{action: RepairNow, allowed: true},
			repairDecision{outcome: outcomeFailed, retry: true}, "no shard could be regenerated"},

		// Adoption publishes a new version whatever else happened.
		{"adopt, healthy", repairWork{action: RepairNone, adopted: 1},
			repairDecision{outcome: outcomeAdopted, publish: true}, ""},
		{"adopt, blocked", repairWork{action: RepairBlocked, adopted: 1},
			repairDecision{outcome: outcomeAdopted, publish: true, retry: true}, ""},
		{"adopt, rate limited", repairWork{action: RepairNow, adopted: 1},
			repairDecision{outcome: outcomeAdopted, publish: true}, ""},
		{"adopt and repair", repairWork{action: RepairNow, allowed: true, adopted: 1, moved: 1},
			repairDecision{outcome: outcomeRepaired, publish: true}, ""},
		{"adopt, partly repaired", repairWork{action: RepairNow, allowed: true, adopted: 1, moved: 1, regErr: regErr},
			repairDecision{outcome: outcomeRepaired, publish: true, retry: true}, ""},
		{"adopt, nothing regenerated", repairWork{action: RepairNow, allowed: true, adopted: 2, regErr: regErr},
			repairDecision{outcome: outcomeAdopted, publish: true, retry: true}, "handed-off shards adopted, but: " + regErr.Error()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := decideRepair(c.w)
			gotErr := ""
			if got.err != nil {
				gotErr = got.err.Error()
			}
			got.err = nil
			if got != c.want || gotErr != c.err {
				t.Errorf("decideRepair(%+v) = %+v, err %q; want %+v, err %q", c.w, got, gotErr, c.want, c.err)
			}
			if c.w.regErr != nil && c.err != "" && !errors.Is(decideRepair(c.w).err, c.w.regErr) {
				t.Errorf("the error does not wrap the regeneration's")
			}
		})
	}
}

// The labels are the metric's: dashboards and sim/live read them.
func TestRepairOutcomeLabels(t *testing.T) {
	want := []string{"healthy", "blocked", "deferred", "repaired", "adopted", "failed", "error"}
	for o := range numOutcomes {
		if o.String() != want[o] {
			t.Errorf("outcome %d is %q, want %q", int(o), o, want[o])
		}
	}
	if int(numOutcomes) != len(want) {
		t.Errorf("%d outcomes, want %d", numOutcomes, len(want))
	}
}
