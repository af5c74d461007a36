package webrtc

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var (
	relayBenchK    = flag.Int("webrtc.relay-bench-k", 1000, "subscribers in BenchmarkRelayFanout")
	relayBenchRate = flag.Int("webrtc.relay-bench-rate", 500, "messages per second published in BenchmarkRelayFanout")
)

// BenchmarkRelayFanout: the peer's cost of one topic with K subscribers,
// fed directly and through browser relays, in the same run. Sessions are
// in process with a channel that makes one write(2) of each frame to
// /dev/null, the least a socket write costs (so the process's CPU is the
// peer's alone: the relays' forwarding runs in the browsers, not here);
// every message reaches K subscribers either way, so deliveries per peer
// CPU-second is K x messages / the CPU the peer spent. p99 is from
// publish to the peer's write, on the sessions it writes to: the first
// hop (relay hops add a browser-to-browser round trip each, not measured
// here).
func BenchmarkRelayFanout(b *testing.B) {
	k := *relayBenchK
	results := map[string][3]float64{}
	for _, mode := range []string{"direct", "relays"} {
		b.Run(fmt.Sprintf("%s/K=%d", mode, k), func(b *testing.B) {
			r := benchRelayFanout(b, mode == "relays", k)
			results[mode] = r
		})
	}
	d, r := results["direct"], results["relays"]
	if d[0] > 0 && r[0] > 0 {
		fmt.Printf("K=%d relays/direct: deliveries per peer CPU-second x%.2f, peer writes per message x%.3f, p99 first hop x%.2f\n",
			k, r[0]/d[0], r[1]/d[1], r[2]/d[2])
	}
}

// countChannel is a session's channel that counts, and samples latency.
type countChannel struct {
	sink   *os.File // /dev/null: one write(2) per frame, the least a socket write costs
	sends  *atomic.Int64
	bytes  *atomic.Int64
	sample bool
	mu     *sync.Mutex
	lat    *[]time.Duration
}

func (c countChannel) send(b []byte) error {
	_, _ = c.sink.Write(b)
	c.sends.Add(1)
	c.bytes.Add(int64(len(b)))
	if c.sample {
		now := time.Now()
		f, err := decodeFrame(b, 1<<20)
		if err != nil {
			return nil
		}
		items := []frame{f}
		if f.typ == frameBatch {
			items = f.items
		}
		c.mu.Lock()
		for _, it := range items {
			if it.typ == frameMessage || it.typ == frameRecord {
				*c.lat = append(*c.lat, now.Sub(fromMicros(it.time)))
			}
		}
		c.mu.Unlock()
	}
	return nil
}
func (c countChannel) buffered() uint64 { return 0 }
func (c countChannel) direct() bool     { return true }

// benchRelayFanout returns deliveries per CPU-second, peer writes per
// message and the p99 first-hop latency in seconds.
func benchRelayFanout(b *testing.B, relays bool, k int) [3]float64 {
	const topic = "celebrity"
	cfg := testConfig(b)
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.MaxSessions = k + 1
	cfg.Relay.Enabled = relays
	cfg.Relay.MinUptime = 0
	bus := newMemBus()
	srv, err := New(bus, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	var sends, bytes atomic.Int64
	sink, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	var mu sync.Mutex
	var lat []time.Duration
	sessions := make([]*session, k)
	for i := range sessions {
		s, err := srv.addSession(Claims{Read: []string{topic}}, "")
		if err != nil {
			b.Fatal(err)
		}
		s.ch = countChannel{sink: sink, sends: &sends, bytes: &bytes, sample: i%50 == 0 || i == k-1, mu: &mu, lat: &lat}
		s.opened = true
		srv.sessionOpened(s)
		s.subscribe(&frame{typ: frameSubscribe, topic: topic})
		if relays && i%8 == 0 {
			// One browser in eight opted in, with 1 MB/s to spare.
			srv.relays.onReady(s, &frame{typ: frameRelayReady, relay: &relayFields{upload: 1 << 20, maxChildren: 8}})
		}
	}
	if relays {
		for range 10 {
			srv.relays.round(false)
		}
		st := srv.RelayStatus()
		b.Logf("tree: %+v", st)
	}
	n := max(b.N, 2**relayBenchRate)
	ctx := context.Background()
	sends.Store(0)
	bytes.Store(0)
	mu.Lock()
	lat = lat[:0]
	mu.Unlock()
	interval := time.Second / time.Duration(*relayBenchRate)
	cpu0, t0 := cpuTime(), time.Now()
	b.ResetTimer()
	tick := time.NewTicker(interval)
	for i := range n {
		<-tick.C
		if err := bus.Publish(ctx, topic, seqPayload(i, 128), "", nil); err != nil {
			b.Fatal(err)
		}
	}
	tick.Stop()
	// The fan-out keeps up at this rate: let it write the last messages
	// (a benchmark may wait; tests may not).
	time.Sleep(500 * time.Millisecond)
	b.StopTimer()
	cpu := cpuTime() - cpu0
	wall := time.Since(t0)
	mu.Lock()
	l := slices.Clone(lat)
	mu.Unlock()
	slices.Sort(l)
	p99 := 0.0
	if len(l) > 0 {
		p99 = l[len(l)*99/100].Seconds()
	}
	deliveries := float64(k) * float64(n)
	perCPU := deliveries / cpu.Seconds()
	writesPerMsg := float64(sends.Load()) / float64(n)
	b.ReportMetric(perCPU, "deliveries/cpu-s")
	b.ReportMetric(writesPerMsg, "peer-writes/msg")
	b.ReportMetric(float64(bytes.Load())/float64(n), "peer-bytes/msg")
	b.ReportMetric(p99*1e3, "p99-first-hop-ms")
	b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cpu-cores")
	return [3]float64{perCPU, writesPerMsg, p99}
}
