package erasure

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// handoffParallel is how many objects a handoff works on at once: enough
// to keep a link busy with small objects, few enough that the shards of
// one object are not starved by the others before the deadline.
const handoffParallel = 4

// HandoffResult counts what Service.Handoff did. An index is one shard
// index of one object: its shard of every segment.
type HandoffResult struct {
	// Objects is how many objects the local store held shards of.
	Objects int
	// Held is how many shard indices this peer held for current manifests
	// (placed here, or handed here by a hint); HandedOff of them went to
	// another peer and a hint says where, Failed did not (no peer took them
	// before the deadline).
	Held, HandedOff, Failed int
	// Stale counts objects whose local shards no current manifest places
	// here (superseded, deleted, unknown): garbage, not handed off.
	Stale int
	// Unvisited counts objects not handled: the deadline passed first, or
	// their manifest could not be read.
	Unvisited int
	// Shards and Bytes are the shard files and bytes sent.
	Shards int
	Bytes  int64
}

// Handoff hands the shards this peer holds to other peers, for a planned
// departure: for every object it has shards of, it reads the current
// manifest, and for every index the manifest (or a trusted hint) places
// here, it picks a peer outside the placement by the placement policy
// (connected peers first), sends it that index's shard of every segment
// through the shard protocol, and publishes a Hint signed with this
// peer's identity key. Readers, Health and repair follow the hint when this
// peer does not answer; the writer's repair then adopts the new holder into
// the manifest without moving any data.
//
// It runs until everything is handed off, ctx ends or
// Config.HandoffTimeout passes. From its start the shard server refuses
// new shards (busy), so writers place them elsewhere. The local shards are
// kept: if the peer comes back before the writer adopts the new holder, it
// still serves them. It returns ctx's error if the deadline passed (what
// was done by then is in the result).
func (s *Service) Handoff(ctx context.Context) (HandoffResult, error) {
	var res HandoffResult
	if err := s.checkOpen(); err != nil {
		return res, err
	}
	if s.cfg.HandoffTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.HandoffTimeout)
		defer cancel()
	}
	s.server.leaving.Store(true)
	start := s.cfg.Now()

	type objKey struct {
		ns  NamespaceID
		obj ObjectID
	}
	local := map[objKey]map[Hash]bool{}
	held := map[objKey]int64{} // bytes held of each object
	shards := s.store.List()
	for _, info := range shards {
		for _, r := range info.Refs {
			k := objKey{r.Namespace, r.Object}
			if local[k] == nil {
				local[k] = map[Hash]bool{}
			}
			local[k][info.Hash] = true
			held[k] += info.Size
		}
	}
	// The objects that matter most go first, so that junk (tiny shards
	// under made-up objects, each costing a DHT lookup) cannot use up the
	// timeout: this peer's own namespace first, then the objects whose
	// manifest GC found placing shards here (made-up objects have none),
	// those whose manifest GC found missing last, and otherwise by the
	// bytes held here, most first.
	order := make([]objKey, 0, len(local))
	missing := make(map[objKey]bool, len(local))
	placed := make(map[objKey]bool, len(local))
	for k := range local {
		order = append(order, k)
		_, missing[k] = s.missing.get(DHTKey(k.ns, k.obj))
		_, placed[k] = s.placed.get(DHTKey(k.ns, k.obj))
	}
	own := s.key.Namespace()
	first := func(a, b bool) int { // a before b
		switch {
		case a && !b:
			return -1
		case b && !a:
			return 1
		}
		return 0
	}
	slices.SortFunc(order, func(a, b objKey) int {
		if c := first(a.ns == own, b.ns == own); c != 0 {
			return c
		}
		if c := first(placed[a], placed[b]); c != 0 {
			return c
		}
		if missing[a] != missing[b] {
			if missing[a] {
				return 1
			}
			return -1
		}
		return cmp.Compare(held[b], held[a])
	})
	res.Objects = len(local)
	s.log.Info("handing off shards", "shards", len(shards), "objects", len(local))

	var mu sync.Mutex // guards res
	work := make(chan objKey)
	var wg sync.WaitGroup
	for range min(handoffParallel, len(local)) {
		wg.Go(func() {
			for k := range work {
				r := s.handoffObject(ctx, k.ns, k.obj, local[k])
				mu.Lock()
				res.Held += r.Held
				res.HandedOff += r.HandedOff
				res.Failed += r.Failed
				res.Stale += r.Stale
				res.Shards += r.Shards
				res.Bytes += r.Bytes
				mu.Unlock()
			}
		})
	}
	done := 0
feed:
	for _, k := range order {
		select {
		case work <- k:
			done++
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	res.Unvisited += len(local) - done
	s.log.Info("handoff done", "handed_off", res.HandedOff, "failed", res.Failed, "held", res.Held,
		"stale_objects", res.Stale, "unvisited_objects", res.Unvisited, "shards_sent", res.Shards,
		"bytes_sent", res.Bytes, "elapsed", s.cfg.Now().Sub(start).Round(time.Millisecond))
	return res, ctx.Err()
}

// handoffObject hands off the indices of one object held here; have is
// the set of its shard hashes in the local store.
func (s *Service) handoffObject(ctx context.Context, ns NamespaceID, obj ObjectID, have map[Hash]bool) HandoffResult {
	var res HandoffResult
	dhtKey := DHTKey(ns, obj)
	m, _, err := s.latest(ctx, dhtKey)
	switch {
	case errors.Is(err, ErrNotFound):
		res.Stale++
		return res
	case err != nil:
		s.log.Info("handoff: cannot read manifest", "object", obj, "err", err)
		res.Unvisited++
		return res
	case m.Tombstone:
		res.Stale++
		return res
	}
	self := s.h.ID()
	indices := map[int]bool{}
	for h := range have {
		if _, i, ok := m.HasShard(h); ok {
			indices[i] = true
		}
	}
	type held struct {
		i     int
		chain []peer.ID
	}
	var mine []held
	for i := range indices {
		if m.Placement[i] == self {
			mine = append(mine, held{i: i})
			continue
		}
		chain, _, err := s.hintChain(ctx, m, i)
		if err == nil && len(chain) > 0 && chain[len(chain)-1] == self {
			mine = append(mine, held{i, chain})
		}
	}
	if len(mine) == 0 {
		res.Stale++
		return res
	}
	var cands []Candidate
	type failure struct {
		i   int
		err error
	}
	var failed []failure
	for _, h := range mine {
		res.Held++
		complete := true
		for seg := range m.Hashes {
			if _, ok := s.store.Stat(m.Hashes[seg][h.i]); !ok {
				complete = false
			}
		}
		if !complete {
			// An incomplete column is no better than none to a reader;
			// repair regenerates it.
			s.log.Debug("handoff: incomplete shard column, not handed off", "object", obj, "index", h.i)
			res.Failed++
			s.metrics.handoff("failed", len(m.Hashes))
			continue
		}
		if cands == nil {
			if cands, err = s.candidates(ctx, dhtKey); err != nil {
				s.log.Debug("handoff: no candidates", "object", obj, "err", err)
			}
		}
		to, n, b, err := s.handoffIndex(ctx, m, h.i, h.chain, cands)
		res.Shards += n
		res.Bytes += b
		if err != nil {
			res.Failed++
			s.metrics.handoff("failed", len(m.Hashes))
			failed = append(failed, failure{h.i, err})
			continue
		}
		res.HandedOff++
		s.metrics.handoff("handed_off", len(m.Hashes))
		s.log.Debug("handed off shards", "object", obj, "index", h.i, "to", to, "shards", n)
	}
	// Whether a shard not handed off matters: with fewer than k indices
	// held elsewhere (at best: if their holders are up), the object is
	// unreadable while this peer is away, which its operator should hear
	// of; otherwise repair will regenerate the shard, as it would after
	// any departure.
	elsewhere := len(m.Placement) - len(mine) + res.HandedOff
	level, msg := slog.LevelInfo, "shard not handed off"
	if elsewhere < m.Params.DataShards {
		level, msg = slog.LevelWarn, "shard not handed off: the object is unreadable while this peer is away"
	}
	for _, f := range failed {
		s.log.Log(ctx, level, msg, "object", obj, "index", f.i, "shards_elsewhere", elsewhere, "needed", m.Params.DataShards, "err", f.err)
	}
	return res
}

// handoffIndex sends index i of m (every segment, read from the local
// store) to a new peer and publishes the hint. chain is the hint chain
// that led here (nil when the manifest places i here).
func (s *Service) handoffIndex(ctx context.Context, m *Manifest, i int, chain []peer.ID, cands []Candidate) (peer.ID, int, int64, error) {
	self := s.h.ID()
	byID := newCandidateMap(cands)
	exclude := map[peer.ID]Candidate{self: {ID: self, Zone: s.cfg.Zone}}
	for _, p := range append(append([]peer.ID(nil), m.Placement...), chain...) {
		exclude[p] = byID.get(p)
	}
	var sent int
	var bytes int64
	var lastErr error
	for attempt := 0; attempt < s.cfg.StoreAttempts; attempt++ {
		if err := ctx.Err(); err != nil {
			return "", sent, bytes, err
		}
		to := s.handoffTarget(m.Object, i, cands, exclude)
		if to == "" {
			if lastErr == nil {
				lastErr = ErrNotEnoughPeers
			}
			return "", sent, bytes, fmt.Errorf("no peer to take it: %w", lastErr)
		}
		exclude[to] = byID.get(to)
		n, b, err := s.sendLocalColumn(ctx, to, m, i)
		sent += n
		bytes += b
		if err != nil {
			s.log.Debug("handoff target failed, trying another", "object", m.Object, "index", i, "peer", to, "err", err)
			lastErr = err
			continue
		}
		priv := s.h.Peerstore().PrivKey(self)
		h := &Hint{Namespace: m.Namespace(), Object: m.Object, DataVersion: m.DataVersion, Index: i,
			Old: self, New: to, Created: s.cfg.Now()}
		rec, err := h.Sign(priv)
		if err == nil {
			err = s.records.PutValue(ctx, h.Key(), rec)
		}
		if err != nil {
			// The shards reached the peer, but nobody will know: its GC
			// removes them.
			return "", sent, bytes, fmt.Errorf("publish hint: %w", err)
		}
		return to, sent, bytes, nil
	}
	return "", sent, bytes, lastErr
}

// handoffTarget picks the new holder of index i by the placement policy,
// among connected candidates first: a peer we are talking to is almost
// surely online, and dialling one that is not could eat the deadline.
func (s *Service) handoffTarget(obj ObjectID, i int, cands []Candidate, exclude map[peer.ID]Candidate) peer.ID {
	var online []Candidate
	for _, c := range cands {
		if s.h.Network().Connectedness(c.ID) == network.Connected {
			online = append(online, c)
		}
	}
	for _, pool := range [][]Candidate{online, cands} {
		if t := PlaceShards(s.key.PlacementSeed(obj), []int{i}, pool, exclude); len(t) > 0 {
			return t[0]
		}
	}
	return ""
}

// sendLocalColumn stores index i of every segment of m, read from the
// local store, on p. It returns the shards and bytes sent.
func (s *Service) sendLocalColumn(ctx context.Context, p peer.ID, m *Manifest, i int) (int, int64, error) {
	var n int
	var bytes int64
	for seg := range m.Hashes {
		h := m.Hashes[seg][i]
		_, data, err := s.store.Get(h)
		if err != nil {
			return n, bytes, fmt.Errorf("read local shard: %w", err)
		}
		ref := ShardRef{Namespace: m.Namespace(), Object: m.Object, Version: m.DataVersion, Segment: uint32(seg), Index: uint16(i)}
		if err := s.storeShard(ctx, p, h, ref, data); err != nil {
			return n, bytes, err
		}
		n++
		bytes += int64(len(data))
	}
	return n, bytes, nil
}

// lookupHint gets and verifies the hint old left for index i of an object.
// It returns an error wrapping ErrNotFound when there is none.
func (s *Service) lookupHint(ctx context.Context, ns NamespaceID, obj ObjectID, i int, old peer.ID) (*Hint, []byte, error) {
	return getRecord(ctx, s.records, "hint", HintKey(ns, obj, i, old), validateHint)
}

// hintChain follows handoff hints for index i of m from the holder the
// manifest names: the hint that holder left, then the hint its successor
// left, up to MaxHandoffChain hops. Only hints for m's data version count,
// and a peer never appears twice. It returns the successive new holders
// (the last is the current one) with their records; the error is set only
// when a lookup failed for another reason than "no hint" (GC keeps shards
// on doubt).
func (s *Service) hintChain(ctx context.Context, m *Manifest, i int) ([]peer.ID, [][]byte, error) {
	ns := m.Namespace()
	p := m.Placement[i]
	seen := map[peer.ID]bool{p: true}
	var chain []peer.ID
	var recs [][]byte
	for range MaxHandoffChain {
		h, rec, err := s.lookupHint(ctx, ns, m.Object, i, p)
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			return chain, recs, err
		}
		if h.DataVersion != m.DataVersion || seen[h.New] {
			break
		}
		seen[h.New] = true
		chain = append(chain, h.New)
		recs = append(recs, rec)
		p = h.New
	}
	return chain, recs, nil
}

// fetchViaHints fetches shard i of segment seg from the holders the hints
// of index i lead to, the last (current) one first. It returns the holder
// that answered.
func (s *Service) fetchViaHints(ctx context.Context, m *Manifest, seg, i int) ([]byte, peer.ID, error) {
	data, p, err := s.fetchViaHandoffHints(ctx, m, seg, i)
	if err != nil {
		// A volunteer may have regenerated the index elsewhere.
		if d, rp, rerr := s.fetchViaRepairHint(ctx, m, seg, i); rerr == nil {
			return d, rp, nil
		}
	}
	return data, p, err
}

func (s *Service) fetchViaHandoffHints(ctx context.Context, m *Manifest, seg, i int) ([]byte, peer.ID, error) {
	chain, _, err := s.hintChain(ctx, m, i)
	if len(chain) == 0 {
		if err == nil {
			err = fmt.Errorf("no handoff hint for index %d: %w", i, ErrNotFound)
		}
		return nil, "", err
	}
	for j := len(chain) - 1; j >= 0; j-- {
		data, ferr := s.fetchShard(ctx, chain[j], m.Hashes[seg][i])
		if ferr == nil {
			return data, chain[j], nil
		}
		err = ferr
	}
	return nil, "", fmt.Errorf("handed-off holders of index %d: %w", i, err)
}

// checkHandedOff looks for the holder of index i that hints lead to when
// the manifest's holder did not answer: the status of the latest holder of
// the chain that has every shard (HandedOff set), or false if none has.
func (s *Service) checkHandedOff(ctx context.Context, m *Manifest, i int) (HolderStatus, bool) {
	chain, _, _ := s.hintChain(ctx, m, i)
	for j := len(chain) - 1; j >= 0; j-- {
		st := s.checkIndex(ctx, m, i, chain[j])
		if st.Reachable && st.Complete {
			st.HandedOff = true
			return st, true
		}
	}
	return HolderStatus{}, false
}

// keepHandedOff decides, in GC, whether to keep this peer's copy of index
// i of m, which m places on another peer: kept while a trusted hint chain
// ends here and the manifest's holder does not answer with every shard
// (when it does, our copy is redundant: it came back before the writer
// adopted us). A kept hint is republished now and then, since the peer
// that signed it has left and DHT records expire.
func (s *Service) keepHandedOff(ctx context.Context, m *Manifest, i int) (bool, error) {
	chain, recs, err := s.hintChain(ctx, m, i)
	if err != nil {
		return true, err // never delete on doubt
	}
	if len(chain) == 0 || chain[len(chain)-1] != s.h.ID() {
		return s.keepRepaired(ctx, m, i) // or regenerated here by a volunteer
	}
	if st := s.checkIndex(ctx, m, i, m.Placement[i]); st.Reachable && st.Complete {
		s.log.Debug("handed-off shards are back on their holder; dropping our copy", "object", m.Object, "index", i, "holder", m.Placement[i])
		return false, nil
	}
	last := recs[len(recs)-1]
	key := HintKey(m.Namespace(), m.Object, i, m.Placement[i])
	if len(chain) > 1 {
		key = HintKey(m.Namespace(), m.Object, i, chain[len(chain)-2])
	}
	now := s.cfg.Now()
	if prev, _ := s.hintsRepublished.get(key); now.Sub(prev) >= s.cfg.RepublishInterval {
		if err := s.records.PutValue(ctx, key, last); err != nil {
			s.log.Debug("republish handoff hint", "key", key, "err", err)
		} else {
			s.hintsRepublished.set(key, now)
		}
	}
	return true, nil
}
