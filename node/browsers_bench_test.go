package node

import (
	"context"
	"strings"
	"testing"
)

// BenchmarkBrowserBus measures the hand-off from gossipsub to the browser
// fan-out on a lone peer: "one" publishes a message and waits for it on
// the bridge's side of the bus, "burst" publishes 100 and then takes them
// all as the fan-out does (Next, then TryNext while messages wait).
func BenchmarkBrowserBus(b *testing.B) {
	n := loneNode(b, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msg := []byte(strings.Repeat("x", 100))
	for _, burst := range []int{1, 100} {
		name := "one"
		if burst > 1 {
			name = "burst"
		}
		b.Run(name, func(b *testing.B) {
			sub, err := bus{n}.Subscribe(ctx, "bench/"+name)
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Close()
			for b.Loop() {
				for range burst {
					if err := n.Publish(ctx, "bench/"+name, msg); err != nil {
						b.Fatal(err)
					}
				}
				for got := 0; got < burst; {
					if _, err := sub.Next(ctx); err != nil {
						b.Fatal(err)
					}
					got++
					for ; got < burst; got++ {
						if _, ok := sub.TryNext(); !ok {
							break
						}
					}
				}
			}
			b.ReportMetric(float64(b.N*burst)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
