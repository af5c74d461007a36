package overlay

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"
)

// How windows are filled, served and replayed (history.go says what they
// are). A topic's window is filled by a subscription of the overlay's own,
// whose message filter records every message gossipsub delivers; it is
// opened with the topic's first local subscription and ended once the
// topic has had no other subscriber for its TTL.

// maxHistoryServes caps the history answers built and written at once,
// from all peers together, and maxHistoryServesPerPeer those of one peer.
// A request takes its slot only once it has been read and its sender
// found subscribed: a stream that sends nothing, or a peer that is not a
// subscriber, holds none.
//
// maxHistoryAsksPerPeer is the requester's side: the fetches it has in
// flight to one peer (more wait), fewer than the peer serves one peer at
// once, so that a node subscribing to many topics together is not refused
// (and a request that follows the answer of the last, before the server
// has freed its slot, still finds one).
const (
	maxHistoryServes        = 8
	maxHistoryServesPerPeer = 4
	maxHistoryAsksPerPeer   = 2
)

// HistoryProtocol is the stream protocol of history fetches,
// /immense/history/1.0.0 under the default prefix.
func (o *Overlay) HistoryProtocol() protocol.ID { return o.cfg.ProtocolPrefix + "/history/1.0.0" }

// openHistory opens ts's window if its topic has history and none is
// open. o.mu must be held.
func (o *Overlay) openHistory(ts *topicState) {
	if ts.histSub != nil {
		return
	}
	w, _ := o.history.open(ts.name, time.Now())
	if w == nil {
		return
	}
	name := ts.name
	sub, err := ts.topic.Subscribe(pubsub.WithBufferSize(1), pubsub.WithMessageFilter(func(m *pubsub.Message) bool {
		o.record(w, name, m)
		return false
	}))
	if err != nil {
		o.history.close(name)
		o.log.Debug("history subscription", "topic", name, "err", err)
		return
	}
	ts.hist, ts.histSub = w, sub
	o.subscribed(ts)
	o.wg.Add(1)
	go o.fetchHistory(name, ts.topic, w)
}

// closeHistory ends ts's window. o.mu must be held.
func (o *Overlay) closeHistory(ts *topicState) {
	if ts.histSub == nil {
		return
	}
	ts.histSub.Cancel()
	ts.histSub, ts.hist = nil, nil
	o.history.close(ts.name)
	o.unsubscribed(ts)
}

// lingerExpired reports whether ts is held only by its window and has
// been for the window's TTL. o.mu must be held.
func (o *Overlay) lingerExpired(ts *topicState, now time.Time) bool {
	return ts.histSub != nil && ts.subs == 1 && now.Sub(ts.lastUsed) > ts.hist.lim.TTL
}

// evictLingering leaves the least recently used topic held only by its
// window, to make room in the topic table, and reports whether there was
// one. o.mu must be held.
func (o *Overlay) evictLingering() bool {
	var oldest *topicState
	for _, ts := range o.topics {
		if ts.histSub != nil && ts.subs == 1 && (oldest == nil || ts.lastUsed.Before(oldest.lastUsed)) {
			oldest = ts
		}
	}
	if oldest == nil {
		return false
	}
	// Cancel hands the subscription to gossipsub's event loop before it
	// returns, so the topic can be left right after.
	o.closeHistory(oldest)
	if !o.leave(oldest.name, oldest) {
		return false
	}
	o.metrics.topicsEvicted.Inc()
	return true
}

// record adds a delivered message to w. It runs on gossipsub's event loop.
func (o *Overlay) record(w *window, topic string, m *pubsub.Message) {
	seq, ok := seqOf(m.Seqno)
	if !ok {
		return
	}
	env, sender, err := o.accepted(topic, m)
	if err != nil {
		return
	}
	from := m.GetFrom()
	o.history.add(w, histEntry{
		pos:    Position{Publisher: from, Seq: seq, Time: env.published},
		msg:    m.Message,
		sender: sender,
		env:    env,
		size:   entrySize(m.Message),
	}, time.Now())
}

// newMessage is a delivered message as subscribers see it.
func newMessage(topic string, m *pb.Message, from, via peer.ID, seq uint64, sender Sender, env envelope) *Message {
	return &Message{
		Topic:        topic,
		ID:           hex.EncodeToString(append(append([]byte(nil), m.From...), m.Seqno...)),
		From:         from,
		ReceivedFrom: via,
		Sender:       sender,
		Published:    env.published,
		Position:     Position{Publisher: from, Seq: seq, Time: env.published},
		Data:         env.payload,
	}
}

// History returns the messages of topic this peer holds after since, in
// position order, and whether they are all of them: false when since is
// older than the window (a gap: some messages after since are no longer
// held). The topic must be subscribed, else ErrNoHistory. History waits
// for the window's first fetch from other peers (HistoryConfig.FetchTimeout
// at most), or ctx.
func (o *Overlay) History(ctx context.Context, topic string, since Position) ([]*Message, bool, error) {
	w := o.window(topic)
	if w == nil {
		return nil, false, fmt.Errorf("%w for %q", ErrNoHistory, topic)
	}
	select {
	case <-w.ready:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	case <-o.ctx.Done():
		return nil, false, ErrClosed
	}
	entries, floor := o.history.since(w, since, maxHistoryMessages, time.Now())
	out := make([]*Message, len(entries))
	for i, e := range entries {
		out[i] = newMessage(topic, e.msg, e.pos.Publisher, "", e.pos.Seq, e.sender, e.env)
	}
	return out, floor.Compare(since) <= 0, nil
}

// Resume joins a replay (History) to the live messages of a subscription
// taken out before it: subscribe first, so nothing falls between the two,
// then replay, then pass each live message through Live, which drops
// what the replay delivered or what is not after the resume point. Not
// safe for concurrent use.
type Resume struct {
	since    Position
	replayed map[posKey]struct{}
}

// NewResume starts a resume from since whose replay was replay.
func NewResume(since Position, replay []*Message) *Resume {
	r := &Resume{since: since, replayed: make(map[posKey]struct{}, len(replay))}
	for _, m := range replay {
		r.replayed[posKey{m.Position.Publisher, m.Position.Seq}] = struct{}{}
	}
	return r
}

// Live reports whether a live message is new to the resumed subscriber.
func (r *Resume) Live(m *Message) bool {
	if m.Position.Compare(r.since) <= 0 {
		return false
	}
	k := posKey{m.Position.Publisher, m.Position.Seq}
	if _, ok := r.replayed[k]; ok {
		// Each message arrives live at most once: forget it.
		delete(r.replayed, k)
		return false
	}
	return true
}

// fetchHistory fills w from up to FetchPeers subscribers of the topic,
// then marks it ready. The highest floor any of them reports becomes w's,
// if below its own: a peer could claim to hold more than it does, and a
// gap reported too early is better than one missed.
func (o *Overlay) fetchHistory(name string, t *pubsub.Topic, w *window) {
	defer o.wg.Done()
	defer close(w.ready)
	hc := o.cfg.History
	if hc.FetchPeers == 0 || len(o.host.Network().Peers()) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(o.ctx, hc.FetchTimeout)
	defer cancel()
	peers := awaitTopicPeers(ctx, t)
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	peers = peers[:min(len(peers), hc.FetchPeers)]

	var (
		mu      sync.Mutex
		entries []histEntry
		floor   Position
		got     int
		wg      sync.WaitGroup
	)
	for _, p := range peers {
		wg.Go(func() {
			es, f, err := o.fetchFrom(ctx, p, name, w.lim)
			if err != nil {
				o.metrics.historyFetches.WithLabelValues("failed").Inc()
				o.log.Debug("history fetch", "topic", name, "peer", p, "err", err)
				return
			}
			o.metrics.historyFetches.WithLabelValues("ok").Inc()
			mu.Lock()
			defer mu.Unlock()
			entries = append(entries, es...)
			if got == 0 || f.Compare(floor) > 0 {
				floor = f
			}
			got++
		})
	}
	wg.Wait()
	if got == 0 {
		return
	}
	n := o.history.merge(w, entries, floor, time.Now())
	o.log.Debug("history fetched", "topic", name, "peers", got, "messages", n)
}

// awaitTopicPeers returns the topic's known subscribers, waiting for the
// first one until ctx ends.
func awaitTopicPeers(ctx context.Context, t *pubsub.Topic) []peer.ID {
	events, err := t.EventHandler()
	if err != nil {
		return nil
	}
	defer events.Cancel()
	for {
		if ps := t.ListPeers(); len(ps) > 0 {
			return ps
		}
		if _, err := events.NextPeerEvent(ctx); err != nil {
			return nil
		}
	}
}

// subscribeGrace is how long a history request waits for gossipsub to
// learn that the requester subscribed: it asks right after subscribing,
// and its announcement may still be on the way.
const subscribeGrace = 2 * time.Second

// awaitSubscriber reports whether p is, or within bound becomes, a known
// subscriber of t.
func awaitSubscriber(ctx context.Context, t *pubsub.Topic, p peer.ID, bound time.Duration) bool {
	events, err := t.EventHandler()
	if err != nil {
		return false
	}
	defer events.Cancel()
	if slices.Contains(t.ListPeers(), p) {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	for {
		ev, err := events.NextPeerEvent(ctx)
		if err != nil {
			return false
		}
		if ev.Type == pubsub.PeerJoin && ev.Peer == p {
			return true
		}
	}
}

// maxHistoryFrame is the largest message frame of an answer.
func (o *Overlay) maxHistoryFrame() int {
	return o.cfg.MaxMessageSize + envelopeHeaderSize + maxCredential + maxHistoryKey + 1024
}

// fetchFrom asks p for the window of topic name, and checks each message
// as the validator would have on receipt, at its publication time: the
// right to publish then, and not older than the window's TTL now.
func (o *Overlay) fetchFrom(ctx context.Context, p peer.ID, name string, lim HistoryLimits) ([]histEntry, Position, error) {
	release, err := o.histAsks.Wait(ctx, p)
	if err != nil {
		return nil, Position{}, err
	}
	defer release()
	st, err := o.host.NewStream(ctx, p, o.HistoryProtocol())
	if err != nil {
		return nil, Position{}, err
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.Reset() })
	defer stop()
	deadline, _ := ctx.Deadline()
	st.SetDeadline(deadline)
	req := historyReq{topic: name, max: min(lim.Messages, maxHistoryAnswer)}
	if err := writeHistoryFrame(st, req.encode()); err != nil {
		return nil, Position{}, err
	}
	_ = st.CloseWrite()
	b, err := readHistoryFrame(st, maxHistoryHead)
	if err != nil {
		return nil, Position{}, err
	}
	head, err := decodeHistoryHead(b)
	if err != nil {
		return nil, Position{}, err
	}
	wire, now := wireTopic(name), time.Now()
	out := make([]histEntry, 0, head.count)
	prev, total := head.floor, 0
	for range head.count {
		b, err := readHistoryFrame(st, o.maxHistoryFrame())
		if err != nil {
			return nil, Position{}, err
		}
		if total += len(b); total > maxHistoryAnswerBytes {
			return nil, Position{}, fmt.Errorf("%w: answer over %d bytes", errBadHistory, maxHistoryAnswerBytes)
		}
		e, err := o.checkFetched(name, wire, b, now)
		if err != nil {
			return nil, Position{}, err
		}
		if e.pos.Compare(prev) <= 0 {
			return nil, Position{}, fmt.Errorf("%w: messages out of order", errBadHistory)
		}
		prev = e.pos
		out = append(out, e)
	}
	return out, head.floor, nil
}

// checkFetched decodes and checks one fetched message.
func (o *Overlay) checkFetched(name, wire string, b []byte, now time.Time) (histEntry, error) {
	m, pos, err := decodeHistoryMessage(b, wire)
	if err != nil {
		return histEntry{}, err
	}
	env, _ := decodeEnvelope(m.Data) // decodeHistoryMessage checked it
	switch {
	case len(env.payload) == 0 || len(env.payload) > o.cfg.MaxMessageSize:
		return histEntry{}, fmt.Errorf("%w: payload of %d bytes", errBadHistory, len(env.payload))
	case pos.Time.After(now.Add(o.cfg.Auth.MaxClockSkew)):
		return histEntry{}, fmt.Errorf("%w: message from the future", errBadHistory)
	}
	if o.cfg.Validator != nil {
		if err := o.cfg.Validator(o.ctx, name, pos.Publisher, env.payload); err != nil {
			return histEntry{}, fmt.Errorf("%w: %v", errBadHistory, err)
		}
	}
	sender, err := o.auth.check(name, pos.Publisher, env, pos.Time)
	if err != nil {
		return histEntry{}, err
	}
	return histEntry{pos: pos, msg: m, sender: sender, env: env, size: entrySize(m)}, nil
}

// handleHistory serves one history request: only a peer that gossipsub
// knows as a subscriber of the topic, which would receive its messages by
// gossip anyway, within the per-peer request rate, and the answer within
// maxHistoryServes (maxHistoryServesPerPeer of one peer).
func (o *Overlay) handleHistory(st network.Stream) {
	from := st.Conn().RemotePeer()
	if !o.enterHandler(st) {
		return
	}
	defer o.wg.Done()
	if !o.histServe.Allow(from, time.Now()) {
		o.metrics.historyServes.WithLabelValues("rate").Inc()
		st.Reset()
		return
	}
	stop := context.AfterFunc(o.ctx, func() { st.Reset() })
	defer stop()
	st.SetDeadline(time.Now().Add(cmp.Or(o.cfg.History.FetchTimeout, 5*time.Second)))
	q, w, err := o.readHistoryRequest(st, from)
	if err != nil {
		o.metrics.historyServes.WithLabelValues("refused").Inc()
		o.log.Debug("history request", "peer", from, "err", err)
		st.Reset()
		return
	}
	release, ok := o.histSlots.Take(from)
	if !ok {
		o.metrics.historyServes.WithLabelValues("busy").Inc()
		st.Reset()
		return
	}
	defer release()
	if err := o.serveHistory(st, w, q); err != nil {
		o.metrics.historyServes.WithLabelValues("refused").Inc()
		o.log.Debug("history request", "peer", from, "err", err)
		st.Reset()
		return
	}
	o.metrics.historyServes.WithLabelValues("ok").Inc()
	st.Close()
}

// errNotServed says that a history request was refused.
var errNotServed = errors.New("overlay: history not served")

// readHistoryRequest reads a history request and returns it with the
// topic's window, if from is a subscriber of the topic.
func (o *Overlay) readHistoryRequest(st network.Stream, from peer.ID) (historyReq, *window, error) {
	b, err := readHistoryFrame(st, maxHistoryHead)
	if err != nil {
		return historyReq{}, nil, err
	}
	q, err := decodeHistoryReq(b)
	if err != nil {
		return historyReq{}, nil, err
	}
	o.mu.Lock()
	ts := o.topics[q.topic]
	var w *window
	var t *pubsub.Topic
	if ts != nil {
		w, t = ts.hist, ts.topic
	}
	o.mu.Unlock()
	if w == nil {
		return historyReq{}, nil, fmt.Errorf("%w: no window of %q", errNotServed, q.topic)
	}
	if !awaitSubscriber(o.ctx, t, from, subscribeGrace) {
		return historyReq{}, nil, fmt.Errorf("%w: %s is not subscribed to %q", errNotServed, from, q.topic)
	}
	return q, w, nil
}

// serveHistory writes the answer to q from w.
func (o *Overlay) serveHistory(st network.Stream, w *window, q historyReq) error {
	var err error
	entries, floor := o.history.since(w, q.since, q.max, time.Now())
	frames := make([][]byte, len(entries))
	total := 0
	for i, e := range entries {
		if frames[i], err = proto.Marshal(e.msg); err != nil {
			return err
		}
		total += len(frames[i])
	}
	for len(frames) > 0 && total > maxHistoryAnswerBytes {
		total -= len(frames[0])
		floor = entries[0].pos
		frames, entries = frames[1:], entries[1:]
	}
	if err := writeHistoryFrame(st, historyHead{floor: floor, count: len(frames)}.encode()); err != nil {
		return err
	}
	for _, f := range frames {
		if err := writeHistoryFrame(st, f); err != nil {
			return err
		}
	}
	return nil
}
