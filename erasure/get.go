package erasure

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Get returns the current value under key. It verifies the manifest, then
// fetches each segment from the holders most likely to answer, asking k at
// first and one more whenever one fails or HedgeAfter passes, discarding
// shards that fail verification (and noting the peer that sent them).
func (s *Service) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := s.get(ctx, key)
	switch {
	case err == nil:
		s.metrics.get("ok")
	case errors.Is(err, ErrNotFound):
		s.metrics.get("not_found")
	default:
		s.metrics.get("error")
	}
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	return v, nil
}

func (s *Service) get(ctx context.Context, key string) ([]byte, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	m, _, err := s.latest(ctx, DHTKey(s.key.Namespace(), s.key.ObjectID(key)))
	if err != nil {
		return nil, err
	}
	if m.Tombstone {
		return nil, fmt.Errorf("deleted at version %d: %w", m.Version, ErrNotFound)
	}
	codec, err := s.codec(m.Params)
	if err != nil {
		return nil, err
	}
	oc, err := s.key.ObjectCipher(key, m.DataVersion)
	if err != nil {
		return nil, err
	}
	fs := s.newFetchState(m, nil)
	out := make([]byte, 0, m.Size)
	for seg := range m.Hashes {
		shards, err := s.fetchSegment(ctx, m, seg, fs)
		if err != nil {
			return nil, err
		}
		plain, err := codec.DecodeSegment(oc, seg, m.Params.SegmentLen(m.Size, seg), shards, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, plain...)
	}
	return out, nil
}

// Manifest returns the current verified manifest of key (possibly a
// tombstone), e.g. for an HTTP handler that reports version and holders.
func (s *Service) Manifest(ctx context.Context, key string) (*Manifest, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	m, _, err := s.latest(ctx, DHTKey(s.key.Namespace(), s.key.ObjectID(key)))
	return m, err
}

// fetchState orders the holders of one object for a multi-segment fetch,
// moving those that fail to the back for the following segments, and
// remembers where handoff hints led.
type fetchState struct {
	order  []int
	demote map[int]bool
	// hinted[i]: the hints of index i were followed (once per fetch, not
	// per segment); via[i]: the holder they led to, which answered.
	hinted map[int]bool
	via    map[int]peer.ID
}

// holder returns the peer to ask for index i.
func (f *fetchState) holder(m *Manifest, i int) peer.ID {
	if p, ok := f.via[i]; ok {
		return p
	}
	return m.Placement[i]
}

// newFetchState orders shard indices: peers with a clean record first, then
// those online now, then by availability, then data shards (no decoding
// work) before parity. only, when not nil, restricts to those indices.
func (s *Service) newFetchState(m *Manifest, only []int) *fetchState {
	idx := only
	if idx == nil {
		idx = make([]int, len(m.Placement))
		for i := range idx {
			idx[i] = i
		}
	}
	reports := s.book.peerReports()
	type key struct {
		bad    int
		online bool
		avail  float64
	}
	keys := make(map[int]key, len(idx))
	for _, i := range idx {
		p := m.Placement[i]
		r := reports[p]
		online := p == s.h.ID() || s.h.Network().Connectedness(p) == network.Connected || s.avail.Online(p)
		keys[i] = key{bad: r.Corrupt*4 + r.Failures + r.Slow, online: online, avail: s.avail.Availability(p)}
	}
	order := append([]int(nil), idx...)
	sort.SliceStable(order, func(a, b int) bool {
		ka, kb := keys[order[a]], keys[order[b]]
		if ka.bad != kb.bad {
			return ka.bad < kb.bad
		}
		if ka.online != kb.online {
			return ka.online
		}
		if ka.avail != kb.avail {
			return ka.avail > kb.avail
		}
		return order[a] < order[b]
	})
	return &fetchState{order: order, demote: map[int]bool{}, hinted: map[int]bool{}, via: map[int]peer.ID{}}
}

func (f *fetchState) current() []int {
	out := make([]int, 0, len(f.order))
	for _, i := range f.order {
		if !f.demote[i] {
			out = append(out, i)
		}
	}
	for _, i := range f.order {
		if f.demote[i] {
			out = append(out, i)
		}
	}
	return out
}

// fetchSegment gets k verified shards of segment seg (nil for the others).
func (s *Service) fetchSegment(ctx context.Context, m *Manifest, seg int, fs *fetchState) ([][]byte, error) {
	n, k := m.Params.Total(), m.Params.DataShards
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		idx    int
		data   []byte
		err    error
		hinted bool    // fetched through handoff hints
		via    peer.ID // the holder the hints led to
	}
	// Buffered for every possible request (one to each holder, one through
	// its hints), so that abandoned ones finish without blocking after we
	// return.
	results := make(chan result, 2*n)
	order := fs.current()
	started := map[int]time.Time{}
	next, inflight, good := 0, 0, 0
	launch := func() bool {
		if next >= len(order) {
			return false
		}
		i := order[next]
		next++
		inflight++
		started[i] = s.cfg.Now()
		p := fs.holder(m, i)
		go func() {
			data, err := s.fetchShard(ctx, p, m.Hashes[seg][i])
			results <- result{idx: i, data: data, err: err}
		}()
		return true
	}
	// launchHinted asks the peer the holder of i handed its shards to, if
	// it left on purpose (Service.Handoff). In parallel with the next
	// holder: most failed holders are merely offline and have no hint.
	launchHinted := func(i int) {
		fs.hinted[i] = true
		inflight++
		go func() {
			data, via, err := s.fetchViaHints(ctx, m, seg, i)
			results <- result{idx: i, data: data, err: err, hinted: true, via: via}
		}()
	}
	for range k {
		launch()
	}
	hedge := time.NewTimer(s.cfg.HedgeAfter)
	defer hedge.Stop()
	shards := make([][]byte, n)
	var lastErr error
	for good < k {
		if inflight == 0 && !launch() {
			return nil, fmt.Errorf("segment %d: %w: %d of %d (last error: %v)", seg, ErrNotEnoughShards, good, k, lastErr)
		}
		select {
		case r := <-results:
			inflight--
			if !r.hinted {
				delete(started, r.idx)
			}
			if r.err != nil {
				lastErr = r.err
				if !r.hinted {
					fs.demote[r.idx] = true
					if !fs.hinted[r.idx] && ctx.Err() == nil {
						launchHinted(r.idx)
					}
				}
				launch()
				continue
			}
			if r.hinted {
				fs.via[r.idx] = r.via
				delete(fs.demote, r.idx)
			}
			if shards[r.idx] == nil {
				shards[r.idx] = r.data
				good++
			}
		case <-hedge.C:
			launch()
			hedge.Reset(s.cfg.HedgeAfter)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	// Whoever is still busy after a hedge interval was overtaken: note it
	// and ask it last for the next segment.
	now := s.cfg.Now()
	for i, t := range started {
		if now.Sub(t) >= s.cfg.HedgeAfter {
			fs.demote[i] = true
			s.book.slow(fs.holder(m, i))
		}
	}
	return shards, nil
}
