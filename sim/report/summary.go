// Package report writes what a simulation run found: summary.json (the
// same keys in live and model mode, null where a mode does not measure a
// figure), CSV time series, PNG plots (gonum/plot) and a report.md that
// embeds them.
package report

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
)

// Summary is the content of summary.json. The ten figures the issue asks
// for are pointers: null means "not measured in this mode", never zero.
type Summary struct {
	Mode     string `json:"mode"`
	Scenario string `json:"scenario"`
	Seed     uint64 `json:"seed"`
	// Runs is how many runs the figures average (live mode repeats).
	Runs int `json:"runs"`

	Nodes int `json:"nodes"`
	// AvailabilityMean is the time-averaged share of nodes online.
	AvailabilityMean *float64 `json:"availability_mean"`
	Objects          *float64 `json:"objects"`
	// ObjectsLost counts objects gone for good. Model: fewer than k shards
	// left on nodes still in the network. Live: not readable at the end of
	// the run with every node still in the network back online.
	ObjectsLost *float64 `json:"objects_lost"`
	// Retrievability: model, the share of (object, sample time) pairs at
	// which at least k holders of the object were online with their shard;
	// live, the share of reads (one per object and sample) that returned
	// the object.
	Retrievability *float64 `json:"retrievability"`
	// RepairBytesPerNodePerDay is the repair traffic over all nodes and
	// days. Model: shards fetched to rebuild plus shards stored on new
	// holders. Live: shards stored on new holders, which is what erasure
	// counts (details repair_upload_bytes_per_node_per_day in both modes).
	RepairBytesPerNodePerDay *float64 `json:"repair_bytes_per_node_per_day"`
	// DeliveryRatio is the share of (message, subscriber) pairs delivered
	// within the deadline, over subscribers online and settled at publish
	// time and still online at the deadline.
	DeliveryRatio *float64 `json:"delivery_ratio"`
	LatencyP50MS  *float64 `json:"latency_p50_ms"`
	LatencyP99MS  *float64 `json:"latency_p99_ms"`
	// LookupSuccess is the share of DHT lookups for an online peer's key
	// whose result contained that peer.
	LookupSuccess *float64 `json:"lookup_success"`

	// Storage cost (issue 14). StorageExpansion is stored bytes / object
	// bytes, the mean over objects. StorageExpansionOptimum is the same
	// for the least number of shards that meets the target on the holders
	// chosen, from their measured availabilities with the exact
	// Poisson-binomial (erasure.LeastShards), the mean over objects.
	StorageExpansion        *float64 `json:"storage_expansion"`
	StorageExpansionOptimum *float64 `json:"storage_expansion_optimum"`
	// VolunteerBytesShare is the share of shard bytes held by volunteers;
	// VolunteerQuotaUseMaxOverMean the most used volunteer's quota use over
	// the mean of the volunteers holding shards (1: perfectly even).
	VolunteerBytesShare          *float64 `json:"volunteer_bytes_share"`
	VolunteerQuotaUseMaxOverMean *float64 `json:"volunteer_quota_use_max_over_mean"`
	// RepairBytesVsBound is the bytes repair stored on new holders over
	// the Blake-Rodrigues bound: the bytes that departures destroyed, each
	// holder class's stored bytes times the window over its mean lifetime
	// (docs/simulation.md).
	RepairBytesVsBound *float64 `json:"repair_bytes_vs_bound"`

	// Details holds further figures, by name (see report.md).
	Details map[string]float64 `json:"details,omitempty"`
	// StdDev is the standard deviation over runs of every figure above,
	// when Runs > 1.
	StdDev map[string]float64 `json:"stddev,omitempty"`
	// PerRun holds each run's figures when Runs > 1.
	PerRun []map[string]any `json:"per_run,omitempty"`
	Notes  []string         `json:"notes,omitempty"`

	// Celebrity, set by a celebrity-post run, puts its figures at the top
	// level of summary.json (see celebrity.go).
	*Celebrity
}

// F returns a pointer to v, or nil if v is NaN (not measured).
func F(v float64) *float64 {
	if math.IsNaN(v) {
		return nil
	}
	return &v
}

// figures returns every numeric figure of s by JSON name, the required
// ten and the details, leaving out nulls.
func (s *Summary) figures() map[string]float64 {
	out := map[string]float64{}
	for _, kv := range []struct {
		k string
		v *float64
	}{
		{"availability_mean", s.AvailabilityMean}, {"objects", s.Objects}, {"objects_lost", s.ObjectsLost},
		{"retrievability", s.Retrievability}, {"repair_bytes_per_node_per_day", s.RepairBytesPerNodePerDay},
		{"delivery_ratio", s.DeliveryRatio}, {"latency_p50_ms", s.LatencyP50MS}, {"latency_p99_ms", s.LatencyP99MS},
		{"lookup_success", s.LookupSuccess},
		{"storage_expansion", s.StorageExpansion}, {"storage_expansion_optimum", s.StorageExpansionOptimum},
		{"volunteer_bytes_share", s.VolunteerBytesShare},
		{"volunteer_quota_use_max_over_mean", s.VolunteerQuotaUseMaxOverMean},
		{"repair_bytes_vs_bound", s.RepairBytesVsBound},
	} {
		if kv.v != nil {
			out[kv.k] = *kv.v
		}
	}
	for k, v := range s.Details {
		out[k] = v
	}
	return out
}

// Get returns the figure named k (a JSON key or a detail), and false if it
// was not measured.
func (s *Summary) Get(k string) (float64, bool) {
	v, ok := s.figures()[k]
	return v, ok
}

// Aggregate combines the summaries of repeated runs: each figure becomes
// its mean over the runs that measured it, StdDev its sample standard
// deviation, and PerRun keeps every run's figures.
func Aggregate(runs []Summary) Summary {
	if len(runs) == 1 {
		return runs[0]
	}
	out := runs[0]
	out.Runs = len(runs)
	out.Details = map[string]float64{}
	out.StdDev = map[string]float64{}
	out.PerRun = nil
	vals := map[string][]float64{}
	for _, r := range runs {
		f := r.figures()
		per := map[string]any{"seed": r.Seed}
		for k, v := range f {
			vals[k] = append(vals[k], v)
			per[k] = v
		}
		out.PerRun = append(out.PerRun, per)
	}
	mean := map[string]float64{}
	for k, vs := range vals {
		m, sd := MeanStd(vs)
		mean[k], out.StdDev[k] = m, sd
	}
	get := func(k string) *float64 {
		if v, ok := mean[k]; ok {
			return &v
		}
		return nil
	}
	out.AvailabilityMean, out.Objects, out.ObjectsLost = get("availability_mean"), get("objects"), get("objects_lost")
	out.Retrievability, out.RepairBytesPerNodePerDay = get("retrievability"), get("repair_bytes_per_node_per_day")
	out.DeliveryRatio, out.LatencyP50MS, out.LatencyP99MS = get("delivery_ratio"), get("latency_p50_ms"), get("latency_p99_ms")
	out.LookupSuccess = get("lookup_success")
	out.StorageExpansion, out.StorageExpansionOptimum = get("storage_expansion"), get("storage_expansion_optimum")
	out.VolunteerBytesShare = get("volunteer_bytes_share")
	out.VolunteerQuotaUseMaxOverMean = get("volunteer_quota_use_max_over_mean")
	out.RepairBytesVsBound = get("repair_bytes_vs_bound")
	for k := range runs[0].Details {
		if v, ok := mean[k]; ok {
			out.Details[k] = v
		}
	}
	notes := map[string]bool{}
	out.Notes = nil
	for _, r := range runs {
		for _, n := range r.Notes {
			if !notes[n] {
				notes[n] = true
				out.Notes = append(out.Notes, n)
			}
		}
	}
	return out
}

// MeanStd returns the mean and the sample standard deviation of xs.
func MeanStd(xs []float64) (mean, std float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	if len(xs) < 2 {
		return mean, 0
	}
	for _, x := range xs {
		std += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(std / float64(len(xs)-1))
}

// Quantile returns the q-quantile of xs (nearest rank), NaN if empty. xs
// is not modified.
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// JSON returns the summary as indented JSON.
func (s *Summary) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode summary: %w", err)
	}
	return append(b, '\n'), nil
}
