package webrtc

import "time"

// Pacing: when a topic's fan-out round to its data channel sessions goes
// out. Every data channel message costs the server a packet per browser
// (SCTP, DTLS encryption, a system call, the browser's acknowledgement to
// read) whatever its size, so holding messages for a moment and sending
// them as one BATCH divides that cost by the messages per round. Holding
// costs latency, so it is done only when the topic's packet rate needs
// it: a round goes out at once unless the previous one was less than
// gap(k) ago, and gap(k) grows with the number of data channel sessions k,
// so that the rounds of a topic cost at most packetRate packets a second.
// A topic with few browsers or few messages is never held; a busy topic
// with many browsers is held up to maxHold.

// pacer is the pacing decision of one topic's fan-out. It has no clock of
// its own: every call is given the time, so that it can be tested (and
// simulated) without one.
type pacer struct {
	// maxHold bounds the gap between rounds, hence how long a message
	// waits (Config.FanoutInterval).
	maxHold time.Duration
	// packetRate is the data channel packets a second the topic's rounds
	// aim to stay under (Config.FanoutPacketRate); 0 holds every round
	// maxHold after the last.
	packetRate float64
	// last is when the last round to data channel sessions went out.
	last time.Time
}

// gap is the least time between two rounds to k data channel sessions:
// k/packetRate, at most maxHold.
func (p *pacer) gap(k int) time.Duration {
	if p.packetRate <= 0 {
		return p.maxHold
	}
	g := time.Duration(float64(k) / p.packetRate * float64(time.Second))
	return min(g, p.maxHold)
}

// due is when the next round to k data channel sessions may go out.
func (p *pacer) due(k int) time.Time { return p.last.Add(p.gap(k)) }

// ready reports whether a round to k sessions may go out at now.
func (p *pacer) ready(now time.Time, k int) bool { return !now.Before(p.due(k)) }

// sent records a round that went out at now.
func (p *pacer) sent(now time.Time) { p.last = now }
