package node

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/immense-p2p/immense/erasure"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/sync/errgroup"
)

// The operator dashboard: static files embedded in the binary, served at
// GET /dashboard/ without a token (they hold no data), and the control
// API endpoints its page reads with the token, guarded like /v1/status:
//
//	GET /v1/peers     the connected peers: transport, direct or relayed,
//	                  latency, in the routing table or not
//	GET /v1/storage   the shard store, the objects held here, and the
//	                  redundancy of the keys this node repairs
//
// The page takes the token from its URL fragment (/dashboard/#token=...,
// which browsers never send to the server), keeps it in sessionStorage and
// clears the fragment; or from a form. It polls /v1/status, /v1/peers and
// /metrics every second and /v1/storage every few seconds, and computes
// message rates from the counters itself.

//go:embed dashboard
var dashboardFiles embed.FS

// DashboardPath is where the dashboard is served; a URL to open it is
// <HTTP API URL>/dashboard/#token=<token>.
const DashboardPath = "/dashboard/"

// dashboardCSP keeps the page to its own files and its own origin: no
// inline script, nothing from elsewhere, not framed by another page.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// dashboard serves the embedded files under DashboardPath, behind the
// control API's Host check only: a page served under a name the API
// refuses could not read anything anyway.
func (a *api) dashboard() http.HandlerFunc {
	sub, _ := fs.Sub(dashboardFiles, "dashboard") // a constant directory: cannot fail
	files := http.StripPrefix(DashboardPath, http.FileServerFS(sub))
	return a.probe(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", dashboardCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// dashboardRoutes adds the dashboard and its data endpoints to mux.
func (a *api) dashboardRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+DashboardPath, a.dashboard())
	mux.HandleFunc("GET /dashboard", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, DashboardPath, http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /v1/peers", a.guard(a.peers))
	if a.n.state != nil {
		tracked := &trackedCache{n: a.n}
		mux.HandleFunc("GET /v1/storage", a.guard(func(w http.ResponseWriter, r *http.Request) {
			rep, err := a.n.storageReport(r.Context(), tracked.get)
			if err != nil {
				a.writeStateError(w, "", err)
				return
			}
			writeJSON(w, http.StatusOK, rep)
		}))
	}
}

// PeersReport is the JSON body of GET /v1/peers.
type PeersReport struct {
	// Total counts the connected peers; Peers lists at most maxStatusConns
	// of them, sorted by id.
	Total            int          `json:"total"`
	RoutingTableSize int          `json:"routing_table_size"`
	Peers            []PeerReport `json:"peers"`
}

// PeerReport is one connected peer as this node sees it.
type PeerReport struct {
	ID string `json:"id"`
	// Transports of its open connections (tcp, quic-v1, webrtc-direct,
	// ...); Direct says whether one of them is not through a relay.
	Transports  []string `json:"transports"`
	Direct      bool     `json:"direct"`
	Connections int      `json:"connections"`
	Direction   string   `json:"direction"` // of the oldest connection
	Addr        string   `json:"addr"`      // of the oldest connection
	// Since is how long the oldest connection has been open.
	Since        string  `json:"since"`
	LatencyMS    float64 `json:"latency_ms,omitempty"`
	RoutingTable bool    `json:"routing_table"` // in this node's DHT routing table
	Agent        string  `json:"agent,omitempty"`
	// Availability is the storage layer's estimate of the share of time
	// the peer is online (absent on a node without state).
	Availability *float64 `json:"availability,omitempty"`
}

// Peers reports the connected peers.
func (n *Node) Peers() PeersReport {
	ids := n.host.Network().Peers()
	slices.Sort(ids)
	rep := PeersReport{Total: len(ids), RoutingTableSize: n.overlay.RoutingTableSize(), Peers: []PeerReport{}}
	rt := n.overlay.DHT().RoutingTable()
	for _, id := range ids {
		if len(rep.Peers) == maxStatusConns {
			break
		}
		conns := n.host.Network().ConnsToPeer(id)
		if len(conns) == 0 {
			continue // went while we listed
		}
		slices.SortFunc(conns, func(x, y network.Conn) int { return x.Stat().Opened.Compare(y.Stat().Opened) })
		pr := PeerReport{
			ID: id.String(), Transports: []string{}, Connections: len(conns),
			Direction: conns[0].Stat().Direction.String(), Addr: conns[0].RemoteMultiaddr().String(),
			Since:        time.Since(conns[0].Stat().Opened).Round(time.Second).String(),
			RoutingTable: rt.Find(id) != "",
		}
		for _, c := range conns {
			t := connTransport(c)
			if !slices.Contains(pr.Transports, t) {
				pr.Transports = append(pr.Transports, t)
			}
			pr.Direct = pr.Direct || !c.Stat().Limited && !strings.Contains(c.RemoteMultiaddr().String(), "/p2p-circuit")
		}
		if l := n.host.Peerstore().LatencyEWMA(id); l > 0 {
			pr.LatencyMS = float64(l.Microseconds()) / 1000
		}
		if v, err := n.host.Peerstore().Get(id, "AgentVersion"); err == nil {
			if s, ok := v.(string); ok && len(s) <= 128 {
				pr.Agent = s // the peer's own words: capped, shown as text
			}
		}
		if n.state != nil {
			av := n.state.svc.Availability().Availability(id)
			pr.Availability = &av
		}
		rep.Peers = append(rep.Peers, pr)
	}
	return rep
}

// connTransport names c's transport: the connection's own word for it, or
// the last transport protocol of its address.
func connTransport(c network.Conn) string {
	if strings.Contains(c.RemoteMultiaddr().String(), "/p2p-circuit") {
		return "relay"
	}
	if t := c.ConnState().Transport; t != "" {
		return t
	}
	name := "unknown"
	for _, p := range c.RemoteMultiaddr().Protocols() {
		switch p.Name {
		case "tcp", "quic-v1", "webtransport", "webrtc-direct", "ws", "wss":
			name = p.Name
		}
	}
	return name
}

func (a *api) peers(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.n.Peers())
}

// Bounds of GET /v1/storage: the objects and keys it lists, how often it
// looks the tracked keys' manifests up (each is a DHT lookup), and for how
// long at most.
const (
	maxHeldObjects    = 64
	maxTrackedKeys    = 32
	trackedCacheTTL   = 15 * time.Second
	trackedLookupTime = 10 * time.Second
	trackedLookups    = 8 // at once
)

// StorageReport is the JSON body of GET /v1/storage.
type StorageReport struct {
	Used   int64 `json:"used_bytes"`
	Quota  int64 `json:"quota_bytes"`
	Shards int   `json:"shards"`
	// Held lists the objects this node holds shards of (its own and
	// others'), largest first, at most maxHeldObjects of HeldTotal.
	Held      []HeldObject `json:"held"`
	HeldTotal int          `json:"held_total"`
	// Tracked lists the keys this node writes and repairs, with their
	// redundancy as of CheckedAt, at most maxTrackedKeys of TrackedTotal.
	Tracked      []TrackedKey `json:"tracked"`
	TrackedTotal int          `json:"tracked_total"`
	// Backlog counts the tracked keys with a shard on a holder not online
	// now: what the repair loop regenerates if the holder stays away past
	// the grace period.
	Backlog   int       `json:"repair_backlog"`
	CheckedAt time.Time `json:"checked_at"`
}

// HeldObject is one object with shards in the local store.
type HeldObject struct {
	Namespace string `json:"namespace"`
	Object    string `json:"object"`
	Shards    int    `json:"shards"`
	Bytes     int64  `json:"bytes"`
	// Indices are the shard indices held here (one per segment).
	Indices []int `json:"indices"`
}

// TrackedKey is the redundancy of one key this node repairs: k data and m
// parity shards on Holders peers, of which Online are online now (this
// node's estimate), and Prob, the estimated probability that at least k
// are online at once. State is healthy (every holder online), degraded
// (some offline, still readable), unreadable (fewer than k online),
// deleted, or error (the manifest lookup failed: Error says why).
type TrackedKey struct {
	Key     string  `json:"key"`
	Version uint64  `json:"version,omitempty"`
	Size    int64   `json:"size,omitempty"`
	K       int     `json:"k,omitempty"`
	M       int     `json:"m,omitempty"`
	Holders int     `json:"holders,omitempty"`
	Online  int     `json:"online,omitempty"`
	Prob    float64 `json:"probability,omitempty"`
	State   string  `json:"state"`
	Error   string  `json:"error,omitempty"`
}

// trackedKeys is one look-up of the tracked keys' redundancy.
type trackedKeys struct {
	keys           []TrackedKey
	total, backlog int
	at             time.Time
}

// Storage reports the shard store and, looking their manifests up now,
// the tracked keys' redundancy.
func (n *Node) Storage(ctx context.Context) (StorageReport, error) {
	return n.storageReport(ctx, n.lookupTracked)
}

func (n *Node) storageReport(ctx context.Context, tracked func(context.Context) trackedKeys) (StorageReport, error) {
	if n.state == nil {
		return StorageReport{}, ErrNoState
	}
	st := n.state.store
	shards := st.List()
	rep := StorageReport{Used: st.Used(), Quota: st.Quota(), Shards: len(shards), Held: []HeldObject{}}
	type objKey struct {
		ns  erasure.NamespaceID
		obj erasure.ObjectID
	}
	held := make(map[objKey]*HeldObject)
	for _, sh := range shards {
		for _, r := range sh.Refs {
			k := objKey{r.Namespace, r.Object}
			h := held[k]
			if h == nil {
				h = &HeldObject{Namespace: r.Namespace.String(), Object: r.Object.String(), Indices: []int{}}
				held[k] = h
			}
			h.Shards++
			h.Bytes += sh.Size
			if i := int(r.Index); !slices.Contains(h.Indices, i) {
				h.Indices = append(h.Indices, i)
			}
		}
	}
	for _, h := range held {
		slices.Sort(h.Indices)
		rep.Held = append(rep.Held, *h)
	}
	slices.SortFunc(rep.Held, func(x, y HeldObject) int {
		if c := cmp.Compare(y.Bytes, x.Bytes); c != 0 {
			return c
		}
		return strings.Compare(x.Object, y.Object)
	})
	rep.HeldTotal = len(rep.Held)
	rep.Held = rep.Held[:min(len(rep.Held), maxHeldObjects)]
	t := tracked(ctx)
	rep.Tracked, rep.TrackedTotal, rep.Backlog, rep.CheckedAt = t.keys, t.total, t.backlog, t.at.UTC()
	return rep, nil
}

// lookupTracked looks up the manifests of the first maxTrackedKeys tracked
// keys (sorted) and rates their redundancy from the availability tracker.
func (n *Node) lookupTracked(ctx context.Context) trackedKeys {
	all := n.state.svc.Keys()
	slices.Sort(all)
	t := trackedKeys{keys: make([]TrackedKey, min(len(all), maxTrackedKeys)), total: len(all), at: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, trackedLookupTime)
	defer cancel()
	var g errgroup.Group
	g.SetLimit(trackedLookups)
	for i := range t.keys {
		g.Go(func() error {
			t.keys[i] = n.trackedKey(ctx, all[i])
			return nil
		})
	}
	g.Wait()
	for _, k := range t.keys {
		if k.State == "degraded" || k.State == "unreadable" {
			t.backlog++
		}
	}
	return t
}

// trackedCache keeps the last look-up of the tracked keys, so that
// dashboards polling /v1/storage cost at most one round of DHT lookups per
// trackedCacheTTL; its lock makes concurrent requests wait for one round.
type trackedCache struct {
	n    *Node
	mu   sync.Mutex
	last trackedKeys
}

func (c *trackedCache) get(ctx context.Context) trackedKeys {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last.at.IsZero() || time.Since(c.last.at) >= trackedCacheTTL {
		// Not the request's context: a client that goes away must not
		// leave a cancelled lookup cached for every dashboard.
		c.last = c.n.lookupTracked(context.WithoutCancel(ctx))
	}
	return c.last
}

func (n *Node) trackedKey(ctx context.Context, key string) TrackedKey {
	m, err := n.state.svc.Manifest(ctx, key)
	if err != nil {
		return TrackedKey{Key: key, State: "error", Error: lookupError(err)}
	}
	if m.Tombstone {
		return TrackedKey{Key: key, Version: m.Version, State: "deleted"}
	}
	tk := TrackedKey{Key: key, Version: m.Version, Size: m.Size, K: m.Params.DataShards, M: m.Params.ParityShards}
	tracker, self := n.state.svc.Availability(), n.ID()
	seen := make(map[peer.ID]bool)
	avail := make([]float64, 0, len(m.Placement))
	for _, p := range m.Placement {
		online := p == self || tracker.Online(p)
		if p == self {
			avail = append(avail, 1)
		} else {
			avail = append(avail, tracker.Availability(p))
		}
		if online {
			tk.Online++
		}
		if !seen[p] {
			seen[p] = true
			tk.Holders++
		}
	}
	// Online counts shard indices on online holders; k of them read it.
	tk.Prob = erasure.ProbAtLeast(tk.K, avail)
	switch {
	case tk.Online == len(m.Placement):
		tk.State = "healthy"
	case tk.Online >= tk.K:
		tk.State = "degraded"
	default:
		tk.State = "unreadable"
	}
	return tk
}

// lookupError says in a few words why a tracked key's manifest was not
// found, without the internal names of the wrapped error.
func lookupError(err error) string {
	switch {
	case errors.Is(err, erasure.ErrNotFound):
		return "no manifest found"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "lookup timed out"
	}
	return "lookup failed"
}
