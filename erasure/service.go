package erasure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
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
	ID peer.ID
	// Zone is the failure domain the peer declares about itself, "" if
	// none. Placement counts it only with Config.DeclaredZones; otherwise
	// only the operator's Config.Zones do.
	Zone string
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
	// KeysFile is where the service keeps the keys it repairs (those it
	// writes and those given to Track) across restarts: a JSON array,
	// written durably before a Put publishes its manifest. New loads it and
	// schedules every key in it. Empty keeps the list in memory only.
	KeysFile string
	// RecordsDir is where the service keeps the signed manifest record it
	// last published of each key in that list (ownrecords.go), to put back
	// in the DHT when DHT servers restarted and lost it. Created if
	// missing. Empty keeps none.
	RecordsDir string
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

	book    *peerBook   // what requests taught the service about peers
	tracked *keyList    // the keys this service repairs, their versions, tombstones
	own     *ownRecords // the records of tracked's keys, kept on disk
	// seen: the highest manifest version verified per DHT key (bounded).
	seen *versionMemory
	// seenOthers is the same for the other namespaces (versionsOf), and
	// ownKeys the prefix of this namespace's DHT keys.
	seenOthers *versionMemory
	ownKeys    string
	// republished: when a manifest was last put, by object.
	republished stamps[ObjectID]
	// missing: since when GC has not found the manifest under a DHT key;
	// ahead: since when it has found shards of a newer version than the
	// manifest under it.
	missing, ahead stamps[string]
	// placed: when GC last found the manifest under a DHT key placing a
	// shard here (or a hint handing one here): objects handoff takes
	// first, since a stranger's made-up objects have no such manifest.
	placed stamps[string]
	// hintsRepublished: when GC last re-put a handoff hint that keeps a
	// shard here, by hint key.
	hintsRepublished stamps[string]
	// delegated: when this app's repair delegation was last published.
	delegated stamps[NamespaceID]
	// volunteerNeed: since when volunteer repair has seen an object
	// version need repair, by "<DHT key>/<version>" (rank back-off).
	volunteerNeed stamps[string]

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
	tracked, err := loadKeyList(d.KeysFile, d.Key.ObjectID)
	if err != nil {
		return nil, err
	}
	if d.RecordsDir != "" {
		if err := os.MkdirAll(d.RecordsDir, 0o700); err != nil {
			return nil, fmt.Errorf("erasure: records directory: %w", err)
		}
	}
	if d.Availability == nil {
		d.Availability = NewAvailabilityTracker(AvailabilityConfig{Now: cfg.Now, MaxPeers: DefaultMaxTrackedPeers})
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
		codecs: map[Params]*Codec{}, book: newPeerBook(cfg), tracked: tracked, own: newOwnRecords(d.RecordsDir), ctx: ctx, cancel: cancel,
		seen:       newVersionMemory(maxRememberedVersions, maxRememberedRecord, maxRememberedRecordBytes),
		seenOthers: newVersionMemory(maxRememberedVersions, maxRememberedRecord, maxRememberedRecordBytes),
		ownKeys:    strings.TrimSuffix(DHTKey(d.Key.Namespace(), ObjectID{}), ObjectID{}.String()),
	}
	for i := range s.objLocks {
		s.objLocks[i] = make(objLock, 1)
	}
	for _, k := range tracked.list() {
		sched.Add(d.Key.ObjectID(k), cfg.Now())
	}
	s.sweepOwnRecords()
	srvCfg := cfg.Server
	srvCfg.Logger = cfg.Logger
	if s.server, err = newShardServer(d.Host, d.Store, srvCfg, m); err != nil {
		cancel()
		return nil, err
	}
	// Availability from connection events. Disconnected fires per
	// connection; the peer is offline only when the last one closes.
	s.notify = &network.NotifyBundle{
		ConnectedF: func(n network.Network, c network.Conn) {
			s.avail.Connected(c.RemotePeer())
			s.book.connected(c.RemotePeer(), connNet(n.ConnsToPeer(c.RemotePeer())))
		},
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
	if cfg.VolunteerRepairInterval > 0 {
		s.wg.Add(1)
		go s.volunteerLoop()
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

// fetchManifest fetches and verifies the current manifest under dhtKey,
// whatever its version (see latest). It returns an error wrapping
// ErrNotFound when the DHT has none.
func (s *Service) fetchManifest(ctx context.Context, dhtKey string) (*Manifest, []byte, error) {
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
	self := s.h.ID()
	seen := map[peer.ID]bool{self: true}
	out := []Candidate{{ID: self, Zone: s.cfg.Zone, Availability: s.avail.LowerBound(self)}}
	for _, pi := range infos {
		if seen[pi.ID] || pi.ID == "" {
			continue
		}
		seen[pi.ID] = true
		out = append(out, Candidate{ID: pi.ID, Zone: s.cfg.zoneOf(pi.ID, pi.Zone), Net: s.peerNet(pi.ID),
			Availability: s.avail.LowerBound(pi.ID)})
	}
	nets := map[string]bool{}
	shared := 0
	for _, c := range out {
		if c.Zone == "" && c.Net != "" {
			if nets[c.Net] {
				shared++
			}
			nets[c.Net] = true
		}
	}
	s.metrics.sharedNetwork(shared)
	s.book.setQuota(out, s.cfg.Now())
	return out, nil
}

// withHolders adds to cands the holders that are not candidates (the DHT
// lookup missed them, or they are offline), never to be chosen, so that
// PlanRepair counts their zones and networks too.
func (s *Service) withHolders(cands []Candidate, holders []HolderStatus) []Candidate {
	in := newCandidateMap(cands)
	for _, h := range holders {
		if _, ok := in[h.Peer]; !ok && h.Peer != "" {
			c := Candidate{ID: h.Peer, Zone: s.cfg.zoneOf(h.Peer, ""), Net: s.peerNet(h.Peer)}
			in[h.Peer] = c
			cands = append(cands, c)
		}
	}
	return cands
}

// peerNet is the network placement counts p in (Candidate.Net): that of
// the connections to it now, else that of the last one (peerBook), else
// "" (never connected: the DHT lookup that finds candidates connects to
// each, so this is rare).
func (s *Service) peerNet(p peer.ID) string {
	if conns := s.h.Network().ConnsToPeer(p); len(conns) > 0 {
		return connNet(conns)
	}
	return s.book.lastNet(p)
}

// stamps records a time per key. Each set has its own lock: none has to
// change together with another.
type stamps[K comparable] struct {
	mu sync.Mutex
	m  map[K]time.Time
}

// get returns k's time, or false if it has none.
func (s *stamps[K]) get(k K) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.m[k]
	return t, ok
}

func (s *stamps[K]) set(k K, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[K]time.Time{}
	}
	s.m[k] = t
}

// setFirst returns k's time, first setting it to t if it has none (then
// with false).
func (s *stamps[K]) setFirst(k K, t time.Time) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[k]; ok {
		return old, true
	}
	if s.m == nil {
		s.m = map[K]time.Time{}
	}
	s.m[k] = t
	return t, false
}

// retain forgets the keys keep does not keep.
func (s *stamps[K]) retain(keep func(K) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.m {
		if !keep(k) {
			delete(s.m, k)
		}
	}
}

func (s *stamps[K]) remove(k K) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, k)
}
