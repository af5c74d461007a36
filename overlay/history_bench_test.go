package overlay

import (
	"context"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time this process has used, user and system.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkResume measures what a subscriber that comes back costs
// against receiving the same messages live, in one run on two peers on
// loopback: 1,000 messages of 256 bytes are published and received live
// (live-ms, live-cpu-ms: publish, sign, verify, deliver); then a resume
// from before them replays them from the peer's own window (replay-ms,
// replay-cpu-ms), and a peer that restarted fetches them from the other
// over /immense/history/1.0.0, signatures checked again (fetch-ms,
// fetch-cpu-ms). CPU is the whole process's (both peers). The ratios are
// to live. window-bytes/msg is what the window holds per message.
func BenchmarkResume(b *testing.B) {
	const n = 1000
	hosts := loopbackHosts(b, 2, 3)
	var os []*Overlay
	for _, h := range hosts {
		cfg := DefaultConfig()
		cfg.Mode = ModeServer
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		cfg.PublisherMessageRate, cfg.PeerMessageRate, cfg.TopicMessageRate = 0, 0, 0
		cfg.History.Default = HistoryLimits{Messages: n, Bytes: 16 << 20, TTL: time.Hour}
		cfg.History.ServeRate = 0
		o, err := New(context.Background(), h, cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { o.Close() })
		os = append(os, o)
	}
	pub, sub := os[0], os[1]
	ctx := b.Context()
	if _, err := pub.Subscribe("resume"); err != nil {
		b.Fatal(err)
	}
	s, err := sub.Subscribe("resume")
	if err != nil {
		b.Fatal(err)
	}
	// The mesh forms: a warm-up message gets through.
	for {
		if err := pub.Publish(ctx, "resume", payload(-1)); err != nil {
			b.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := s.Next(wctx)
		cancel()
		if err == nil {
			break
		}
	}
	var live, liveCPU, replay, replayCPU, fetch, fetchCPU time.Duration
	var bytesPerMsg float64
	b.ResetTimer()
	for range b.N {
		since := Position{Time: time.Now()}

		t0, c0 := time.Now(), cpuTime(b)
		received := make(chan error, 1)
		go func() { // read while publishing: the queue holds 256
			for range n {
				if _, err := s.Next(ctx); err != nil {
					received <- err
					return
				}
			}
			received <- nil
		}()
		for i := range n {
			if err := pub.Publish(ctx, "resume", payload(int64(i))); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-received; err != nil {
			b.Fatalf("live: %v", err)
		}
		live += time.Since(t0)
		liveCPU += cpuTime(b) - c0

		t0, c0 = time.Now(), cpuTime(b)
		msgs, ok, err := sub.History(ctx, "resume", since)
		if err != nil || !ok || len(msgs) != n {
			b.Fatalf("replay: %d messages, recovered %v, %v", len(msgs), ok, err)
		}
		NewResume(since, msgs)
		replay += time.Since(t0)
		replayCPU += cpuTime(b) - c0

		t0, c0 = time.Now(), cpuTime(b)
		es, _, err := sub.fetchFrom(ctx, pub.Host().ID(), "resume", sub.cfg.History.Default)
		if err != nil || len(es) != n {
			b.Fatalf("fetch: %d messages, %v", len(es), err)
		}
		fetch += time.Since(t0)
		fetchCPU += cpuTime(b) - c0
		bytesPerMsg = float64(sub.history.size()) / float64(n)
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(ms(live), "live-ms")
	b.ReportMetric(ms(liveCPU), "live-cpu-ms")
	b.ReportMetric(ms(replay), "replay-ms")
	b.ReportMetric(ms(replayCPU), "replay-cpu-ms")
	b.ReportMetric(ms(fetch), "fetch-ms")
	b.ReportMetric(ms(fetchCPU), "fetch-cpu-ms")
	b.ReportMetric(replay.Seconds()/live.Seconds(), "replay-ratio")
	b.ReportMetric(replayCPU.Seconds()/liveCPU.Seconds(), "replay-cpu-ratio")
	b.ReportMetric(fetch.Seconds()/live.Seconds(), "fetch-ratio")
	b.ReportMetric(fetchCPU.Seconds()/liveCPU.Seconds(), "fetch-cpu-ratio")
	b.ReportMetric(bytesPerMsg, "window-bytes/msg")
}
