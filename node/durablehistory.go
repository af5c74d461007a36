package node

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/internal/slots"
	"github.com/immense-p2p/immense/internal/topicname"
	"github.com/immense-p2p/immense/overlay"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
)

// Durable history. For the topics DurableHistoryConfig names, every app
// peer (one that holds the app key, and so may write the app's state)
// that keeps a topic's window (overlay history.go) also copies it into the
// erasure-coded state, where it outlives the window (24 h by default
// rather than 5 min) and every peer of the app. A resume that reaches
// further back than the window is filled from there before it is called
// a gap.
//
// A writer appends the window's messages, the signed gossipsub messages
// themselves, to segments, one object each, under reserved keys (keys
// may not contain '/', so the topic goes in as a hash):
//
//	_history:<32 hex of SHA-256(topic)>                      the topic's index
//	_history:<32 hex of SHA-256(topic)>:<writer peer id>:<n>  segment n of a writer
//
// A segment says which stretch of the topic it holds completely: every
// message positioned in (Prev, Last]. The writer rewrites its open
// segment every FlushInterval while messages come (it takes them from the
// window every durableTakeInterval), starts the next once
// it holds segmentMessages messages or segmentBytes bytes or is
// segmentSpan old, and starts it at the window's floor rather than where
// the last one ended if the window lost messages in between (more than
// it holds came between two flushes): the hole is then visible. The index
// lists the segments of all writers; a writer rewrites it when it starts
// or removes segments, and checks it every durableIndexCheck, re-reading
// it first and keeping the others' entries, so two writers of a topic
// only ever race on the index, and the loser's entries come back within
// durableIndexCheck. Segments are
// named by their writer, so they never overwrite each other; a restarted
// writer numbers on from the higher of its entries in the index and the
// clock in milliseconds, so it never overwrites a segment of its own.
//
// A reader (Subscribe with Since, SSE Last-Event-ID) whose resume point
// is older than the window's floor reads the index, the segments that end
// after the resume point, checks every message as one fetched from a peer
// (overlay.VerifyHistoryRecord), and joins the segments' stretches from
// the resume point upwards. If they reach the window's floor, the
// messages are replayed before the window's, without a gap; else it is a
// gap as before.

// DurableHistoryConfig keeps the history of some topics in the
// erasure-coded state (see above). Zero fields take the defaults.
type DurableHistoryConfig struct {
	// Topics are the topic patterns (a name, or a prefix and a trailing
	// "*") whose history is kept. Empty: none.
	Topics []string
	// Retention is how long messages are kept. Default 24 h: a phone that
	// was off overnight still recovers. At most 30 days.
	Retention time.Duration
	// Messages is the most messages kept per topic (per writer). Default
	// 10,000, at most 100,000: a resume reads them all at once.
	Messages int
	// FlushInterval is how often a writer stores what it has not stored
	// yet. Default 5 s: what a writer that crashes loses, if no other
	// writer has it.
	FlushInterval time.Duration
}

const (
	defaultDurableRetention = 24 * time.Hour
	maxDurableRetention     = 30 * 24 * time.Hour
	defaultDurableMessages  = 10000
	maxDurableMessages      = 100000
	defaultDurableFlush     = 5 * time.Second
	// segmentMessages, segmentBytes and segmentSpan close a segment: a
	// rewrite costs at most that, and retention removes whole segments.
	segmentMessages = 256
	segmentBytes    = 1 << 20
	segmentSpan     = 10 * time.Minute
	// maxSegmentEncoded caps a segment's encoding (base64 and JSON around
	// segmentBytes, plus one message that crossed it); maxIndexEntries
	// caps the index, and maxIndexEncoded its encoding.
	maxSegmentEncoded = 4 * segmentBytes
	maxIndexEntries   = 4096
	maxIndexEncoded   = maxIndexEntries * 256
	// durableTakeInterval is how often a writer takes new messages from
	// the windows into its open segments, in memory: a window of 100
	// messages then loses none to its limits below 400 messages a second
	// (or while a full segment is being stored).
	durableTakeInterval = 250 * time.Millisecond
	// durableLookback is how far behind the newest message it stored a
	// writer looks for messages gossip delivered late (flush).
	durableLookback = 5 * time.Second
	// durableIndexCheck is how often a writer makes sure the index lists
	// its segments as they are: a race with another writer may have
	// dropped them, and its open segment's entry lags behind it.
	durableIndexCheck = 30 * time.Second
	// maxDurableTopics caps the topics a writer keeps state of after
	// their window closed, while their last segment waits to be stored.
	maxDurableTopics = 1024
	// durableOpTimeout bounds one state operation of the writer or reader.
	durableOpTimeout = 30 * time.Second
	durableKeyPrefix = "_history:"
	segmentVersion   = 1
)

func (c DurableHistoryConfig) withDefaults() DurableHistoryConfig {
	c.Retention = cmp.Or(c.Retention, defaultDurableRetention)
	c.Messages = cmp.Or(c.Messages, defaultDurableMessages)
	c.FlushInterval = cmp.Or(c.FlushInterval, defaultDurableFlush)
	return c
}

func (c DurableHistoryConfig) validate() []error {
	var errs []error
	for i, p := range c.Topics {
		if err := topicname.CheckPattern(p); err != nil {
			errs = append(errs, fmt.Errorf("DurableHistory.Topics[%d]: %w", i, err))
		}
	}
	if c.Retention < 0 || c.Retention > maxDurableRetention {
		errs = append(errs, fmt.Errorf("DurableHistory.Retention must be in [0, %v], got %v", maxDurableRetention, c.Retention))
	}
	if c.Messages < 0 || c.Messages > maxDurableMessages {
		errs = append(errs, fmt.Errorf("DurableHistory.Messages must be in [0, %d], got %d", maxDurableMessages, c.Messages))
	}
	if c.FlushInterval < 0 {
		errs = append(errs, fmt.Errorf("DurableHistory.FlushInterval must be >= 0, got %v", c.FlushInterval))
	}
	return errs
}

// wirePos is a position in a segment or the index.
type wirePos struct {
	T int64  `json:"t"` // Unix nanoseconds
	S uint64 `json:"s"`
	P string `json:"p,omitempty"` // publisher peer id
}

func toWire(p overlay.Position) wirePos {
	w := wirePos{S: p.Seq, P: p.Publisher.String()}
	if p.Publisher == "" {
		w.P = ""
	}
	if !p.Time.IsZero() {
		w.T = p.Time.UnixNano()
	}
	return w
}

func (w wirePos) position() (overlay.Position, error) {
	p := overlay.Position{Seq: w.S}
	if w.T < 0 {
		return p, errors.New("negative time")
	}
	if w.T > 0 {
		p.Time = time.Unix(0, w.T)
	}
	if w.P != "" {
		id, err := peer.Decode(w.P)
		if err != nil {
			return p, fmt.Errorf("publisher: %w", err)
		}
		p.Publisher = id
	}
	return p, nil
}

// segment is one stored stretch of a topic: its messages in position
// order, every one of the topic's in (Prev, Last].
type segment struct {
	Version int      `json:"v"`
	Topic   string   `json:"topic"`
	Writer  string   `json:"writer"`
	N       uint64   `json:"n"`
	Prev    wirePos  `json:"prev"`
	Last    wirePos  `json:"last"`
	Msgs    [][]byte `json:"msgs"`

	// Kept by the writer, not stored: the bytes of Msgs, the positions
	// of Msgs, and Prev.
	size int
	pos  []overlay.Position
	prev overlay.Position
}

// insert puts r into s in position order and reports whether it was not
// there yet. Only a message inside s's stretch belongs there.
func (s *segment) insert(r overlay.HistoryRecord) bool {
	if r.Position.Compare(s.prev) <= 0 {
		return false
	}
	i, found := slices.BinarySearchFunc(s.pos, r.Position, overlay.Position.Compare)
	if found {
		return false
	}
	s.pos = slices.Insert(s.pos, i, r.Position)
	s.Msgs = slices.Insert(s.Msgs, i, r.Raw)
	s.size += len(r.Raw)
	return true
}

// segDesc is a segment's entry in the index.
type segDesc struct {
	Writer string  `json:"writer"`
	N      uint64  `json:"n"`
	Prev   wirePos `json:"prev"`
	Last   wirePos `json:"last"`
	Count  int     `json:"count"`
}

// segIndex is a topic's index: the segments of all its writers.
type segIndex struct {
	Version int       `json:"v"`
	Topic   string    `json:"topic"`
	Segs    []segDesc `json:"segs"`
}

var errBadSegment = errors.New("durable history: malformed record")

// decodeSegment reads a segment of topic from the state, with the
// stretch it covers.
func decodeSegment(b []byte, topic string) (s *segment, prev, last overlay.Position, err error) {
	s = new(segment)
	if err = decodeRecord(b, maxSegmentEncoded, s, func() (int, string) { return s.Version, s.Topic }, topic); err != nil {
		return nil, prev, last, err
	}
	if prev, err = s.Prev.position(); err == nil {
		last, err = s.Last.position()
	}
	switch {
	case err != nil:
		return nil, prev, last, fmt.Errorf("%w: %v", errBadSegment, err)
	case len(s.Msgs) > segmentMessages:
		return nil, prev, last, fmt.Errorf("%w: %d messages, at most %d", errBadSegment, len(s.Msgs), segmentMessages)
	case last.Compare(prev) < 0:
		return nil, prev, last, fmt.Errorf("%w: stretch ends before it starts", errBadSegment)
	}
	return s, prev, last, nil
}

// decodeIndex reads topic's index from the state.
func decodeIndex(b []byte, topic string) (*segIndex, error) {
	x := new(segIndex)
	if err := decodeRecord(b, maxIndexEncoded, x, func() (int, string) { return x.Version, x.Topic }, topic); err != nil {
		return nil, err
	}
	if len(x.Segs) > maxIndexEntries {
		return nil, fmt.Errorf("%w: %d index entries, at most %d", errBadSegment, len(x.Segs), maxIndexEntries)
	}
	for _, d := range x.Segs {
		_, perr := d.Prev.position()
		_, lerr := d.Last.position()
		_, werr := peer.Decode(d.Writer)
		if err := errors.Join(perr, lerr, werr); err != nil {
			return nil, fmt.Errorf("%w: %v", errBadSegment, err)
		}
	}
	return x, nil
}

// decodeRecord unmarshals b, at most max bytes, into v and checks the
// version and topic that head reads from it.
func decodeRecord(b []byte, max int, v any, head func() (int, string), topic string) error {
	if len(b) > max {
		return fmt.Errorf("%w: %d bytes, at most %d", errBadSegment, len(b), max)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", errBadSegment, err)
	}
	if ver, t := head(); ver != segmentVersion || t != topic {
		return fmt.Errorf("%w: version %d of topic %q, want %d of %q", errBadSegment, ver, t, segmentVersion, topic)
	}
	return nil
}

// topicHash names topic in keys.
func topicHash(topic string) string {
	h := sha256.Sum256([]byte(topic))
	return hex.EncodeToString(h[:16])
}

func indexKey(topic string) string { return durableKeyPrefix + topicHash(topic) }

func segmentKey(topic, writer string, n uint64) string {
	return durableKeyPrefix + topicHash(topic) + ":" + writer + ":" + strconv.FormatUint(n, 10)
}

// durableHistory writes and reads the durable history of a node's topics.
type durableHistory struct {
	n   *Node
	cfg DurableHistoryConfig
	log *slog.Logger
	me  string
	// topics is the writer's state per topic; only run touches it.
	topics map[string]*durableTopic
	// fills bounds the resumes reading durable history at once, in all
	// and per client (durableread.go).
	fills *slots.Keyed[string]
	// stored counts segment and index writes by result, resumes by
	// outcome (immense_node_durable_history_*_total).
	stored, resumes *prometheus.CounterVec
}

// startDurableHistory starts the writer if the node keeps durable history
// of some topics: it needs state and the app key.
func (n *Node) startDurableHistory() {
	c := n.cfg.DurableHistory
	if len(c.Topics) == 0 || n.state == nil || n.cfg.AppKeyFile == "" {
		return
	}
	d := &durableHistory{n: n, cfg: c.withDefaults(), log: n.plog.With("component", "node.durablehistory"),
		me: n.host.ID().String(), topics: map[string]*durableTopic{}, fills: slots.New[string](maxConcurrentFills, maxFillsPerClient),
		stored: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "immense", Subsystem: "node", Name: "durable_history_writes_total",
			Help: "Durable history objects written to the state, by result (ok, failed)."}, []string{"result"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "immense", Subsystem: "node", Name: "durable_history_resumes_total",
			Help: "Resumes older than the window that read durable history, by outcome (recovered, gap, busy)."}, []string{"outcome"}),
	}
	for _, c := range []prometheus.Collector{d.stored, d.resumes} {
		if err := n.registry.Register(c); err != nil {
			d.log.Warn("durable history metrics", "err", err)
		}
	}
	n.durable = d
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		d.run(n.ctx)
	}()
}

// keeps reports whether topic's history is durable.
func (d *durableHistory) keeps(topic string) bool {
	return d != nil && topicname.Match(d.cfg.Topics, topic)
}

// readIndex reads topic's index; an absent one is empty.
func (d *durableHistory) readIndex(ctx context.Context, topic string) (*segIndex, error) {
	ctx, cancel := context.WithTimeout(ctx, durableOpTimeout)
	defer cancel()
	b, err := d.n.Get(ctx, indexKey(topic))
	if errors.Is(err, erasure.ErrNotFound) {
		return &segIndex{Version: segmentVersion, Topic: topic}, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeIndex(b, topic)
}

// expired reports whether a stretch ending at last is past retention.
func (d *durableHistory) expired(last wirePos, now time.Time) bool {
	return last.T < now.Add(-d.cfg.Retention).UnixNano()
}

// sortDescs orders index entries by the start of their stretch.
func sortDescs(ds []segDesc) {
	slices.SortFunc(ds, func(a, b segDesc) int {
		return cmp.Or(cmp.Compare(a.Prev.T, b.Prev.T), cmp.Compare(a.Writer, b.Writer), cmp.Compare(a.N, b.N))
	})
}

// compareWire orders wire positions as overlay.Position.Compare orders
// positions.
func compareWire(a, b wirePos) int {
	pa, _ := a.position()
	pb, _ := b.position()
	return pa.Compare(pb)
}
