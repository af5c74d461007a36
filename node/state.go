package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/internal/durable"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	routedhost "github.com/libp2p/go-libp2p/p2p/host/routed"
)

// State files inside Config.DataDir.
const (
	shardDir     = "shards"
	appKeyFile   = "app.key"
	stateKeyFile = "state-keys.json"
)

// MaxKeyLength is the longest state key, in bytes.
const MaxKeyLength = 256

// ValidateKey checks a state key: 1 to 256 bytes of [A-Za-z0-9._:-]. No
// slash, so that /v1/state/{key}/health is never ambiguous.
func ValidateKey(key string) error {
	if key == "" || len(key) > MaxKeyLength {
		return fmt.Errorf("%w: want 1 to %d bytes, got %d", erasure.ErrInvalidKey, MaxKeyLength, len(key))
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return fmt.Errorf("%w: byte %q at offset %d is not one of [A-Za-z0-9._:-]", erasure.ErrInvalidKey, c, i)
		}
	}
	return nil
}

// state is the node's erasure-coded storage: the shard store it serves to
// others and, with its app key, the namespace it reads and writes.
type state struct {
	svc   *erasure.Service
	store *erasure.Store

	mu   sync.Mutex
	keys map[string]bool // keys this node wrote: it repairs them
	path string
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
	ecfg.Zone = n.cfg.Zone
	if ecfg.Logger == nil {
		ecfg.Logger = n.plog
	}
	if ecfg.Registerer == nil {
		ecfg.Registerer = n.registry
	}
	svc, err := erasure.New(ecfg, erasure.Deps{
		// A routed host looks holders it has never met up in the DHT.
		Host:    routedhost.Wrap(n.host, n.overlay.DHT()),
		Key:     key,
		Store:   store,
		Records: n.overlay.DHT(),
		Peers:   storagePeers{n},
	})
	if err != nil {
		store.Close()
		return fmt.Errorf("start state service: %w", err)
	}
	st := &state{svc: svc, store: store, keys: map[string]bool{}, path: filepath.Join(n.cfg.DataDir, stateKeyFile)}
	if err := st.loadKeys(); err != nil {
		svc.Close()
		store.Close()
		return err
	}
	n.state = st
	n.log.Info("state service started", "namespace", key.Namespace().String(), "quota", erasure.FormatSize(n.cfg.StorageQuota), "tracked_keys", len(st.keys))
	return nil
}

func (s *state) close() error {
	return errors.Join(s.svc.Close(), s.store.Close())
}

// loadKeys restores the keys this node wrote, so that it keeps repairing
// them after a restart.
func (s *state) loadKeys() error {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", s.path, err)
	}
	var keys []string
	if err := json.Unmarshal(b, &keys); err != nil {
		return fmt.Errorf("%s is corrupt (%v): move it away to start over; the keys it lists will no longer be repaired by this node", s.path, err)
	}
	for _, k := range keys {
		if ValidateKey(k) != nil {
			continue
		}
		s.keys[k] = true
		if err := s.svc.Track(k); err != nil {
			return fmt.Errorf("track %q: %w", k, err)
		}
	}
	return nil
}

// remember records (or forgets) a key this node is responsible for.
func (s *state) remember(key string, keep bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys[key] == keep {
		return nil
	}
	if keep {
		s.keys[key] = true
	} else {
		delete(s.keys, key)
	}
	keys := make([]string, 0, len(s.keys))
	for k := range s.keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b, _ := json.Marshal(keys)
	return durable.WriteFile(s.path, b, 0o600)
}

// ErrNoState is returned by state operations on a node run without state
// (bootstrap nodes).
var ErrNoState = errors.New("node: state storage is not enabled on this node")

// Put stores value under key in the node's namespace, erasure-coded over
// other peers, and returns where it went.
func (n *Node) Put(ctx context.Context, key string, value []byte) (*erasure.PutResult, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	if n.state == nil {
		return nil, ErrNoState
	}
	res, err := n.state.svc.Put(ctx, key, value)
	if err != nil {
		return nil, err
	}
	if err := n.state.remember(key, true); err != nil {
		n.log.Error("record written key", "key", key, "err", err)
	}
	return res, nil
}

// Get reads key from the node's namespace.
func (n *Node) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	if n.state == nil {
		return nil, ErrNoState
	}
	return n.state.svc.Get(ctx, key)
}

// Delete removes key from the node's namespace.
func (n *Node) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if n.state == nil {
		return ErrNoState
	}
	if err := n.state.svc.Delete(ctx, key); err != nil {
		return err
	}
	if err := n.state.remember(key, false); err != nil {
		n.log.Error("forget deleted key", "key", key, "err", err)
	}
	return nil
}

// Health reports how many shards of key are reachable against how many are
// needed.
func (n *Node) Health(ctx context.Context, key string) (*erasure.Health, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	if n.state == nil {
		return nil, ErrNoState
	}
	return n.state.svc.Health(ctx, key)
}

// Repair checks key's shards now and repairs them if erasure's policy says
// so (the repair loop does the same for every object, about hourly). It
// returns the plan acted on and the object's manifest version afterwards.
func (n *Node) Repair(ctx context.Context, key string) (*erasure.RepairPlan, uint64, error) {
	if err := ValidateKey(key); err != nil {
		return nil, 0, err
	}
	if n.state == nil {
		return nil, 0, ErrNoState
	}
	plan, err := n.state.svc.Repair(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	m, err := n.state.svc.Manifest(ctx, key)
	if err != nil {
		return plan, 0, err
	}
	return plan, m.Version, nil
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
	if len(out) == 0 && err != nil {
		return nil, fmt.Errorf("find storage peers: %w", err)
	}
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
