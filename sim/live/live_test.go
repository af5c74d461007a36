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
// subscribers that were online when they were published, and DHT lookups
// for online peers find them.
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
		if s.Objects != nil || s.Retrievability != nil || len(s.Notes) == 0 {
			t.Error("storage figures must be null, with a note, while live mode stores no objects")
		}
		if len(res.Series.Rows) < 8 {
			t.Errorf("%d time series rows", len(res.Series.Rows))
		}
	})
}
