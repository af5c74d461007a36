package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/immense-p2p/immense/overlay"
)

// The reader of durable history (durablehistory.go says what it keeps).

// A resume's reads of durable history are budgeted: whoever may subscribe
// to a topic may resume from far back, as often as it likes.
const (
	// maxFillBytes caps the payload bytes one resume reads; a resume that
	// would need more is a gap.
	maxFillBytes = 64 << 20
	// maxFillSegments caps the segments one resume reads (the default
	// 10,000 messages are 40 segments of a writer).
	maxFillSegments = 512
	// maxConcurrentFills caps the resumes reading at once, and
	// maxFillsPerClient those of one client (a browser's token), so that
	// one client resuming over and over, or many topics at once, holds at
	// most one of them: its other resumes wait their turn. A resume that
	// finds no slot within fillWait (or half the time its caller has left)
	// is a gap.
	maxConcurrentFills = 4
	maxFillsPerClient  = 1
	fillWait           = 10 * time.Second
)

// stretch is a segment's coverage: every message in (prev, last].
type stretch struct{ prev, last overlay.Position }

// fill completes a replay of topic after since whose window (msgs) does
// not reach back to since. It returns the messages after since from the
// durable history and the window together, in position order without
// duplicates, and true, if the durable history covers everything from
// since up to the window's floor; else nil and false: a gap. client is
// who the resume is for (Node.history), "" for this node's own callers.
func (d *durableHistory) fill(ctx context.Context, client, topic string, since overlay.Position, window []*Message) ([]*Message, bool) {
	var keys []string
	if client != "" {
		keys = append(keys, client)
	}
	// A browser's resume has PublishTimeout in all: wait at most half of
	// what is left, so that a slot taken late still has time to read.
	wait := fillWait
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)/2)
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	release, err := d.fills.Wait(wctx, keys...)
	cancel()
	if err != nil {
		d.resumes.WithLabelValues("busy").Inc()
		return nil, false
	}
	defer release()
	msgs, ok := d.read(ctx, topic, since, window)
	outcome := "gap"
	if ok {
		outcome = "recovered"
	}
	d.resumes.WithLabelValues(outcome).Inc()
	return msgs, ok
}

func (d *durableHistory) read(ctx context.Context, topic string, since overlay.Position, window []*Message) ([]*Message, bool) {
	x, err := d.readIndex(ctx, topic)
	if err != nil {
		d.log.Debug("durable history index", "topic", topic, "err", err)
		return nil, false
	}
	// The segments that end after since, and every writer's newest,
	// whose entry may lag behind what it holds.
	newest := map[string]uint64{}
	for _, s := range x.Segs {
		newest[s.Writer] = max(newest[s.Writer], s.N)
	}
	seen := map[string]bool{}
	for _, m := range window {
		seen[m.ID] = true
	}
	var (
		msgs      []*Message
		stretches []stretch
		bytes     int
		read      int
	)
	for _, s := range x.Segs {
		if last, _ := s.Last.position(); last.Compare(since) <= 0 && newest[s.Writer] != s.N {
			continue
		}
		if read++; read > maxFillSegments {
			d.log.Debug("durable history: resume too far back", "topic", topic, "since", since)
			return nil, false
		}
		got, st, err := d.readSegment(ctx, topic, s)
		if err != nil {
			if ctx.Err() != nil {
				return nil, false
			}
			d.log.Debug("durable history segment", "topic", topic, "writer", s.Writer, "n", s.N, "err", err)
			continue
		}
		stretches = append(stretches, st)
		for _, m := range got {
			if m.Position.Compare(since) <= 0 || seen[m.ID] {
				continue
			}
			if bytes += len(m.Data); bytes > maxFillBytes {
				d.log.Debug("durable history: resume too far back", "topic", topic, "since", since)
				return nil, false
			}
			seen[m.ID] = true
			msgs = append(msgs, m)
		}
	}
	// The window is read before its floor: the floor can only have
	// risen since, which asks more of the durable history, never less.
	floor, ok := d.n.overlay.HistoryFloor(topic)
	if !ok || covered(stretches, since).Compare(floor) < 0 {
		return nil, false
	}
	msgs = append(msgs, window...)
	slices.SortFunc(msgs, func(a, b *Message) int { return a.Position.Compare(b.Position) })
	return msgs, true
}

// covered returns how far from since the stretches reach without a hole.
func covered(stretches []stretch, since overlay.Position) overlay.Position {
	slices.SortFunc(stretches, func(a, b stretch) int { return a.prev.Compare(b.prev) })
	reach := since
	for _, s := range stretches {
		if s.prev.Compare(reach) > 0 {
			break
		}
		if s.last.Compare(reach) > 0 {
			reach = s.last
		}
	}
	return reach
}

// readSegment reads a segment and checks every message in it as one
// fetched from a peer; a segment with any message that fails, or that
// lies outside its stretch, is refused whole.
func (d *durableHistory) readSegment(ctx context.Context, topic string, desc segDesc) ([]*Message, stretch, error) {
	ctx, cancel := context.WithTimeout(ctx, durableOpTimeout)
	defer cancel()
	b, err := d.n.Get(ctx, segmentKey(topic, desc.Writer, desc.N))
	if err != nil {
		return nil, stretch{}, err
	}
	s, prev, last, err := decodeSegment(b, topic)
	if err != nil {
		return nil, stretch{}, err
	}
	out := make([]*Message, 0, len(s.Msgs))
	for i, raw := range s.Msgs {
		m, err := d.n.overlay.VerifyHistoryRecord(topic, raw)
		if err != nil {
			return nil, stretch{}, fmt.Errorf("message %d: %w", i, err)
		}
		if m.Position.Compare(prev) <= 0 || m.Position.Compare(last) > 0 {
			return nil, stretch{}, fmt.Errorf("%w: message %d outside its segment's stretch", errBadSegment, i)
		}
		out = append(out, m)
	}
	return out, stretch{prev, last}, nil
}
