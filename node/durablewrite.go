package node

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/immense-p2p/immense/overlay"
)

// The writer of durable history (durablehistory.go says what it keeps).

// durableTopic is the writer's state of one topic.
type durableTopic struct {
	loaded bool
	next   uint64    // number of the next segment
	own    []segDesc // this writer's segments, by start
	open   *segment  // the segment being filled, nil if none
	opened time.Time
	dirty  bool // open holds messages not stored yet
	// cut is where the stored and open segments end: the next message
	// taken from the window comes after it.
	cut        overlay.Position
	started    bool
	indexDirty bool
	flushed    time.Time // when the open segment and the index were last stored
	checked    time.Time // when the index was last checked for this writer's entries
}

// run takes new messages from the windows every durableTakeInterval and
// stores them every FlushInterval, until ctx ends.
func (d *durableHistory) run(ctx context.Context) {
	t := time.NewTicker(min(d.cfg.FlushInterval, durableTakeInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		seen := map[string]bool{}
		for _, topic := range d.n.overlay.HistoryTopics() {
			if !d.keeps(topic) {
				continue
			}
			seen[topic] = true
			dt := d.topics[topic]
			if dt == nil {
				dt = &durableTopic{}
				d.topics[topic] = dt
			}
			if err := d.flush(ctx, topic, dt, time.Now()); err != nil && ctx.Err() == nil {
				d.log.Warn("durable history not stored", "topic", topic, "err", err)
			}
		}
		// A topic without a window any more is forgotten once all it had
		// is stored (or if too many are waiting for that); should it come
		// back, it starts a new segment.
		for topic, dt := range d.topics {
			if seen[topic] {
				continue
			}
			if err := d.closeOpen(ctx, topic, dt); err == nil && dt.indexDirty {
				err = d.writeIndex(ctx, topic, dt, time.Now())
			}
			if !dt.dirty && !dt.indexDirty || len(d.topics) > maxDurableTopics {
				delete(d.topics, topic)
			}
		}
	}
}

// flush moves what topic's window holds after dt.cut into segments, and
// stores them if FlushInterval has passed since it last did or a segment
// is full. Gossip may deliver a message after others positioned
// after it: the window then holds it in position, and flush looks
// durableLookback behind dt.cut for such late messages and slips them
// into the open segment.
func (d *durableHistory) flush(ctx context.Context, topic string, dt *durableTopic, now time.Time) error {
	if !dt.loaded {
		x, err := d.readIndex(ctx, topic)
		if err != nil {
			return fmt.Errorf("read index: %w", err)
		}
		for _, s := range x.Segs {
			if s.Writer == d.me {
				dt.own = append(dt.own, s)
				dt.next = max(dt.next, s.N+1)
			}
		}
		sortDescs(dt.own)
		// Number on from the clock too, in case a racing writer had
		// dropped our entries from the index: a restarted writer never
		// reuses a number, so never overwrites a segment of its own.
		dt.next = max(dt.next, uint64(now.UnixMilli()))
		dt.loaded = true
	}
	since := dt.cut
	if dt.open != nil {
		since = overlay.Position{Time: dt.cut.Time.Add(-durableLookback)}
		if since.Compare(dt.open.prev) < 0 {
			since = dt.open.prev
		}
	}
	for first := true; ; first = false {
		recs, floor, ok := d.n.overlay.HistoryRecords(topic, since, segmentMessages)
		if !ok {
			return nil
		}
		if first && (!dt.started || floor.Compare(dt.cut) > 0) {
			// The first flush, or the window lost messages since the
			// last: what follows starts at the window's floor.
			if err := d.closeOpen(ctx, topic, dt); err != nil {
				return err
			}
			dt.cut, dt.started = floor, true
		}
		for _, r := range recs {
			if err := d.take(ctx, topic, dt, r, now); err != nil {
				return err
			}
		}
		if len(recs) < segmentMessages {
			break
		}
		since = recs[len(recs)-1].Position
	}
	if now.Sub(dt.flushed) < d.cfg.FlushInterval {
		return nil
	}
	dt.flushed = now
	if dt.open != nil && now.Sub(dt.opened) >= segmentSpan {
		if err := d.closeOpen(ctx, topic, dt); err != nil {
			return err
		}
	}
	if dt.dirty {
		if err := d.store(ctx, topic, dt); err != nil {
			return err
		}
	}
	d.expire(ctx, topic, dt, now)
	if now.Sub(dt.checked) >= durableIndexCheck {
		// Another writer may have raced us on the index and dropped our
		// entries; writeIndex puts them back, and only if they differ.
		dt.checked, dt.indexDirty = now, true
	}
	if dt.indexDirty {
		return d.writeIndex(ctx, topic, dt, now)
	}
	return nil
}

// take adds a message of the window to the open segment: after dt.cut at
// the end, a late one before it in its place, unless it is there already
// or before the open segment (then it is lost to the durable history;
// the window still has it).
func (d *durableHistory) take(ctx context.Context, topic string, dt *durableTopic, r overlay.HistoryRecord, now time.Time) error {
	if r.Position.Compare(dt.cut) <= 0 {
		if dt.open != nil && dt.open.insert(r) {
			dt.dirty = true
		}
		return nil
	}
	if dt.open == nil {
		dt.open = &segment{Version: segmentVersion, Topic: topic, Writer: d.me, N: dt.next, Prev: toWire(dt.cut), prev: dt.cut}
		dt.next++
		dt.opened = now
	}
	dt.open.insert(r)
	dt.open.Last = toWire(r.Position)
	dt.cut, dt.dirty = r.Position, true
	if len(dt.open.Msgs) >= segmentMessages || dt.open.size >= segmentBytes {
		return d.closeOpen(ctx, topic, dt)
	}
	return nil
}

// closeOpen stores the open segment if it has to be and closes it. A full
// segment that cannot be stored is given up, so that memory stays
// bounded: the hole it leaves shows in the index, and readers of that
// stretch get a gap.
func (d *durableHistory) closeOpen(ctx context.Context, topic string, dt *durableTopic) error {
	if dt.open == nil {
		return nil
	}
	if dt.dirty {
		if err := d.store(ctx, topic, dt); err != nil {
			if len(dt.open.Msgs) >= segmentMessages || dt.open.size >= segmentBytes {
				dt.open, dt.dirty = nil, false
			}
			return err
		}
	}
	dt.open = nil
	return nil
}

// store writes the open segment and records it in dt.own.
func (d *durableHistory) store(ctx context.Context, topic string, dt *durableTopic) error {
	s := dt.open
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, durableOpTimeout)
	defer cancel()
	if _, err := d.n.put(ctx, segmentKey(topic, d.me, s.N), b); err != nil {
		d.stored.WithLabelValues("failed").Inc()
		return fmt.Errorf("store segment %d: %w", s.N, err)
	}
	d.stored.WithLabelValues("ok").Inc()
	dt.dirty = false
	desc := segDesc{Writer: d.me, N: s.N, Prev: s.Prev, Last: s.Last, Count: len(s.Msgs)}
	if i := slices.IndexFunc(dt.own, func(o segDesc) bool { return o.N == s.N }); i >= 0 {
		dt.own[i] = desc
		return nil
	}
	dt.own = append(dt.own, desc)
	dt.indexDirty = true
	return nil
}

// expire deletes this writer's segments past retention, in time or in
// messages.
func (d *durableHistory) expire(ctx context.Context, topic string, dt *durableTopic, now time.Time) {
	total, keep := 0, len(dt.own)
	for keep > 0 {
		s := dt.own[keep-1]
		if d.expired(s.Last, now) || total+s.Count > d.cfg.Messages {
			break
		}
		total += s.Count
		keep--
	}
	// dt.own[:keep] go (dt.own is by start, so the oldest first).
	if keep == 0 {
		return
	}
	for _, s := range dt.own[:keep] {
		if dt.open != nil && dt.open.N == s.N {
			dt.open, dt.dirty = nil, false
		}
		d.delete(ctx, topic, s)
	}
	dt.own = slices.Delete(dt.own, 0, keep)
	dt.indexDirty = true
}

// delete removes a segment, as well as it can: one left behind costs
// space, not correctness, as the index no longer lists it.
func (d *durableHistory) delete(ctx context.Context, topic string, s segDesc) {
	ctx, cancel := context.WithTimeout(ctx, durableOpTimeout)
	defer cancel()
	if err := d.n.Delete(ctx, segmentKey(topic, s.Writer, s.N)); err != nil {
		d.log.Debug("delete segment", "topic", topic, "writer", s.Writer, "n", s.N, "err", err)
	}
}

// writeIndex rewrites topic's index: the other writers' entries as they
// are now, less those past retention, and ours.
func (d *durableHistory) writeIndex(ctx context.Context, topic string, dt *durableTopic, now time.Time) error {
	x, err := d.readIndex(ctx, topic)
	if err != nil {
		return fmt.Errorf("read index: %w", err)
	}
	segs := slices.Clone(dt.own)
	for _, s := range x.Segs {
		switch {
		case s.Writer == d.me:
		case d.expired(s.Last, now):
			d.delete(ctx, topic, s)
		default:
			segs = append(segs, s)
		}
	}
	if len(segs) > maxIndexEntries {
		// The oldest stretches go first.
		slices.SortFunc(segs, func(a, b segDesc) int { return compareWire(b.Last, a.Last) })
		segs = segs[:maxIndexEntries]
	}
	sortDescs(segs)
	if slices.Equal(segs, x.Segs) {
		dt.indexDirty = false
		return nil
	}
	b, err := json.Marshal(segIndex{Version: segmentVersion, Topic: topic, Segs: segs})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, durableOpTimeout)
	defer cancel()
	if _, err := d.n.put(ctx, indexKey(topic), b); err != nil {
		d.stored.WithLabelValues("failed").Inc()
		return fmt.Errorf("store index: %w", err)
	}
	d.stored.WithLabelValues("ok").Inc()
	dt.indexDirty = false
	return nil
}
