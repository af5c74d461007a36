package erasure

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkSchedulerDue measures the repair loop's tick: a scheduler
// holding n objects, checked hourly, asked every 10 s which are due (what
// Service.repairLoop does with the default RepairTick). One op is one tick.
func BenchmarkSchedulerDue(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			cfg := DefaultSchedulerConfig()
			cfg.Seed = 1
			cfg.ChecksPerSecond, cfg.CheckBurst = 1e6, 1e6
			s, err := NewRepairScheduler(cfg)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Unix(0, 0)
			for i := range n {
				s.Add(ObjectID{byte(i), byte(i >> 8), byte(i >> 16)}, now)
			}
			due := 0
			for b.Loop() {
				now = now.Add(10 * time.Second)
				due += len(s.Due(now))
			}
			b.ReportMetric(float64(due)/float64(b.N), "due/tick")
		})
	}
}
