package overlay

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"
)

// What node/ needs of the windows to keep a durable copy of them in the
// erasure-coded state (node/durablehistory.go): the signed messages as
// they travel, so that a reader checks each again exactly as one fetched
// from a peer (checkFetched), and the window's floor, which says from
// where the window is complete.

// HistoryRecord is one message of a window: its position and the signed
// gossipsub message in its wire encoding.
type HistoryRecord struct {
	Position Position
	Raw      []byte
}

// HistoryTopics returns the topics that keep a window now and whose first
// fetch from other peers is over.
func (o *Overlay) HistoryTopics() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for name, ts := range o.topics {
		if ts.hist == nil {
			continue
		}
		select {
		case <-ts.hist.ready:
			out = append(out, name)
		default:
		}
	}
	sort.Strings(out)
	return out
}

// HistoryRecords returns at most max messages of topic's window positioned
// after since, the oldest first, and the window's floor: it holds every
// message after floor. ok is false when the topic keeps no window or its
// first fetch is not over.
func (o *Overlay) HistoryRecords(topic string, since Position, max int) (recs []HistoryRecord, floor Position, ok bool) {
	w := o.readyWindow(topic)
	if w == nil {
		return nil, Position{}, false
	}
	s := o.history
	s.mu.Lock()
	floor = w.floor
	i := sort.Search(len(w.entries), func(i int) bool { return w.entries[i].pos.Compare(since) > 0 })
	// Entries are never changed once added: encode them outside the
	// lock, which gossipsub's event loop takes to record messages.
	entries := slices.Clone(w.entries[i:min(len(w.entries), i+max)])
	s.mu.Unlock()
	for _, e := range entries {
		raw, err := proto.Marshal(e.msg)
		if err != nil {
			continue
		}
		recs = append(recs, HistoryRecord{Position: e.pos, Raw: raw})
	}
	return recs, floor, true
}

// HistoryFloor returns the floor of topic's window (HistoryRecords); ok
// is false when the topic keeps none.
func (o *Overlay) HistoryFloor(topic string) (floor Position, ok bool) {
	w := o.readyWindow(topic)
	if w == nil {
		return Position{}, false
	}
	o.history.mu.Lock()
	defer o.history.mu.Unlock()
	return w.floor, true
}

// window returns topic's window, nil if it keeps none.
func (o *Overlay) window(topic string) *window {
	o.mu.Lock()
	defer o.mu.Unlock()
	if ts := o.topics[topic]; ts != nil {
		return ts.hist
	}
	return nil
}

// readyWindow returns topic's window once its first fetch is over, else nil.
func (o *Overlay) readyWindow(topic string) *window {
	w := o.window(topic)
	if w == nil {
		return nil
	}
	select {
	case <-w.ready:
		return w
	default:
		return nil
	}
}

// VerifyHistoryRecord decodes a message of topic kept elsewhere (a
// HistoryRecord's Raw) and checks it as a message fetched from a peer is
// checked: signature, topic, envelope, size, validator and the publisher's
// right to publish at its publication time.
func (o *Overlay) VerifyHistoryRecord(topic string, raw []byte) (*Message, error) {
	if len(raw) > o.maxHistoryFrame() {
		return nil, fmt.Errorf("%w: message of %d bytes", errBadHistory, len(raw))
	}
	e, err := o.checkFetched(topic, wireTopic(topic), raw, time.Now())
	if err != nil {
		return nil, err
	}
	return newMessage(topic, e.msg, e.pos.Publisher, "", e.pos.Seq, e.sender, e.env), nil
}
