package e2e

import (
	"slices"
	"testing"
	"time"
)

// TestProcessesLoopbackDHTMode: a bootstrap node, an app peer and two
// volunteers on one machine's loopback, started as README's "Running a
// real network" shows, without --mode server, spread state. AutoNAT never
// vouches for a loopback address, so in DHT mode auto each peer would stay
// a client that no other peer keeps in its routing table, connected to the
// bootstrap node alone, and a PUT would land on its writer only (k=1,
// m=0). On a deployment narrower than the internet auto serves from the
// start (overlay.Deployment.DHTMode).
func TestProcessesLoopbackDHTMode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	s := newStateNet(t)
	args := func(extra ...string) []string {
		return append([]string{"--data-dir", t.TempDir(), "--bootstrap", s.bootTCP, "--no-browsers",
			"--listen", anyPort, "--http", "127.0.0.1:0", "--nat-portmap=false"}, extra...)
	}
	app := start(t, "app", s.peerBin, args("--app-key", s.keyFile)...)
	peers := []*proc{app}
	for _, name := range []string{"volunteer1", "volunteer2"} {
		peers = append(peers, start(t, name, s.peerBin, args("--volunteer")...))
	}
	for _, p := range peers {
		p.waitLog("joined overlay", 30*time.Second)
		if st := getStatus(t, p.info.HTTP); st.DHTMode != "server" {
			t.Errorf("%s: dht_mode %q, want server on a loopback deployment", p.name, st.DHTMode)
		}
	}
	// The writer knows the bootstrap node and both volunteers.
	stateWaitConnected(t, app, len(peers))

	res, err := statePut(app.info.HTTP, "spread", []byte("stored on more than its writer"))
	if err != nil {
		t.Fatal(err)
	}
	others := slices.DeleteFunc(slices.Clone(res.Holders), func(id string) bool { return id == app.info.PeerID })
	if res.K+res.M < 2 || len(others) == 0 {
		t.Fatalf("PUT stored k=%d m=%d on %v: on its writer alone", res.K, res.M, res.Holders)
	}
}
