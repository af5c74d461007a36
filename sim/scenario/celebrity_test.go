package scenario

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestCelebrityDefaults: a celebrity section makes a model scenario whose
// post lasts its horizon, with every peer online and the defaults documented
// on the fields.
func TestCelebrityDefaults(t *testing.T) {
	sc, err := Load("../scenarios/celebrity-1e5.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := sc.Celebrity
	if sc.Mode != Model || sc.Duration.D() != time.Minute || sc.Volunteers.Availability != 1 || sc.Servers.Availability != 1 {
		t.Errorf("mode %s, duration %v, availability %v/%v", sc.Mode, sc.Duration, sc.Servers.Availability, sc.Volunteers.Availability)
	}
	if c.Publisher != "server" || c.Peers[0].Cores != 4 || c.Peers[1].Cores != 1 || c.Relays.CPUFactor != 3 {
		t.Errorf("celebrity %+v", c)
	}
	if s := Sigma(26.38, 212); s < 0.89 || s > 0.90 {
		t.Errorf("Sigma(26.38, 212) = %v, want ln(212/26.38)/2.326 = 0.896", s)
	}
}

// TestCelebrityInvalid: each mistake is named.
func TestCelebrityInvalid(t *testing.T) {
	raw, err := os.ReadFile("../scenarios/celebrity-1e5.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b := string(raw)
	for _, tc := range []struct{ from, to, want string }{
		{"followers: 100000", "followers: 0", "followers 0"},
		{"share: 0.9\n", "share: 0.8\n", "peers: shares add up"},
		{"transport: websocket", "transport: carrier-pigeon", "transport \"carrier-pigeon\""},
		{"publisher: server", "publisher: nobody", "publisher \"nobody\""},
		{"fan_out: 8", "fan_out: 0", "fan_out must be in"},
		{"latency_p99: 4.815ms", "latency_p99: 1ms", "websocket: need"},
		{"mode: model", "mode: live", "model mode only"},
	} {
		doc := strings.Replace(b, tc.from, tc.to, 1)
		if doc == b {
			t.Fatalf("%q not in the scenario", tc.from)
		}
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s -> %s: error %v, want %q", tc.from, tc.to, err, tc.want)
		}
	}
}
