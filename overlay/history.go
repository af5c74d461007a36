package overlay

import (
	"container/list"
	"crypto/ed25519"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/immense-p2p/immense/internal/topicname"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/peer"
)

// History. Every peer subscribed to a topic with history keeps the topic's
// recent window: at most Limits.Messages messages and Limits.Bytes bytes,
// none older than Limits.TTL, in position order (position.go). A peer that
// subscribes to a topic fetches the window from a few other subscribers
// (historywire.go, /immense/history/1.0.0) and merges it with what
// arrives live, by position, without duplicates. The window is what
// resume replays (Overlay.History): a subscriber that comes back after a
// disconnect, to this peer or to another, gets exactly what it missed if
// its resume point is still inside the window, and is told so otherwise.
//
// Each window has a floor: the peer holds every message positioned after
// it (as far as gossip delivered them). It starts at the time the peer
// subscribed, moves back to a neighbour's floor when that neighbour's
// window is merged, and moves forward past every message the limits evict.
// A resume point at or after the floor is recovered; one before it is a
// gap.
//
// The peer stays subscribed to a topic for Limits.TTL after its last local
// subscriber left (a page reload, a browser moving between peers), so the
// window has no hole when they come back. The budgets of HistoryConfig cap
// the windows all topics hold together, so a flood of fresh topics costs
// at most MaxBytes; beyond MaxTopics a topic simply has no window.

// HistoryLimits bounds one topic's window. Messages 0 means no history.
type HistoryLimits struct {
	Messages int
	Bytes    int
	TTL      time.Duration
}

// HistoryRule gives the topics matching Pattern (a name, or a prefix and
// a trailing "*", as internal/topicname) their own limits.
type HistoryRule struct {
	Pattern string
	Limits  HistoryLimits
}

// HistoryConfig configures history (see above).
type HistoryConfig struct {
	// Default applies to topics no rule matches. Default 100 messages,
	// 1 MiB, 5 min: a chat room's last screenful, enough for a page
	// reload or a peer restart. The zero value turns history off.
	Default HistoryLimits
	// Topics are per-pattern limits, the first match wins.
	Topics []HistoryRule
	// MaxTopics caps the topics that keep a window at once. Default 1024.
	MaxTopics int
	// MaxBytes caps the bytes all windows hold together; beyond it the
	// oldest messages of the least recently written topic go first.
	// Default 64 MiB.
	MaxBytes int
	// FetchPeers is how many subscribers a peer asks for a topic's window
	// when it subscribes. Default 3: one slow or lying peer does not
	// leave a hole. 0 fetches nothing.
	FetchPeers int
	// FetchTimeout bounds the wait for the topic's first subscribers and
	// each fetch, on both sides (a served request gets it too, or 5 s if
	// unset). Default 5 s.
	FetchTimeout time.Duration
	// ServeRate and ServeBurst bound the history requests one peer may
	// make of us per second. Defaults 1/s and 10: a peer asks once per
	// topic it joins.
	ServeRate  float64
	ServeBurst int
}

// DefaultHistory returns the defaults documented on HistoryConfig.
func DefaultHistory() HistoryConfig {
	return HistoryConfig{
		Default:      HistoryLimits{Messages: 100, Bytes: 1 << 20, TTL: 5 * time.Minute},
		MaxTopics:    1024,
		MaxBytes:     64 << 20,
		FetchPeers:   3,
		FetchTimeout: 5 * time.Second,
		ServeRate:    1,
		ServeBurst:   10,
	}
}

// maxHistoryMessages and maxHistoryBytes cap one topic's window whatever
// the configuration, and so what one history answer carries.
const (
	maxHistoryMessages = 10000
	maxHistoryBytes    = 64 << 20
)

func (l HistoryLimits) validate(name string) []error {
	var errs []error
	if l.Messages < 0 || l.Messages > maxHistoryMessages {
		errs = append(errs, fmt.Errorf("%s.Messages must be in [0, %d], got %d", name, maxHistoryMessages, l.Messages))
	}
	if l.Messages > 0 && (l.Bytes < 1 || l.Bytes > maxHistoryBytes) {
		errs = append(errs, fmt.Errorf("%s.Bytes must be in [1, %d] when Messages is set, got %d", name, maxHistoryBytes, l.Bytes))
	}
	if l.Messages > 0 && l.TTL <= 0 {
		errs = append(errs, fmt.Errorf("%s.TTL must be > 0 when Messages is set, got %v", name, l.TTL))
	}
	return errs
}

func (c *HistoryConfig) validate() []error {
	errs := c.Default.validate("History.Default")
	for i, r := range c.Topics {
		if err := topicname.CheckPattern(r.Pattern); err != nil {
			errs = append(errs, fmt.Errorf("History.Topics[%d]: %w", i, err))
		}
		errs = append(errs, r.Limits.validate(fmt.Sprintf("History.Topics[%d].Limits", i))...)
	}
	if c.MaxTopics < 0 {
		errs = append(errs, fmt.Errorf("History.MaxTopics must be >= 0, got %d", c.MaxTopics))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("History.MaxBytes must be >= 0, got %d", c.MaxBytes))
	}
	if c.FetchPeers < 0 || c.FetchPeers > 16 {
		errs = append(errs, fmt.Errorf("History.FetchPeers must be in [0, 16], got %d", c.FetchPeers))
	}
	if c.FetchPeers > 0 && c.FetchTimeout <= 0 {
		errs = append(errs, fmt.Errorf("History.FetchTimeout must be > 0, got %v", c.FetchTimeout))
	}
	if c.ServeRate < 0 || (c.ServeRate > 0 && c.ServeBurst < 1) {
		errs = append(errs, fmt.Errorf("History.ServeRate must be >= 0 and ServeBurst >= 1 with it, got %v and %d", c.ServeRate, c.ServeBurst))
	}
	return errs
}

// limits returns the window limits of topic.
func (c *HistoryConfig) limits(topic string) HistoryLimits {
	for _, r := range c.Topics {
		if topicname.Match([]string{r.Pattern}, topic) {
			return r.Limits
		}
	}
	return c.Default
}

// posKey identifies a message: its publisher and sequence number.
type posKey struct {
	pub peer.ID
	seq uint64
}

// histEntry is one message of a window: the signed gossipsub message, so
// that it can be handed to another peer, which verifies it again.
type histEntry struct {
	pos    Position
	msg    *pb.Message
	sender Sender
	env    envelope
	size   int
}

// browserSig returns the browser's signature of a bound-token message.
func (e *histEntry) browserSig() (string, bool) {
	if e.env.kind != credBoundToken || len(e.env.cred) < ed25519.SignatureSize {
		return "", false
	}
	return string(e.env.cred[:ed25519.SignatureSize]), true
}

// entrySize is what a message is charged against the budgets: its bytes
// and the bookkeeping around them.
func entrySize(m *pb.Message) int {
	return len(m.Data) + len(m.From) + len(m.Seqno) + len(m.Signature) + len(m.Key) + len(m.GetTopic()) + 160
}

// window is one topic's history. Its fields are guarded by the store's mu.
type window struct {
	topic   string
	lim     HistoryLimits
	entries []histEntry // by position
	ids     map[posKey]struct{}
	// browserSigs holds the browser signatures of the bound-token
	// messages in the window: a copy of one under another gossipsub id (a
	// history server can wrap a browser's signed envelope in messages of
	// its own) is not a second message, as the live path's replay check
	// says too.
	browserSigs map[string]struct{}
	bytes       int
	floor       Position
	// dropped is the newest message the limits dropped.
	dropped Position
	// ready is closed once the first fetch from other peers is over.
	ready chan struct{}
	lru   *list.Element
}

// historyStore holds every topic's window within the global budgets.
type historyStore struct {
	cfg HistoryConfig
	// evicted counts messages dropped by limits or budgets (metrics).
	evicted func(n int)

	mu      sync.Mutex
	windows map[string]*window
	lru     list.List // of *window, most recently written first
	bytes   int
}

func newHistoryStore(cfg HistoryConfig) *historyStore {
	return &historyStore{cfg: cfg, windows: make(map[string]*window), evicted: func(int) {}}
}

// open returns topic's window, creating it with its floor at now; created says
// whether it is new; w is nil when the topic has no history or MaxTopics windows exist.
func (s *historyStore) open(topic string, now time.Time) (w *window, created bool) {
	lim := s.cfg.limits(topic)
	if lim.Messages == 0 {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.windows[topic]; w != nil {
		return w, false
	}
	if len(s.windows) >= s.cfg.MaxTopics {
		return nil, false
	}
	w = &window{topic: topic, lim: lim, ids: make(map[posKey]struct{}), browserSigs: make(map[string]struct{}),
		floor: Position{Time: now}, ready: make(chan struct{})}
	w.lru = s.lru.PushFront(w)
	s.windows[topic] = w
	return w, true
}

// close forgets topic's window.
func (s *historyStore) close(topic string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.windows[topic]
	if w == nil {
		return
	}
	s.bytes -= w.bytes
	s.lru.Remove(w.lru)
	delete(s.windows, topic)
}

// add puts e into w unless it is there already or older than the floor
// or the TTL, then applies the limits. It reports whether e was added.
func (s *historyStore) add(w *window, e histEntry, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addLocked(w, e, now)
}

func (s *historyStore) addLocked(w *window, e histEntry, now time.Time) bool {
	k := posKey{e.pos.Publisher, e.pos.Seq}
	if _, dup := w.ids[k]; dup || s.windows[w.topic] != w || e.pos.Compare(w.floor) <= 0 || now.Sub(e.pos.Time) > w.lim.TTL {
		return false
	}
	sig, signed := e.browserSig()
	if _, dup := w.browserSigs[sig]; signed && dup {
		return false
	}
	if signed {
		w.browserSigs[sig] = struct{}{}
	}
	i := sort.Search(len(w.entries), func(i int) bool { return w.entries[i].pos.Compare(e.pos) > 0 })
	w.entries = append(w.entries, histEntry{})
	copy(w.entries[i+1:], w.entries[i:])
	w.entries[i] = e
	w.ids[k] = struct{}{}
	w.bytes += e.size
	s.bytes += e.size
	s.lru.MoveToFront(w.lru)
	s.trim(w, now)
	for s.bytes > s.cfg.MaxBytes {
		// The least recently written window gives up its oldest message.
		old := s.lru.Back().Value.(*window)
		if len(old.entries) == 0 {
			s.lru.MoveToFront(old.lru)
			continue
		}
		s.dropOldest(old, 1)
	}
	return true
}

// trim applies w's limits.
func (s *historyStore) trim(w *window, now time.Time) {
	n := 0
	for n < len(w.entries) && (len(w.entries)-n > w.lim.Messages || now.Sub(w.entries[n].pos.Time) > w.lim.TTL) {
		n++
	}
	s.dropOldest(w, n)
	for len(w.entries) > 0 && w.bytes > w.lim.Bytes {
		s.dropOldest(w, 1)
	}
}

// dropOldest drops w's n oldest messages and raises its floor past them.
func (s *historyStore) dropOldest(w *window, n int) {
	if n == 0 {
		return
	}
	for _, e := range w.entries[:n] {
		delete(w.ids, posKey{e.pos.Publisher, e.pos.Seq})
		if sig, signed := e.browserSig(); signed {
			delete(w.browserSigs, sig)
		}
		w.bytes -= e.size
		s.bytes -= e.size
	}
	w.floor = w.entries[n-1].pos
	w.dropped = w.floor
	w.entries = append(w.entries[:0], w.entries[n:]...)
	s.evicted(n)
}

// since returns w's messages after p (at most max, the newest if more),
// and the floor of what it returns: p itself when the window reaches back
// to p, else the position below the oldest one returned.
func (s *historyStore) since(w *window, p Position, max int, now time.Time) ([]histEntry, Position) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trim(w, now)
	i := sort.Search(len(w.entries), func(i int) bool { return w.entries[i].pos.Compare(p) > 0 })
	out := append([]histEntry(nil), w.entries[i:]...)
	floor := w.floor
	if p.Compare(floor) > 0 {
		floor = p
	}
	if len(out) > max {
		floor = out[len(out)-max-1].pos
		out = out[len(out)-max:]
	}
	return out, floor
}

// merge adds entries fetched from a peer whose window after floor is
// entries, and lowers w's floor to it if w is now complete down to it:
// the peer's window and ours overlap, since we asked after subscribing.
func (s *historyStore) merge(w *window, entries []histEntry, floor Position, now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if floor.Compare(w.floor) < 0 && s.windows[w.topic] == w {
		// Never below a message our own limits dropped: the peer's
		// copy of it would only be dropped again.
		w.floor = floor
		if floor.Compare(w.dropped) < 0 {
			w.floor = w.dropped
		}
	}
	n := 0
	for _, e := range entries {
		if s.addLocked(w, e, now) {
			n++
		}
	}
	return n
}

// size returns the bytes all windows hold.
func (s *historyStore) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}
