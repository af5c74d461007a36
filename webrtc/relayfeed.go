package webrtc

// The bridge's side of relays: its fan-out sends a relayed topic's
// members signed records instead of MESSAGE frames, and nothing to the
// members a relay feeds.

// fanOut delivers one round of topic messages (msgs, encoded as frames)
// to f's sessions.
func (b *bridge) fanOutRelayed(t *tree, f *feed, msgs []Message, frames [][]byte) {
	wire := batchFrames(frames, b.srv.cfg.MaxFrameSize)
	subs := *f.subs.Load()
	t.mu.Lock()
	defer t.mu.Unlock()
	records := t.stamp(b.srv.relays, msgs)
	var recWire [][]byte
	for _, s := range subs {
		switch m := t.members[s]; {
		case m == nil:
			s.deliver(f.topic, wire, frames)
		case m.feeder == nil && !m.pending && len(records) > 0:
			if recWire == nil {
				recWire = batchFrames(records, b.srv.cfg.MaxFrameSize)
			}
			s.deliver(f.topic, recWire, records)
		}
	}
}

// followed returns the sessions following each topic.
func (b *bridge) followed() map[string][]*session {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string][]*session, len(b.feeds))
	for topic, f := range b.feeds {
		out[topic] = *f.subs.Load()
	}
	return out
}

// isClosed reports whether the session has closed.
func (s *session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}
