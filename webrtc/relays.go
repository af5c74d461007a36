package webrtc

import (
	"bytes"
	"cmp"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// relays is the peer side of browser relays (docs/browser-protocol.md,
// section 8): which sessions may relay, one tree per relayed topic, the
// links between browsers it signals, and the loop that keeps the trees
// within their budgets.
//
// Locks: a tree's mu is taken before relays.mu, never after; nothing is
// sent to a session while relays.mu is held (a send may close the
// session, whose close reports here).
type relays struct {
	srv  *Server
	cfg  RelayConfig
	key  ed25519.PrivateKey
	pub  ed25519.PublicKey
	m    *relayMetrics
	log  *slog.Logger
	kick chan struct{}

	mu       sync.Mutex
	ready    map[*session]*readiness
	limits   map[*session]*rate.Limiter // relay frame budget of each session that sent one
	probes   map[*session]*probe        // upload probes, under way or done
	isolated map[*session]*isolation
	trees    map[string]*tree
	links    map[uint32]*link
	nextLink uint32
	gone     []*session

	// testHookRound, set by tests, is called after every round.
	testHookRound atomic.Pointer[func()]
}

// readiness is a session's RELAY-READY.
type readiness struct {
	offered     uint32 // what the browser said it can spare, bytes/s
	upload      uint32 // min(offered, what its probe measured); 0: not measured
	maxChildren int
	metered     bool
	at          time.Time
}

// probe is a session's upload probe (RELAY-PROBE frames): the peer sends
// a nonce and times the chunks that carry it back, so a browser's upload
// is measured here, not taken from its word, and no chunk can have left
// the browser before the clock started.
type probe struct {
	started time.Time // when the nonce of the probe under way, or of the last one, went out
	nonce   []byte    // of the probe under way; nil: none under way
	bytes   int       // padding received in this probe
	upload  uint32    // the last completed probe's result, bytes/s
}

// link is a browser-to-browser connection the peer signals.
type link struct {
	topic        string
	child, relay *session
	signals      int
}

// maxSignalsPerLink bounds the SIGNAL frames one link may take: an offer,
// an answer, candidates and a close.
const maxSignalsPerLink = 32

func newRelays(srv *Server) (*relays, error) {
	m, err := newRelayMetrics(srv.cfg.Registerer)
	if err != nil {
		return nil, err
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("relay key: %w", err)
	}
	log := srv.cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &relays{
		srv: srv, cfg: srv.cfg.Relay, key: key, pub: pub, m: m,
		log:      log.With("component", "webrtc.relay"),
		kick:     make(chan struct{}, 1),
		ready:    make(map[*session]*readiness),
		limits:   make(map[*session]*rate.Limiter),
		probes:   make(map[*session]*probe),
		isolated: make(map[*session]*isolation),
		trees:    make(map[string]*tree),
		links:    make(map[uint32]*link),
	}, nil
}

// start runs the loop if relays are on. Called by New.
func (rs *relays) start() {
	if !rs.cfg.Enabled {
		return
	}
	rs.srv.wg.Add(1)
	go rs.run()
}

// run rebalances the trees on every event and every HeadInterval, when it
// also sends the HEADs.
func (rs *relays) run() {
	defer rs.srv.wg.Done()
	tick := time.NewTicker(rs.cfg.HeadInterval)
	defer tick.Stop()
	for {
		select {
		case <-rs.srv.ctx.Done():
			return
		case <-tick.C:
			rs.round(true)
		case <-rs.kick:
			rs.round(false)
		}
	}
}

// sessionGone is called by a closing session.
func (rs *relays) sessionGone(s *session) {
	if !rs.cfg.Enabled {
		return
	}
	rs.mu.Lock()
	rs.gone = append(rs.gone, s)
	rs.mu.Unlock()
	signal(rs.kick)
}

// treeOf returns topic's tree, nil if the topic is not relayed.
func (rs *relays) treeOf(topic string) *tree {
	if !rs.cfg.Enabled {
		return nil
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.trees[topic]
}

// round forgets the sessions gone, then brings every topic followed by
// more sessions than DirectBudget, or relayed already, within budget.
func (rs *relays) round(heads bool) {
	rs.mu.Lock()
	for _, s := range rs.gone {
		delete(rs.ready, s)
		delete(rs.limits, s)
		delete(rs.probes, s)
		delete(rs.isolated, s)
	}
	for id, l := range rs.links {
		if slices.Contains(rs.gone, l.child) || slices.Contains(rs.gone, l.relay) {
			delete(rs.links, id)
		}
	}
	rs.gone = nil
	rs.mu.Unlock()

	var relaysN, via, direct, depth int
	for topic, subs := range rs.srv.bridge.followed() {
		rs.mu.Lock()
		t := rs.trees[topic]
		if t == nil && len(subs) > rs.cfg.DirectBudget {
			t = newTree(topic, rs.cfg.Backlog)
			rs.trees[topic] = t
		}
		rs.mu.Unlock()
		if t == nil {
			continue
		}
		t.mu.Lock()
		if heads {
			t.measure(rs.cfg.HeadInterval)
			t.sendHeads()
		}
		t.rebalance(rs, subs)
		st := t.status()
		t.mu.Unlock()
		relaysN += st.Relays
		via += st.ViaRelays
		direct += st.members - st.ViaRelays
		depth = max(depth, st.MaxDepth)
	}
	// Trees of topics nobody follows any more.
	followed := rs.srv.bridge.followed()
	rs.mu.Lock()
	for topic := range rs.trees {
		if _, ok := followed[topic]; !ok {
			delete(rs.trees, topic)
		}
	}
	rs.mu.Unlock()
	rs.m.relays.Set(float64(relaysN))
	rs.m.viaRelays.Set(float64(via))
	rs.m.directMembers.Set(float64(direct))
	rs.m.maxDepth.Set(float64(depth))
	if h := rs.testHookRound.Load(); h != nil {
		(*h)()
	}
}

// onFrame handles a relay frame from session s, on its read goroutine.
func (rs *relays) onFrame(s *session, f *frame) {
	if !rs.cfg.Enabled {
		s.reject(f.req, CodeRelayRefused, f.topic, "this peer does not use browser relays")
		return
	}
	// One budget for every relay frame a session sends: each costs the
	// peer a look-up under a lock, some a rebalance of the trees.
	rs.mu.Lock()
	if s.isClosed() {
		// Its sessionGone may have run already: keep nothing for it.
		rs.mu.Unlock()
		return
	}
	lim := rs.limits[s]
	if lim == nil {
		lim = rate.NewLimiter(rate.Limit(rs.cfg.SignalRate), rs.cfg.SignalBurst)
		rs.limits[s] = lim
	}
	ok := lim.Allow()
	rs.mu.Unlock()
	if !ok {
		rs.m.signals.WithLabelValues(signalLimited).Inc()
		s.reject(f.req, CodeRateLimited, f.topic, fmt.Sprintf("more than %g relay frames per second", rs.cfg.SignalRate))
		return
	}
	switch f.typ {
	case frameRelayReady:
		rs.onReady(s, f)
	case frameProbe:
		rs.onProbe(s, f)
	case frameFrom:
		rs.onFrom(s, f)
	case frameReport:
		rs.onReport(s, f)
	case frameSignal:
		rs.onSignal(s, f)
	default:
		s.reject(f.req, CodeUnexpectedFrame, "", fmt.Sprintf("%s frames do not go from a client to its peer", f.typ))
	}
}

func (rs *relays) onReady(s *session, f *frame) {
	r := f.relay
	rs.mu.Lock()
	if s.isClosed() { // its sessionGone may have run: keep nothing for it
		rs.mu.Unlock()
		return
	}
	prev := rs.ready[s]
	var changed bool
	if r.maxChildren == 0 || r.upload == 0 {
		changed = prev != nil
		delete(rs.ready, s) // withdrawn: its children move at the next round
	} else {
		next := &readiness{offered: r.upload, maxChildren: int(r.maxChildren), metered: r.flags&relayFlagMetered != 0, at: rs.srv.now()}
		if p := rs.probes[s]; p != nil {
			next.upload = min(r.upload, p.upload)
		}
		if prev != nil {
			next.at = prev.at // uptime counts from the first READY
		}
		changed = prev == nil || *prev != *next
		rs.ready[s] = next
	}
	rs.mu.Unlock()
	s.ack(f.req)
	if changed {
		signal(rs.kick) // a READY that changes nothing costs no round
	}
}

// onProbe takes a RELAY-PROBE. The first of a probe asks for it: the
// peer answers with a RELAY-PROBE carrying a fresh nonce and starts the
// clock as it sends it. The browser then sends chunks of padding that
// begin with the nonce, the last one flagged; their bytes over the time
// from the nonce to the last chunk's arrival is the session's measured
// upload. It is a lower bound whatever the browser does: no chunk can
// leave before the nonce arrives, and a round trip and any wait on either
// side only add to the time (a link still opening its congestion window
// measures slower than it is). A probe carries at most maxProbeBytes, and
// a session starts at most one per ProbeInterval.
func (rs *relays) onProbe(s *session, f *frame) {
	r := f.relay
	now := rs.srv.now()
	rs.mu.Lock()
	if s.isClosed() { // its sessionGone may have run: keep nothing for it
		rs.mu.Unlock()
		return
	}
	p := rs.probes[s]
	if p == nil {
		p = &probe{}
		rs.probes[s] = p
	}
	if p.nonce == nil {
		if !p.started.IsZero() && now.Sub(p.started) < rs.cfg.ProbeInterval {
			rs.mu.Unlock()
			rs.m.probes.WithLabelValues(probeLimited).Inc()
			s.reject(f.req, CodeRateLimited, "", fmt.Sprintf("one upload probe per %v", rs.cfg.ProbeInterval))
			return
		}
		nonce := make([]byte, probeNonceSize)
		_, _ = rand.Read(nonce) // crypto/rand.Read does not fail
		p.nonce, p.bytes, p.started = nonce, 0, now
		rs.mu.Unlock()
		b, err := appendFrame(nil, &frame{typ: frameProbe, req: f.req, relay: &relayFields{probe: nonce}})
		if err != nil {
			rs.log.Error("cannot encode a probe nonce", "err", err)
			return
		}
		s.sendControl(b)
		return
	}
	if !bytes.HasPrefix(r.probe, p.nonce) {
		p.nonce = nil // abandoned; the interval still counts from its start
		rs.mu.Unlock()
		rs.m.probes.WithLabelValues(probeBadNonce).Inc()
		s.reject(f.req, CodeBadFrame, "", "an upload probe's chunks begin with the nonce the peer sent")
		return
	}
	p.bytes += len(r.probe)
	if p.bytes > maxProbeBytes {
		p.nonce = nil
		rs.mu.Unlock()
		rs.m.probes.WithLabelValues(probeTooLarge).Inc()
		s.reject(f.req, CodeRateLimited, "", fmt.Sprintf("an upload probe carries at most %d bytes", maxProbeBytes))
		return
	}
	if r.flags&probeFlagLast == 0 {
		rs.mu.Unlock()
		s.ack(f.req)
		return
	}
	p.nonce = nil
	p.upload = probeRate(p.bytes, now.Sub(p.started))
	upload := p.upload
	var changed bool
	if rd := rs.ready[s]; rd != nil {
		// A new readiness, not an update: capacity and invite read one
		// after letting go of rs.mu.
		next := *rd
		next.upload = min(rd.offered, upload)
		changed = next.upload != rd.upload
		rs.ready[s] = &next
	}
	rs.mu.Unlock()
	rs.m.probes.WithLabelValues(probeMeasured).Inc()
	rs.m.probeUpload.Observe(float64(upload))
	rs.log.Debug("upload probe", "session", s.id, "bytes_per_second", upload)
	s.ack(f.req)
	if changed {
		signal(rs.kick)
	}
}

// probeRate is n bytes over d in bytes/s, saturating; n bytes in no
// measurable time are faster than anything a relay is asked for.
func probeRate(n int, d time.Duration) uint32 {
	if n <= 0 {
		return 0
	}
	if d <= 0 {
		return math.MaxUint32
	}
	return uint32(min(float64(n)/d.Seconds(), math.MaxUint32))
}

// onFrom starts feeding records to a member the peer took back, after the
// sequence number it has.
func (rs *relays) onFrom(s *session, f *frame) {
	t := rs.treeOf(f.topic)
	if t == nil {
		s.reject(f.req, CodeRelayRefused, f.topic, "the topic is not relayed here")
		return
	}
	t.mu.Lock()
	m := t.members[s]
	if m == nil || m.feeder != nil {
		t.mu.Unlock()
		s.reject(f.req, CodeRelayRefused, f.topic, "not attached to this peer for the topic")
		return
	}
	if m.pending {
		m.pending = false
		t.changed()
		records, complete := t.after(f.relay.seq)
		if !complete {
			s.reject(0, CodeGap, f.topic, "resumed from before what the peer could replay: messages were lost")
		}
		if len(records) > 0 {
			s.deliver(f.topic, batchFrames(records, rs.srv.cfg.MaxFrameSize), records)
		}
	}
	t.mu.Unlock()
	s.ack(f.req)
}

func (rs *relays) onReport(s *session, f *frame) {
	t := rs.treeOf(f.topic)
	if t == nil {
		s.ack(f.req)
		return
	}
	r := f.relay
	rs.m.reports.WithLabelValues(r.reason.String()).Inc()
	t.mu.Lock()
	m := t.members[s]
	if m == nil || m.feeder == nil || m.link != r.link {
		// Stale: the child was moved already.
		t.mu.Unlock()
		s.ack(f.req)
		return
	}
	relay := m.feeder
	m.avoid[relay.s] = true
	rs.log.Debug("relay reported", "topic", f.topic, "relay", relay.s.id, "child", s.id, "reason", r.reason)
	switch r.reason {
	case ReportForged:
		if rs.forgery(f.topic, r.evidence) {
			relay.reporters[s] = ReportForged
		}
	case ReportStalled, ReportDropped:
		// Judged later: a relay whose own feed failed starves its
		// children too, and moves about when they report it.
		relay.suspect = append(relay.suspect, suspicion{s, rs.srv.now()})
	}
	t.place(rs, m, reattachReported)
	t.isolate(rs, relay)
	t.mu.Unlock()
	s.ack(f.req)
}

// suspicion is a stall or drop report awaiting judgment.
type suspicion struct {
	child *session
	at    time.Time
}

// movedGrace is how many HEAD intervals around a relay's own move its
// children's stall and drop reports do not count against it, and how
// long the peer waits to judge them.
const movedGrace = 5

// judge counts the stall and drop reports against r that have waited
// movedGrace intervals: those made while r was not itself moving (its own
// feed failing starves its children too). t.mu is held.
func (t *tree) judge(rs *relays, r *member) {
	grace := movedGrace * rs.cfg.HeadInterval
	now := rs.srv.now()
	kept := r.suspect[:0]
	for _, p := range r.suspect {
		switch {
		case now.Sub(p.at) < grace:
			kept = append(kept, p)
		case slices.ContainsFunc(r.moves, func(m time.Time) bool { d := m.Sub(p.at); return d > -grace && d < grace }):
			// r moved around then: its feed, not r, failed.
		default:
			r.reporters[p.child] = ReportStalled
		}
	}
	r.suspect = kept
	t.isolate(rs, r)
}

// isolation is a session's exclusion from relaying.
type isolation struct {
	until   time.Time // zero: for good
	times   int       // isolations so far
	forever bool
}

// maxIsolationDoublings caps the growth of StallIsolation: 2^6 = 64 times
// it (about an hour at the default).
const maxIsolationDoublings = 6

// isolate stops r relaying once ReportQuorum children reported it: for
// good if they all caught it forging, else for StallIsolation, doubled at
// each isolation (a stall or a drop may be the network's or the machine's
// doing, not the relay's: many honest relays of a loaded peer can be
// reported at once). t.mu is held.
func (t *tree) isolate(rs *relays, r *member) {
	if len(r.reporters) < rs.cfg.ReportQuorum || !r.relay {
		return
	}
	forged := 0
	for _, why := range r.reporters {
		if why == ReportForged {
			forged++
		}
	}
	now := rs.srv.now()
	rs.mu.Lock()
	iso := rs.isolated[r.s]
	if iso == nil {
		iso = &isolation{}
		rs.isolated[r.s] = iso
	}
	iso.forever = iso.forever || forged >= rs.cfg.ReportQuorum
	iso.until = now.Add(rs.cfg.StallIsolation << min(iso.times, maxIsolationDoublings))
	iso.times++
	rs.mu.Unlock()
	clear(r.reporters) // a relay invited again starts afresh
	rs.m.isolated.Inc()
	rs.log.Info("relay isolated after reports by its children", "topic", t.topic, "session", r.s.id,
		"forged", forged, "for_good", iso.forever, "until", iso.until, "depth", r.depth, "moves", len(r.moves))
	t.unrelay(rs, r, reattachIsolated)
}

// excluded reports whether s may not relay now. rs.mu is held.
func (rs *relays) excluded(s *session, now time.Time) bool {
	iso := rs.isolated[s]
	return iso != nil && (iso.forever || now.Before(iso.until))
}

// forgery reports whether evidence is a RECORD of topic whose signature
// fails: what a child that got a forged record sends. A valid record is a
// false report.
func (rs *relays) forgery(topic string, evidence []byte) bool {
	f, err := decodeFrame(evidence, rs.srv.cfg.MaxFrameSize)
	if err != nil || f.typ != frameRecord || f.topic != topic {
		return false
	}
	return verifyRecord(rs.pub, &f) != nil
}

// onSignal forwards a SIGNAL between the two ends of a link.
func (rs *relays) onSignal(s *session, f *frame) {
	r := f.relay
	rs.mu.Lock()
	l := rs.links[r.link]
	var to *session
	switch {
	case l == nil || l.topic != f.topic || l.signals >= maxSignalsPerLink:
	case s == l.child:
		to = l.relay
	case s == l.relay:
		to = l.child
	}
	if to != nil {
		l.signals++
	}
	rs.mu.Unlock()
	if to == nil {
		rs.m.signals.WithLabelValues(signalRefused).Inc()
		s.reject(0, CodeRelayRefused, f.topic, fmt.Sprintf("link %d is not one of this session's", r.link))
		return
	}
	b, err := appendFrame(nil, f)
	if err != nil {
		return
	}
	rs.m.signals.WithLabelValues(signalForwarded).Inc()
	to.sendControl(b)
}

// newLink records a link from child to relay for topic.
func (rs *relays) newLink(topic string, child, relay *session) uint32 {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.nextLink++
	if rs.nextLink == 0 {
		rs.nextLink = 1
	}
	rs.links[rs.nextLink] = &link{topic: topic, child: child, relay: relay}
	return rs.nextLink
}

func (rs *relays) dropLink(id uint32) {
	if id == 0 {
		return
	}
	rs.mu.Lock()
	delete(rs.links, id)
	rs.mu.Unlock()
}

// capacity is how many children r may feed now: its own and the peer's
// caps, and its upload over the topic's measured rate.
func (rs *relays) capacity(s *session, topicRate float64) int {
	now := rs.srv.now()
	rs.mu.Lock()
	r, iso := rs.ready[s], rs.excluded(s, now)
	rs.mu.Unlock()
	if r == nil || iso {
		return 0
	}
	return relayCapacity(rs.cfg, r, topicRate)
}

// relayCapacity is the children a relay that sent r may feed on a topic
// of topicRate bytes/s.
func relayCapacity(cfg RelayConfig, r *readiness, topicRate float64) int {
	n := min(cfg.MaxChildren, r.maxChildren)
	if topicRate > 0 {
		n = min(n, int(float64(min(r.upload, cfg.MaxUpload))/topicRate))
	}
	return max(n, 0)
}

// candidates returns the sessions among subs that may be invited to relay
// topic, fastest upload first.
func (rs *relays) candidates(subs []*session) []*session {
	now := rs.srv.now()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var out []*session
	for _, s := range subs {
		r := rs.ready[s]
		if r == nil || r.metered || r.upload == 0 || rs.excluded(s, now) || now.Sub(r.at) < rs.cfg.MinUptime {
			continue
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *session) int {
		return cmp.Or(cmp.Compare(rs.ready[b].upload, rs.ready[a].upload), cmp.Compare(a.id, b.id))
	})
	return out
}

// RelayStatus is how one topic's browsers are fed (GET /v1/status).
type RelayStatus struct {
	Topic string `json:"topic"`
	// Direct counts the sessions this peer feeds; ViaRelays those fed by
	// another browser; Relays those relaying.
	Direct    int `json:"direct"`
	ViaRelays int `json:"via_relays"`
	Relays    int `json:"relays"`
	// MaxDepth is the largest depth of a session (1: fed by this peer).
	MaxDepth int `json:"max_depth"`
	// Attachments counts the sessions (re)attached to a feeder.
	Attachments uint64 `json:"attachments"`

	members int
}

// RelayStatus returns, for each relayed topic, how its browsers are fed.
func (s *Server) RelayStatus() []RelayStatus {
	rs := s.relays
	rs.mu.Lock()
	trees := make([]*tree, 0, len(rs.trees))
	for _, t := range rs.trees {
		trees = append(trees, t)
	}
	rs.mu.Unlock()
	followed := s.bridge.followed()
	out := make([]RelayStatus, 0, len(trees))
	for _, t := range trees {
		t.mu.Lock()
		st := t.status()
		t.mu.Unlock()
		st.Direct = len(followed[t.topic]) - st.ViaRelays
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b RelayStatus) int { return cmp.Compare(a.Topic, b.Topic) })
	return out
}
