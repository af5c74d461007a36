package erasure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
)

// Records is the DHT as the service uses it: manifests are put and got
// under DHTKey keys, and the DHT runs ManifestValidator on them. kad-dht's
// *dht.IpfsDHT satisfies it.
type Records interface {
	PutValue(ctx context.Context, key string, value []byte, opts ...routing.Option) error
	// GetValue returns the best (highest version) record, or an error
	// wrapping routing.ErrNotFound when there is none.
	GetValue(ctx context.Context, key string, opts ...routing.Option) ([]byte, error)
}

// PeerInfo is a peer that could hold shards.
type PeerInfo struct {
	ID   peer.ID
	Zone string // failure-domain label, "" if unknown
}

// Peers supplies candidate storage peers, e.g. the DHT's closest peers to
// the key together with the currently connected peers. The service adds
// itself; returning it as well does no harm.
type Peers interface {
	StoragePeers(ctx context.Context, key string) ([]PeerInfo, error)
}

// Deps are the parts a Service is built from; node/ wires them.
type Deps struct {
	Host    host.Host
	Key     *AppKey // the namespace this peer reads and writes
	Store   *Store  // the local shard store, served to others
	Records Records
	Peers   Peers
	// Availability may be nil: the service then makes its own. Either way
	// the service feeds it with connect/disconnect events and request
	// outcomes.
	Availability *AvailabilityTracker
}

// PeerReport counts what a peer did wrong in this service's experience.
type PeerReport struct {
	Corrupt  int // shards that failed verification
	Failures int // requests that failed or timed out
	Slow     int // fetches overtaken by a hedged request and abandoned
}

// PutResult describes a stored object.
type PutResult struct {
	Object  ObjectID
	Version uint64
	Size    int64
	K, M    int
	Holders []peer.ID // Holders[i] holds shard i of every segment
	// Prob is the estimated probability that at least K holders are online;
	// TargetMet says whether it reached Config.Target (it cannot when there
	// are too few or too unreliable peers).
	Prob      float64
	TargetMet bool
}

// HolderHealth is one holder's part of a Health report.
type HolderHealth struct {
	Index        int
	Peer         peer.ID
	Reachable    bool // answered now
	Complete     bool // has all its shards
	Availability float64
	State        ShardState
	// HandedOff: Peer is not the manifest's holder of Index but the peer
	// that holder handed its shards to when it left (see Service.Handoff);
	// repair will adopt it.
	HandedOff bool
}

// Health is the state of an object's redundancy right now.
type Health struct {
	Object  ObjectID
	Version uint64
	K, M    int
	// Reachable counts holders online now with all their shards; Needed is
	// K. The object can be read while Reachable >= Needed.
	Reachable, Needed, Total int
	Prob                     float64 // estimated P(at least K online)
	Repair                   RepairAction
	Holders                  []HolderHealth
}

// Service stores, reads, deletes and repairs objects of one namespace, and
// serves the shards this peer holds for everyone. Create it with New; Close
// stops it.
type Service struct {
	cfg     Config
	h       host.Host
	key     *AppKey
	store   *Store
	records Records
	peers   Peers
	avail   *AvailabilityTracker
	log     *slog.Logger
	metrics *metrics
	server  *ShardServer
	client  *Client
	sched   *RepairScheduler
	notify  *network.NotifyBundle
	started time.Time

	codecMu sync.Mutex
	codecs  map[Params]*Codec

	// objLocks serialise Put, Delete and repair of the same object within
	// this service, so a repair never republishes old content over a Put
	// that raced it. Striped: objects are uniformly spread by their id.
	objLocks [64]objLock

	mu          sync.Mutex
	full        map[peer.ID]time.Time  // peers out of quota, until
	failing     map[peer.ID]time.Time  // peers whose last request failed, until
	reports     map[peer.ID]PeerReport // misbehaviour seen
	republished map[ObjectID]time.Time
	missing     map[string]time.Time // GC: DHT key whose manifest is not found, since
	// hintsRepublished: when GC last re-put a handoff hint that keeps a
	// shard here, by hint key.
	hintsRepublished map[string]time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New starts a service: it registers the shard protocol on the host,
// subscribes to connection events and, unless disabled, starts the repair
// loop.
func New(cfg Config, d Deps) (*Service, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if d.Host == nil || d.Key == nil || d.Store == nil || d.Records == nil || d.Peers == nil {
		return nil, errors.New("erasure: New needs Host, Key, Store, Records and Peers")
	}
	if d.Availability == nil {
		d.Availability = NewAvailabilityTracker(AvailabilityConfig{Now: cfg.Now})
	}
	m, err := newMetrics(cfg.Registerer, d.Store)
	if err != nil {
		return nil, fmt.Errorf("erasure: register metrics: %w", err)
	}
	sched, err := NewRepairScheduler(cfg.Scheduler)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Service{
		cfg: cfg, h: d.Host, key: d.Key, store: d.Store, records: d.Records, peers: d.Peers,
		avail: d.Availability, log: cfg.Logger.With("component", "erasure"), metrics: m,
		client: NewClient(d.Host, cfg.RequestTimeout), sched: sched, started: cfg.Now(),
		codecs: map[Params]*Codec{}, full: map[peer.ID]time.Time{}, failing: map[peer.ID]time.Time{}, reports: map[peer.ID]PeerReport{},
		republished: map[ObjectID]time.Time{}, missing: map[string]time.Time{}, hintsRepublished: map[string]time.Time{},
		ctx: ctx, cancel: cancel,
	}
	for i := range s.objLocks {
		s.objLocks[i] = make(objLock, 1)
	}
	srvCfg := cfg.Server
	srvCfg.Logger = cfg.Logger
	if s.server, err = newShardServer(d.Host, d.Store, srvCfg, m); err != nil {
		cancel()
		return nil, err
	}
	// Availability from connection events. Disconnected fires per
	// connection; the peer is offline only when the last one closes.
	s.notify = &network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) { s.avail.Connected(c.RemotePeer()) },
		DisconnectedF: func(n network.Network, c network.Conn) {
			if n.Connectedness(c.RemotePeer()) != network.Connected {
				s.avail.Disconnected(c.RemotePeer())
			}
		},
	}
	d.Host.Network().Notify(s.notify)
	if !cfg.DisableRepair {
		s.wg.Add(1)
		go s.repairLoop()
	}
	if cfg.GCInterval > 0 {
		s.wg.Add(1)
		go s.gcLoop()
	}
	return s, nil
}

// Close stops the repair loop and the shard server and waits for them. It
// does not close the store or the host, which belong to the caller.
func (s *Service) Close() error {
	s.once.Do(func() {
		s.cancel()
		s.h.Network().StopNotify(s.notify)
		s.server.Close()
		s.wg.Wait()
	})
	return nil
}

// Done is closed when the service is closed.
func (s *Service) Done() <-chan struct{} { return s.ctx.Done() }

// Namespace returns the namespace this service reads and writes.
func (s *Service) Namespace() NamespaceID { return s.key.Namespace() }

// Availability returns the tracker the service feeds.
func (s *Service) Availability() *AvailabilityTracker { return s.avail }

// Store returns the local shard store.
func (s *Service) Store() *Store { return s.store }

// PeerReports returns what each misbehaving peer did, as seen by this service.
func (s *Service) PeerReports() map[peer.ID]PeerReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[peer.ID]PeerReport, len(s.reports))
	for p, r := range s.reports {
		out[p] = r
	}
	return out
}

func (s *Service) report(p peer.ID, f func(*PeerReport)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.reports[p]
	f(&r)
	s.reports[p] = r
}

// checkOpen returns ErrClosed once Close has been called.
func (s *Service) checkOpen() error {
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	return nil
}

func (s *Service) objLock(obj ObjectID) objLock {
	return s.objLocks[int(obj[0])%len(s.objLocks)]
}

// objLock is a mutex made of a channel. The holder of an object lock
// waits on the network; a sync.Mutex waiter is not "durably blocked" for
// testing/synctest, so a Put waiting behind a repair would stop virtual
// time in simulations (sim/, the simnet tests) for good. A channel waiter
// is durably blocked, and otherwise the two behave alike.
type objLock chan struct{}

func (l objLock) Lock()   { l <- struct{}{} }
func (l objLock) Unlock() { <-l }

func (l objLock) TryLock() bool {
	select {
	case l <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s *Service) codec(p Params) (*Codec, error) {
	s.codecMu.Lock()
	defer s.codecMu.Unlock()
	if c, ok := s.codecs[p]; ok {
		return c, nil
	}
	c, err := NewCodec(p)
	if err != nil {
		return nil, err
	}
	s.codecs[p] = c
	return c, nil
}

func checkKey(key string) error {
	if key == "" || len(key) > MaxObjectKeyLen {
		return fmt.Errorf("%w: object key of %d bytes (want 1..%d)", ErrInvalidKey, len(key), MaxObjectKeyLen)
	}
	return nil
}

// latest fetches and verifies the current manifest under dhtKey. It returns
// an error wrapping ErrNotFound when the DHT has none.
func (s *Service) latest(ctx context.Context, dhtKey string) (*Manifest, []byte, error) {
	b, err := s.records.GetValue(ctx, dhtKey)
	if errors.Is(err, routing.ErrNotFound) {
		return nil, nil, fmt.Errorf("manifest %s: %w", dhtKey, ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("get manifest %s: %w", dhtKey, err)
	}
	m, err := validateRecord(dhtKey, b)
	if err != nil {
		return nil, nil, fmt.Errorf("get manifest %s: %w", dhtKey, err)
	}
	return m, b, nil
}

// candidates returns the peers that may hold shards of the object under
// dhtKey, this peer included, with availability and quota state.
func (s *Service) candidates(ctx context.Context, dhtKey string) ([]Candidate, error) {
	infos, err := s.peers.StoragePeers(ctx, dhtKey)
	if err != nil {
		return nil, fmt.Errorf("find storage peers: %w", err)
	}
	now := s.cfg.Now()
	self := s.h.ID()
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, until := range s.full {
		if !now.Before(until) {
			delete(s.full, p)
		}
	}
	for p, until := range s.failing {
		if !now.Before(until) {
			delete(s.failing, p)
		}
	}
	seen := map[peer.ID]bool{}
	var out []Candidate
	add := func(id peer.ID, zone string) {
		if seen[id] || id == "" {
			return
		}
		seen[id] = true
		_, full := s.full[id]
		_, failing := s.failing[id]
		out = append(out, Candidate{ID: id, Zone: zone, HasQuota: !full && !failing, Availability: s.avail.Availability(id)})
	}
	add(self, s.cfg.Zone)
	for _, pi := range infos {
		add(pi.ID, pi.Zone)
	}
	return out, nil
}

// setFailing starts (or, with ok, ends) p's failure backoff.
func (s *Service) setFailing(p peer.ID, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		delete(s.failing, p)
	} else if s.cfg.FailureBackoff > 0 {
		s.failing[p] = s.cfg.Now().Add(s.cfg.FailureBackoff)
	}
}

func (s *Service) markFull(p peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.full[p] = s.cfg.Now().Add(s.cfg.QuotaBackoff)
}

// storeShard puts one shard on p (the local store when p is this peer).
func (s *Service) storeShard(ctx context.Context, p peer.ID, h Hash, ref ShardRef, data []byte) error {
	var err error
	if p == s.h.ID() {
		err = s.store.Put(h, ref, data)
	} else {
		err = s.client.Store(ctx, p, h, ref, data)
		s.noteOutcome(ctx, p, err)
	}
	if errors.Is(err, ErrQuotaExceeded) {
		s.markFull(p)
	}
	return err
}

// fetchShard gets one verified shard from p (or the local store).
func (s *Service) fetchShard(ctx context.Context, p peer.ID, h Hash) ([]byte, error) {
	if p == s.h.ID() {
		_, data, err := s.store.Get(h)
		return data, err
	}
	data, err := s.client.Fetch(ctx, p, h)
	s.noteOutcome(ctx, p, err)
	return data, err
}

// noteOutcome feeds a request's outcome to availability tracking and peer
// reports. A request we cancelled ourselves says nothing about the peer.
func (s *Service) noteOutcome(ctx context.Context, p peer.ID, err error) {
	switch {
	case err == nil:
		s.avail.Succeeded(p)
		s.setFailing(p, true)
	case errors.Is(err, ErrHashMismatch):
		// Evidence against the peer even if we no longer needed the shard.
		s.avail.Succeeded(p) // it answered: online, but lying or broken
		s.metrics.bad()
		s.report(p, func(r *PeerReport) { r.Corrupt++ })
		s.log.Warn("peer sent a shard that fails verification", "peer", p, "err", err)
	case ctx.Err() != nil:
	case errors.Is(err, ErrQuotaExceeded), errors.Is(err, ErrNotFound), errors.Is(err, ErrBusy),
		errors.Is(err, ErrUnauthorized), errors.Is(err, ErrBadMessage):
		s.avail.Succeeded(p) // a clear answer: the peer is online
		s.setFailing(p, true)
	default:
		s.avail.Failed(p)
		s.setFailing(p, false)
		s.report(p, func(r *PeerReport) { r.Failures++ })
	}
}

// fitSegmentSize doubles the segment size until a manifest of a value of
// size bytes with n shards fits in MaxManifestSize.
func fitSegmentSize(size int64, seg, n int, holders []peer.ID) (int, error) {
	placement := 0
	for _, p := range holders {
		placement += 1 + len(p)
	}
	for ; seg <= MaxSegmentSize; seg *= 2 {
		p := Params{DataShards: 1, SegmentSize: seg}
		if manifestHeaderLen+p.Segments(size)*n*32+placement+64 <= MaxManifestSize {
			return seg, nil
		}
	}
	return 0, fmt.Errorf("%w: %d bytes do not fit one manifest with %d shards", ErrValueTooLarge, size, n)
}

// Put stores value under key as a new version and returns where it went.
// It encodes the value, chooses m from the candidates' availability,
// uploads each shard index to its holder (replacing holders that refuse or
// fail), and only then publishes the signed manifest.
func (s *Service) Put(ctx context.Context, key string, value []byte) (*PutResult, error) {
	res, err := s.put(ctx, key, value)
	if err != nil {
		s.metrics.put("error")
		return nil, fmt.Errorf("put %q: %w", key, err)
	}
	s.metrics.put("ok")
	return res, nil
}

func (s *Service) put(ctx context.Context, key string, value []byte) (*PutResult, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if int64(len(value)) > s.cfg.MaxValueSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrValueTooLarge, len(value), s.cfg.MaxValueSize)
	}
	obj := s.key.ObjectID(key)
	dhtKey := DHTKey(s.key.Namespace(), obj)
	mu := s.objLock(obj)
	mu.Lock()
	defer mu.Unlock()
	var version uint64 = 1
	prev, _, err := s.latest(ctx, dhtKey)
	switch {
	case err == nil:
		version = prev.Version + 1
	case !errors.Is(err, ErrNotFound):
		return nil, err
	}
	// Round one plans with what we know. If holders fail and no spare peer
	// is left, round two plans again without them: fewer candidates may
	// mean a smaller m, which needs a fresh encoding.
	failed := map[peer.ID]bool{}
	for round := 0; ; round++ {
		res, err := s.putOnce(ctx, key, obj, version, value, failed)
		if err == nil || round == 1 || !errors.Is(err, ErrNotEnoughPeers) || ctx.Err() != nil {
			return res, err
		}
		s.log.Debug("put: holders failed and no spare peer left; planning again without them",
			"key", key, "failed", len(failed), "err", err)
	}
}

// putOnce plans, encodes and uploads one attempt at a Put, and publishes
// the manifest. Peers that fail are added to failed; shards that reached a
// peer in a failed attempt are deleted again, best effort.
func (s *Service) putOnce(ctx context.Context, key string, obj ObjectID, version uint64, value []byte, failed map[peer.ID]bool) (*PutResult, error) {
	dhtKey := DHTKey(s.key.Namespace(), obj)
	cands, err := s.candidates(ctx, dhtKey)
	if err != nil {
		return nil, err
	}
	for i := range cands {
		if failed[cands[i].ID] {
			cands[i].HasQuota = false
		}
	}
	plan, err := PlanPut(obj, cands, s.cfg.PutPolicy())
	if err != nil {
		return nil, err
	}
	k, m, holders := plan.K, plan.M, plan.Holders
	if !plan.TargetMet {
		s.log.Info("redundancy target not reachable with the peers available; storing with the most shards possible",
			"key", key, "k", k, "m", m, "prob", plan.Prob, "target", s.cfg.Target, "candidates", len(cands))
	}
	segSize, err := fitSegmentSize(int64(len(value)), s.cfg.SegmentSize, k+m, holders)
	if err != nil {
		return nil, err
	}
	params := Params{DataShards: k, ParityShards: m, SegmentSize: segSize}
	codec, err := s.codec(params)
	if err != nil {
		return nil, err
	}
	oc, err := s.key.ObjectCipher(key, version)
	if err != nil {
		return nil, err
	}
	enc, err := codec.Encode(oc, value)
	if err != nil {
		return nil, err
	}
	if err := s.upload(ctx, obj, version, enc, holders, cands, failed); err != nil {
		s.discard(ctx, enc, holders, failed)
		return nil, err
	}
	man := &Manifest{
		Object: obj, Version: version, DataVersion: version, Created: s.cfg.Now(),
		Size: int64(len(value)), Params: params, Hashes: enc.Hashes, Placement: holders,
	}
	rec, err := man.Sign(s.key)
	if err != nil {
		return nil, err
	}
	if err := s.records.PutValue(ctx, dhtKey, rec); err != nil {
		s.discard(ctx, enc, holders, nil)
		return nil, fmt.Errorf("publish manifest: %w", err)
	}
	s.mu.Lock()
	s.republished[obj] = s.cfg.Now()
	s.mu.Unlock()
	s.sched.Add(obj, s.cfg.Now())
	s.log.Debug("put", "key", key, "version", version, "size", len(value), "k", k, "m", m, "prob", plan.Prob)
	return &PutResult{Object: obj, Version: version, Size: int64(len(value)), K: k, M: m,
		Holders: holders, Prob: plan.Prob, TargetMet: plan.TargetMet}, nil
}

// discard deletes, best effort, the shards of a Put that will not be
// published, from every holder not in skip. What it misses, GC removes.
func (s *Service) discard(ctx context.Context, enc *Encoded, holders []peer.ID, skip map[peer.ID]bool) {
	var wg sync.WaitGroup
	for i, p := range holders {
		if skip[p] {
			continue
		}
		wg.Go(func() { s.deleteIndex(ctx, enc.Hashes, i, p) })
	}
	wg.Wait()
}

// upload sends every shard index of enc to its holder in parallel,
// replacing a holder that refuses or fails by the next peer PlaceShards
// offers (excluding every peer already holding or tried). holders is
// updated in place; peers that failed are added to failed.
func (s *Service) upload(ctx context.Context, obj ObjectID, version uint64, enc *Encoded, holders []peer.ID, cands []Candidate, failed map[peer.ID]bool) error {
	var mu sync.Mutex // guards holders, tried and failed
	tried := map[peer.ID]Candidate{}
	for p := range failed {
		tried[p] = Candidate{ID: p}
	}
	for _, p := range holders {
		tried[p] = Candidate{ID: p}
	}
	errs := make([]error, len(holders))
	var wg sync.WaitGroup
	for i := range holders {
		wg.Go(func() {
			for attempt := 0; ; attempt++ {
				mu.Lock()
				p := holders[i]
				mu.Unlock()
				err := s.sendColumn(ctx, p, obj, version, i, enc)
				if err == nil {
					return
				}
				s.log.Debug("shard holder failed, placing elsewhere", "index", i, "peer", p, "err", err)
				mu.Lock()
				failed[p] = true
				if attempt+1 >= s.cfg.StoreAttempts || ctx.Err() != nil {
					mu.Unlock()
					errs[i] = err
					return
				}
				next := PlaceShards(obj, []int{i}, cands, tried)
				if len(next) == 0 {
					mu.Unlock()
					errs[i] = fmt.Errorf("%w: shard %d: %v", ErrNotEnoughPeers, i, err)
					return
				}
				tried[next[0]] = Candidate{ID: next[0]}
				holders[i] = next[0]
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// sendColumn stores shard i of every segment on p.
func (s *Service) sendColumn(ctx context.Context, p peer.ID, obj ObjectID, version uint64, i int, enc *Encoded) error {
	for seg := range enc.Shards {
		ref := ShardRef{Namespace: s.key.Namespace(), Object: obj, Version: version, Segment: uint32(seg), Index: uint16(i)}
		if err := s.storeShard(ctx, p, enc.Hashes[seg][i], ref, enc.Shards[seg][i]); err != nil {
			return err
		}
	}
	return nil
}

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
	if err := checkKey(key); err != nil {
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
	if err := checkKey(key); err != nil {
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
	reports := s.PeerReports()
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
		started[i] = time.Now()
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
	for i, t := range started {
		if time.Since(t) >= s.cfg.HedgeAfter {
			fs.demote[i] = true
			s.report(fs.holder(m, i), func(r *PeerReport) { r.Slow++ })
		}
	}
	return shards, nil
}

// Delete removes key: it publishes a signed tombstone (a manifest with a
// higher version and no content), then asks every holder to delete its
// shards with a signed request. Holders that are offline keep theirs until
// their garbage collection sees the tombstone.
func (s *Service) Delete(ctx context.Context, key string) error {
	if err := s.delete(ctx, key); err != nil {
		s.metrics.put("error")
		return fmt.Errorf("delete %q: %w", key, err)
	}
	s.metrics.put("ok")
	return nil
}

func (s *Service) delete(ctx context.Context, key string) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	if err := checkKey(key); err != nil {
		return err
	}
	obj := s.key.ObjectID(key)
	dhtKey := DHTKey(s.key.Namespace(), obj)
	mu := s.objLock(obj)
	mu.Lock()
	defer mu.Unlock()
	m, _, err := s.latest(ctx, dhtKey)
	if err != nil {
		return err
	}
	if m.Tombstone {
		return fmt.Errorf("already deleted at version %d: %w", m.Version, ErrNotFound)
	}
	ts := &Manifest{Object: obj, Version: m.Version + 1, Tombstone: true, Created: s.cfg.Now()}
	rec, err := ts.Sign(s.key)
	if err != nil {
		return err
	}
	if err := s.records.PutValue(ctx, dhtKey, rec); err != nil {
		return fmt.Errorf("publish tombstone: %w", err)
	}
	s.sched.Remove(obj)
	var wg sync.WaitGroup
	for i, p := range m.Placement {
		wg.Go(func() {
			if s.deleteIndex(ctx, m.Hashes, i, p) {
				return
			}
			// The holder did not answer: if it left on purpose, hints say
			// who holds its shards now; delete them there too. What stays
			// behind, GC removes once it sees the tombstone.
			chain, _, _ := s.hintChain(ctx, m, i)
			for _, q := range chain {
				s.deleteIndex(ctx, m.Hashes, i, q)
			}
		})
	}
	wg.Wait()
	return nil
}

// deleteIndex deletes shard index i (its shard of every segment; hashes
// is per segment, per index) from holder p. It reports false if p could
// not be reached.
func (s *Service) deleteIndex(ctx context.Context, hashes [][]Hash, i int, p peer.ID) bool {
	for seg := range hashes {
		h := hashes[seg][i]
		var err error
		if p == s.h.ID() {
			err = s.store.Delete(h)
		} else {
			err = s.client.Delete(ctx, p, h, s.key)
			s.noteOutcome(ctx, p, err)
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			s.log.Debug("delete shard", "peer", p, "hash", h, "err", err)
			return false
		}
	}
	return true
}

// checkHolders asks every holder of m whether it has all its shards. A
// holder that does not answer is looked past: if it handed its shards to
// another peer before leaving (a trusted hint chain, see hintChain) and
// that peer has them all, the status is that peer's, marked HandedOff.
func (s *Service) checkHolders(ctx context.Context, m *Manifest) []HolderStatus {
	out := make([]HolderStatus, len(m.Placement))
	var wg sync.WaitGroup
	for i, p := range m.Placement {
		wg.Go(func() {
			st := s.checkIndex(ctx, m, i, p)
			// Only an unreachable holder may have left on purpose: one
			// that answers without its shards has lost them.
			if !st.Reachable {
				if hs, ok := s.checkHandedOff(ctx, m, i); ok {
					st = hs
				}
			}
			out[i] = st
		})
	}
	wg.Wait()
	return out
}

// checkIndex asks p whether it has shard i of every segment of m.
func (s *Service) checkIndex(ctx context.Context, m *Manifest, i int, p peer.ID) HolderStatus {
	hashes := make([]Hash, len(m.Hashes))
	for seg := range m.Hashes {
		hashes[seg] = m.Hashes[seg][i]
	}
	var reachable, complete bool
	if p == s.h.ID() {
		reachable, complete = true, true
		for seg, h := range hashes {
			info, ok := s.store.Stat(h)
			if !ok || info.Size != int64(m.Params.ShardSize(m.Params.SegmentLen(m.Size, seg))) {
				complete = false
			}
		}
	} else {
		res, err := s.client.Check(ctx, p, hashes, false)
		s.noteOutcome(ctx, p, err)
		if err == nil {
			reachable, complete = true, true
			for seg, r := range res {
				if !r.Present || r.Size != int64(m.Params.ShardSize(m.Params.SegmentLen(m.Size, seg))) {
					complete = false
				}
			}
		}
	}
	return CheckedHolder(p, s.h.ID(), reachable, complete, s.avail, s.started, s.cfg.Now())
}

// Health reports how many holders of key are reachable with all their
// shards now, against the k needed to read it.
func (s *Service) Health(ctx context.Context, key string) (*Health, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := checkKey(key); err != nil {
		return nil, err
	}
	obj := s.key.ObjectID(key)
	m, _, err := s.latest(ctx, DHTKey(s.key.Namespace(), obj))
	if err != nil {
		return nil, fmt.Errorf("health %q: %w", key, err)
	}
	if m.Tombstone {
		return nil, fmt.Errorf("health %q: deleted: %w", key, ErrNotFound)
	}
	st := s.checkHolders(ctx, m)
	cands, err := s.candidates(ctx, DHTKey(s.key.Namespace(), obj))
	if err != nil {
		s.log.Debug("health: no candidates", "err", err) // the report is still useful
	}
	plan := PlanRepair(obj, m.Params, st, cands, s.cfg.Repair, s.cfg.Now())
	h := &Health{Object: obj, Version: m.Version, K: m.Params.DataShards, M: m.Params.ParityShards,
		Needed: m.Params.DataShards, Total: m.Params.Total(), Prob: plan.Prob, Repair: plan.Action}
	for i, x := range st {
		if x.Reachable && x.Complete {
			h.Reachable++
		}
		h.Holders = append(h.Holders, HolderHealth{Index: i, Peer: x.Peer, Reachable: x.Reachable,
			Complete: x.Complete, Availability: x.Availability, State: plan.States[i], HandedOff: x.HandedOff})
	}
	return h, nil
}

// Track makes this service responsible for repairing key (e.g. keys this
// app peer wrote before a restart). Put tracks the keys it writes.
func (s *Service) Track(key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	s.sched.Add(s.key.ObjectID(key), s.cfg.Now())
	return nil
}

// Untrack stops repairing key.
func (s *Service) Untrack(key string) { s.sched.Remove(s.key.ObjectID(key)) }

// repairLoop checks due objects on every tick until the service closes.
func (s *Service) repairLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.RepairTick)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			for _, obj := range s.sched.Due(s.cfg.Now()) {
				if s.ctx.Err() != nil {
					return
				}
				if _, err := s.RepairObject(s.ctx, obj); err != nil {
					s.log.Debug("repair", "object", obj, "err", err)
				}
			}
		}
	}
}

// gcLoop runs CollectGarbage every GCInterval (with ±25% jitter, so that
// peers started together do not all query the DHT at once).
func (s *Service) gcLoop() {
	defer s.wg.Done()
	for {
		d := time.Duration(float64(s.cfg.GCInterval) * (0.75 + 0.5*rand.Float64()))
		t := time.NewTimer(d)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if _, _, err := s.CollectGarbage(s.ctx); err != nil && s.ctx.Err() == nil {
			s.log.Warn("garbage collection", "err", err)
		}
	}
}

// Repair checks the object under key now and repairs it if it needs it,
// as the background loop would (see RepairObject), for an operator who
// knows a holder left. Shards a departed holder handed off are adopted.
func (s *Service) Repair(ctx context.Context, key string) (*RepairPlan, error) {
	if err := s.checkOpen(); err != nil {
		return nil, err
	}
	if err := checkKey(key); err != nil {
		return nil, err
	}
	plan, err := s.RepairObject(ctx, s.key.ObjectID(key))
	if err != nil {
		return plan, fmt.Errorf("repair %q: %w", key, err)
	}
	return plan, nil
}

// RepairObject checks one object of this namespace now and repairs it if
// PlanRepair says so and the scheduler's rate limit allows. Only a peer
// holding the app key can repair: the new placement must be signed into a
// new manifest version. It returns the plan it acted on.
func (s *Service) RepairObject(ctx context.Context, obj ObjectID) (*RepairPlan, error) {
	dhtKey := DHTKey(s.key.Namespace(), obj)
	mu := s.objLock(obj)
	if !mu.TryLock() {
		// A Put or Delete of this object (or one sharing its stripe) is
		// running: check again later rather than hold up the loop.
		s.sched.Retry(obj, s.cfg.Now())
		return nil, fmt.Errorf("object %s: busy: %w", obj, ErrBusy)
	}
	defer mu.Unlock()
	m, rec, err := s.latest(ctx, dhtKey)
	if errors.Is(err, ErrNotFound) {
		s.sched.Remove(obj)
		return nil, err
	}
	if err != nil {
		s.sched.Retry(obj, s.cfg.Now())
		s.metrics.repair("error", 0, 0)
		return nil, err
	}
	if m.Tombstone {
		s.sched.Remove(obj)
		return nil, fmt.Errorf("object %s: deleted: %w", obj, ErrNotFound)
	}
	cands, err := s.candidates(ctx, dhtKey)
	if err != nil {
		s.sched.Retry(obj, s.cfg.Now())
		return nil, err
	}
	holders := s.checkHolders(ctx, m)
	plan := PlanRepair(obj, m.Params, holders, cands, s.cfg.Repair, s.cfg.Now())
	// Shards a departed holder handed off are adopted: the next version
	// places them where they are, and nothing is regenerated for them.
	adopt := map[int]peer.ID{}
	for i, h := range holders {
		if h.HandedOff {
			adopt[i] = h.Peer
		}
	}
	base := m
	if len(adopt) > 0 {
		c := *m
		c.Placement = append([]peer.ID(nil), m.Placement...)
		for i, p := range adopt {
			c.Placement[i] = p
		}
		base = &c
	}
	var (
		moved   map[int]peer.ID
		bytes   int64
		regErr  error
		outcome string
	)
	switch plan.Action {
	case RepairNone:
		outcome = "healthy"
	case RepairBlocked:
		outcome = "blocked"
		s.log.Info("object needs repair but cannot be repaired now", "object", obj, "reason", plan.Reason)
	default:
		if !s.sched.AllowRepair(obj, s.cfg.Now()) {
			outcome = "deferred"
			break
		}
		s.log.Info("repairing object", "object", obj, "reason", plan.Reason, "shards", plan.Regenerate, "targets", plan.Targets)
		moved, bytes, regErr = s.regenerate(ctx, base, plan)
		outcome = "repaired"
		if len(moved) == 0 {
			outcome = "failed"
			if regErr == nil {
				regErr = errors.New("no shard could be regenerated")
			}
		}
	}
	if len(adopt) == 0 {
		switch outcome {
		case "healthy":
			s.metrics.repair("healthy", 0, 0)
			s.republish(ctx, obj, dhtKey, rec)
			return &plan, nil
		case "blocked":
			s.metrics.repair("blocked", 0, 0)
			s.sched.Retry(obj, s.cfg.Now())
			return &plan, nil
		case "deferred":
			s.metrics.repair("deferred", 0, 0)
			return &plan, nil
		case "failed":
			s.metrics.repair("failed", 0, bytes)
			s.sched.Retry(obj, s.cfg.Now())
			return &plan, fmt.Errorf("repair object %s: %w", obj, regErr)
		}
	}
	next := *base
	next.Placement = append([]peer.ID(nil), base.Placement...)
	for i, p := range moved {
		next.Placement[i] = p
	}
	next.Version = m.Version + 1
	next.Created = s.cfg.Now()
	// Another app peer may have written the object meanwhile: publishing
	// our version+1 over theirs would revert their write.
	if cur, _, lerr := s.latest(ctx, dhtKey); lerr == nil && cur.Version != m.Version {
		s.metrics.repair("failed", 0, bytes)
		s.sched.Retry(obj, s.cfg.Now())
		return &plan, fmt.Errorf("repair object %s: superseded by version %d during repair", obj, cur.Version)
	}
	newRec, serr := next.Sign(s.key)
	if serr == nil {
		serr = s.records.PutValue(ctx, dhtKey, newRec)
	}
	if serr != nil {
		s.metrics.repair("failed", 0, bytes)
		s.sched.Retry(obj, s.cfg.Now())
		return &plan, fmt.Errorf("repair object %s: publish manifest: %w", obj, serr)
	}
	s.mu.Lock()
	s.republished[obj] = s.cfg.Now()
	s.mu.Unlock()
	if len(adopt) > 0 {
		s.metrics.adopted(len(adopt))
		s.log.Info("adopted handed-off shards", "object", obj, "version", next.Version, "indices", len(adopt))
	}
	if len(moved) > 0 {
		s.metrics.repair("repaired", len(moved), bytes)
	} else {
		s.metrics.repair("adopted", 0, bytes)
	}
	switch {
	case outcome == "failed":
		s.sched.Retry(obj, s.cfg.Now())
		return &plan, fmt.Errorf("repair object %s: handed-off shards adopted, but: %w", obj, regErr)
	case outcome == "blocked", regErr != nil:
		s.sched.Retry(obj, s.cfg.Now()) // partly done: come back for the rest
	}
	return &plan, nil
}

// republish re-puts the current manifest when it has not been put for
// RepublishInterval, so that the DHT does not expire it.
func (s *Service) republish(ctx context.Context, obj ObjectID, dhtKey string, rec []byte) {
	now := s.cfg.Now()
	s.mu.Lock()
	last, ok := s.republished[obj]
	s.mu.Unlock()
	if ok && now.Sub(last) < s.cfg.RepublishInterval {
		return
	}
	if err := s.records.PutValue(ctx, dhtKey, rec); err != nil {
		s.log.Debug("republish manifest", "object", obj, "err", err)
		return
	}
	s.mu.Lock()
	s.republished[obj] = now
	s.mu.Unlock()
}

// regenerate rebuilds the shards plan.Regenerate from healthy holders,
// segment by segment, and stores them on plan.Targets. It returns the new
// holder of every index fully moved, and the bytes uploaded.
func (s *Service) regenerate(ctx context.Context, m *Manifest, plan RepairPlan) (map[int]peer.ID, int64, error) {
	codec, err := s.codec(m.Params)
	if err != nil {
		return nil, 0, err
	}
	var healthy []int
	for i, st := range plan.States {
		if st == ShardHealthy {
			healthy = append(healthy, i)
		}
	}
	fs := s.newFetchState(m, healthy)
	targets := map[int]peer.ID{}
	for j, p := range plan.Targets {
		targets[plan.Regenerate[j]] = p
	}
	var bytes int64
	var errs []error
	for seg := range m.Hashes {
		if len(targets) == 0 {
			break
		}
		shards, err := s.fetchSegment(ctx, m, seg, fs)
		if err != nil {
			return nil, bytes, err
		}
		if err := codec.ReconstructSegment(m.Params.SegmentLen(m.Size, seg), shards, nil); err != nil {
			return nil, bytes, err
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i, p := range targets {
			wg.Go(func() {
				ref := ShardRef{Namespace: s.key.Namespace(), Object: m.Object, Version: m.DataVersion,
					Segment: uint32(seg), Index: uint16(i)}
				err := s.storeShard(ctx, p, m.Hashes[seg][i], ref, shards[i])
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("shard %d to %s: %w", i, p, err))
					delete(targets, i) // this index stays where it was
					return
				}
				bytes += int64(len(shards[i]))
			})
		}
		wg.Wait()
	}
	return targets, bytes, errors.Join(errs...)
}

// CollectGarbage removes local shards that no current manifest needs: the
// object was deleted (tombstone), the manifest no longer places this shard
// on this peer (superseded by a newer version or moved by repair) and no
// handoff hint hands it here (see keepHandedOff), or the manifest has been
// missing from the DHT for GCMissingGrace. Shards younger than GCMinAge and
// shards whose manifest or hint lookup fails are kept. It works without the
// app key: manifests and hints are public, only content is not.
func (s *Service) CollectGarbage(ctx context.Context) (removed int, freed int64, err error) {
	type lookup struct {
		m   *Manifest
		err error
	}
	cache := map[string]lookup{}
	type handoff struct {
		keep bool
		err  error
	}
	handed := map[string]handoff{}
	now := s.cfg.Now()
	self := s.h.ID()
	keep := func(ctx context.Context, info ShardInfo) (bool, error) {
		if now.Sub(info.Stored) < s.cfg.GCMinAge {
			return true, nil
		}
		dhtKey := DHTKey(info.Ref.Namespace, info.Ref.Object)
		l, ok := cache[dhtKey]
		if !ok {
			l.m, _, l.err = s.latest(ctx, dhtKey)
			cache[dhtKey] = l
		}
		switch {
		case errors.Is(l.err, ErrNotFound):
			s.mu.Lock()
			defer s.mu.Unlock()
			since, seen := s.missing[dhtKey]
			if !seen {
				s.missing[dhtKey] = now
				return true, nil
			}
			return now.Sub(since) < s.cfg.GCMissingGrace, nil
		case l.err != nil:
			return true, l.err
		}
		s.mu.Lock()
		delete(s.missing, dhtKey)
		s.mu.Unlock()
		if l.m.Tombstone {
			return false, nil
		}
		_, idx, ok := l.m.HasShard(info.Hash)
		if !ok {
			return false, nil
		}
		if l.m.Placement[idx] == self {
			return true, nil
		}
		// Handed here by a holder that left, and not yet adopted by the
		// writer: kept while the hint stands (one lookup per index).
		hk := fmt.Sprintf("%s/%d", dhtKey, idx)
		h, ok := handed[hk]
		if !ok {
			h.keep, h.err = s.keepHandedOff(ctx, l.m, idx)
			handed[hk] = h
		}
		return h.keep, h.err
	}
	removed, freed, err = s.store.GC(ctx, keep)
	s.metrics.gc(removed)
	if removed > 0 {
		s.log.Info("garbage collected shards", "removed", removed, "freed", freed)
	}
	return removed, freed, err
}
