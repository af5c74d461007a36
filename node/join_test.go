package node

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestJoinStatus: a bootstrap node over its join rate refuses newcomers,
// every node still joins, and the refusals show in /v1/status and /metrics.
func TestJoinStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nodes := simNetwork(t, 8, func(i int, c *Config) {
			if i == 0 {
				c.Overlay.JoinRate, c.Overlay.JoinBurst = 0.5, 2
			}
		})
		deadline := time.After(time.Minute)
		for i, nd := range nodes {
			select {
			case <-nd.Joined():
			case <-deadline:
				t.Fatalf("node %d not joined within a minute", i)
			}
		}
		st := nodes[0].Status().Joins
		if st.Rate != 0.5 || st.Burst != 2 || st.Busy == 0 || st.Admitted < 2 {
			t.Fatalf("bootstrap join status %+v: want rate 0.5, burst 2, some admitted and some busy", st)
		}
		var received uint64
		for _, nd := range nodes[1:] {
			received += nd.Status().Joins.BusyReceived
		}
		if received < st.Busy {
			t.Errorf("peers received %d busy answers, the bootstrap sent %d", received, st.Busy)
		}
		rec := httptest.NewRecorder()
		nodes[0].Handler(HTTPOptions{}).ServeHTTP(rec, controlReq(nodes[0], "GET", "/metrics", ""))
		body, _ := io.ReadAll(rec.Body)
		if !strings.Contains(string(body), `immense_overlay_joins_total{result="busy"}`) {
			t.Errorf("/metrics has no busy join counter")
		}
		t.Logf("bootstrap: %+v", st)
	})
}

func TestJoinConfigValidate(t *testing.T) {
	for _, c := range []struct {
		rate  float64
		burst int
		ok    bool
	}{{20, 40, true}, {0, 0, true}, {-1, 40, false}, {5, 0, false}} {
		cfg := DefaultConfig()
		cfg.DataDir = t.TempDir()
		cfg.Overlay.JoinRate, cfg.Overlay.JoinBurst = c.rate, c.burst
		if err := cfg.validate(); (err == nil) != c.ok {
			t.Errorf("JoinRate %v, JoinBurst %d: validate = %v", c.rate, c.burst, err)
		}
	}
}
