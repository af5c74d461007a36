package erasure

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/immense-p2p/immense/internal/bytesize"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
)

// BenchmarkServicePutGet measures Put and Get on 12 real libp2p hosts
// talking QUIC over 127.0.0.1 (real time, not simnet: throughput on
// virtual time would mean nothing). It reports MB/s and p50/p99 latency of
// each operation; all hosts share the machine's CPUs, so the figures are a
// floor for a real network of separate machines. Use a small -benchtime
// (e.g. 10x): each 64 MiB round is ~200 MiB of shard traffic.
func BenchmarkServicePutGet(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 20} {
		b.Run(bytesize.Format(int64(size)), func(b *testing.B) {
			hosts := make([]host.Host, 12)
			for i := range hosts {
				h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/udp/0/quic-v1"))
				if err != nil {
					b.Fatal(err)
				}
				hosts[i] = h
			}
			tn := buildTestNet(b, hosts, netOpts{config: func(i int, c *Config, sc *StoreConfig) {
				c.RequestTimeout = time.Minute
				sc.Quota = 4 << 30
				sc.VerifyOnOpen = false
			}})
			ctx := context.Background()
			value := randBytes(rand.New(rand.NewPCG(5, 5)), size)
			var puts, gets []time.Duration
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				key := fmt.Sprintf("bench-%d", i)
				t0 := time.Now()
				if _, err := tn.nodes[0].svc.Put(ctx, key, value); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if _, err := tn.nodes[1].svc.Get(ctx, key); err != nil {
					b.Fatal(err)
				}
				puts, gets = append(puts, t1.Sub(t0)), append(gets, time.Since(t1))
				// Keep the disk bounded: 64 MiB puts store 192 MiB each.
				b.StopTimer()
				if err := tn.nodes[0].svc.Delete(ctx, key); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			report := func(name string, d []time.Duration) {
				slices.Sort(d)
				var total time.Duration
				for _, x := range d {
					total += x
				}
				b.ReportMetric(float64(size)*float64(len(d))/total.Seconds()/1e6, name+"-MB/s")
				b.ReportMetric(float64(d[len(d)/2].Microseconds())/1e3, name+"-p50-ms")
				b.ReportMetric(float64(d[(len(d)*99)/100].Microseconds())/1e3, name+"-p99-ms")
			}
			report("put", puts)
			report("get", gets)
			b.ReportMetric(0, "ns/op")
		})
	}
}
