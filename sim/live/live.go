package live

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/node"
	"github.com/immense-p2p/immense/sim/churn"
	"github.com/immense-p2p/immense/sim/report"
	"github.com/immense-p2p/immense/sim/scenario"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Options tune a live run.
type Options struct {
	// Seed overrides the scenario's seed when non-zero.
	Seed uint64
	// DataDir holds the nodes' identities; required. Use a temporary
	// directory: Run fills it and leaves it to the caller to remove.
	DataDir string
	// Logger receives the driver's own messages; default: discard.
	Logger *slog.Logger
	// NodeLogger receives the nodes' logs; default: discard.
	NodeLogger *slog.Logger
	// Progress, if set, is called with the fraction of the run done.
	Progress func(frac float64, detail string)
}

// ErrNoDataDir is returned when Options.DataDir is empty.
var ErrNoDataDir = errors.New("live: Options.DataDir is required")

const topicName = "sim/delivery"

// interval is a stretch of time a node (generation gen of its slot) was
// online and subscribed, relative to the run's start; to < 0 while it
// lasts.
type interval struct {
	from, to time.Duration
	gen      int
}

// liveNode is one slot of the population; its generation changes when its
// occupant leaves for good.
type liveNode struct {
	idx    int
	server bool

	actions chan action // to the node's worker, in order

	mu      sync.Mutex // guards the fields below
	n       *node.Node
	closing *node.Node // being closed; its repair counters are not yet in repairDone
	gen     int
	cancel  context.CancelFunc
	online  []interval // every online stretch, any generation
	// repairDone sums the repair counters of the incarnations that have
	// stopped (each node's registry starts from zero).
	repairDone repairCounters
}

type action struct {
	kind churn.Kind
	gen  int
	done chan struct{} // closed once applied, if set
}

// current returns the running node and since when it has been online, or
// nil.
func (ln *liveNode) current() (*node.Node, time.Duration) {
	ln.mu.Lock()
	defer ln.mu.Unlock()
	if ln.n == nil || len(ln.online) == 0 {
		return nil, 0
	}
	return ln.n, ln.online[len(ln.online)-1].from
}

// publication is one message published by the driver.
type publication struct {
	seq       uint64
	at        time.Duration // when Publish was called, from the start
	publisher int
	// received maps a receiving slot to its latency (publish time from the
	// envelope to delivery).
	received map[int]time.Duration
	// direct holds the receivers that got it straight from the publisher
	// (gossipsub's flood publish) rather than through a forwarder.
	direct map[int]bool
}

type lookup struct {
	at      time.Duration
	ok      bool
	hops    int // 0 when the target was never heard of
	elapsed time.Duration
}

// run is one live run.
type run struct {
	sc    *scenario.Scenario
	opt   Options
	log   *slog.Logger
	nw    *network
	nodes []*liveNode
	start time.Time
	end   time.Duration // warm-up + duration

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex // guards everything below
	rng       *rand.Rand
	bootstrap []string
	pubs      map[uint64]*publication
	pubErrs   int
	lookups   []lookup
	lookupErr int
	samples   []sample
	startErrs int
	// ids maps every identity that ran to its slot and generation.
	ids map[peer.ID]slotGen

	// Storage (nil objects when the scenario stores none).
	objects   []*object
	reads     []readAttempt
	noReader  int            // samples with no server online to read
	repairEnd repairCounters // at the end of the measured window
}

type sample struct {
	at      time.Duration
	online  int
	servers int
	// Mean connections per online node, server and volunteer, and mean
	// routing-table size per online node.
	conns, serverConns, volunteerConns, rtSize float64
	// repair: the repair counters of all nodes so far (storage only).
	repair repairCounters
}

// Run runs sc once in live mode and returns its measurements. It blocks
// for the scenario's warm-up plus duration (real or virtual time, see the
// package comment) and closes every node before returning.
func Run(ctx context.Context, sc *scenario.Scenario, opt Options) (*report.Result, error) {
	if opt.DataDir == "" {
		return nil, ErrNoDataDir
	}
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	if opt.Logger == nil {
		opt.Logger = discard
	}
	if opt.NodeLogger == nil {
		opt.NodeLogger = discard
	}
	seed := sc.Seed
	if opt.Seed != 0 {
		seed = opt.Seed
	}
	if err := os.MkdirAll(opt.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("live: data dir: %w", err)
	}
	sched, regions, err := sc.Schedule(seed)
	if err != nil {
		return nil, fmt.Errorf("live: %w", err)
	}

	rctx, cancel := context.WithCancel(ctx)
	r := &run{
		sc:     sc,
		opt:    opt,
		log:    opt.Logger,
		ctx:    rctx,
		cancel: cancel,
		end:    sc.Warmup.D() + sc.Duration.D(),
		rng:    rand.New(rand.NewPCG(seed, 0x64726976)), // "driv"
		pubs:   map[uint64]*publication{},
		ids:    map[peer.ID]slotGen{},
	}
	var keyFile string
	if sc.Storage.Objects > 0 {
		var key *erasure.AppKey
		if keyFile, key, err = appKey(opt.DataDir, seed); err != nil {
			cancel()
			return nil, fmt.Errorf("live: %w", err)
		}
		r.newObjects(key, seed)
	}
	r.nw = newNetwork(sc, regions, opt.DataDir, keyFile, opt.NodeLogger)
	defer r.nw.close()
	for i := range sc.Nodes {
		r.nodes = append(r.nodes, &liveNode{idx: i, server: i < sc.Servers.Count, actions: make(chan action, 16)})
	}
	r.start = time.Now()

	// Servers first, in order: server 0 bootstraps nobody, every later node
	// bootstraps from the servers already up.
	for i := range sc.Servers.Count {
		if sched.Online(i) {
			r.apply(i, action{kind: churn.Up, gen: 0})
		}
	}
	for _, ln := range r.nodes {
		r.wg.Add(1)
		go r.worker(ln)
	}
	for i := sc.Servers.Count; i < sc.Nodes; i++ {
		if sched.Online(i) {
			r.nodes[i].actions <- action{kind: churn.Up, gen: 0}
		}
	}
	r.log.Info("nodes starting", "nodes", sc.Nodes, "online", r.countOnline(sched))

	r.wg.Add(2)
	go r.sampler()
	go r.traffic()
	if len(r.objects) > 0 {
		r.wg.Add(1)
		go r.writeObjects()
	}
	r.drive(sched)
	if len(r.objects) > 0 && sleepUntil(r.ctx, r.start.Add(r.end)) {
		rc := r.repairTotals()
		r.mu.Lock()
		r.repairEnd = rc
		r.mu.Unlock()
	}
	// Let the last messages arrive; then, with storage, bring every node
	// still in the network back and read every object; stop everything.
	sleepUntil(r.ctx, r.start.Add(r.end+sc.Topic.Deadline.D()))
	if len(r.objects) > 0 {
		r.recoverAll()
	}
	cancel()
	for _, ln := range r.nodes {
		close(ln.actions)
	}
	r.wg.Wait()
	for _, ln := range r.nodes {
		r.stop(ln)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return r.result(seed), nil
}

func (r *run) countOnline(s *churn.Schedule) int {
	n := 0
	for i := range s.Len() {
		if s.Online(i) {
			n++
		}
	}
	return n
}

// now is the time since the start of the run.
func (r *run) now() time.Duration { return time.Since(r.start) }

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// drive hands every churn transition to its node's worker at its time.
func (r *run) drive(sched *churn.Schedule) {
	var buf []churn.Transition
	for {
		at, ok := sched.Peek()
		if !ok || at > r.end {
			return
		}
		if !sleepUntil(r.ctx, r.start.Add(at)) {
			return
		}
		buf = sched.Step(buf[:0])
		for _, t := range buf {
			r.nodes[t.Node].actions <- action{kind: t.Kind, gen: t.Gen}
		}
		if r.opt.Progress != nil {
			r.opt.Progress(float64(at)/float64(r.end), fmt.Sprintf("%v of %v", at.Round(time.Second), r.end))
		}
	}
}

// worker carries out one node's transitions in order: starting or closing
// a node takes a while, and must not hold up the others.
func (r *run) worker(ln *liveNode) {
	defer r.wg.Done()
	for a := range ln.actions {
		if r.ctx.Err() == nil {
			r.apply(ln.idx, a)
		}
		if a.done != nil {
			close(a.done)
		}
	}
}

func (r *run) apply(i int, a action) {
	ln := r.nodes[i]
	switch a.kind {
	case churn.Up:
		r.up(ln)
	case churn.Down:
		r.stop(ln)
	case churn.Replace:
		r.stop(ln)
		ln.mu.Lock()
		old := ln.gen
		ln.gen = a.gen
		ln.mu.Unlock()
		r.nw.forget(i, old)
	}
}

// up starts node ln and subscribes it to the topic.
func (r *run) up(ln *liveNode) {
	ln.mu.Lock()
	if ln.n != nil {
		ln.mu.Unlock()
		return
	}
	gen := ln.gen
	ln.mu.Unlock()
	r.mu.Lock()
	boot := append([]string(nil), r.bootstrap...)
	r.mu.Unlock()
	n, err := r.nw.start(r.ctx, ln.idx, gen, ln.server, boot)
	if err != nil {
		r.mu.Lock()
		r.startErrs++
		r.mu.Unlock()
		r.log.Warn("start node", "node", ln.idx, "err", err)
		return
	}
	sctx, cancel := context.WithCancel(r.ctx)
	msgs, err := n.Subscribe(sctx, topicName)
	if err != nil {
		cancel()
		n.Close()
		r.log.Warn("subscribe", "node", ln.idx, "err", err)
		return
	}
	ln.mu.Lock()
	ln.n, ln.cancel = n, cancel
	ln.online = append(ln.online, interval{from: r.now(), to: -1, gen: gen})
	ln.mu.Unlock()
	r.mu.Lock()
	r.ids[n.ID()] = slotGen{slot: ln.idx, gen: gen}
	r.mu.Unlock()
	if ln.server {
		r.mu.Lock()
		for _, a := range n.Addrs() {
			r.bootstrap = append(r.bootstrap, a.String())
		}
		r.mu.Unlock()
	}
	r.wg.Add(1)
	go r.receive(ln.idx, msgs)
}

// stop closes node ln if it runs.
func (r *run) stop(ln *liveNode) {
	ln.mu.Lock()
	n, cancel := ln.n, ln.cancel
	ln.n, ln.cancel, ln.closing = nil, nil, n
	if n != nil {
		ln.online[len(ln.online)-1].to = r.now()
	}
	ln.mu.Unlock()
	if n == nil {
		return
	}
	cancel()
	if err := n.Close(); err != nil {
		r.log.Debug("close node", "node", ln.idx, "err", err)
	}
	var c repairCounters
	if r.nw.state != nil {
		c = readRepairCounters(n)
	}
	ln.mu.Lock()
	ln.repairDone.add(c)
	ln.closing = nil
	ln.mu.Unlock()
}

// receive records the deliveries of one node incarnation.
func (r *run) receive(i int, msgs <-chan *node.Message) {
	defer r.wg.Done()
	for m := range msgs {
		if len(m.Data) < 8 {
			continue
		}
		seq := binary.BigEndian.Uint64(m.Data)
		lat := time.Since(m.Published)
		r.mu.Lock()
		if p, ok := r.pubs[seq]; ok {
			if _, dup := p.received[i]; !dup {
				p.received[i] = lat
				if m.ReceivedFrom == m.From {
					p.direct[i] = true
				}
			}
		}
		r.mu.Unlock()
	}
}

// settled returns the slots online for at least d, with their nodes.
func (r *run) settled(d time.Duration) ([]int, []*node.Node) {
	now := r.now()
	var idx []int
	var ns []*node.Node
	for _, ln := range r.nodes {
		if n, since := ln.current(); n != nil && now-since >= d {
			idx = append(idx, ln.idx)
			ns = append(ns, n)
		}
	}
	return idx, ns
}

// sampler records the network's state at every sample.
func (r *run) sampler() {
	defer r.wg.Done()
	for k := 1; ; k++ {
		if !sleepUntil(r.ctx, r.start.Add(time.Duration(k)*r.sc.SampleEvery.D())) {
			return
		}
		s := sample{at: r.now()}
		conns, rt, srvConns := 0, 0, 0
		for _, ln := range r.nodes {
			if n, _ := ln.current(); n != nil {
				s.online++
				c := len(n.Host().Network().Peers())
				if ln.server {
					s.servers++
					srvConns += c
				}
				conns += c
				rt += n.Overlay().RoutingTableSize()
			}
		}
		if s.online > 0 {
			s.conns = float64(conns) / float64(s.online)
			s.rtSize = float64(rt) / float64(s.online)
		}
		if s.servers > 0 {
			s.serverConns = float64(srvConns) / float64(s.servers)
		}
		if v := s.online - s.servers; v > 0 {
			s.volunteerConns = float64(conns-srvConns) / float64(v)
		}
		if len(r.objects) > 0 {
			s.repair = r.repairTotals()
			if s.at >= r.sc.Warmup.D() && s.at <= r.end {
				r.wg.Add(1)
				go r.checkObjects()
			}
		}
		r.mu.Lock()
		r.samples = append(r.samples, s)
		r.mu.Unlock()
		if s.at > r.end {
			return
		}
	}
}

// traffic publishes and looks up at the scenario's rates from the end of
// the warm-up to the end of the run.
func (r *run) traffic() {
	defer r.wg.Done()
	if !sleepUntil(r.ctx, r.start.Add(r.sc.Warmup.D())) {
		return
	}
	var pubT, lookT *time.Ticker
	var pubC, lookC <-chan time.Time
	if d := r.sc.Topic.PublishEvery.D(); d > 0 {
		pubT = time.NewTicker(d)
		defer pubT.Stop()
		pubC = pubT.C
	}
	if d := r.sc.Lookups.Every.D(); d > 0 {
		lookT = time.NewTicker(d)
		defer lookT.Stop()
		lookC = lookT.C
	}
	stop := time.NewTimer(r.sc.Duration.D())
	defer stop.Stop()
	var seq uint64
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-stop.C:
			return
		case <-pubC:
			seq++
			r.publish(seq)
		case <-lookC:
			r.lookup()
		}
	}
}

// publish sends message seq from a random settled node.
func (r *run) publish(seq uint64) {
	idx, ns := r.settled(r.sc.Topic.Settle.D())
	if len(idx) == 0 {
		return
	}
	r.mu.Lock()
	k := r.rng.IntN(len(idx))
	p := &publication{seq: seq, at: r.now(), publisher: idx[k], received: map[int]time.Duration{}, direct: map[int]bool{}}
	r.pubs[seq] = p
	r.mu.Unlock()
	data := make([]byte, max(8, int(r.sc.Topic.MessageSize)))
	binary.BigEndian.PutUint64(data, seq)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(r.ctx, r.sc.Topic.Deadline.D())
		defer cancel()
		if err := ns[k].Publish(ctx, topicName, data); err != nil {
			r.mu.Lock()
			delete(r.pubs, seq)
			r.pubErrs++
			r.mu.Unlock()
		}
	}()
}

// lookup has a random settled node look up another one's key.
func (r *run) lookup() {
	idx, ns := r.settled(r.sc.Topic.Settle.D())
	if len(idx) < 2 {
		return
	}
	r.mu.Lock()
	a := r.rng.IntN(len(idx))
	b := r.rng.IntN(len(idx) - 1)
	if b >= a {
		b++
	}
	r.mu.Unlock()
	from, target := ns[a], ns[b].ID()
	at := r.now()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ok, hops, err := findKey(r.ctx, from, target, r.sc.Lookups.Timeout.D())
		if r.ctx.Err() != nil || errors.Is(err, errInitiatorClosed) {
			return // the run or the initiator ended first: not a lookup outcome
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil {
			r.lookupErr++
		}
		r.lookups = append(r.lookups, lookup{at: at, ok: ok, hops: hops, elapsed: r.now() - at})
	}()
}
