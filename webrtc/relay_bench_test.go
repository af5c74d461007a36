package webrtc

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
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
	relayBenchSink = flag.String("webrtc.relay-bench-sink", "null", "what a session's write costs in BenchmarkRelayFanout: null (write(2) to /dev/null) or udp (sendto(2) of a datagram over loopback, to a socket that never reads)")
)

// BenchmarkRelayFanout: the peer's cost of one topic with K subscribers,
// fed directly and through browser relays, in the same run. Sessions are
// in process with a channel that makes one write(2) of each frame to
// /dev/null, the least a socket write costs, or with
// -webrtc.relay-bench-sink udp one sendto(2) of it over loopback, the
// least a data channel's packet costs (so the process's CPU is the
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
	sink   io.Writer // one write(2) or sendto(2) per frame (-webrtc.relay-bench-sink)
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

// benchSink opens what the sessions of BenchmarkRelayFanout write to:
// /dev/null, or a UDP socket on loopback that never reads, with a small
// receive buffer, so that every datagram takes the kernel's whole send
// path and loopback delivery and is dropped at the full queue (the
// process never spends CPU receiving).
func benchSink(kind string) (io.WriteCloser, error) {
	switch kind {
	case "null":
		return os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	case "udp":
		dst, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, err
		}
		_ = dst.SetReadBuffer(4096)
		src, err := net.DialUDP("udp4", nil, dst.LocalAddr().(*net.UDPAddr))
		if err != nil {
			dst.Close()
			return nil, err
		}
		return &udpSink{src, dst}, nil
	}
	return nil, fmt.Errorf("-webrtc.relay-bench-sink %q: want null or udp", kind)
}

type udpSink struct{ src, dst *net.UDPConn }

func (u *udpSink) Write(b []byte) (int, error) { return u.src.Write(b) }
func (u *udpSink) Close() error                { u.dst.Close(); return u.src.Close() }

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
	sink, err := benchSink(*relayBenchSink)
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	var mu sync.Mutex
	var lat []time.Duration
	sessions := make([]*session, k)
	for i := range sessions {
		s, err := srv.addSession(Claims{Read: []string{topic}}, "", "")
		if err != nil {
			b.Fatal(err)
		}
		s.ch = countChannel{sink: sink, sends: &sends, bytes: &bytes, sample: i%50 == 0 || i == k-1, mu: &mu, lat: &lat}
		s.opened = true
		srv.sessionOpened(s)
		s.subscribe(&frame{typ: frameSubscribe, topic: topic})
		if relays && i%8 == 0 {
			// One browser in eight opted in, with 1 MB/s to spare; its
			// probe (a start, then one chunk with the nonce) is measured
			// at memory speed.
			srv.relays.onProbe(s, &frame{typ: frameProbe, relay: &relayFields{}})
			srv.relays.mu.Lock()
			nonce := srv.relays.probes[s].nonce
			srv.relays.mu.Unlock()
			chunk := make([]byte, maxProbeChunk) // 16 KiB in microseconds: far above the offer
			copy(chunk, nonce)
			srv.relays.onProbe(s, &frame{typ: frameProbe, relay: &relayFields{flags: probeFlagLast, probe: chunk}})
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

var (
	relayE2EK    = flag.Int("webrtc.relay-e2e-k", 200, "clients in BenchmarkRelayEndToEnd")
	relayE2ERate = flag.Int("webrtc.relay-e2e-rate", 20, "messages per second published in BenchmarkRelayEndToEnd")
)

// BenchmarkRelayEndToEnd: the latency a follower sees, from publication
// to its client's receipt, with K real pion clients on one peer fed
// directly (relays off, the default data channel path) and through
// browser relays (one client in five willing, up to 6 children each,
// depth 3), in the same run. Relay hops are real browser-to-browser data
// channels between the in-process clients; the whole machine (peer,
// relays and followers) shares two cores, so the absolute numbers are
// pessimistic and the ratio is what counts.
func BenchmarkRelayEndToEnd(b *testing.B) {
	k := *relayE2EK
	p99 := map[string]float64{}
	for _, mode := range []string{"direct", "relays"} {
		b.Run(fmt.Sprintf("%s/K=%d", mode, k), func(b *testing.B) {
			p99[mode] = benchRelayEndToEnd(b, mode == "relays", k)
		})
	}
	if p99["direct"] > 0 {
		fmt.Printf("K=%d relays/direct: p99 end to end x%.2f\n", k, p99["relays"]/p99["direct"])
	}
}

// benchRelayEndToEnd returns the p99 latency in seconds.
func benchRelayEndToEnd(b *testing.B, relays bool, k int) float64 {
	const topic = "celebrity"
	e, rounds := relayEnv(b, func(c *RelayConfig) {
		c.Enabled = relays
		c.DirectBudget, c.MaxChildren, c.HeadInterval = 8, 6, time.Second
	})
	e.srv.cfg.Logger = slog.New(slog.DiscardHandler)
	ctx := testContext(b)
	tok := e.token([]string{topic}, nil)
	willing := k / 5
	clients := e.dialMany(ctx, willing, tok, WithRelay(RelayOptions{MaxChildren: 6, Upload: 1 << 20}))
	clients = append(clients, e.dialMany(ctx, k-willing, tok)...)
	subscribeAll(b, ctx, clients, topic)
	if relays {
		st := waitStatus(b, ctx, e, rounds, topic, func(st RelayStatus) bool {
			return st.Direct <= 2*8 && st.ViaRelays+st.Direct == k
		})
		b.Logf("tree: %+v", st)
		// Attached is not connected: wait for every link between
		// browsers to be open, or the first messages measure their set-up.
		for !linksOpen(clients, topic) {
			waitRounds(b, ctx, rounds, 1)
		}
	}
	n := max(b.N, 5**relayE2ERate)
	var mu sync.Mutex
	lat := make([]time.Duration, 0, n*k)
	var wg sync.WaitGroup
	var viaLat, peerLat []time.Duration // by the client's feed when the run starts
	for _, c := range clients {
		c.relay.mu.Lock()
		tt := c.relay.topics[topic]
		via := tt != nil && tt.feed != nil
		c.relay.mu.Unlock()
		wg.Go(func() {
			for range n {
				select {
				case m := <-c.Messages():
					d := time.Since(m.Time)
					mu.Lock()
					lat = append(lat, d)
					if via {
						viaLat = append(viaLat, d)
					} else {
						peerLat = append(peerLat, d)
					}
					mu.Unlock()
				case <-ctx.Done():
					return
				}
			}
		})
	}
	b.ResetTimer()
	tick := time.NewTicker(time.Second / time.Duration(*relayE2ERate))
	for i := range n {
		<-tick.C
		if err := e.bus.Publish(ctx, topic, seqPayload(i, 128), "", nil); err != nil {
			b.Fatal(err)
		}
	}
	tick.Stop()
	wg.Wait()
	b.StopTimer()
	if len(lat) < n*k {
		b.Fatalf("%d of %d deliveries", len(lat), n*k)
	}
	if relays {
		logRelayMetrics(b, e)
	}
	slices.Sort(viaLat)
	slices.Sort(peerLat)
	if len(viaLat) > 0 {
		b.Logf("via relay: n %d p50 %v p99 %v", len(viaLat), viaLat[len(viaLat)/2], viaLat[len(viaLat)*99/100])
	}
	if len(peerLat) > 0 {
		b.Logf("from peer: n %d p50 %v p99 %v", len(peerLat), peerLat[len(peerLat)/2], peerLat[len(peerLat)*99/100])
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	b.ReportMetric(float64(p50.Microseconds())/1e3, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1e3, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1e3, "max-ms")
	return p99.Seconds()
}

// linksOpen reports whether every client fed topic by a relay has its
// link to it open (a client outside the tree has no relay topic).
func linksOpen(clients []*Client, topic string) bool {
	for _, c := range clients {
		r := c.relay
		r.mu.Lock()
		t := r.topics[topic]
		open := t == nil || t.feed == nil || t.feed.open
		r.mu.Unlock()
		if !open {
			return false
		}
	}
	return true
}
