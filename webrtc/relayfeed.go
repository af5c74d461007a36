package webrtc

// The bridge's side of relays: its fan-out sends a relayed topic's
// members signed records instead of MESSAGE frames, and nothing to the
// members a relay feeds.

// fanOutRelayed delivers one round of topic messages (msgs, encoded as
// frames) to f's sessions: records to the members the peer feeds, MESSAGE
// frames to the sessions not in the tree, nothing to the others.
func (b *bridge) fanOutRelayed(t *tree, f *feed, msgs []Message, frames [][]byte) {
	wire := batchFrames(frames, b.srv.cfg.MaxFrameSize)
	subs := f.subs.Load()
	t.mu.Lock()
	defer t.mu.Unlock()
	records := t.stamp(b.srv.relays, msgs)
	fed, plain := t.targets(subs)
	for _, s := range plain {
		s.deliver(f.topic, wire, frames)
	}
	if len(records) == 0 || len(fed) == 0 {
		return
	}
	recWire := batchFrames(records, b.srv.cfg.MaxFrameSize)
	for _, s := range fed {
		s.deliver(f.topic, recWire, records)
	}
}

// targets returns, of subs, the members the peer feeds records and the
// sessions not in the tree; computed again only when the tree or subs
// changed, so that a round costs the sessions the peer writes to, not
// every follower of the topic. t.mu is held.
func (t *tree) targets(subs *subscribers) (fed, plain []*session) {
	if t.targetsOf != subs || !t.targetsOK {
		t.fed, t.plain = t.fed[:0], t.plain[:0]
		for _, s := range subs.all {
			switch m := t.members[s]; {
			case m == nil:
				t.plain = append(t.plain, s)
			case m.feeder == nil && !m.pending:
				t.fed = append(t.fed, s)
			}
		}
		t.targetsOf, t.targetsOK = subs, true
	}
	return t.fed, t.plain
}

// followed returns the sessions following each topic.
func (b *bridge) followed() map[string][]*session {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string][]*session, len(b.feeds))
	for topic, f := range b.feeds {
		out[topic] = f.subs.Load().all
	}
	return out
}

// isClosed reports whether the session has closed.
func (s *session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
