package webrtc

import (
	"fmt"
	"time"
)

// RelayConfig configures browser relays (docs/browser-protocol.md,
// section 8): when a peer asks browsers to feed a topic to other
// browsers. The zero value is off; DefaultRelayConfig is the preset.
type RelayConfig struct {
	// Enabled lets the peer invite browsers to relay. Off by default: the
	// app opts in (and each user, from the client).
	Enabled bool
	// DirectBudget is how many sessions of one topic the peer feeds itself
	// before it attaches further ones to relays. Default 32: beyond a few
	// dozen, a peer's upload per message grows with every subscriber,
	// while a relay's stays at its children.
	DirectBudget int
	// MaxChildren caps the children of one relay. Default 8: a browser
	// uploading 8× a topic's rate is within a home uplink for chat-sized
	// topics, and 8^3 = 512 followers per direct relay at MaxDepth 3.
	MaxChildren int
	// MaxDepth caps the relays between the peer and a browser, plus one
	// (1: relays fed by the peer only). Default 3: each level adds a hop of
	// latency (tens of milliseconds between browsers).
	MaxDepth int
	// MaxUpload caps the upload, in bytes/s, the peer asks of one relay,
	// whatever the relay reports. Default 1 MB/s.
	MaxUpload uint32
	// ProbeInterval is how often a session may probe its upload: the peer
	// measures a would-be relay's upload from how fast an upload probe
	// (RELAY-PROBE frames, at most 64 KiB) arrives, and invites no session
	// it has not measured. Default 10 min: a probe costs the peer 64 KiB
	// of download per session that offers to relay.
	ProbeInterval time.Duration
	// MinUptime is how long a session must have been ready to relay
	// (since its RELAY-READY) before it is invited: a tab that is about to
	// close is a poor relay. Default 30s.
	MinUptime time.Duration
	// HeadInterval is how often the peer tells each child fed by a relay
	// the newest sequence number of its topic (HEAD), and rebalances the
	// relay trees. A stalled relay is detected within two intervals.
	// Default 1s.
	HeadInterval time.Duration
	// Backlog is how many records of each relayed topic the peer keeps to
	// resume a reattaching child from. Default 1024.
	Backlog int
	// ReportQuorum is how many distinct children must report a relay
	// before it is isolated. Default 2: one lying child only moves itself.
	ReportQuorum int
	// StallIsolation is how long a relay isolated for stalling or
	// dropping is not invited again; it doubles with each isolation of the
	// same session, up to 64 times. One isolated for forging (a quorum of
	// children each holding a record whose signature fails) is never
	// invited again. Default 1 min: a stall may be the network's doing, or
	// a loaded peer's, and an honest relay is worth having back.
	StallIsolation time.Duration
	// SignalRate and SignalBurst limit the relay frames (SIGNAL,
	// RELAY-READY, RELAY-PROBE, FROM, REPORT) one session sends, per second; beyond
	// them a frame is refused with rate-limited. Defaults 20/s, burst 40:
	// a link's set-up takes a few.
	SignalRate  float64
	SignalBurst int
}

// DefaultRelayConfig returns the relay preset, still disabled: set
// Enabled.
func DefaultRelayConfig() RelayConfig {
	return RelayConfig{
		DirectBudget:   32,
		MaxChildren:    8,
		MaxDepth:       3,
		MaxUpload:      1 << 20,
		ProbeInterval:  10 * time.Minute,
		MinUptime:      30 * time.Second,
		HeadInterval:   time.Second,
		Backlog:        1024,
		ReportQuorum:   2,
		StallIsolation: time.Minute,
		SignalRate:     20,
		SignalBurst:    40,
	}
}

// validate reports what is wrong with an enabled relay configuration.
func (c *RelayConfig) validate(bad func(field, format string, args ...any)) {
	if !c.Enabled {
		return
	}
	check := func(field string, ok bool, v any) {
		if !ok {
			bad("Relay."+field, "%v, must be positive", v)
		}
	}
	check("DirectBudget", c.DirectBudget >= 0, c.DirectBudget)
	check("MaxChildren", c.MaxChildren >= 1 && c.MaxChildren <= 255, c.MaxChildren)
	check("MaxDepth", c.MaxDepth >= 2, c.MaxDepth)
	check("MaxUpload", c.MaxUpload > 0, c.MaxUpload)
	check("ProbeInterval", c.ProbeInterval > 0, c.ProbeInterval)
	check("MinUptime", c.MinUptime >= 0, c.MinUptime)
	check("HeadInterval", c.HeadInterval > 0, c.HeadInterval)
	check("Backlog", c.Backlog >= 1, c.Backlog)
	check("ReportQuorum", c.ReportQuorum >= 1, c.ReportQuorum)
	check("StallIsolation", c.StallIsolation > 0, c.StallIsolation)
	check("SignalRate/SignalBurst", c.SignalRate > 0 && c.SignalBurst >= 1, fmt.Sprintf("%v/%d", c.SignalRate, c.SignalBurst))
}
