package live

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"time"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/node"
	"github.com/immense-p2p/immense/sim/churn"
	"github.com/immense-p2p/immense/sim/report"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Storage in live mode: the scenario's objects are written with node.Put by
// the servers (they share one app key: they write, read and repair), their
// shards go wherever erasure places them (any node; volunteers run the
// shard store too), and at every sample each object is read back with
// node.Get by a random online server.
const (
	// putTimeout bounds one Put: a DHT lookup for candidates, k+m shard
	// uploads with replacements, and the manifest's publication.
	putTimeout = 2 * time.Minute
	// putAttempts: a Put that fails is tried again, by the next online
	// server, this many times in all.
	putAttempts = 5
	// getTimeout bounds one read: erasure's RequestTimeout for one shard
	// request; a read asks k holders at once and hedges every 2 s.
	getTimeout = 30 * time.Second
	// finalAttempts is how many reads the end-of-run check makes of each
	// object before it counts it as lost.
	finalAttempts = 3
	// recoveryJoin bounds the wait for the nodes restarted at the end of
	// the run to join the network.
	recoveryJoin = 30 * time.Second
)

// object is one of the scenario's objects.
type object struct {
	key    string
	dhtKey string
	value  []byte
	writer int // slot of the server that writes it first

	// Guarded by run.mu.
	written   time.Duration // when Put returned; < 0 until then
	placement snapshot      // newest placement seen
	k, m      int
	putErrs   int
	finalOK   bool
	finalErr  string
	manifests int // manifest versions seen (1 + repairs observed)
}

// snapshot is one manifest version's placement.
type snapshot struct {
	version uint64
	k       int
	holders []peer.ID
}

// readAttempt is one read of an object at a sample.
type readAttempt struct {
	obj     int
	at, end time.Duration
	ok      bool
	err     string
	// place is the newest placement known when the read started (read from
	// the DHT just before it, or the last one seen if that failed).
	place snapshot
}

// slotGen identifies a node incarnation: a slot and its occupant.
type slotGen struct{ slot, gen int }

// appKey derives the servers' app key from the seed (object ids, and so
// their DHT keys, are then the same from run to run) and saves it in dir.
func appKey(dir string, seed uint64) (string, *erasure.AppKey, error) {
	r := rand.NewChaCha8(sha256.Sum256(fmt.Appendf(nil, "immense-sim-live-app-key-%d", seed)))
	var sk, secret [32]byte
	r.Read(sk[:])
	r.Read(secret[:])
	key, err := erasure.ParseAppKey(fmt.Appendf(nil, `{"type":"immense-app-key","version":1,"signing_key":%q,"secret":%q}`,
		base64.StdEncoding.EncodeToString(sk[:]), base64.StdEncoding.EncodeToString(secret[:])))
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(dir, "app.key")
	if err := erasure.SaveAppKey(path, key); err != nil {
		return "", nil, err
	}
	return path, key, nil
}

// newObjects draws the scenario's objects: sizes log-uniform between
// size_min and size_max, content random, writers the servers in turn.
func (r *run) newObjects(key *erasure.AppKey, seed uint64) {
	st := r.sc.Storage
	rng := rand.New(rand.NewPCG(seed, 0x73746f72)) // "stor"
	lo, hi := math.Log(float64(st.SizeMin)), math.Log(float64(st.SizeMax))
	for i := range st.Objects {
		size := int(math.Round(math.Exp(lo + rng.Float64()*(hi-lo))))
		v := make([]byte, size)
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		name := fmt.Sprintf("sim-object-%04d", i)
		r.objects = append(r.objects, &object{
			key:     name,
			dhtKey:  erasure.DHTKey(key.Namespace(), key.ObjectID(name)),
			value:   v,
			writer:  i % r.sc.Servers.Count,
			written: -1,
		})
	}
}

// writeObjects writes every object, spread over write_within from the end
// of the warm-up.
func (r *run) writeObjects() {
	defer r.wg.Done()
	w, within := r.sc.Warmup.D(), r.sc.Storage.WriteWithin.D()
	for i := range r.objects {
		at := w + time.Duration(float64(within)*float64(i)/float64(len(r.objects)))
		if !sleepUntil(r.ctx, r.start.Add(at)) {
			return
		}
		r.wg.Add(1)
		go r.put(i)
	}
}

// put writes object i through its writer, or the next online server if
// the writer is down or the Put fails.
func (r *run) put(i int) {
	defer r.wg.Done()
	o := r.objects[i]
	for attempt := range putAttempts {
		if attempt > 0 && !sleepUntil(r.ctx, time.Now().Add(5*time.Second)) {
			return
		}
		n := r.server(o.writer + attempt)
		if n == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(r.ctx, putTimeout)
		res, err := n.Put(ctx, o.key, o.value)
		cancel()
		r.mu.Lock()
		if err != nil {
			o.putErrs++
			r.mu.Unlock()
			if r.ctx.Err() == nil {
				r.log.Warn("put", "object", o.key, "attempt", attempt+1, "err", err)
			}
			continue
		}
		o.written = r.now()
		o.placement = snapshot{version: res.Version, k: res.K, holders: res.Holders}
		o.k, o.m = res.K, res.M
		o.manifests = 1
		r.mu.Unlock()
		return
	}
}

// server returns the first online server from slot i on (servers in turn),
// or nil.
func (r *run) server(i int) *node.Node {
	c := r.sc.Servers.Count
	for j := range c {
		if n, _ := r.nodes[(i+j)%c].current(); n != nil {
			return n
		}
	}
	return nil
}

// checkObjects reads every written object once, each from a random online
// server, and records the outcomes.
func (r *run) checkObjects() {
	defer r.wg.Done()
	var servers []*node.Node
	for _, ln := range r.nodes[:r.sc.Servers.Count] {
		if n, _ := ln.current(); n != nil {
			servers = append(servers, n)
		}
	}
	r.mu.Lock()
	if len(servers) == 0 {
		r.noReader++
		r.mu.Unlock()
		return
	}
	type job struct {
		i int
		n *node.Node
	}
	var jobs []job
	for i, o := range r.objects {
		if o.written >= 0 {
			jobs = append(jobs, job{i, servers[r.rng.IntN(len(servers))]})
		}
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Go(func() {
			a := r.read(r.ctx, j.i, j.n)
			if r.ctx.Err() != nil || errors.Is(a.errRaw, errReaderClosed) {
				return // the run or the reader ended first: no outcome
			}
			r.mu.Lock()
			r.reads = append(r.reads, a.readAttempt)
			r.mu.Unlock()
		})
	}
	wg.Wait()
}

var errReaderClosed = errors.New("live: reader closed during the read")

type readResult struct {
	readAttempt
	errRaw error
}

// read refreshes object i's placement from the DHT through n, then reads
// the object through n and compares it with what was written.
func (r *run) read(ctx context.Context, i int, n *node.Node) readResult {
	o := r.objects[i]
	at := r.now()
	ctx, cancel := context.WithTimeout(ctx, getTimeout)
	defer cancel()
	if m, err := manifest(ctx, n, o.dhtKey); err == nil {
		r.mu.Lock()
		if m.Version > o.placement.version {
			o.placement = snapshot{version: m.Version, k: m.Params.DataShards, holders: m.Placement}
			o.manifests++
		}
		r.mu.Unlock()
	}
	r.mu.Lock()
	place := o.placement
	r.mu.Unlock()
	v, err := n.Get(ctx, o.key)
	res := readResult{readAttempt: readAttempt{obj: i, at: at, end: r.now(), place: place}}
	select {
	case <-n.Done():
		res.errRaw = errReaderClosed
		return res
	default:
	}
	switch {
	case err != nil:
		res.errRaw, res.err = err, err.Error()
	case !bytes.Equal(v, o.value):
		res.errRaw = errors.New("value differs from the one written")
		res.err = res.errRaw.Error()
	default:
		res.ok = true
	}
	return res
}

// manifest reads the current manifest under dhtKey from the DHT, through
// n. The DHT runs erasure's validator on every record it returns; it is
// checked again here.
func manifest(ctx context.Context, n *node.Node, dhtKey string) (*erasure.Manifest, error) {
	b, err := n.Overlay().DHT().GetValue(ctx, dhtKey)
	if err != nil {
		return nil, err
	}
	if err := (erasure.ManifestValidator{}).Validate(dhtKey, b); err != nil {
		return nil, err
	}
	return erasure.ParseManifest(b)
}

// recoverAll brings back, after the measured window, every node that is
// offline but has not left for good, waits for them to join, and reads
// every object: an object that cannot be read with every holder still in
// the network online is lost.
func (r *run) recoverAll() {
	var pending []chan struct{}
	for _, ln := range r.nodes {
		if n, _ := ln.current(); n == nil {
			done := make(chan struct{})
			ln.actions <- action{kind: churn.Up, done: done}
			pending = append(pending, done)
		}
	}
	for _, d := range pending {
		select {
		case <-d:
		case <-r.ctx.Done():
			return
		}
	}
	r.log.Info("recovery: offline nodes restarted", "nodes", len(pending))
	jctx, cancel := context.WithTimeout(r.ctx, recoveryJoin)
	defer cancel()
	for _, ln := range r.nodes {
		if n, _ := ln.current(); n != nil {
			select {
			case <-n.Joined():
			case <-jctx.Done():
			}
		}
	}
	if r.ctx.Err() != nil {
		return
	}
	var wg sync.WaitGroup
	for i, o := range r.objects {
		r.mu.Lock()
		written := o.written >= 0
		r.mu.Unlock()
		if !written {
			continue
		}
		wg.Go(func() {
			var last string
			for range finalAttempts {
				n := r.server(i)
				if n == nil {
					last = "no server online"
					break
				}
				a := r.read(r.ctx, i, n)
				if a.ok {
					r.mu.Lock()
					o.finalOK = true
					r.mu.Unlock()
					return
				}
				last = a.err
			}
			r.mu.Lock()
			o.finalErr = last
			r.mu.Unlock()
			r.log.Warn("object not readable with every node online", "object", o.key, "err", last)
		})
	}
	wg.Wait()
}

// repairCounters are erasure's repair metrics, summed over nodes.
type repairCounters struct {
	bytes, shards                       float64 // shard bytes uploaded by repair, shard indices moved
	repaired, blocked, deferred, failed float64 // repair checks by outcome
}

func (c *repairCounters) add(o repairCounters) {
	c.bytes += o.bytes
	c.shards += o.shards
	c.repaired += o.repaired
	c.blocked += o.blocked
	c.deferred += o.deferred
	c.failed += o.failed
}

// readRepairCounters reads n's repair metrics from its registry.
func readRepairCounters(n *node.Node) repairCounters {
	var c repairCounters
	mfs, err := n.Registry().Gather()
	if err != nil {
		return c
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "immense_state_repair_bytes_total":
			for _, m := range mf.GetMetric() {
				c.bytes += m.GetCounter().GetValue()
			}
		case "immense_state_repaired_shards_total":
			for _, m := range mf.GetMetric() {
				c.shards += m.GetCounter().GetValue()
			}
		case "immense_state_repairs_total":
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() != "outcome" {
						continue
					}
					v := m.GetCounter().GetValue()
					switch l.GetValue() {
					case "repaired", "adopted":
						c.repaired += v
					case "blocked":
						c.blocked += v
					case "deferred":
						c.deferred += v
					case "failed", "error":
						c.failed += v
					}
				}
			}
		}
	}
	return c
}

// repairTotals returns the repair counters of every node incarnation so
// far: those that have stopped, plus the running ones now.
func (r *run) repairTotals() repairCounters {
	var t repairCounters
	for _, ln := range r.nodes {
		ln.mu.Lock()
		t.add(ln.repairDone)
		n := ln.n
		if n == nil {
			n = ln.closing // closed, its counters not yet in repairDone
		}
		ln.mu.Unlock()
		if n != nil {
			t.add(readRepairCounters(n))
		}
	}
	return t
}

// storageFigures are a run's storage measurements.
type storageFigures struct {
	bySample map[int]readGroup // reads by the sample that launched them

	written, lost, lostPlacement, putErrs, noReader  int
	reads, ok, available, okAvailable, okUnavailable int
	kSum, mSum, versionsSum                          float64
	expansion                                        []float64 // stored / object bytes, per object
	repair                                           repairCounters
	// failures holds a few errors of reads that failed although at least
	// k holders were online throughout: each one is a finding.
	failures []string
	lostErrs []string // the last error of every object lost
}

type readGroup struct{ n, ok, available int }

// storageFigures evaluates the reads against the online intervals of the
// run (online[slot], every generation): a read had its object available
// if at least k of the holders its placement names were online from the
// start of the read to its end.
func (r *run) storageFigures(online [][]interval) *storageFigures {
	f := &storageFigures{bySample: map[int]readGroup{}, noReader: r.noReader, repair: r.repairEnd}
	step := r.sc.SampleEvery.D()
	up := func(p peer.ID, from, to time.Duration) bool {
		sg, ok := r.ids[p]
		if !ok {
			return false
		}
		for _, iv := range online[sg.slot] {
			if iv.gen == sg.gen && iv.from <= from && iv.to >= to {
				return true
			}
		}
		return false
	}
	for _, a := range r.reads {
		if a.at < r.sc.Warmup.D() || a.at > r.end {
			continue
		}
		n := 0
		for _, p := range a.place.holders {
			if up(p, a.at, a.end) {
				n++
			}
		}
		avail := a.place.k > 0 && n >= a.place.k
		g := f.bySample[int(a.at/step)]
		g.n++
		f.reads++
		if a.ok {
			g.ok++
			f.ok++
		}
		if avail {
			g.available++
			f.available++
			if a.ok {
				f.okAvailable++
			} else if len(f.failures) < 5 {
				f.failures = append(f.failures, fmt.Sprintf("%s at %v (%d of k=%d holders of version %d online): %s",
					r.objects[a.obj].key, a.at.Round(time.Second), n, a.place.k, a.place.version, a.err))
			}
		} else if a.ok {
			f.okUnavailable++
		}
		f.bySample[int(a.at/step)] = g
	}
	for _, o := range r.objects {
		f.putErrs += o.putErrs
		if o.written < 0 {
			continue
		}
		f.written++
		f.kSum += float64(o.k)
		f.mSum += float64(o.m)
		if n := int64(len(o.value)); n > 0 && o.k > 0 {
			p := erasure.Params{DataShards: o.k, ParityShards: o.m, SegmentSize: int(r.sc.Storage.SegmentSize)}
			stored := int64(0)
			for seg := range p.Segments(n) {
				stored += int64(p.ShardSize(p.SegmentLen(n, seg)))
			}
			f.expansion = append(f.expansion, float64(p.Total())*float64(stored)/float64(n))
		}
		f.versionsSum += float64(o.manifests)
		if !o.finalOK {
			f.lost++
			f.lostErrs = append(f.lostErrs, o.key+": "+o.finalErr)
		}
		// The model's definition: fewer than k shards left on nodes still
		// in the network (their generation has not been replaced).
		left := 0
		for _, p := range o.placement.holders {
			if sg, ok := r.ids[p]; ok && r.nodes[sg.slot].gen == sg.gen {
				left++
			}
		}
		if left < o.placement.k {
			f.lostPlacement++
		}
	}
	return f
}

// summarize fills the storage figures of sum; days is the measured window.
func (f *storageFigures) summarize(sum *report.Summary, nodes int, days float64) {
	ratio := func(a, b int) float64 {
		if b == 0 {
			return math.NaN()
		}
		return float64(a) / float64(b)
	}
	sum.Objects = report.F(float64(f.written))
	sum.ObjectsLost = report.F(float64(f.lost))
	sum.Retrievability = report.F(ratio(f.ok, f.reads))
	sum.RepairBytesPerNodePerDay = report.F(f.repair.bytes / float64(nodes) / days)
	// Expansion at the Put (repair keeps k and m); the optimum, byte shares
	// and repair bound need availabilities and stores live mode does not
	// track: null.
	if len(f.expansion) > 0 {
		m, _ := report.MeanStd(f.expansion)
		sum.StorageExpansion = report.F(m)
	}
	d := sum.Details
	d["repair_upload_bytes_per_node_per_day"] = f.repair.bytes / float64(nodes) / days
	d["objects_written"] = float64(f.written)
	d["put_errors"] = float64(f.putErrs)
	d["reads"] = float64(f.reads)
	d["reads_ok"] = float64(f.ok)
	d["reads_when_available"] = float64(f.available)
	d["retrievability_when_available"] = ratio(f.okAvailable, f.available)
	d["reads_failed_when_available"] = float64(f.available - f.okAvailable)
	d["reads_ok_when_unavailable"] = float64(f.okUnavailable)
	d["object_available_share"] = ratio(f.available, f.reads)
	d["samples_without_reader"] = float64(f.noReader)
	d["objects_lost_placement"] = float64(f.lostPlacement)
	if f.written > 0 {
		w := float64(f.written)
		d["data_shards_mean"] = f.kSum / w
		d["parity_per_object_mean"] = f.mSum / w
		d["manifest_versions_mean"] = f.versionsSum / w
	}
	d["repair_bytes_total"] = f.repair.bytes
	d["repaired_shards"] = f.repair.shards
	d["repairs"] = f.repair.repaired
	d["repairs_blocked"] = f.repair.blocked
	d["repairs_deferred"] = f.repair.deferred
	d["repairs_failed"] = f.repair.failed
	for _, e := range f.failures {
		sum.Notes = append(sum.Notes, "read failed with at least k holders online: "+e)
	}
	for _, e := range f.lostErrs {
		sum.Notes = append(sum.Notes, "lost (unreadable with every node back online): "+e)
	}
}
