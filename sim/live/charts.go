package live

import (
	"github.com/immense-p2p/immense/sim/report"
	"github.com/immense-p2p/immense/sim/scenario"
)

// Charts are the plots of a live run's time series; storage adds the
// objects' ones. `sim replot` draws them again from a committed CSV.
func Charts(storage bool) []report.Chart {
	c := []report.Chart{
		{File: "online.png", Title: "nodes online", YLabel: "nodes", Lines: []string{"online", "servers_online"}},
		{File: "delivery.png", Title: "delivery ratio per interval", YLabel: "ratio", Lines: []string{"delivery_ratio", "lookup_success"}, YMin: 0, YMax: 1.02},
		{File: "latency.png", Title: "publish → deliver latency per interval", YLabel: "ms", Lines: []string{"latency_p50_ms", "latency_p99_ms"}},
		{File: "lookup.png", Title: "DHT lookup hops and routing table", YLabel: "count", Lines: []string{"lookup_hops_mean", "conns_per_node", "routing_table_per_node"}},
	}
	if storage {
		c = append(c,
			report.Chart{File: "objects.png", Title: "objects read back, objects with ≥ k holders online, per sample", YLabel: "share", Lines: []string{"objects_read_share", "objects_available_share"}, YMin: 0, YMax: 1.02},
			report.Chart{File: "repair.png", Title: "repair upload per node per day (compressed time)", YLabel: "bytes", Lines: []string{"repair_bytes_per_node_per_day"}})
	}
	return c
}

// XLabel is the x axis of a live run's plots.
func XLabel(sc *scenario.Scenario) string {
	return "seconds since start (warm-up " + sc.Warmup.String() + ")"
}
