package node

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/immense-p2p/immense/internal/topicname"
	"github.com/immense-p2p/immense/overlay"
	"github.com/immense-p2p/immense/webrtc"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/semaphore"
)

// HTTPOptions configures the HTTP API.
type HTTPOptions struct {
	// Topics enables POST and GET /v1/topics/{topic}. Bootstrap nodes serve
	// only status and metrics.
	Topics bool
	// MaxStreams caps concurrent Server-Sent Events streams. Default 1024.
	MaxStreams int
	// MaxStreamsPerClient caps concurrent SSE streams from one IP address,
	// so that one client cannot take every stream. Default 64.
	MaxStreamsPerClient int
	// KeepAlive is the interval of SSE comment lines that keep idle proxies
	// from closing the stream. Default 15 s.
	KeepAlive time.Duration
	// AllowedHosts are further host names (lower case, no port) the control
	// API answers to, besides localhost and IP literals of this server: the
	// name of a peer reached through DNS or a reverse proxy. See apiauth.go.
	AllowedHosts []string
	// NoAPIToken serves the control API without its bearer token. Host and
	// Origin are still checked, so web pages stay out, but any local user
	// can publish and read state: for throwaway devnets only.
	NoAPIToken bool
}

// Handler returns the node's HTTP API. The control API, which needs the
// bearer token of APIToken and is refused to web pages (apiauth.go):
//
//	GET  /v1/topics           JSON list of the topics this node has joined (not "_" ones)
//	POST /v1/topics/{topic}   publish the request body
//	GET  /v1/topics/{topic}   Server-Sent Events stream of the topic
//	GET  /v1/topics/{topic}/presence  JSON members, for topics with presence
//	PUT, GET, DELETE /v1/state/{key}, GET .../health, POST .../repair
//	GET  /v1/status           JSON status
//	GET  /metrics             Prometheus metrics
//
// the probes, without a token (readiness.go): GET /healthz and /readyz;
// and the endpoints for browsers, open to any page (browsers bring their
// own tokens): POST /v1/webrtc/offer, GET /v1/ws (a WebSocket), POST
// /v1/webrtc/signal?peer= and GET /v1/webrtc/peers (relayed signaling to
// NAT'd peers, signal.go), and GET /,
// /app.js, /client.js and /immense.d.ts (the demo page and the client
// library).
//
// Errors are JSON objects {"error": "..."} with a 4xx or 5xx status: 404
// for an unknown endpoint, a missing key or a topic without presence, 400
// for an invalid key or topic, 403 for a publish this peer may not make,
// 405 with Allow for a method the path is not served with.
func (n *Node) Handler(opts HTTPOptions) http.Handler {
	return n.newAPI(opts).routes()
}

func (n *Node) newAPI(opts HTTPOptions) *api {
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = 1024
	}
	if opts.MaxStreamsPerClient <= 0 {
		opts.MaxStreamsPerClient = 64
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 15 * time.Second
	}
	opts.AllowedHosts = slices.Clone(opts.AllowedHosts)
	for i, h := range opts.AllowedHosts {
		opts.AllowedHosts[i] = strings.ToLower(h)
	}
	a := &api{
		n: n, opts: opts, streams: make(chan struct{}, opts.MaxStreams), perClient: make(map[string]int),
		log: n.plog.With("component", "node.http"), refused: n.apiRefusedCounter(),
	}
	if n.state != nil {
		a.puts = semaphore.NewWeighted(a.putBudget())
	}
	return a
}

func (a *api) routes() http.Handler {
	n, opts := a.n, a.opts
	if opts.NoAPIToken {
		a.log.Warn("the control API takes requests without a token: any local user can publish and read state (Host and Origin are still checked)")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.probe(a.healthz))
	mux.HandleFunc("GET /readyz", a.probe(a.readyz))
	mux.HandleFunc("GET /v1/status", a.guard(a.status))
	mux.Handle("GET /metrics", a.guard(promhttp.HandlerFor(withoutBuildPaths(n.registry), promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}).ServeHTTP))
	if opts.Topics {
		// Exact, for every method: without it ServeMux would redirect
		// /v1/topics to /v1/topics/ with an HTML body.
		mux.HandleFunc("/v1/topics", a.guard(a.listTopics))
		mux.HandleFunc("POST /v1/topics/{topic...}", a.guard(a.publish))
		mux.HandleFunc("GET /v1/topics/{topic...}", a.guard(a.subscribe))
	}
	if n.state != nil && opts.Topics {
		// {key...}, not {key}: a key with '/' (which keys may not hold)
		// is refused as an invalid key, not taken for another endpoint.
		// The longer patterns win for the key's health and repair.
		mux.HandleFunc("/v1/state", a.guard(a.noKey))
		mux.HandleFunc("PUT /v1/state/{key...}", a.guard(a.putState))
		mux.HandleFunc("GET /v1/state/{key...}", a.guard(a.getState))
		mux.HandleFunc("DELETE /v1/state/{key...}", a.guard(a.deleteState))
		mux.HandleFunc("GET /v1/state/{key}/health", a.guard(a.stateHealth))
		mux.HandleFunc("POST /v1/state/{key}/repair", a.guard(a.repairState))
	}
	if n.browsers != nil && opts.Topics {
		mux.Handle("/v1/webrtc/offer", n.browsers)
		mux.Handle("GET "+webrtc.WebSocketPath, n.browsers.WebSocketHandler())
		mux.Handle(webrtc.SignalPath, n.relay.Handler(n.dialSignal))
		mux.Handle("GET "+webrtc.SignalPeersPath, n.relay.PeersHandler(n.signalPeers))
		demo := webrtc.DemoHandler()
		for _, p := range []string{"GET /{$}", "GET /app.js", "GET /client.js", "GET /immense.d.ts"} {
			mux.Handle(p, demo)
		}
	}
	a.dashboardRoutes(mux) // GET /dashboard/, /v1/peers, /v1/storage (dashboard.go)
	return jsonMisses(mux)
}

// jsonMisses serves mux, answering what it has no endpoint for in JSON
// like every other error: 405 with Allow for a path served under other
// methods, 404 otherwise (ServeMux's own answers are plain text).
func jsonMisses(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete} {
			if m == r.Method {
				continue
			}
			other := r.Clone(r.Context())
			other.Method = m
			if _, p := mux.Handler(other); p != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on %s: use %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
			return
		}
		writeError(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
}

// listTopics lists the topics this node has joined: GET /v1/topics. The
// nodes' own topics (topicname.Internal: presence announcements) are left
// out: they are no app's, and /v1/status lists every topic.
func (a *api) listTopics(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed on /v1/topics: POST to /v1/topics/{topic}", r.Method))
		return
	}
	topics := slices.DeleteFunc(a.n.overlay.Topics(), func(ti overlay.TopicInfo) bool { return topicname.Internal(ti.Name) })
	writeJSON(w, http.StatusOK, map[string]any{"topics": topics})
}

// apiRefusedCounter returns the counter of refused control requests,
// registering it with the node's first Handler.
func (n *Node) apiRefusedCounter() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "immense", Subsystem: "http", Name: "control_refused_total",
		Help: "Control API requests refused, by reason: host (not this server's name: DNS rebinding), origin (from a web page elsewhere), token (missing or wrong bearer token).",
	}, []string{"reason"})
	if err := n.registry.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	return c
}

type api struct {
	n       *Node
	opts    HTTPOptions
	streams chan struct{}
	log     *slog.Logger
	refused *prometheus.CounterVec
	// puts reserves the body bytes of PUT /v1/state requests in flight.
	puts *semaphore.Weighted

	mu        sync.Mutex
	perClient map[string]int // open SSE streams by remote IP
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// retryAfterBusy is the Retry-After, in seconds, of a 503 for a full
// publish backlog or topic table: a backlog drains within the overlay's
// PublishDiscoveryTimeout (2 s by default), and a topic table full of
// subscriptions needs one to end, which a client retrying every few
// seconds notices soon enough without hammering the peer. Connections
// refused over the HTTP caps (httpconns.go) are told the same: a slot is
// free as soon as any client goes.
const retryAfterBusy = "5"

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func (a *api) publish(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	if err := overlay.ValidateTopic(topic); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	max := a.n.cfg.Overlay.MaxMessageSize
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(transferTime(int64(max))))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(max)))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("body exceeds the maximum message size of %d bytes", max))
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, fmt.Errorf("read body: %w", err))
		return
	case len(body) == 0:
		writeError(w, http.StatusBadRequest, errors.New("empty body: nothing to publish"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := a.n.Publish(ctx, topic, body); err != nil {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, overlay.ErrBacklogFull), errors.Is(err, overlay.ErrTooManyTopics):
			w.Header().Set("Retry-After", retryAfterBusy)
			code = http.StatusServiceUnavailable
		case errors.Is(err, overlay.ErrRateLimited):
			w.Header().Set("Retry-After", "1") // the budget refills within a second
			code = http.StatusTooManyRequests
		case errors.Is(err, overlay.ErrUnauthorized):
			code = http.StatusForbidden // a peer without the app key, on a topic that is not open
		case errors.Is(err, ErrClosed), errors.Is(err, overlay.ErrClosed):
			code = http.StatusServiceUnavailable
		}
		writeError(w, code, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"topic": topic, "bytes": len(body)})
}

// subscribe streams a topic as Server-Sent Events. Each message is one
// event: "id" is the message ID; the event type is "message" with the
// payload as text when it is UTF-8 without carriage returns, and "binary"
// with the payload in standard base64 otherwise (or always, with
// ?format=base64). Before the data, the fields "sender" (the verified
// sender: an app peer's id, "token:" and a browser's token subject, or the
// publishing peer's id, unverified, on an open topic), "sender-kind"
// (peer, browser or unverified) and "time" (the publisher's clock, RFC
// 3339) say who published it and when; EventSource and line readers that
// look only at data ignore them. With ?format=json each event's data is
// instead one JSON object (jsonEvent) carrying the same, for browsers'
// EventSource. The stream opens with the comment ": subscribed", sent
// once the node has subscribed.
//
// Resume: each event's "id" is the stream's cursor, the highest position
// (Message.Position) delivered so far, which EventSource sends back as
// Last-Event-ID when it reconnects; ?since= takes a position or an RFC
// 3339 time for a first connection (Last-Event-ID wins if both are
// given). The stream then starts with the messages after it from the
// history window, then goes on live, without duplicates (node.Since). If
// the cursor is older than the window, an event of type "gap" (data: the
// topic as JSON) comes first: some messages were lost.
//
// Presence: for a topic with presence (Config.Presence), GET
// /v1/topics/{topic}/presence answers its members as this peer sees them,
// as JSON {"topic", "count", "members": [{"id", "peer"}]}; for any other
// topic, 404. "presence" is a reserved last segment here: a topic named
// ".../presence" can be published to, and followed by browsers and Go,
// but not streamed by this endpoint (it would be taken for a presence
// request), so a client asking for presence where it is off gets an error
// rather than an endless, silent stream.
func (a *api) subscribe(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	if t, ok := strings.CutSuffix(topic, "/presence"); ok {
		members, err := a.n.Presence(t)
		if err != nil {
			writeError(w, http.StatusNotFound, fmt.Errorf("%w: %q (peer --presence names the topics with presence; a topic whose name ends in /presence cannot be streamed over HTTP)", ErrNoPresence, t))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"topic": t, "count": len(members), "members": append([]Member{}, members...)})
		return
	}
	if err := overlay.ValidateTopic(topic); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	format := r.URL.Query().Get("format")
	if format != "" && format != "text" && format != "base64" && format != "json" {
		writeError(w, http.StatusBadRequest, fmt.Errorf("format %q: want text, base64 or json", format))
		return
	}
	var opts []SubscribeOption
	var cursor Position
	if since := cmp.Or(r.Header.Get("Last-Event-ID"), r.URL.Query().Get("since")); since != "" {
		p, err := ParsePosition(since)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("resume point %q: want a message position (an event id) or an RFC 3339 time", since))
			return
		}
		opts, cursor = append(opts, Since(p)), p
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, errors.New("streaming unsupported by this connection"))
		return
	}
	release, err := a.openStream(r.RemoteAddr)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	defer release()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	msgs, err := a.n.Subscribe(ctx, topic, opts...)
	if err != nil {
		if errors.Is(err, overlay.ErrTooManyTopics) {
			w.Header().Set("Retry-After", retryAfterBusy)
		}
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": subscribed\n\n")
	flusher.Flush()

	keepAlive := time.NewTicker(a.opts.KeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-keepAlive.C:
			fmt.Fprint(w, ": keepalive\n\n")
		case m, ok := <-msgs:
			if !ok {
				return // node closing
			}
			if m.Gap {
				fmt.Fprintf(w, "event: gap\ndata: {\"topic\":%q}\n\n", m.Topic)
				break
			}
			if m.Position.Compare(cursor) > 0 {
				cursor = m.Position
			}
			if format == "json" {
				writeJSONEvent(w, m, cursor.String())
			} else {
				writeEvent(w, m, cursor.String(), format == "base64")
			}
		}
		flusher.Flush()
	}
}

// openStream takes one of the SSE stream slots, of which one client (by
// IP) may hold MaxStreamsPerClient, and everyone MaxStreams.
func (a *api) openStream(remote string) (release func(), err error) {
	ip := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		ip = h
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.perClient[ip] >= a.opts.MaxStreamsPerClient {
		return nil, fmt.Errorf("too many open streams from %s (%d)", ip, a.opts.MaxStreamsPerClient)
	}
	select {
	case a.streams <- struct{}{}:
	default:
		return nil, fmt.Errorf("too many open streams (%d)", a.opts.MaxStreams)
	}
	a.perClient[ip]++
	return func() {
		<-a.streams
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.perClient[ip]--; a.perClient[ip] == 0 {
			delete(a.perClient, ip)
		}
	}, nil
}

// writeEvent writes m as an event whose id is the stream's cursor id.
func writeEvent(w io.Writer, m *Message, id string, forceBase64 bool) {
	origin := fmt.Sprintf("sender: %s\nsender-kind: %s\ntime: %s\n", m.Sender, m.Sender.Kind, m.Published.UTC().Format(time.RFC3339Nano))
	if !forceBase64 && utf8.Valid(m.Data) && !strings.ContainsRune(string(m.Data), '\r') {
		fmt.Fprintf(w, "id: %s\nevent: message\n%s", id, origin)
		// A newline in the payload becomes a new data line; SSE clients
		// join them back with "\n".
		for _, line := range strings.Split(string(m.Data), "\n") {
			fmt.Fprintf(w, "data: %s\n", line)
		}
		fmt.Fprint(w, "\n")
		return
	}
	fmt.Fprintf(w, "id: %s\nevent: binary\n%sdata: %s\n\n", id, origin, base64.StdEncoding.EncodeToString(m.Data))
}

// jsonEvent is the data of an event with ?format=json.
type jsonEvent struct {
	ID    string `json:"id"`
	Topic string `json:"topic"`
	// Sender is who published it with the right to the topic (see
	// subscribe); SenderKind says how that was established.
	Sender     string `json:"sender"`
	SenderKind string `json:"sender_kind"`
	// From is the overlay peer that published it (the relaying peer of a
	// browser's message).
	From string    `json:"from"`
	Time time.Time `json:"time"`
	// Position is the message's own position (the event id is the
	// stream's cursor, the highest position so far).
	Position string `json:"position,omitempty"`
	// Text is the payload when it is UTF-8; Base64 otherwise.
	Text   *string `json:"text,omitempty"`
	Base64 string  `json:"base64,omitempty"`
}

func writeJSONEvent(w io.Writer, m *Message, id string) {
	e := jsonEvent{ID: m.ID, Topic: m.Topic, Sender: m.Sender.String(), SenderKind: m.Sender.Kind.String(), From: m.From.String(), Time: m.Published.UTC()}
	if !m.Position.IsZero() {
		e.Position = m.Position.String()
	}
	if utf8.Valid(m.Data) {
		s := string(m.Data)
		e.Text = &s
	} else {
		e.Base64 = base64.StdEncoding.EncodeToString(m.Data)
	}
	b, _ := json.Marshal(e) // a struct of strings and a time: cannot fail
	fmt.Fprintf(w, "id: %s\nevent: message\ndata: %s\n\n", id, b)
}

// Status is the JSON body of GET /v1/status. Sizes are in bytes, rates
// in bytes per second, durations strings such as "1h2m3s".
type Status struct {
	PeerID string `json:"peer_id"`
	// Joined says whether the node is joined to the overlay now;
	// JoinState says why not (or that it runs alone, without bootstrap
	// peers). GET /readyz answers the same.
	Joined           bool                `json:"joined"`
	JoinState        string              `json:"join_state,omitempty"`
	ListenAddrs      []string            `json:"listen_addrs"`
	ConnectedPeers   int                 `json:"connected_peers"`
	RoutingTableSize int                 `json:"routing_table_size"`
	DHTMode          string              `json:"dht_mode"` // auto, server or client: auto on loopback or a LAN runs as server (overlay.Deployment.DHTMode)
	Topics           []overlay.TopicInfo `json:"topics"`
	Limits           Limits              `json:"limits"`
	NAT              NATConfig           `json:"nat"`
	Reachability     string              `json:"reachability"` // public, private or unknown
	RelayAddrs       []string            `json:"relay_addrs"`
	Bandwidth        BandwidthStatus     `json:"bandwidth"`
	Connections      []ConnStatus        `json:"connections"`
	// Storage is absent on a node without state (a bootstrap node).
	Storage *StorageStatus `json:"storage,omitempty"`
	// BrowserSessions counts browsers connected or connecting over
	// WebRTC; absent without the browser bridge.
	BrowserSessions *int `json:"browser_sessions,omitempty"`
	// BrowserRelays says, for each topic this peer feeds through browser
	// relays, how its browsers are fed; absent when none is.
	BrowserRelays []webrtc.RelayStatus `json:"browser_relays,omitempty"`
	Joins         JoinStatus           `json:"joins"`
	Uptime        string               `json:"uptime"`
	Version       string               `json:"version"`
}

// JoinStatus reports the join protocol: newcomers this node admitted or
// refused (busy), under its limit, and busy answers it received itself.
type JoinStatus struct {
	Rate  float64 `json:"rate"` // joins admitted per second (0: no limit)
	Burst int     `json:"burst"`
	overlay.JoinStats
}

// BandwidthStatus reports caps and traffic, in bytes and bytes per second.
// A cap is absent when there is none (--max-upload 0).
type BandwidthStatus struct {
	MaxUpload   int64   `json:"max_upload,omitempty"`
	MaxDownload int64   `json:"max_download,omitempty"`
	TotalIn     int64   `json:"total_in"`
	TotalOut    int64   `json:"total_out"`
	RateIn      float64 `json:"rate_in"`
	RateOut     float64 `json:"rate_out"`
}

// ConnStatus describes one open connection.
type ConnStatus struct {
	Peer      string `json:"peer"`
	Addr      string `json:"addr"`
	Direction string `json:"direction"`
	Relayed   bool   `json:"relayed"`
}

// StorageStatus reports the local shard store: bytes used of the quota,
// the shards held and the objects they belong to.
type StorageStatus struct {
	Used    int64  `json:"used_bytes"`
	Quota   int64  `json:"quota_bytes"`
	Shards  int    `json:"shards"`
	Objects int    `json:"objects"`
	Zone    string `json:"zone,omitempty"`
	// RepairBytes are the shard bytes this node's repairs uploaded since
	// it started: for its own app (server) and, under other apps'
	// delegations, as a volunteer.
	RepairBytes RepairRoleBytes `json:"repair_bytes"`
}

// RepairRoleBytes splits repair traffic by role.
type RepairRoleBytes struct {
	Server    int64 `json:"server"`
	Volunteer int64 `json:"volunteer"`
}

// maxStatusConns caps the connections listed in /v1/status.
const maxStatusConns = 256

// Status reports the node's state.
func (n *Node) Status() Status {
	addrs, relayAddrs := []string{}, []string{}
	for _, a := range n.Addrs() {
		addrs = append(addrs, a.String())
		if strings.Contains(a.String(), "/p2p-circuit") {
			relayAddrs = append(relayAddrs, a.String())
		}
	}
	conns := []ConnStatus{}
	for _, c := range n.host.Network().Conns() {
		if len(conns) == maxStatusConns {
			break
		}
		conns = append(conns, ConnStatus{
			Peer:      c.RemotePeer().String(),
			Addr:      c.RemoteMultiaddr().String(),
			Direction: c.Stat().Direction.String(),
			Relayed:   c.Stat().Limited,
		})
	}
	var bw metrics.Stats
	if n.bw != nil {
		bw = n.bw.GetBandwidthTotals()
	}
	var sessions *int
	var relays []webrtc.RelayStatus
	if n.browsers != nil {
		k := n.browsers.Sessions()
		sessions, relays = &k, n.browsers.RelayStatus()
	}
	js := n.overlay.JoinState()
	return Status{
		PeerID:           n.ID().String(),
		Joined:           js.Joined,
		JoinState:        js.Reason,
		ListenAddrs:      addrs,
		ConnectedPeers:   len(n.host.Network().Peers()),
		RoutingTableSize: n.overlay.RoutingTableSize(),
		DHTMode:          n.cfg.Overlay.Mode.String(),
		Topics:           n.overlay.Topics(),
		Limits:           n.cfg.Limits,
		NAT:              n.cfg.NAT,
		Reachability:     reachabilityName(n.reachability.Load().(network.Reachability)),
		RelayAddrs:       relayAddrs,
		Bandwidth: BandwidthStatus{
			MaxUpload: n.cfg.MaxUpload, MaxDownload: n.cfg.MaxDownload,
			TotalIn: bw.TotalIn, TotalOut: bw.TotalOut, RateIn: bw.RateIn, RateOut: bw.RateOut,
		},
		Connections:     conns,
		Storage:         n.withRepairBytes(n.storageStatus()),
		BrowserSessions: sessions,
		BrowserRelays:   relays,
		Joins:           JoinStatus{Rate: n.cfg.Overlay.JoinRate, Burst: n.cfg.Overlay.JoinBurst, JoinStats: n.overlay.JoinStats()},
		Uptime:          time.Since(n.started).Round(time.Second).String(),
		Version:         userAgent,
	}
}

func (n *Node) storageStatus() *StorageStatus {
	if n.state == nil {
		return nil
	}
	st := n.state.store
	shards, objects := st.Counts() // no listing: /v1/status is polled
	return &StorageStatus{Used: st.Used(), Quota: st.Quota(), Shards: shards, Objects: objects, Zone: n.cfg.State.Zone}
}

func (a *api) status(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.n.Status())
}
