package overlay

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/immense-p2p/immense/internal/ratelimit"
	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	dssync "github.com/ipfs/go-datastore/sync"
	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-base32"
	"github.com/prometheus/client_golang/prometheus"
)

// The DHT keeps what other peers PUT_VALUE (manifests, handoff hints) and
// ADD_PROVIDER (topic discovery) in memory, for as long as the records
// live (48 h). Anyone who can dial a DHT server can send both, so the
// datastore under the DHT is bounded (dhtStore): in total, per sending
// peer and per record namespace, and PUT_VALUE is rate-limited per peer
// (the request hook). A record beyond a budget is refused, not stored:
// the sender's PutValue sees its stream reset, and
// immense_overlay_dht_records_refused_total counts it by reason.
//
// kad-dht does not tell the datastore who sent a record. Its request hook
// runs on the stream's goroutine just before the handler, with the sender
// and the request: the hook notes which peer is about to store which key
// (pending), and the datastore's Put charges that peer. Provider records
// need no note: their datastore key ends with the provider's peer id, which
// kad-dht checks is the sender's.

// DHTBudget bounds what the DHT datastore keeps.
type DHTBudget struct {
	// MaxBytes and MaxRecords bound the whole store (key and value bytes
	// of value and provider records).
	MaxBytes   int64
	MaxRecords int
	// PeerMaxBytes and PeerMaxRecords bound what one sending peer has
	// stored here at a time. Records this node stores itself are exempt.
	PeerMaxBytes   int64
	PeerMaxRecords int
	// NamespaceMaxBytes bounds each record namespace (immense-state,
	// immense-handoff, providers): a flood of one kind cannot push out the
	// others.
	NamespaceMaxBytes int64
	// PutRate and PutBurst bound PUT_VALUE and ADD_PROVIDER requests per
	// peer and second, as a token bucket, checked before the record's
	// signature is verified. PutRate 0 sets no rate.
	PutRate  float64
	PutBurst int
}

// DefaultDHTBudget is sized for a peer whose DHT store lives in memory
// beside 256 MiB (volunteer) to 1 GiB (server) of libp2p buffers.
func DefaultDHTBudget() DHTBudget {
	return DHTBudget{
		// 64 MiB: about 1000 maximum-size (64 KiB) manifests, or tens of
		// thousands of ordinary ones (a few KiB); a DHT server holds the
		// records whose keys fall near it, about 20/N of all records in an
		// overlay of N servers.
		MaxBytes: 64 << 20,
		// 64k records: ordinary manifests and hints are 1-4 KiB, so the
		// byte cap usually binds first; this one bounds the index for
		// floods of tiny records (provider records are ~100 bytes).
		MaxRecords: 1 << 16,
		// 4 MiB and 4096 records per peer: an app peer writing ten
		// thousand objects into a 100-server overlay puts about 2000
		// records on each server. A flooder needs 16 identities to fill
		// the store, and the routing-table diversity filter and the per-IP
		// connection limit make identities cost addresses.
		PeerMaxBytes:   4 << 20,
		PeerMaxRecords: 4096,
		// Three quarters of the store: manifests can use most of it and
		// still leave a quarter for hints and provider records.
		NamespaceMaxBytes: 48 << 20,
		// 20 puts a second, 200 at once: a writer's Put sends one
		// PUT_VALUE per object to each of the 20 closest servers, so one
		// server sees one per object; repair and republish come in bursts.
		PutRate:  20,
		PutBurst: 200,
	}
}

func (b DHTBudget) validate() error {
	if b.MaxBytes < 1 || b.MaxRecords < 1 || b.PeerMaxBytes < 1 || b.PeerMaxRecords < 1 || b.NamespaceMaxBytes < 1 {
		return fmt.Errorf("DHTBudget: every cap must be >= 1 (got %+v)", b)
	}
	if b.PutRate < 0 || (b.PutRate > 0 && b.PutBurst < 1) {
		return fmt.Errorf("DHTBudget: PutRate must be >= 0, and PutBurst >= 1 when it is set (got %v, %d)", b.PutRate, b.PutBurst)
	}
	return nil
}

// Reasons a record is refused, as metric labels.
const (
	refusedRate       = "rate"
	refusedStore      = "store"
	refusedPeer       = "peer"
	refusedNamespace  = "namespace"
	refusedNoNamspace = "namespace_unknown"
)

// maxPending bounds the notes of who is about to store what. A note lives
// from the request hook to the datastore Put a moment later on the same
// goroutine; one whose record failed validation is never taken, and is
// dropped after pendingTTL or when the map is full.
const (
	maxPending = 4096
	pendingTTL = time.Minute
)

// maxRateLimiters bounds the per-peer token buckets kept; past it, an
// arbitrary one is forgotten (its peer starts again with a full bucket).
const maxRateLimiters = 8192

type storedEntry struct {
	owner peer.ID
	ns    string
	size  int64
}

type usage struct {
	bytes   int64
	records int
}

type pendingPut struct {
	from peer.ID
	at   time.Time
}

// dhtStore is the DHT's datastore: an in-memory map that keeps the
// budgets of DHTBudget.
type dhtStore struct {
	ds.Batching
	self   peer.ID
	budget DHTBudget
	known  map[string]bool // namespaces accepted (validators, providers)

	mu      sync.Mutex
	entries map[string]storedEntry
	total   usage
	peers   map[peer.ID]*usage
	nss     map[string]*usage
	pending map[string]pendingPut
	puts    *ratelimit.Keyed[peer.ID] // PUT_VALUE and ADD_PROVIDER per peer

	refused *prometheus.CounterVec
}

func newDHTStore(self peer.ID, b DHTBudget, namespaces []string) *dhtStore {
	known := map[string]bool{providersNamespace: true}
	for _, ns := range namespaces {
		known[ns] = true
	}
	return &dhtStore{
		Batching: dssync.MutexWrap(ds.NewMapDatastore()),
		self:     self,
		budget:   b,
		known:    known,
		entries:  map[string]storedEntry{},
		peers:    map[peer.ID]*usage{},
		nss:      map[string]*usage{},
		pending:  map[string]pendingPut{},
		puts:     ratelimit.NewKeyed[peer.ID](b.PutRate, b.PutBurst, maxRateLimiters, ratelimit.EvictOldest),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "dht_records_refused_total",
			Help: "DHT records (PUT_VALUE, ADD_PROVIDER) refused, by reason: rate (the sender's put rate), store, peer, namespace (a budget full), namespace_unknown.",
		}, []string{"reason"}),
	}
}

// providersNamespace is kad-dht's datastore prefix of provider records
// (records.ProvidersKeyPrefix).
const providersNamespace = "providers"

// collectors are the store's metrics.
func (s *dhtStore) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		s.refused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "dht_store_bytes",
			Help: "Bytes of DHT records this node keeps (values and providers).",
		}, func() float64 { return float64(s.usage().bytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "immense", Subsystem: "overlay", Name: "dht_store_records",
			Help: "DHT records this node keeps (values and providers).",
		}, func() float64 { return float64(s.usage().records) }),
	}
}

func (s *dhtStore) usage() usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// onRequest is kad-dht's request hook. A PUT_VALUE or ADD_PROVIDER over
// the sender's rate loses its record before the handler sees it, so the
// handler refuses it without verifying a signature; one within it is
// noted as the sender's.
func (s *dhtStore) onRequest(_ context.Context, st network.Stream, req *pb.Message) {
	t := req.GetType()
	if t != pb.Message_PUT_VALUE && t != pb.Message_ADD_PROVIDER {
		return
	}
	from := st.Conn().RemotePeer()
	if !s.allow(from) {
		s.refused.WithLabelValues(refusedRate).Inc()
		req.Record = nil
		req.ProviderPeers = nil
		return
	}
	if t == pb.Message_PUT_VALUE && req.GetRecord() != nil {
		s.note(string(req.GetRecord().GetKey()), from)
	}
}

func (s *dhtStore) allow(p peer.ID) bool { return s.puts.Allow(p, time.Now()) }

func (s *dhtStore) note(key string, from peer.ID) {
	dk := valueDsKey(key).String()
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) >= maxPending {
		for k, p := range s.pending {
			if now.Sub(p.at) > pendingTTL {
				delete(s.pending, k)
			}
		}
		for k := range s.pending {
			if len(s.pending) < maxPending {
				break
			}
			delete(s.pending, k)
		}
	}
	s.pending[dk] = pendingPut{from: from, at: now}
}

// ownWrite marks the context of this node's own record writes
// (Overlay.PutValue, and the local fix-ups of Overlay.GetValue), which
// kad-dht passes down to the datastore.
type ownWrite struct{}

// unattributed is the owner a remote write is charged to when it cannot be
// told whose it is (its request note was lost or taken by another put of
// the same key): all such writes share one peer's budget.
const unattributed = peer.ID("")

// owner is who a Put of key is charged to; the caller holds s.mu. A write
// is this node's only when its context says so: a stranger's request note
// left behind (its record failed validation) neither blocks our own writes
// nor passes its writes off as ours.
func (s *dhtStore) owner(ctx context.Context, key ds.Key, ns string) peer.ID {
	if ctx.Value(ownWrite{}) != nil {
		return s.self
	}
	k := key.String()
	if ns == providersNamespace {
		// /providers/<base32 key>/<base32 provider id>
		if i := strings.LastIndexByte(k, '/'); i >= 0 {
			if b, err := base32.RawStdEncoding.DecodeString(k[i+1:]); err == nil {
				if id, err := peer.IDFromBytes(b); err == nil {
					return id
				}
			}
		}
		return unattributed
	}
	if p, ok := s.pending[k]; ok {
		delete(s.pending, k)
		return p.from
	}
	return unattributed
}

// namespace is the first component of a datastore key.
func namespace(key ds.Key) string {
	k := strings.TrimPrefix(key.String(), "/")
	if i := strings.IndexByte(k, '/'); i >= 0 {
		return k[:i]
	}
	return k
}

// Put stores value under key if the budgets allow it.
func (s *dhtStore) Put(ctx context.Context, key ds.Key, value []byte) error {
	ns := namespace(key)
	size := int64(len(key.String()) + len(value))
	s.mu.Lock()
	owner := s.owner(ctx, key, ns)
	if reason := s.refuse(key.String(), ns, owner, size); reason != "" {
		s.mu.Unlock()
		s.refused.WithLabelValues(reason).Inc()
		return fmt.Errorf("%w: %s budget full, %d-byte record refused", ErrDHTBudget, reason, size)
	}
	if err := s.Batching.Put(ctx, key, value); err != nil {
		s.mu.Unlock()
		return err
	}
	s.remove(key.String())
	s.add(key.String(), storedEntry{owner: owner, ns: ns, size: size})
	s.mu.Unlock()
	return nil
}

// refuse says which budget a record of size bytes from owner would
// overrun, counting the record it replaces as gone; the caller holds s.mu.
func (s *dhtStore) refuse(key, ns string, owner peer.ID, size int64) string {
	if !s.known[ns] {
		return refusedNoNamspace
	}
	if owner == s.self {
		return "" // what this node stores itself is bounded by its own use
	}
	old := s.entries[key]
	oldRecords := 0
	if old.size > 0 {
		oldRecords = 1
	}
	credit := func(u *usage, match bool) (int64, int) {
		if u == nil {
			return 0, 0
		}
		if match {
			return u.bytes - old.size, u.records - oldRecords
		}
		return u.bytes, u.records
	}
	b, r := credit(&s.total, true)
	if b+size > s.budget.MaxBytes || r+1 > s.budget.MaxRecords {
		return refusedStore
	}
	b, _ = credit(s.nss[ns], old.ns == ns)
	if b+size > s.budget.NamespaceMaxBytes {
		return refusedNamespace
	}
	b, r = credit(s.peers[owner], old.owner == owner && oldRecords == 1)
	if b+size > s.budget.PeerMaxBytes || r+1 > s.budget.PeerMaxRecords {
		return refusedPeer
	}
	return ""
}

// add and remove keep the usage counts; the caller holds s.mu.
func (s *dhtStore) add(key string, e storedEntry) {
	s.entries[key] = e
	s.total.bytes += e.size
	s.total.records++
	bump(s.nss, e.ns, e.size, 1)
	bump(s.peers, e.owner, e.size, 1)
}

func (s *dhtStore) remove(key string) {
	e, ok := s.entries[key]
	if !ok {
		return
	}
	delete(s.entries, key)
	s.total.bytes -= e.size
	s.total.records--
	bump(s.nss, e.ns, -e.size, -1)
	bump(s.peers, e.owner, -e.size, -1)
}

func bump[K comparable](m map[K]*usage, k K, bytes int64, records int) {
	u := m[k]
	if u == nil {
		u = &usage{}
		m[k] = u
	}
	u.bytes += bytes
	u.records += records
	if u.records <= 0 {
		delete(m, k)
	}
}

// Delete removes key and what it counted.
func (s *dhtStore) Delete(ctx context.Context, key ds.Key) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.Batching.Delete(ctx, key); err != nil {
		return err
	}
	s.remove(key.String())
	return nil
}

// Batch applies its writes through Put and Delete, so they are counted.
func (s *dhtStore) Batch(context.Context) (ds.Batch, error) {
	return ds.NewBasicBatch(s), nil
}

// Query passes through; named so the embedded Batching's methods that
// write (Put, Delete, Batch) are all overridden above.
func (s *dhtStore) Query(ctx context.Context, q dsq.Query) (dsq.Results, error) {
	return s.Batching.Query(ctx, q)
}

// valueDsKey is the datastore key kad-dht's value store files a record
// key under (records.valueDsKey in go-libp2p-kad-dht v0.42.0):
// "/" + namespace + "/" + base32(key).
func valueDsKey(key string) ds.Key {
	ns, _, _ := record.SplitKey(key)
	if ns == providersNamespace {
		ns = base32.RawStdEncoding.EncodeToString([]byte(ns))
	}
	return ds.NewKey("/" + ns + "/" + base32.RawStdEncoding.EncodeToString([]byte(key)))
}

// registerDHTMetrics registers the DHT store's metrics and the diversity
// filter's refusals.
func (o *Overlay) registerDHTMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	cs := o.dhtStore.collectors()
	cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "immense", Subsystem: "overlay", Name: "routing_table_diversity_refused_total",
		Help: "Peers kept out of the DHT routing table because their /24 or /16 already has its share.",
	}, func() float64 {
		if o.diversity == nil {
			return 0
		}
		return float64(o.diversity.refused.Load())
	}))
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// DHTStoreUsage returns the bytes and records this node keeps in its DHT
// store for others and itself.
func (o *Overlay) DHTStoreUsage() (bytes int64, records int) {
	u := o.dhtStore.usage()
	return u.bytes, u.records
}
