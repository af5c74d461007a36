package live

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/immense-p2p/immense/sim/scenario"
)

// TestLive30 runs sim/scenarios/live-30.yaml: 30 real nodes (3 servers, 27
// volunteers online 60% of the time with heavy-tailed sessions) in virtual
// time, and checks what the issue asks of live mode: messages reach the
// subscribers that were online when they were published, DHT lookups for
// online peers find them, and every object the servers wrote reads back
// whenever at least k of its holders are online.
func TestLive30(t *testing.T) {
	sc, err := scenario.Load("../scenarios/live-30.yaml")
	if err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		res, err := Run(context.Background(), sc, Options{DataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		s := res.Summary
		d := s.Details
		t.Logf("availability %.3f, delivery %.4f (all online at publish %.4f), p50 %.1f ms, p99 %.1f ms, lookups %.3f, hops %.2f, %v messages, %v deliveries expected, %v lookups",
			*s.AvailabilityMean, *s.DeliveryRatio, d["delivery_ratio_online_at_publish"], *s.LatencyP50MS, *s.LatencyP99MS,
			*s.LookupSuccess, d["lookup_hops_mean"], d["messages"], d["deliveries_expected"], d["lookups"])
		if d["messages"] < 100 || d["deliveries_expected"] < 1000 || d["lookups"] < 50 {
			t.Fatalf("too little traffic measured: %v", d)
		}
		if *s.DeliveryRatio < 0.99 {
			t.Errorf("delivery ratio %.4f < 0.99", *s.DeliveryRatio)
		}
		if *s.LookupSuccess < 0.95 {
			t.Errorf("lookup success %.3f < 0.95", *s.LookupSuccess)
		}
		// Latency cannot beat the links: 10 ms one way inside a region.
		if *s.LatencyP50MS < 10 || *s.LatencyP99MS < *s.LatencyP50MS {
			t.Errorf("latency p50 %.1f p99 %.1f ms", *s.LatencyP50MS, *s.LatencyP99MS)
		}
		if a := *s.AvailabilityMean; a < 0.5 || a > 0.8 {
			t.Errorf("availability %.3f, scenario says 0.1+0.9*0.6 = 0.64", a)
		}
		// Storage: the servers wrote every object, and every read made
		// while at least k of an object's holders were online returned it.
		t.Logf("objects %v (k %.1f, m at put %.1f), reads %v (%v with >= k holders online), retrievability %.3f, when available %.3f, lost %v, repair %v bytes",
			*s.Objects, d["data_shards_mean"], d["parity_per_object_mean"], d["reads"], d["reads_when_available"], *s.Retrievability,
			d["retrievability_when_available"], *s.ObjectsLost, d["repair_bytes_total"])
		if s.StorageExpansion == nil || *s.StorageExpansion < 1 {
			t.Errorf("storage_expansion %v", s.StorageExpansion)
		} else {
			t.Logf("storage expansion %.3f", *s.StorageExpansion)
		}
		if *s.Objects != float64(sc.Storage.Objects) {
			t.Errorf("%v of %d objects written (%v put errors)", *s.Objects, sc.Storage.Objects, d["put_errors"])
		}
		if d["reads_when_available"] < 2*float64(sc.Storage.Objects) {
			t.Fatalf("too few reads measured: %v, %v with the object available", d["reads"], d["reads_when_available"])
		}
		if v := d["retrievability_when_available"]; v != 1 {
			t.Errorf("retrievability when at least k holders were online: %.4f, want 1 (%v reads failed); notes: %q", v, d["reads_failed_when_available"], s.Notes)
		}
		if *s.ObjectsLost != 0 || d["objects_lost_placement"] != 0 {
			t.Errorf("%v objects unreadable with every node back online, %v with fewer than k holders left", *s.ObjectsLost, d["objects_lost_placement"])
		}
		if d["reads_ok_when_unavailable"] != 0 {
			t.Errorf("%v reads succeeded with fewer than k holders online: the availability oracle is wrong", d["reads_ok_when_unavailable"])
		}
		if len(res.Series.Rows) < 8 {
			t.Errorf("%d time series rows", len(res.Series.Rows))
		}
	})
}
