package report

import (
	"fmt"
	"math"
	"sort"
	"strings"
)

// Celebrity holds the figures of a celebrity-post run (issue 15). Summary
// embeds it, so that its keys are top-level keys of summary.json:
// followers, peers, relays_enabled, time_to_50pct_ms, time_to_99pct_ms,
// time_to_all_ms, and without_relays with the same three for the run
// without relays.
type Celebrity struct {
	Followers     int  `json:"followers"`
	Peers         int  `json:"peers"`
	RelaysEnabled bool `json:"relays_enabled"`
	// Arrival is the run with relays (without, when relays are disabled).
	Arrival
	WithoutRelays Arrival `json:"without_relays"`
}

// Arrival is when shares of the followers have the post, in milliseconds
// from publication; null if that share never got it.
type Arrival struct {
	TimeTo50pctMS *float64 `json:"time_to_50pct_ms"`
	TimeTo99pctMS *float64 `json:"time_to_99pct_ms"`
	TimeToAllMS   *float64 `json:"time_to_all_ms"`
}

// ArrivalHistogram counts arrival times in buckets of equal width from 0;
// arrivals past the last bucket are counted in it. It keeps the exact
// latest arrival.
type ArrivalHistogram struct {
	BucketMS float64
	Counts   []int64
	// Total counts every follower expected to get the post, Missed those
	// that never did.
	Total, Missed int64
	MaxMS         float64
	// Late counts arrivals past the last bucket.
	Late int64
}

// NewArrivalHistogram returns a histogram of buckets of bucketMS up to
// horizonMS.
func NewArrivalHistogram(bucketMS, horizonMS float64) *ArrivalHistogram {
	n := max(1, int(math.Ceil(horizonMS/bucketMS)))
	return &ArrivalHistogram{BucketMS: bucketMS, Counts: make([]int64, n)}
}

// Add counts one arrival at ms.
func (h *ArrivalHistogram) Add(ms float64) {
	h.Total++
	i := int(ms / h.BucketMS)
	if i >= len(h.Counts) {
		i = len(h.Counts) - 1
		h.Late++
	}
	h.Counts[max(i, 0)]++
	h.MaxMS = max(h.MaxMS, ms)
}

// Miss counts a follower that never got the post.
func (h *ArrivalHistogram) Miss() { h.Total++; h.Missed++ }

// TimeTo returns when a share q of the followers had the post: the upper
// edge of the bucket in which the ceil(q*Total)-th arrival falls (the
// exact latest arrival for q = 1), NaN if fewer ever got it.
func (h *ArrivalHistogram) TimeTo(q float64) float64 {
	need := int64(math.Ceil(q * float64(h.Total)))
	if need > h.Total-h.Missed {
		return math.NaN()
	}
	if q >= 1 {
		return h.MaxMS
	}
	var cum int64
	for i, c := range h.Counts {
		cum += c
		if cum >= need && need > 0 {
			return math.Min(float64(i+1)*h.BucketMS, h.MaxMS)
		}
	}
	return h.MaxMS
}

// Arrival returns the three figures of summary.json.
func (h *ArrivalHistogram) Arrival() Arrival {
	return Arrival{TimeTo50pctMS: F(h.TimeTo(0.5)), TimeTo99pctMS: F(h.TimeTo(0.99)), TimeToAllMS: F(h.TimeTo(1))}
}

// Share returns the share of followers that had the post by ms.
func (h *ArrivalHistogram) Share(ms float64) float64 {
	if h.Total == 0 {
		return math.NaN()
	}
	var cum int64
	for i, c := range h.Counts {
		if float64(i+1)*h.BucketMS > ms {
			break
		}
		cum += c
	}
	return float64(cum) / float64(h.Total)
}

// CDFSeries returns the share of followers that had the post in each
// histogram at times ts (ms), as columns named names.
func CDFSeries(ts []float64, names []string, hs []*ArrivalHistogram) *Series {
	s := NewSeries(append([]string{"t_ms"}, names...)...)
	for _, t := range ts {
		row := []float64{t}
		for _, h := range hs {
			row = append(row, h.Share(t))
		}
		s.Add(row...)
	}
	return s
}

// celebrityTable renders a celebrity run's summary as a Markdown table.
func celebrityTable(s *Summary) string {
	c := s.Celebrity
	var b strings.Builder
	fmt.Fprintf(&b, "Celebrity post, mode **%s**, %d followers over %d peers, seed %d.\n\n", s.Mode, c.Followers, c.Peers, s.Seed)
	b.WriteString("| figure | with relays | without relays |\n|---|---|---|\n")
	val := func(v *float64) string {
		if v == nil {
			return "never"
		}
		return FormatValue(*v)
	}
	with := func(v *float64) string {
		if !c.RelaysEnabled {
			return "not run"
		}
		return val(v)
	}
	fmt.Fprintf(&b, "| time_to_50pct_ms | %s | %s |\n", with(c.TimeTo50pctMS), val(c.WithoutRelays.TimeTo50pctMS))
	fmt.Fprintf(&b, "| time_to_99pct_ms | %s | %s |\n", with(c.TimeTo99pctMS), val(c.WithoutRelays.TimeTo99pctMS))
	fmt.Fprintf(&b, "| time_to_all_ms | %s | %s |\n", with(c.TimeToAllMS), val(c.WithoutRelays.TimeToAllMS))
	keys := make([]string, 0, len(s.Details))
	for k := range s.Details {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b.WriteString("\n| detail | value |\n|---|---|\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "| %s | %s |\n", k, FormatValue(s.Details[k]))
	}
	return b.String()
}
