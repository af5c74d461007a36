package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// refused runs bin with args, which must fail at start, and returns its
// exit code and output.
func refused(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	done := make(chan struct{})
	var out []byte
	go func() {
		out, _ = cmd.CombinedOutput()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s %q did not exit; output:\n%s", bin, args, out)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// TestDataDirAndPortsInUse: a second peer on a running peer's data dir, or
// on its libp2p or HTTP port, refuses to start with one line naming what
// is taken and by whom, instead of running the same identity twice or
// sharing a port (libp2p binds with SO_REUSEPORT).
func TestDataDirAndPortsInUse(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	peerBin, bootBin := binaries(t)
	dir := t.TempDir()
	first := start(t, "first", peerBin, append([]string{"--data-dir", dir}, loopback...)...)

	code, out := refused(t, peerBin, append([]string{"--data-dir", dir}, loopback...)...)
	want := fmt.Sprintf("data dir %s is in use by another process (pid %d)", dir, first.cmd.Process.Pid)
	if code != 1 || !strings.Contains(out, want) {
		t.Errorf("second peer on the data dir: exit %d, output %q; want 1 and %q", code, out, want)
	}
	code, out = refused(t, bootBin, append([]string{"--data-dir", dir}, loopback...)...)
	if code != 1 || !strings.Contains(out, want) {
		t.Errorf("bootstrap on the peer's data dir: exit %d, output %q; want 1 and %q", code, out, want)
	}

	var tcp string
	for _, a := range first.info.Addrs {
		if strings.Contains(a, "/tcp/") {
			tcp = strings.TrimSuffix(a, "/p2p/"+first.info.PeerID)
		}
	}
	code, out = refused(t, peerBin, "--data-dir", t.TempDir(), "--listen", tcp, "--http", "127.0.0.1:0")
	if want := "--listen " + tcp + ": address already in use"; code != 1 || !strings.Contains(out, want) {
		t.Errorf("second peer on %s: exit %d, output %q; want 1 and %q", tcp, code, out, want)
	}
	httpAddr := strings.TrimPrefix(first.info.HTTP, "http://")
	code, out = refused(t, peerBin, "--data-dir", t.TempDir(), "--listen", "/ip4/127.0.0.1/tcp/0", "--http", httpAddr)
	if want := "--http " + httpAddr + ": address already in use"; code != 1 || !strings.Contains(out, want) {
		t.Errorf("second peer on HTTP %s: exit %d, output %q; want 1 and %q", httpAddr, code, out, want)
	}
	first.stop()

	// The lock goes with the process: the data dir serves again.
	again := start(t, "again", peerBin, append([]string{"--data-dir", dir}, loopback...)...)
	if again.info.PeerID != first.info.PeerID {
		t.Errorf("restarted on the data dir as %s, was %s", again.info.PeerID, first.info.PeerID)
	}
	again.stop()
}

// readyz returns GET /readyz's status code and body, without a token.
func readyz(t *testing.T, base string) (int, map[string]string) {
	t.Helper()
	resp, err := http.Get(base + "/readyz") // the default client's token is ignored: none is needed
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("/readyz: %v", err)
	}
	return resp.StatusCode, body
}

// TestReadyzProcess: a peer process whose bootstrap node is down warns
// with its next try and answers /readyz 503 with the reason; once the
// bootstrap node is up and the peer has joined, 200.
func TestReadyzProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	peerBin, bootBin := binaries(t)
	bootDir := t.TempDir()
	boot := start(t, "bootstrap", bootBin, append([]string{"--data-dir", bootDir}, loopback...)...)
	boot.stop()
	var tcpAddr string
	for _, a := range boot.info.Addrs {
		if strings.Contains(a, "/tcp/") {
			tcpAddr = a
		}
	}
	p := start(t, "peer", peerBin, append([]string{"--data-dir", t.TempDir(), "--bootstrap", tcpAddr}, loopback...)...)
	p.waitLog("no bootstrap peer answered: not joined; retrying", 30*time.Second)
	if code, body := readyz(t, p.info.HTTP); code != http.StatusServiceUnavailable || !strings.Contains(body["reason"], "not joined") {
		t.Errorf("/readyz before join: %d %v", code, body)
	}
	if code, _ := readyz(t, strings.Replace(p.info.HTTP, "127.0.0.1", "localhost", 1)); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz through localhost: %d", code)
	}

	start(t, "bootstrap", bootBin, "--data-dir", bootDir, "--listen", strings.TrimSuffix(tcpAddr, "/p2p/"+boot.info.PeerID), "--http", "127.0.0.1:0")
	p.waitLog("joined overlay", 90*time.Second) // backoff is at most 1 min
	if code, body := readyz(t, p.info.HTTP); code != http.StatusOK || body["status"] != "ready" {
		t.Errorf("/readyz after join: %d %v", code, body)
	}
	p.stop()
}

// TestPeerCommands runs the operator's commands as processes: peer status
// and peer peers against a running peer (its token read from --data-dir),
// peer version, peer config with a flag from the environment and one from
// a file, and a bad flag (one line and a hint, not the whole usage).
func TestPeerCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	peerBin, _ := binaries(t)
	dir := t.TempDir()
	p := start(t, "peer", peerBin, append([]string{"--data-dir", dir}, loopback...)...)
	cli := func(env []string, args ...string) (int, string) {
		t.Helper()
		cmd := exec.Command(peerBin, args...)
		cmd.Env = append(cmd.Environ(), env...)
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	if code, out := cli(nil, "status", "--http", p.info.HTTP, "--data-dir", dir); code != 0 || !strings.Contains(out, `"peer_id": "`+p.info.PeerID) || !strings.Contains(out, `"joined": true`) {
		t.Errorf("peer status: %d\n%s", code, out)
	}
	if code, out := cli(nil, "peers", "--http", p.info.HTTP, "--data-dir", dir); code != 0 || !strings.HasPrefix(out, "PEER") {
		t.Errorf("peer peers: %d\n%s", code, out)
	}
	if code, out := cli([]string{"IMMENSE_TOKEN=" + strings.Repeat("0", 64)}, "status", "--http", p.info.HTTP); code != 1 || !strings.Contains(out, "401") {
		t.Errorf("peer status with a wrong IMMENSE_TOKEN: %d %q, want 1 and the 401", code, out)
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if code, out := cli(nil, args...); code != 0 || !strings.HasPrefix(out, "peer github.com/immense-p2p/immense ") || !strings.Contains(out, "revision") {
			t.Errorf("peer %s: %d %q", args[0], code, out)
		}
	}
	file := filepath.Join(t.TempDir(), "peer.yaml")
	if err := os.WriteFile(file, []byte("zone: eu-1\nmax-conns: 300\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := cli([]string{"IMMENSE_MAX_CONNS=200", "IMMENSE_CONFIG=" + file}, "config", "--data-dir", dir)
	for _, want := range []string{"env IMMENSE_MAX_CONNS", "file " + file, "# flag"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("peer config: %d, no %q in\n%s", code, want, out)
		}
	}
	if code, out := cli(nil, "--max-conns", "many"); code != 2 || strings.Count(out, "\n") != 2 || !strings.Contains(out, "peer --help") {
		t.Errorf("bad flag: exit %d, output %q; want 2 and one line with a hint", code, out)
	}
	p.stop()
}

// TestZonesFileRefused: a peer given a zones file it cannot use (placement
// trusts only operator-given zones) refuses to start, naming the file and
// the line.
func TestZonesFileRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	peerBin, _ := binaries(t)
	zones := filepath.Join(t.TempDir(), "zones")
	if err := os.WriteFile(zones, []byte("# operator's zones\nnot-a-peer-id dc-1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := refused(t, peerBin, append([]string{"--data-dir", t.TempDir(), "--zones", zones}, loopback...)...)
	if code != 1 || !strings.Contains(out, "zones file "+zones+": line 2") {
		t.Errorf("exit %d, output %q; want 1 and the zones file's line 2", code, out)
	}
}
