package webrtc

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// tree is one relayed topic: its signed records, and who feeds whom.
// Everything in it is guarded by mu, which also serialises the topic's
// fan-out with (re)attachments and resumes, so that a member switching
// feeder is sent each record exactly once, in order.
type tree struct {
	topic string
	mu    sync.Mutex

	seq     uint64   // the last sequence number stamped
	backlog []record // the newest records, oldest first, at most cap
	cap     int
	bytes   int64   // record bytes since the last measure
	rate    float64 // bytes/s, smoothed
	members map[*session]*member
	attach  uint64 // attachments made

	// The fan-out's targets (relayfeed.go) for the subscriber list
	// targetsOf; targetsOK is cleared by every change of a member's feed.
	targetsOf  *subscribers
	targetsOK  bool
	fed, plain []*session
}

// changed invalidates the fan-out's targets. t.mu is held.
func (t *tree) changed() { t.targetsOK = false }

type record struct {
	seq uint64
	b   []byte
}

// member is a session in a tree: fed by the peer (feeder nil) or by a
// relay, and maybe a relay itself.
type member struct {
	s       *session
	feeder  *member     // nil: the peer
	link    uint32      // the link to feeder
	depth   int         // 1: fed by the peer
	pending bool        // the peer feeds it once it says FROM
	relay   bool        // invited to relay
	moves   []time.Time // its latest moves its feed caused, oldest first

	children  []*member
	reporters map[*session]ReportReason // children whose reports against it count
	suspect   []suspicion               // stall and drop reports not judged yet
	avoid     map[*session]bool         // relays it reported
}

func newTree(topic string, backlog int) *tree {
	return &tree{topic: topic, cap: backlog, members: make(map[*session]*member)}
}

func newMember(s *session) *member {
	return &member{s: s, depth: 1, reporters: make(map[*session]ReportReason), avoid: make(map[*session]bool)}
}

// stamp signs msgs as the next records and keeps them in the backlog.
func (t *tree) stamp(rs *relays, msgs []Message) [][]byte {
	out := make([][]byte, 0, len(msgs))
	for i := range msgs {
		b, err := signRecord(rs.key, t.seq+1, &msgs[i])
		if err != nil || len(b) > rs.srv.cfg.MaxFrameSize {
			continue
		}
		t.seq++
		t.bytes += int64(len(b))
		t.backlog = append(t.backlog, record{t.seq, b})
		out = append(out, b)
	}
	if len(t.backlog) > 2*t.cap {
		t.backlog = append(t.backlog[:0:0], t.backlog[len(t.backlog)-t.cap:]...)
	}
	rs.m.records.Add(float64(len(out)))
	return out
}

// after returns the records after seq the backlog holds, and whether they
// are all of them.
func (t *tree) after(seq uint64) ([][]byte, bool) {
	if len(t.backlog) > t.cap {
		t.backlog = append(t.backlog[:0:0], t.backlog[len(t.backlog)-t.cap:]...)
	}
	i, _ := slices.BinarySearchFunc(t.backlog, seq+1, func(r record, s uint64) int { return cmp.Compare(r.seq, s) })
	complete := seq >= t.seq || (len(t.backlog) > 0 && t.backlog[0].seq <= seq+1)
	out := make([][]byte, 0, len(t.backlog)-i)
	for _, r := range t.backlog[i:] {
		out = append(out, r.b)
	}
	return out, complete
}

// measure updates the topic's rate from the bytes stamped over interval.
func (t *tree) measure(interval time.Duration) {
	r := float64(t.bytes) / interval.Seconds()
	t.rate = (t.rate + r) / 2
	t.bytes = 0
}

// sendHeads tells each member fed by a relay the last sequence number.
func (t *tree) sendHeads() {
	if t.seq == 0 {
		return
	}
	b, err := appendFrame(nil, &frame{typ: frameHead, topic: t.topic, relay: &relayFields{seq: t.seq}})
	if err != nil {
		return
	}
	for _, m := range t.members {
		if m.feeder != nil {
			m.s.sendControl(b)
		}
	}
}

// rebalance brings the tree within its budgets: members that left are
// removed and their children moved, relays over budget shed children,
// and sessions beyond DirectBudget go under relays, inviting more if
// needed.
func (t *tree) rebalance(rs *relays, subs []*session) {
	defer t.changed()
	following := make(map[*session]bool, len(subs))
	for _, s := range subs {
		following[s] = true
	}
	var orphans []*member
	for s, m := range t.members {
		if following[s] && !s.isClosed() {
			continue
		}
		t.detach(rs, m)
		delete(t.members, s)
		orphans = append(orphans, m.children...)
		for _, c := range m.children {
			c.feeder = nil
		}
		m.children = nil
	}
	for _, c := range orphans {
		if t.members[c.s] != nil {
			t.place(rs, c, reattachLeft)
		}
	}
	for _, m := range t.sorted() {
		if len(m.suspect) > 0 {
			t.judge(rs, m)
		}
		if !m.relay {
			continue
		}
		n := rs.capacity(m.s, t.rate)
		switch {
		case n == 0:
			t.unrelay(rs, m, reattachLeft)
		case len(m.children) > n:
			excess := slices.Clone(m.children[n:])
			for _, c := range excess {
				t.place(rs, c, reattachBudget)
			}
		}
	}

	var plain []*session
	for _, s := range subs {
		if t.members[s] == nil {
			plain = append(plain, s)
		}
	}
	direct := len(plain)
	for _, m := range t.members {
		if m.feeder == nil {
			direct++
		}
	}
	need := direct - rs.cfg.DirectBudget
	if need <= 0 {
		return
	}
	cands := rs.candidates(subs)
	if free := t.free(rs); free < need {
		for _, s := range cands {
			if free >= need {
				break
			}
			m := t.members[s]
			if m != nil && (m.relay || m.depth >= rs.cfg.MaxDepth) {
				continue
			}
			if m == nil {
				m = newMember(s)
				t.members[s] = m
				plain = slices.DeleteFunc(plain, func(p *session) bool { return p == s })
			}
			m.relay = true
			free += rs.capacity(s, t.rate)
			t.invite(rs, m)
			if m.feeder == nil && !m.pending {
				// A new relay goes under another if one has room, so
				// that it adds no session to the peer's own.
				if r := t.pick(rs, m); r != nil {
					t.attachTo(rs, m, r, t.seq, reattachJoin)
					need--
				} else {
					// Fed by the peer, from the records after its
					// position: until now it got MESSAGE frames, so it
					// must be told where the records start, or a later
					// move "from where it is" replays it the backlog.
					m.pending = true
					t.send(rs, m, 0, t.seq)
				}
			}
		}
	}
	slices.SortFunc(plain, func(a, b *session) int { return cmp.Compare(a.id, b.id) })
	for _, s := range plain {
		if need <= 0 {
			break
		}
		if slices.Contains(cands, s) {
			continue // kept to be invited: a leaf at the bottom could not relay
		}
		m := newMember(s)
		r := t.pick(rs, m)
		if r == nil {
			break
		}
		t.members[s] = m
		t.attachTo(rs, m, r, t.seq, reattachJoin)
		need--
	}
	// Still over budget: the relays the peer feeds go under other relays,
	// with their children, newest first.
	ms := t.sorted()
	slices.Reverse(ms)
	for _, m := range ms {
		if need <= 0 {
			break
		}
		if m.feeder != nil || m.pending {
			continue
		}
		if r := t.pick(rs, m); r != nil {
			t.detach(rs, m)
			t.attachTo(rs, m, r, 0, reattachBudget)
			need--
		}
	}
}

// free counts the free child slots of the relays that can take a plain
// session.
func (t *tree) free(rs *relays) int {
	n := 0
	for _, m := range t.members {
		if m.relay && m.depth < rs.cfg.MaxDepth {
			n += max(0, rs.capacity(m.s, t.rate)-len(m.children))
		}
	}
	return n
}

// sorted returns the members in session order, so that decisions do not
// depend on map order.
func (t *tree) sorted() []*member {
	ms := make([]*member, 0, len(t.members))
	for _, m := range t.members {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b *member) int { return cmp.Compare(a.s.id, b.s.id) })
	return ms
}

// pick returns the relay m should be attached to, nil if none has room:
// the shallowest with a free slot, not m or below it, not one m reported,
// and deep enough room for m's own subtree.
func (t *tree) pick(rs *relays, m *member) *member {
	h := height(m)
	if m.relay {
		h = max(h, 2) // room below it for children of its own
	}
	var best *member
	for _, r := range t.members {
		if !r.relay || r == m || m.avoid[r.s] || r.depth+h > rs.cfg.MaxDepth {
			continue
		}
		// The shallowest, then the oldest session: the same choice
		// whatever the map's order.
		if best != nil && (r.depth > best.depth || r.depth == best.depth && r.s.id > best.s.id) {
			continue
		}
		if isBelow(r, m) || len(r.children) >= rs.capacity(r.s, t.rate) {
			continue
		}
		best = r
	}
	return best
}

// place finds m a new feeder: a relay if one has room, else the peer.
func (t *tree) place(rs *relays, m *member, reason string) {
	t.detach(rs, m)
	if r := t.pick(rs, m); r != nil {
		t.attachTo(rs, m, r, 0, reason)
		return
	}
	t.changed()
	m.feeder, m.link, m.pending = nil, 0, true
	m.moved(rs.srv.now(), reason)
	setDepth(m, 1)
	t.attach++
	rs.m.reattached.WithLabelValues(reason).Inc()
	t.send(rs, m, 0, 0)
}

// attachTo makes r feed m, from sequence from (0: m knows where it is).
func (t *tree) attachTo(rs *relays, m, r *member, from uint64, reason string) {
	t.changed()
	m.feeder, m.pending = r, false
	m.moved(rs.srv.now(), reason)
	m.link = rs.newLink(t.topic, m.s, r.s)
	r.children = append(r.children, m)
	setDepth(m, r.depth+1)
	t.attach++
	rs.m.reattached.WithLabelValues(reason).Inc()
	t.send(rs, m, m.link, from)
}

func (t *tree) send(rs *relays, m *member, link uint32, from uint64) {
	b, err := appendFrame(nil, &frame{typ: frameAttach, topic: t.topic, relay: &relayFields{link: link, seq: from, key: rs.pub}})
	if err == nil {
		m.s.sendControl(b)
	}
}

func (t *tree) invite(rs *relays, m *member) {
	rs.mu.Lock()
	r := rs.ready[m.s]
	rs.mu.Unlock()
	if r == nil {
		return
	}
	b, err := appendFrame(nil, &frame{typ: frameRelayInvite, topic: t.topic, relay: &relayFields{
		maxChildren: uint8(relayCapacity(rs.cfg, r, 0)), upload: min(r.upload, rs.cfg.MaxUpload), key: rs.pub}})
	if err == nil {
		m.s.sendControl(b)
	}
}

// detach takes m from its feeder's children.
func (t *tree) detach(rs *relays, m *member) {
	if f := m.feeder; f != nil {
		f.children = slices.DeleteFunc(f.children, func(c *member) bool { return c == m })
	}
	rs.dropLink(m.link)
	t.changed()
	m.feeder, m.link = nil, 0
}

// unrelay stops r relaying and moves its children.
func (t *tree) unrelay(rs *relays, r *member, reason string) {
	r.relay = false
	t.changed()
	children := r.children
	r.children = nil
	for _, c := range children {
		c.feeder = nil
		rs.dropLink(c.link)
		c.link = 0
		t.place(rs, c, reason)
	}
}

func (t *tree) status() RelayStatus {
	st := RelayStatus{Topic: t.topic, Attachments: t.attach, members: len(t.members)}
	for _, m := range t.members {
		if m.relay {
			st.Relays++
		}
		if m.feeder != nil {
			st.ViaRelays++
		}
		st.MaxDepth = max(st.MaxDepth, m.depth)
	}
	return st
}

// maxMoves is how many of a member's moves it remembers.
const maxMoves = 4

// moved records a move that its feed failing caused (which excuses its
// children's reports around then); a move the peer chose does not.
func (m *member) moved(at time.Time, reason string) {
	if reason == reattachJoin || reason == reattachBudget {
		return
	}
	if len(m.moves) == maxMoves {
		m.moves = append(m.moves[:0], m.moves[1:]...)
	}
	m.moves = append(m.moves, at)
}

func setDepth(m *member, d int) {
	m.depth = d
	for _, c := range m.children {
		setDepth(c, d+1)
	}
}

// height is the levels of m's subtree, m included.
func height(m *member) int {
	h := 0
	for _, c := range m.children {
		h = max(h, height(c))
	}
	return h + 1
}

// isBelow reports whether r is in m's subtree.
func isBelow(r, m *member) bool {
	for f := r.feeder; f != nil; f = f.feeder {
		if f == m {
			return true
		}
	}
	return false
}
