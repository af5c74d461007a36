package model

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// mix is small with issue 14's knobs: some servers that do not hold the
// app key, quotas, and volunteers paying for repair.
func mix(t *testing.T, repairBy string) string {
	t.Helper()
	doc := strings.Replace(small, "servers: {count: 3}", "servers: {count: 60}", 1)
	return strings.Replace(doc, "  size_max: 4MiB\n", "  size_max: 4MiB\n  app_servers: 3\n"+
		"  volunteer_quota: 4MiB\n  server_quota: 1MiB\n  observe: full\n  repair_by: "+repairBy+"\n", 1)
}

// TestStorageCostFigures: every storage run reports issue 14's figures;
// no volunteer goes over its quota; the expansion is no better than the
// optimum for the holders chosen by much (it is computed from true
// availabilities, the plan from estimates); who repairs changes who pays,
// not what is repaired; and the figures are the same for the same seed.
func TestStorageCostFigures(t *testing.T) {
	run := func(repairBy string) ([]byte, map[string]float64, *float64) {
		res, err := Run(context.Background(), parse(t, mix(t, repairBy)), Options{})
		if err != nil {
			t.Fatal(err)
		}
		s := res.Summary
		for name, v := range map[string]*float64{"storage_expansion": s.StorageExpansion,
			"storage_expansion_optimum": s.StorageExpansionOptimum, "volunteer_bytes_share": s.VolunteerBytesShare,
			"volunteer_quota_use_max_over_mean": s.VolunteerQuotaUseMaxOverMean, "repair_bytes_vs_bound": s.RepairBytesVsBound} {
			if v == nil || *v <= 0 {
				t.Fatalf("%s: %v", name, v)
			}
		}
		if *s.StorageExpansion < 1 || *s.VolunteerBytesShare > 1 {
			t.Errorf("expansion %v, volunteer share %v", *s.StorageExpansion, *s.VolunteerBytesShare)
		}
		if s.Details["volunteers_over_quota"] != 0 || s.Details["volunteer_quota_use_max"] > 1 {
			t.Errorf("volunteers over quota: %v (max use %v)", s.Details["volunteers_over_quota"], s.Details["volunteer_quota_use_max"])
		}
		js, err := s.JSON()
		if err != nil {
			t.Fatal(err)
		}
		return js, s.Details, s.RepairBytesVsBound
	}
	a, da, ba := run("app_servers")
	b, _, _ := run("app_servers")
	if !bytes.Equal(a, b) {
		t.Fatalf("same seed, different summaries:\n%s\n%s", a, b)
	}
	_, dv, bv := run("volunteers")
	if da["repair_bytes_by_volunteers_per_volunteer_per_day"] != 0 || dv["repair_bytes_by_volunteers_per_volunteer_per_day"] <= 0 {
		t.Errorf("volunteer repair bytes: %v with app servers, %v with volunteers",
			da["repair_bytes_by_volunteers_per_volunteer_per_day"], dv["repair_bytes_by_volunteers_per_volunteer_per_day"])
	}
	if dv["repair_bytes_per_server_per_day"] >= da["repair_bytes_per_server_per_day"] {
		t.Errorf("servers pay %v with volunteers repairing, %v without", dv["repair_bytes_per_server_per_day"], da["repair_bytes_per_server_per_day"])
	}
	if da["shards_regenerated"] != dv["shards_regenerated"] || *ba != *bv {
		t.Errorf("who repairs changed what is repaired: %v vs %v shards", da["shards_regenerated"], dv["shards_regenerated"])
	}
	t.Logf("%s", a)
}
