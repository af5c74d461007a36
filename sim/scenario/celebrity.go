package scenario

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Celebrity describes the celebrity post (issue 15): one message published
// once to a topic followed by millions of browsers, spread over the
// scenario's Nodes peers. A scenario with this section is run by
// model.RunCelebrity, not by the churn model: the post lasts seconds, so
// the peers (all online) do not churn during it; only relays leave.
//
// Every default is documented where it is declared, with where it comes
// from; docs/simulation.md ("A celebrity post") says more.
type Celebrity struct {
	// Followers is the number of browsers subscribed to the topic.
	Followers int `yaml:"followers"`
	// MessageSize is the post's payload. Default 1 KiB (a text post with
	// its metadata; the signed envelope is added as overhead).
	MessageSize ByteSize `yaml:"message_size"`
	// Overhead is what each copy carries besides the payload (envelope,
	// Ed25519 signature, key, framing, transport headers). Default 250 B,
	// as the fan-out model's messageOverhead.
	Overhead ByteSize `yaml:"overhead"`
	// Horizon bounds the arrival histogram: a later arrival is counted at
	// the horizon (and reported). Default 60s.
	Horizon Duration `yaml:"horizon"`
	// Publisher is the name of the peer class the post is published on (by
	// an HTTP POST to one of its peers, chosen at random). Default: the
	// first class.
	Publisher string `yaml:"publisher"`

	// Peers are the classes of the scenario's peers.
	Peers []PeerClass `yaml:"peers"`
	// Browsers are the classes of the followers' links.
	Browsers []BrowserClass `yaml:"browsers"`
	// WebSocket and DataChannel are what one delivery costs a peer on each
	// transport, from webrtc's BenchmarkFanout (docs/performance.md).
	WebSocket   Transport `yaml:"websocket"`
	DataChannel Transport `yaml:"data_channel"`
	Relays      Relays    `yaml:"relays"`
}

// PeerClass is one kind of peer (servers, volunteers).
type PeerClass struct {
	Name string `yaml:"name"`
	// Share of the scenario's nodes in this class.
	Share float64 `yaml:"share"`
	// Uplink is the class's upload bandwidth, log-normal across peers.
	Uplink Rate `yaml:"uplink"`
	// AccessMS is the one-way latency of the peer's own access link, added
	// to every hop from or to it.
	AccessMS float64 `yaml:"access_ms"`
	// Cores the peer gives to feeding browsers. Default 1.
	Cores float64 `yaml:"cores"`
	// Transport its browsers use: "websocket" (a peer with a public address
	// and a certificate) or "data_channel" (behind NAT: WebRTC).
	Transport string `yaml:"transport"`
	// FollowerWeight: followers attach to peers in proportion to it (a
	// server takes more browsers than a volunteer). Default 1.
	FollowerWeight float64 `yaml:"follower_weight"`
	// DirectBudget is how many browsers the peer feeds itself; with relays
	// enabled, a peer with more followers makes relays of capable ones.
	DirectBudget int `yaml:"direct_budget"`
	// MemoryMiB the peer gives to browser sessions: its direct budget is
	// also capped at MemoryMiB / the transport's memory per subscriber.
	// 0: no cap.
	MemoryMiB float64 `yaml:"memory_mib"`
}

// BrowserClass is one kind of follower link.
type BrowserClass struct {
	Name  string  `yaml:"name"`
	Share float64 `yaml:"share"`
	// Uplink and Downlink bandwidths, log-normal across browsers.
	Uplink   Rate `yaml:"uplink"`
	Downlink Rate `yaml:"downlink"`
	// AccessMS is the one-way latency of the browser's access link
	// (log-normal: median and sigma of its logarithm).
	AccessMS Spread `yaml:"access_ms"`
	// Metered links (the browser reports a cellular connection) never
	// relay.
	Metered bool `yaml:"metered"`
}

// Rate is a bandwidth in Mbit/s: log-normal with this median and sigma of
// its natural logarithm (0: every one the median).
type Rate struct {
	MedianMbps float64 `yaml:"median_mbps"`
	Sigma      float64 `yaml:"sigma"`
}

// Spread is a log-normal quantity: median and sigma of its logarithm.
type Spread struct {
	Median float64 `yaml:"median"`
	Sigma  float64 `yaml:"sigma"`
}

// Transport is what one delivery to a browser costs on a transport,
// measured by webrtc's BenchmarkFanout at K=100 (docs/perf/).
type Transport struct {
	// CPUPerDelivery is one core's time per delivery (1 / deliveries per
	// CPU-second).
	CPUPerDelivery Duration `yaml:"cpu_per_delivery"`
	// LatencyP50 and LatencyP99 are the stack's publish-to-delivery
	// latency on loopback; each delivery draws from the log-normal with
	// these quantiles.
	LatencyP50 Duration `yaml:"latency_p50"`
	LatencyP99 Duration `yaml:"latency_p99"`
	// MemoryPerSubscriberKiB is the server memory one session holds.
	MemoryPerSubscriberKiB float64 `yaml:"memory_per_subscriber_kib"`
}

// Relays says which browsers relay and how (issue 15's browser relays).
type Relays struct {
	// Enabled runs the post a second time with relays; the run without
	// relays is always made and reported under without_relays.
	Enabled bool `yaml:"enabled"`
	// OptIn is the share of browsers whose app and user allow relaying.
	OptIn float64 `yaml:"opt_in"`
	// Settled is the share of browsers open long enough for their peer to
	// trust their uptime (a relay must have been connected for a while).
	Settled float64 `yaml:"settled"`
	// MinUplinkMbps is the measured upload a relay needs.
	MinUplinkMbps float64 `yaml:"min_uplink_mbps"`
	// FanOut is the most children a relay feeds; Depth the most relay
	// hops below a peer (depth 1: relays fed by the peer feed leaves).
	FanOut int `yaml:"fan_out"`
	Depth  int `yaml:"depth"`
	// BudgetWindow also bounds a peer's direct budget by its links: it
	// feeds itself at most as many followers as it can send copies to
	// within this window (its time per copy is the slower of its CPU and
	// its uplink). 0: the class's direct_budget alone.
	BudgetWindow Duration `yaml:"budget_window"`
	// Verify is what a relay spends on a message before forwarding it
	// (Ed25519 verification in WebCrypto, decoding).
	Verify Duration `yaml:"verify"`
	// CPUFactor multiplies the data channel's CPU per delivery for a
	// browser (a phone or laptop is slower than the benchmark's server
	// core). Default 1.
	CPUFactor float64 `yaml:"cpu_factor"`
	// LeaveShare of the relays leave during the post, each at a uniform
	// time within LeaveWithin of publication.
	LeaveShare  float64  `yaml:"leave_share"`
	LeaveWithin Duration `yaml:"leave_within"`
	// ReattachWithin is the documented bound within which a child whose
	// relay left is fed again by its peer (uniform in [0, bound]).
	ReattachWithin Duration `yaml:"reattach_within"`
}

// Sigma returns the sigma of a log-normal with median p50 and 99th
// percentile p99 (z(0.99) = 2.3263).
func Sigma(p50, p99 float64) float64 {
	if p50 <= 0 || p99 <= p50 {
		return 0
	}
	return math.Log(p99/p50) / 2.326348
}

// celebrityDefaults fills in the celebrity section's defaults and what the
// rest of the scenario needs of a post that lasts seconds: the peers are
// online throughout.
func (sc *Scenario) celebrityDefaults() {
	c := sc.Celebrity
	if c == nil {
		return
	}
	if sc.Mode == "" {
		sc.Mode = Model
	}
	if c.MessageSize == 0 {
		c.MessageSize = 1024
	}
	if c.Overhead == 0 {
		c.Overhead = 250
	}
	if c.Horizon == 0 {
		c.Horizon = Duration(time.Minute)
	}
	if sc.Duration == 0 {
		sc.Duration = c.Horizon
	}
	if sc.SampleEvery == 0 {
		sc.SampleEvery = sc.Duration
	}
	for _, cl := range []*Class{&sc.Servers, &sc.Volunteers} {
		if cl.Availability == 0 && cl.Session.IsZero() {
			cl.Availability = 1
		}
	}
	if c.Publisher == "" && len(c.Peers) > 0 {
		c.Publisher = c.Peers[0].Name
	}
	for i := range c.Peers {
		p := &c.Peers[i]
		if p.Cores == 0 {
			p.Cores = 1
		}
		if p.FollowerWeight == 0 {
			p.FollowerWeight = 1
		}
	}
	if c.Relays.CPUFactor == 0 {
		c.Relays.CPUFactor = 1
	}
}

// validateCelebrity checks the celebrity section, if any.
func (sc *Scenario) validateCelebrity() error {
	c := sc.Celebrity
	if c == nil {
		return nil
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("celebrity: "+format, args...)) }
	if sc.Mode != Model {
		bad("runs in model mode only")
	}
	if c.Followers < 1 || c.Followers > 1e9 {
		bad("followers %d: want 1 to 10^9", c.Followers)
	}
	if c.MessageSize < 1 || c.MessageSize > 1<<20 || c.Overhead < 0 {
		bad("message_size must be in [1, 1 MiB] and overhead >= 0")
	}
	if c.Horizon <= 0 || c.Horizon.D() > time.Hour {
		bad("horizon %v: want (0, 1h]", c.Horizon)
	}
	share := 0.0
	pub := false
	for _, p := range c.Peers {
		share += p.Share
		pub = pub || p.Name == c.Publisher
		if p.Name == "" || p.Share <= 0 || p.Uplink.MedianMbps <= 0 || p.Uplink.Sigma < 0 || p.AccessMS < 0 ||
			p.Cores <= 0 || p.FollowerWeight <= 0 || p.DirectBudget < 1 || p.MemoryMiB < 0 {
			bad("peers %q: need a name, share > 0, uplink.median_mbps > 0, sigma >= 0, access_ms >= 0, cores > 0, follower_weight > 0, direct_budget >= 1, memory_mib >= 0", p.Name)
		}
		if p.Transport != "websocket" && p.Transport != "data_channel" {
			bad("peers %q: transport %q: want websocket or data_channel", p.Name, p.Transport)
		}
	}
	if len(c.Peers) == 0 || math.Abs(share-1) > 1e-6 {
		bad("peers: shares add up to %v, want 1", share)
	}
	if !pub {
		bad("publisher %q is not a peer class", c.Publisher)
	}
	share = 0
	for _, b := range c.Browsers {
		share += b.Share
		if b.Name == "" || b.Share <= 0 || b.Uplink.MedianMbps <= 0 || b.Downlink.MedianMbps <= 0 ||
			b.Uplink.Sigma < 0 || b.Downlink.Sigma < 0 || b.AccessMS.Median < 0 || b.AccessMS.Sigma < 0 {
			bad("browsers %q: need a name, share > 0, positive median bandwidths, non-negative access latency and sigmas", b.Name)
		}
	}
	if len(c.Browsers) == 0 || math.Abs(share-1) > 1e-6 {
		bad("browsers: shares add up to %v, want 1", share)
	}
	for _, tr := range []struct {
		name string
		t    Transport
	}{{"websocket", c.WebSocket}, {"data_channel", c.DataChannel}} {
		name, t := tr.name, tr.t
		if t.CPUPerDelivery <= 0 || t.LatencyP50 <= 0 || t.LatencyP99 < t.LatencyP50 || t.MemoryPerSubscriberKiB <= 0 {
			bad("%s: need cpu_per_delivery > 0, 0 < latency_p50 <= latency_p99, memory_per_subscriber_kib > 0", name)
		}
	}
	r := c.Relays
	if r.Enabled {
		if r.OptIn < 0 || r.OptIn > 1 || r.Settled < 0 || r.Settled > 1 || r.LeaveShare < 0 || r.LeaveShare > 1 {
			bad("relays: opt_in, settled and leave_share must be in [0, 1]")
		}
		if r.FanOut < 1 || r.FanOut > 64 || r.Depth < 1 || r.Depth > 8 {
			bad("relays: fan_out must be in [1, 64] and depth in [1, 8]")
		}
		if r.MinUplinkMbps < 0 || r.Verify < 0 || r.BudgetWindow < 0 || r.CPUFactor <= 0 || r.LeaveWithin < 0 || r.ReattachWithin < 0 {
			bad("relays: min_uplink_mbps, verify, budget_window, leave_within, reattach_within must not be negative, cpu_factor positive")
		}
		if r.LeaveShare > 0 && r.LeaveWithin <= 0 {
			bad("relays: leave_share needs leave_within > 0")
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid scenario: %w", err)
	}
	return nil
}
