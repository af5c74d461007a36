package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/internal/bytesize"
	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/routing"
	routedhost "github.com/libp2p/go-libp2p/p2p/host/routed"
)

// State files inside Config.DataDir. stateKeyFile is the erasure
// service's list of the keys it repairs (erasure.Deps.KeysFile).
const (
	shardDir     = "shards"
	appKeyFile   = "app.key"
	stateKeyFile = "state-keys.json"
	// stateRecordsDir holds the signed manifest records of those keys,
	// which the state service puts back when the DHT lost them
	// (erasure.Deps.RecordsDir).
	stateRecordsDir = "state-records"
)

// state is the node's erasure-coded storage: the shard store it serves to
// others and, with its app key, the namespace it reads and writes.
type state struct {
	svc   *erasure.Service
	store *erasure.Store
}

// startState opens the shard store and starts the erasure service.
func (n *Node) startState() error {
	if n.cfg.State == nil {
		return nil
	}
	scfg := erasure.DefaultStoreConfig(filepath.Join(n.cfg.DataDir, shardDir))
	scfg.Quota = n.cfg.StorageQuota
	scfg.Logger = n.plog
	store, err := erasure.OpenStore(scfg)
	if err != nil {
		return fmt.Errorf("open shard store: %w", err)
	}
	var key *erasure.AppKey
	if n.cfg.AppKeyFile != "" {
		key, err = erasure.LoadAppKey(n.cfg.AppKeyFile)
	} else {
		// A peer without an app key still gets a namespace of its own.
		key, err = erasure.LoadOrGenerateAppKey(filepath.Join(n.cfg.DataDir, appKeyFile))
	}
	if err != nil {
		store.Close()
		return err
	}
	ecfg := *n.cfg.State
	if ecfg.Logger == nil {
		ecfg.Logger = n.plog
	}
	if ecfg.Registerer == nil {
		ecfg.Registerer = n.registry
	}
	svc, err := erasure.New(ecfg, erasure.Deps{
		// A routed host looks holders it has never met up in the DHT.
		Host:       routedhost.Wrap(n.host, n.overlay.DHT()),
		Key:        key,
		Store:      store,
		Records:    loneRecords{n.overlay},
		Peers:      storagePeers{n},
		KeysFile:   filepath.Join(n.cfg.DataDir, stateKeyFile),
		RecordsDir: filepath.Join(n.cfg.DataDir, stateRecordsDir),
	})
	if err != nil {
		store.Close()
		return fmt.Errorf("start state service: %w", err)
	}
	n.state = &state{svc: svc, store: store}
	n.log.Info("state service started", "namespace", key.Namespace().String(), "quota", bytesize.Format(n.cfg.StorageQuota), "tracked_keys", len(svc.Keys()))
	return nil
}

func (s *state) close() error {
	return errors.Join(s.svc.Close(), s.store.Close())
}

// ErrNoState is returned by state operations on a node run without state
// (bootstrap nodes).
var ErrNoState = errors.New("node: state storage is not enabled on this node")

// ErrReservedKey is returned by Put and Delete for a key the node keeps
// for itself: durable history's, which start "_history:"
// (durablehistory.go). An app writing one by mistake would corrupt a
// topic's history; reading them is allowed.
var ErrReservedKey = errors.New("reserved key")

// checkWritable refuses keys Put and Delete may not change.
func checkWritable(key string) error {
	if err := erasure.ValidateKey(key); err != nil {
		return err
	}
	if strings.HasPrefix(key, durableKeyPrefix) {
		return fmt.Errorf("%w %q: keys starting %q hold durable history", ErrReservedKey, key, durableKeyPrefix)
	}
	return nil
}

// Put stores value under key in the node's namespace, erasure-coded over
// other peers, and returns where it went.
func (n *Node) Put(ctx context.Context, key string, value []byte) (*erasure.PutResult, error) {
	if err := checkWritable(key); err != nil {
		return nil, err
	}
	return n.put(ctx, key, value)
}

// put is Put without the reserved-key check, for the node's own keys.
func (n *Node) put(ctx context.Context, key string, value []byte) (*erasure.PutResult, error) {
	if err := erasure.ValidateKey(key); err != nil {
		return nil, err
	}
	if n.state == nil {
		return nil, ErrNoState
	}
	return n.state.svc.Put(ctx, key, value)
}

// Get reads key from the node's namespace.
func (n *Node) Get(ctx context.Context, key string) ([]byte, error) {
	if err := erasure.ValidateKey(key); err != nil {
		return nil, err
	}
	if n.state == nil {
		return nil, ErrNoState
	}
	return n.state.svc.Get(ctx, key)
}

// Delete removes key from the node's namespace.
func (n *Node) Delete(ctx context.Context, key string) error {
	if err := checkWritable(key); err != nil {
		return err
	}
	if n.state == nil {
		return ErrNoState
	}
	return n.state.svc.Delete(ctx, key)
}

// Health reports how many shards of key are reachable against how many are
// needed.
func (n *Node) Health(ctx context.Context, key string) (*erasure.Health, error) {
	if err := erasure.ValidateKey(key); err != nil {
		return nil, err
	}
	if n.state == nil {
		return nil, ErrNoState
	}
	return n.state.svc.Health(ctx, key)
}

// RepairResult is what Repair found and did.
type RepairResult struct {
	// Plan is the plan acted on: its Regenerate lists the shards it meant
	// to rebuild, which the rate limit or a failure may have prevented.
	Plan *erasure.RepairPlan
	// Version is the object's manifest version afterwards.
	Version uint64
	// Regenerated lists the shard indices that now have a new holder:
	// what the repair really did.
	Regenerated []int
}

// Repair checks key's shards now and repairs them if erasure's policy says
// so (the repair loop does the same for every object, about hourly).
func (n *Node) Repair(ctx context.Context, key string) (RepairResult, error) {
	if err := erasure.ValidateKey(key); err != nil {
		return RepairResult{}, err
	}
	if n.state == nil {
		return RepairResult{}, ErrNoState
	}
	before, err := n.state.svc.Manifest(ctx, key)
	if err != nil {
		return RepairResult{}, err
	}
	plan, err := n.state.svc.Repair(ctx, key)
	if err != nil {
		return RepairResult{Plan: plan, Version: before.Version}, err
	}
	after, err := n.state.svc.Manifest(ctx, key)
	if err != nil {
		return RepairResult{Plan: plan, Version: before.Version}, err
	}
	r := RepairResult{Plan: plan, Version: after.Version, Regenerated: []int{}}
	for _, i := range plan.Regenerate {
		if i < len(before.Placement) && i < len(after.Placement) && before.Placement[i] != after.Placement[i] {
			r.Regenerated = append(r.Regenerated, i)
		}
	}
	return r, nil
}

// Handoff hands the shards this node holds to other peers before a planned
// shutdown (see erasure.Service.Handoff), for at most the State config's
// HandoffTimeout (or until ctx ends). Call it before Close; it does
// nothing on a node without state or with HandoffTimeout 0.
func (n *Node) Handoff(ctx context.Context) (erasure.HandoffResult, error) {
	if n.HandoffTimeout() == 0 {
		return erasure.HandoffResult{}, nil
	}
	return n.state.svc.Handoff(ctx)
}

// HandoffTimeout returns how long Handoff may take: 0 when the node does
// not hand off. A shutdown deadline must allow for it.
func (n *Node) HandoffTimeout() time.Duration {
	if n.state == nil {
		return 0
	}
	return n.cfg.State.HandoffTimeout
}

// loneRecords is the DHT as the state's record store, for a peer that may
// be alone: kad-dht keeps a record in its own datastore before it looks
// for other peers to send it to, and fails the put when its routing table
// is empty. For a lone peer (the one-laptop deployment) the local copy is
// the whole truth; the DHT's republisher spreads it once peers arrive.
type loneRecords struct{ dht erasure.Records }

func (r loneRecords) PutValue(ctx context.Context, key string, value []byte, opts ...routing.Option) error {
	err := r.dht.PutValue(ctx, key, value, opts...)
	if errors.Is(err, kb.ErrLookupFailure) {
		return nil
	}
	return err
}

func (r loneRecords) GetValue(ctx context.Context, key string, opts ...routing.Option) ([]byte, error) {
	return r.dht.GetValue(ctx, key, opts...)
}

// storagePeers offers the erasure service candidate holders: the DHT's
// closest peers to the key, then every connected peer, minus those known
// not to serve shards (bootstrap nodes).
type storagePeers struct{ n *Node }

func (p storagePeers) StoragePeers(ctx context.Context, key string) ([]erasure.PeerInfo, error) {
	h := p.n.host
	var ids []peer.ID
	closest, err := p.n.overlay.DHT().GetClosestPeers(ctx, key)
	if err == nil {
		ids = append(ids, closest...)
	}
	ids = append(ids, h.Network().Peers()...)
	seen := map[peer.ID]bool{h.ID(): true}
	var out []erasure.PeerInfo
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		protos, _ := h.Peerstore().GetProtocols(id)
		if len(protos) > 0 && !slices.Contains(protos, protocol.ID(erasure.ShardProtocol)) {
			continue
		}
		out = append(out, erasure.PeerInfo{ID: id, Zone: peerZone(p.n, id)})
	}
	if len(out) == 0 && err != nil && !errors.Is(err, kb.ErrLookupFailure) {
		return nil, fmt.Errorf("DHT lookup of the closest peers: %w", err)
	}
	// An empty routing table and no connection: this peer is alone (the
	// one-laptop deployment). It is then the only candidate and keeps the
	// object itself (k=1, m=0; the answer's target_met is false). Repair
	// regenerates lost shards but does not widen an object, so a write
	// made once peers have joined is what spreads it.
	return out, nil
}

// A node announces its zone in its identify agent version:
// "immense/0.1 zone=<zone>".
func agentVersion(zone string) string {
	if zone == "" {
		return userAgent
	}
	return userAgent + " zone=" + zone
}

func peerZone(n *Node, id peer.ID) string {
	v, err := n.host.Peerstore().Get(id, "AgentVersion")
	if err != nil {
		return ""
	}
	s, _ := v.(string)
	_, zone, ok := strings.Cut(s, " zone=")
	if !ok {
		return ""
	}
	return zone
}
