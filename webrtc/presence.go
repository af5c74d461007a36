package webrtc

import (
	"fmt"
	"maps"
	"slices"
)

// Presence (Presencer): for a topic with presence, each browser that
// follows it is reported to the Bus as a member, and the topic's feed
// watches the Bus's presence events, keeps the membership, and sends each
// event to the topic's browsers as a PRESENCE frame, on the same path as
// messages. A browser that starts following the topic first gets a join
// for every current member.

// member is how the session counts in presence: its token's subject, or
// the session itself without one.
func (s *session) member() string {
	if s.claims.Subject != "" {
		return "token:" + s.claims.Subject
	}
	return fmt.Sprintf("session:%d", s.id)
}

// watchPresence starts following f's presence if the Bus has it for f's
// topic. b.mu must be held.
func (b *bridge) watchPresence(f *feed) {
	p, ok := b.srv.bus.(Presencer)
	if !ok || !p.PresenceOn(f.topic) {
		return
	}
	events, err := p.WatchPresence(f.ctx, f.topic)
	if err != nil {
		b.srv.log.Warn("presence not followed", "topic", f.topic, "err", err)
		return
	}
	f.presence = true
	f.members = make(map[[2]string]struct{})
	f.shown = make(map[*session]bool)
	b.srv.wg.Add(1)
	go func() {
		defer b.srv.wg.Done()
		for e := range events {
			fr, err := appendFrame(nil, &frame{typ: framePresence, topic: f.topic, joined: e.Joined, id: e.Member, from: e.Peer})
			if err != nil {
				continue
			}
			f.mu.Lock()
			if e.Joined {
				f.members[[2]string{e.Member, e.Peer}] = struct{}{}
			} else {
				delete(f.members, [2]string{e.Member, e.Peer})
			}
			subs := f.subs.Load().all
			f.mu.Unlock()
			for _, s := range subs {
				s.deliver(f.topic, [][]byte{fr}, [][]byte{fr})
			}
		}
	}()
}

// present reports s as a member of topic, which it now follows, and sends
// it the topic's current members. A session that left the topic (or
// closed) since it joined is not reported: leave has already run, and
// would not undo it.
func (b *bridge) present(topic string, s *session) {
	b.mu.Lock()
	f := b.feeds[topic]
	b.mu.Unlock()
	if f == nil || !f.presence {
		return
	}
	f.presMu.Lock()
	b.mu.Lock()
	in := slices.Contains(f.subs.Load().all, s)
	b.mu.Unlock()
	if !in || f.shown[s] {
		f.presMu.Unlock()
		return
	}
	f.shown[s] = true
	b.srv.bus.(Presencer).Present(topic, s.member(), true)
	f.presMu.Unlock()
	f.mu.Lock()
	keys := slices.Collect(maps.Keys(f.members))
	f.mu.Unlock()
	var frames [][]byte
	for _, k := range keys {
		if fr, err := appendFrame(nil, &frame{typ: framePresence, topic: topic, joined: true, id: k[0], from: k[1]}); err == nil {
			frames = append(frames, fr)
		}
	}
	if len(frames) > 0 {
		s.deliver(topic, batchFrames(frames, b.srv.cfg.MaxFrameSize), frames)
	}
}
