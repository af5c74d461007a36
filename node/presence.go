package node

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/immense-p2p/immense/internal/topicname"
	"github.com/immense-p2p/immense/overlay"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Presence: who follows a topic, for the topics Config.Presence names.
// A member is a browser, by its token's subject ("token:<sub>"), or a peer
// with a local subscriber (node.Subscribe, an SSE stream), by its peer id;
// each is listed with the peer it is on. Every peer with members on a
// topic announces them on the topic's presence topic ("_presence:" + the
// topic) every Interval, and at once (at most every presenceMinGap) when
// one joins or leaves; an announcement replaces that peer's previous one,
// and one not renewed within 3 Intervals expires. So every peer's view
// converges within about one Interval of a change, and within 3 Intervals
// of a peer's death (the bound docs/architecture.md states). Events are
// the differences between successive views.

// PresenceConfig turns presence on for some topics.
type PresenceConfig struct {
	// Topics are the topic patterns (a name, or a prefix and "*") with
	// presence. Empty: presence is off.
	Topics []string
	// Interval is how often a peer announces its members. Default 5 s: a
	// peer that died is gone from everyone's view within 15 s.
	Interval time.Duration
}

const (
	presencePrefix = topicname.InternalPrefix + "presence:"
	// presenceMinGap spaces a peer's announcements of one topic.
	presenceMinGap = 200 * time.Millisecond
	// maxPresenceMembers caps the members one announcement carries and
	// maxPresencePeers the peers one topic's view keeps, so a stranger's
	// announcements cost bounded memory.
	maxPresenceMembers = 1000
	maxPresencePeers   = 1024
	maxMemberID        = 256
	// maxPresenceTotal caps the members of one topic's view over all
	// peers: at most about maxPresenceTotal × maxMemberID bytes a topic.
	maxPresenceTotal = 20000
)

// ErrNoPresence is returned for a topic without presence (Config.Presence).
var ErrNoPresence = errors.New("presence is not on for this topic")

// Member is one member of a topic: ID is "token:<sub>" for a browser, or
// a peer id for a peer with a local subscriber; Peer is the peer it is on.
type Member struct {
	ID   string `json:"id"`
	Peer string `json:"peer"`
}

// PresenceEvent is a member joining or leaving a topic.
type PresenceEvent struct {
	Topic  string `json:"topic"`
	Member Member `json:"member"`
	Joined bool   `json:"joined"`
}

// announcement is the wire form of a peer's members of a topic (JSON).
type announcement struct {
	Members []string `json:"members"`
}

// decodeAnnouncement parses a presence message strictly and within the
// caps.
func decodeAnnouncement(b []byte) ([]string, error) {
	var a announcement
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("presence announcement: %w", err)
	}
	if dec.More() {
		return nil, errors.New("presence announcement: trailing data")
	}
	if len(a.Members) > maxPresenceMembers {
		return nil, fmt.Errorf("presence announcement: %d members, at most %d", len(a.Members), maxPresenceMembers)
	}
	for _, m := range a.Members {
		if m == "" || len(m) > maxMemberID {
			return nil, fmt.Errorf("presence announcement: member id of %d bytes", len(m))
		}
	}
	return a.Members, nil
}

// presence tracks the presence topics of a node.
type presence struct {
	n   *Node
	cfg PresenceConfig

	mu     sync.Mutex
	topics map[string]*presenceTopic
}

// presenceTopic is one topic's view. Guarded by presence.mu.
type presenceTopic struct {
	name   string
	local  map[string]int            // member id -> local subscriptions
	remote map[peer.ID]remoteMembers // ids sorted, without duplicates
	// remoteTotal is the members of remote, summed; no announcement in
	// remote expires before nextExpiry.
	remoteTotal int
	nextExpiry  time.Time
	view        map[Member]struct{}
	watchers    map[chan PresenceEvent]struct{}
	cancel      context.CancelFunc // ends the presence subscription
	kick        chan struct{}      // a local change to announce
}

// setRemote records from's announced members until expires, unless that
// would take the topic over its budgets, and tells the watchers what
// changed: only from's members are compared, so an announcement costs in
// proportion to its own size, not the topic's. p.mu must be held.
func (p *presence) setRemote(t *presenceTopic, from peer.ID, ids []string, expires time.Time) bool {
	old, known := t.remote[from]
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	if len(ids) > 0 {
		if !known && len(t.remote) >= maxPresencePeers {
			return false
		}
		if t.remoteTotal+len(ids)-len(old.ids) > maxPresenceTotal {
			return false
		}
	}
	var events []PresenceEvent
	change := func(id string, joined bool) {
		m := Member{ID: id, Peer: from.String()}
		if joined {
			t.view[m] = struct{}{}
		} else {
			delete(t.view, m)
		}
		events = append(events, PresenceEvent{Topic: t.name, Member: m, Joined: joined})
	}
	for _, id := range old.ids { // both sorted
		if _, ok := slices.BinarySearch(ids, id); !ok {
			change(id, false)
		}
	}
	for _, id := range ids {
		if _, ok := slices.BinarySearch(old.ids, id); !ok {
			change(id, true)
		}
	}
	t.remoteTotal += len(ids) - len(old.ids)
	if len(ids) == 0 {
		delete(t.remote, from)
	} else {
		t.remote[from] = remoteMembers{ids: ids, expires: expires}
		if t.nextExpiry.IsZero() || expires.Before(t.nextExpiry) {
			t.nextExpiry = expires
		}
	}
	p.tell(t, events)
	return true
}

type remoteMembers struct {
	ids     []string
	expires time.Time
}

func newPresence(n *Node, cfg PresenceConfig) *presence {
	if cfg.Interval == 0 {
		cfg.Interval = 5 * time.Second
	}
	return &presence{n: n, cfg: cfg, topics: make(map[string]*presenceTopic)}
}

func (c PresenceConfig) validate() []error {
	var errs []error
	for _, p := range c.Topics {
		if err := topicname.CheckPattern(p); err != nil {
			errs = append(errs, fmt.Errorf("Presence.Topics: %w", err))
		}
	}
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("Presence.Interval must be >= 0, got %v", c.Interval))
	}
	return errs
}

// on reports whether topic has presence.
func (p *presence) on(topic string) bool {
	return p != nil && topicname.Match(p.cfg.Topics, topic) && overlay.ValidateTopic(presencePrefix+topic) == nil
}

// topic returns topic's state, starting its presence subscription and
// announcer if needed. p.mu must be held.
func (p *presence) topic(name string) (*presenceTopic, error) {
	if t := p.topics[name]; t != nil {
		return t, nil
	}
	sub, err := p.n.overlay.Subscribe(presencePrefix + name)
	if err != nil {
		return nil, fmt.Errorf("presence of %q: %w", name, err)
	}
	ctx, cancel := context.WithCancel(p.n.ctx)
	t := &presenceTopic{name: name, local: map[string]int{}, remote: map[peer.ID]remoteMembers{},
		view: map[Member]struct{}{}, watchers: map[chan PresenceEvent]struct{}{}, cancel: cancel, kick: make(chan struct{}, 1)}
	p.topics[name] = t
	p.n.wg.Add(2)
	go p.receive(ctx, t, sub)
	go p.announce(ctx, t)
	return t, nil
}

// join and leave count a local member of topic.
func (p *presence) join(topic, id string) {
	if !p.on(topic) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t, err := p.topic(topic)
	if err != nil {
		p.n.log.Warn("presence", "topic", topic, "err", err)
		return
	}
	if t.local[id]++; t.local[id] == 1 {
		p.changeLocal(t, id, true)
	}
	signalKick(t.kick)
}

func (p *presence) leave(topic, id string) {
	if !p.on(topic) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.topics[topic]
	if t == nil || t.local[id] == 0 {
		return
	}
	if t.local[id]--; t.local[id] == 0 {
		delete(t.local, id)
		p.changeLocal(t, id, false)
	}
	signalKick(t.kick)
}

// changeLocal puts local member id into t's view or takes it out, and
// tells the watchers. p.mu must be held.
func (p *presence) changeLocal(t *presenceTopic, id string, joined bool) {
	m := Member{ID: id, Peer: p.n.host.ID().String()}
	if joined {
		t.view[m] = struct{}{}
	} else {
		delete(t.view, m)
	}
	p.tell(t, []PresenceEvent{{Topic: t.name, Member: m, Joined: joined}})
}

func signalKick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// expire drops the announcements not renewed in time, and their members.
// Nothing expires before t.nextExpiry, so most calls return at once; a
// scan looks at each peer, not each member. p.mu must be held.
func (p *presence) expire(t *presenceTopic, now time.Time) {
	if now.Before(t.nextExpiry) {
		return
	}
	t.nextExpiry = time.Time{}
	for from, r := range t.remote {
		switch {
		case now.After(r.expires):
			p.setRemote(t, from, nil, time.Time{})
		case t.nextExpiry.IsZero() || r.expires.Before(t.nextExpiry):
			t.nextExpiry = r.expires
		}
	}
}

// tell sends events to t's watchers. p.mu must be held.
func (p *presence) tell(t *presenceTopic, events []PresenceEvent) {
	for ch := range t.watchers {
		for _, e := range events {
			select {
			case ch <- e:
			default: // a watcher that does not keep up misses events; Presence has the view
			}
		}
	}
}

// receive applies other peers' announcements.
func (p *presence) receive(ctx context.Context, t *presenceTopic, sub *overlay.Subscription) {
	defer p.n.wg.Done()
	defer sub.Cancel()
	for {
		m, err := sub.Next(ctx)
		if err != nil {
			return
		}
		// A browser's message relayed on the presence topic would file
		// its made-up list under its peer's id: only peers announce.
		if m.From == p.n.host.ID() || m.Sender.Kind == overlay.SenderBrowser {
			continue
		}
		ids, err := decodeAnnouncement(m.Data)
		if err != nil {
			p.n.log.Debug("bad presence announcement", "topic", t.name, "from", m.From, "err", err)
			continue
		}
		p.mu.Lock()
		now := time.Now()
		p.expire(t, now)
		if !p.setRemote(t, m.From, ids, now.Add(3*p.cfg.Interval)) {
			p.n.log.Debug("presence announcement refused: topic view full", "topic", t.name, "from", m.From, "members", len(ids))
		}
		p.mu.Unlock()
	}
}

// announce publishes this peer's members of t every Interval (from a
// random point of the first, so peers do not announce in step) and on
// every local change, and expires others' announcements. It ends the
// topic once it has neither local members nor watchers, after announcing
// that it has none.
func (p *presence) announce(ctx context.Context, t *presenceTopic) {
	defer p.n.wg.Done()
	tick := time.NewTimer(time.Duration(rand.Int64N(int64(p.cfg.Interval))))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			tick.Reset(p.cfg.Interval)
		case <-t.kick:
		}
		p.mu.Lock()
		p.expire(t, time.Now())
		ids := make([]string, 0, len(t.local))
		for id := range t.local {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		done := len(t.local) == 0 && len(t.watchers) == 0
		if done {
			delete(p.topics, t.name)
			t.cancel()
		}
		p.mu.Unlock()
		b, _ := json.Marshal(announcement{Members: ids[:min(len(ids), maxPresenceMembers)]})
		pctx, cancel := context.WithTimeout(p.n.ctx, p.cfg.Interval)
		if err := p.n.overlay.Publish(pctx, presencePrefix+t.name, b); err != nil {
			p.n.log.Debug("presence announcement", "topic", t.name, "err", err)
		}
		cancel()
		if done {
			return
		}
		select { // space announcements
		case <-ctx.Done():
			return
		case <-time.After(presenceMinGap):
		}
	}
}

// Presence returns the members of topic as this node sees them, sorted.
// The node must follow the topic's presence: it does while it has local
// members or watchers; otherwise the view is empty.
func (n *Node) Presence(topic string) ([]Member, error) {
	if !n.presence.on(topic) {
		return nil, fmt.Errorf("%w: %q", ErrNoPresence, topic)
	}
	p := n.presence
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Member
	if t := p.topics[topic]; t != nil {
		p.expire(t, time.Now())
		for m := range t.view {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Peer, b.Peer)) })
	return out, nil
}

// WatchPresence follows the presence of topic: a join event for every
// current member first, then joins and leaves as they happen, until ctx
// ends (the channel is then closed). A watcher that falls more than 256 events behind misses some
// (Presence has the whole view).
func (n *Node) WatchPresence(ctx context.Context, topic string) (<-chan PresenceEvent, error) {
	if !n.presence.on(topic) {
		return nil, fmt.Errorf("%w: %q", ErrNoPresence, topic)
	}
	p := n.presence
	ch := make(chan PresenceEvent, 256)
	p.mu.Lock()
	t, err := p.topic(topic)
	if err != nil {
		p.mu.Unlock()
		return nil, err
	}
	for m := range t.view {
		select {
		case ch <- PresenceEvent{Topic: topic, Member: m, Joined: true}:
		default:
		}
	}
	t.watchers[ch] = struct{}{}
	p.mu.Unlock()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		select {
		case <-ctx.Done():
		case <-n.ctx.Done():
		}
		p.mu.Lock()
		delete(t.watchers, ch)
		close(ch)
		signalKick(t.kick)
		p.mu.Unlock()
	}()
	return ch, nil
}
