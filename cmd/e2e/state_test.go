package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stateNet is a bootstrap process and peer processes sharing an app key.
type stateNet struct {
	t       *testing.T
	peerBin string
	keyFile string
	boot    *proc
	bootTCP string
}

func newStateNet(t *testing.T) *stateNet {
	t.Helper()
	peerBin, bootBin := binaries(t)
	keyFile := filepath.Join(t.TempDir(), "app.key")
	if out, err := exec.Command(peerBin, "keygen", "--out", keyFile).CombinedOutput(); err != nil {
		t.Fatalf("peer keygen: %v\n%s", err, out)
	}
	s := &stateNet{t: t, peerBin: peerBin, keyFile: keyFile}
	s.boot = start(t, "bootstrap", bootBin, append([]string{"--data-dir", t.TempDir()}, loopback...)...)
	for _, a := range s.boot.info.Addrs {
		if strings.Contains(a, "/tcp/") {
			s.bootTCP = a
		}
	}
	return s
}

// anyPort listens on 127.0.0.1 on ports the kernel picks.
const anyPort = "/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/udp/0/quic-v1"

// peer starts a peer with its data in dir, listening on listen, with the
// given extra flags, and waits until it has joined the overlay.
func (s *stateNet) peer(name, dir, listen string, extra ...string) *proc {
	s.t.Helper()
	args := []string{"--data-dir", dir, "--mode", "server", "--bootstrap", s.bootTCP, "--no-browsers",
		"--listen", listen, "--http", "127.0.0.1:0", "--nat-portmap=false"}
	args = append(args, extra...)
	p := start(s.t, name, s.peerBin, args...)
	p.waitLog("joined overlay", 30*time.Second)
	return p
}

// stateWaitConnected polls p's status until it is connected to n peers: the
// writer must know every storage peer before placement means anything.
func stateWaitConnected(t *testing.T, p *proc, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if getStatus(t, p.info.HTTP).ConnectedPeers >= n {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: fewer than %d connected peers after 60 s", p.name, n)
}

type statePutResult struct {
	Version uint64   `json:"version"`
	K       int      `json:"k"`
	M       int      `json:"m"`
	Holders []string `json:"holders"`
}

// statePut writes value under key on base: the result, or an error with the
// HTTP status and body.
func statePut(base, key string, value []byte) (*statePutResult, error) {
	req, _ := http.NewRequest(http.MethodPut, base+"/v1/state/"+key, bytes.NewReader(value))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("PUT %s: %s: %s", key, resp.Status, body)
	}
	var r statePutResult
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("PUT %s: %v in %s", key, err, body)
	}
	return &r, nil
}

func stateGet(t *testing.T, base, key string) []byte {
	t.Helper()
	resp, err := http.Get(base + "/v1/state/" + key)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s on %s: %s: %s", key, base, resp.Status, body)
	}
	return body
}

// stateMetric returns the value of the series name (with labels, as printed, e.g.
// `x_total{reason="quota"}`) in base's /metrics, and 0 if absent.
func stateMetric(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatalf("metric %s: %q: %v", name, line, err)
			}
			return f
		}
	}
	return 0
}

func stateValue(r *rand.Rand, n int) []byte {
	v := make([]byte, n)
	for i := range v {
		v[i] = byte(r.Uint32())
	}
	return v
}

// Shard file format (erasure/doc.go, "Shard files"), checked here
// independently of the erasure package:
//
//	"IMSH" | version u8 = 1 | ref (78 bytes) | CRC-32C of the preceding bytes u32 | shard bytes
//
// in <data-dir>/shards/shards/<2 hex>/<64 hex of SHA-256 of the shard bytes>.
const shardHeaderLen = 4 + 1 + 78 + 4

// verifyShardFile returns why the file at path is not a complete, valid
// shard file, or nil.
func verifyShardFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	name := filepath.Base(path)
	if len(name) != 64 || filepath.Base(filepath.Dir(path)) != name[:2] {
		return errors.New("not named <2 hex>/<64 hex>")
	}
	if len(b) < shardHeaderLen {
		return fmt.Errorf("%d bytes: shorter than the header", len(b))
	}
	if string(b[:4]) != "IMSH" || b[4] != 1 {
		return fmt.Errorf("bad magic or version % x", b[:5])
	}
	crc := crc32.Checksum(b[:shardHeaderLen-4], crc32.MakeTable(crc32.Castagnoli))
	if crc != binary.BigEndian.Uint32(b[shardHeaderLen-4:shardHeaderLen]) {
		return errors.New("header CRC mismatch")
	}
	sum := sha256.Sum256(b[shardHeaderLen:])
	if hex.EncodeToString(sum[:]) != name {
		return fmt.Errorf("content (%d bytes) does not hash to its name: partial or corrupt", len(b)-shardHeaderLen)
	}
	return nil
}

// checkShardDir verifies every shard file under a peer's data dir and
// returns how many there are and how many temp files lie in the store's tmp.
func checkShardDir(t *testing.T, dataDir string) (shards, tmps int) {
	t.Helper()
	root := filepath.Join(dataDir, "shards", "shards")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if verr := verifyShardFile(p); verr != nil {
			t.Errorf("shard file %s: %v", p, verr)
		}
		shards++
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	ents, err := os.ReadDir(filepath.Join(dataDir, "shards", "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	return shards, len(ents)
}

// TestStateKill9 kills a shard holder with SIGKILL while another peer is
// writing values over HTTP, at a moment when a shard file is being written
// (a temp file exists in its store), restarts it, and checks that no shard
// file on its disk is partial or unverifiable, that the store cleans up,
// and that every value acknowledged before or after the kill reads back.
// Kill and restart repeat until a kill has caught a write in progress (at
// most 3 times).
func TestStateKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	net := newStateNet(t)
	// TCP only: the kernel resets a killed process's connections at once,
	// so the writer does not wait out a QUIC idle timeout to notice.
	const listen = "/ip4/127.0.0.1/tcp/0"
	flags := []string{"--app-key", net.keyFile, "--storage-quota", "1GiB"}
	const peers = 5
	var ps []*proc
	dirs := make([]string, peers)
	for i := range peers {
		dirs[i] = t.TempDir()
		ps = append(ps, net.peer(fmt.Sprintf("peer%d", i), dirs[i], listen, flags...))
	}
	writer, victim := ps[0], ps[2]
	victimDir, victimID := dirs[2], victim.info.PeerID
	victimListen := strings.TrimSuffix(victim.info.Addrs[0], "/p2p/"+victimID)
	stateWaitConnected(t, writer, peers) // the other peers and the bootstrap node

	r := rand.New(rand.NewPCG(9, 9))
	var mu sync.Mutex
	written := map[string][]byte{} // every value a PUT acknowledged
	// With 5 storage peers every value has k+m = 5 holders: the victim
	// among them.
	for i := range 4 {
		key, v := fmt.Sprintf("before-%d", i), stateValue(r, 256<<10)
		res, err := statePut(writer.info.HTTP, key, v)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(res.Holders, victimID) {
			t.Fatalf("PUT %s: victim %s is not among the holders %v", key, victimID, res.Holders)
		}
		written[key] = v
	}

	// The writer writes 2 MiB values (two 1 MiB segments, shards of ~350
	// KiB) in a loop until told to stop.
	stop := make(chan struct{})
	loopDone := make(chan error, 1)
	acked := 0
	go func() {
		lr := rand.New(rand.NewPCG(1, 2))
		for i := 0; ; i++ {
			select {
			case <-stop:
				loopDone <- nil
				return
			default:
			}
			key, v := fmt.Sprintf("during-%d", i), stateValue(lr, 2<<20)
			if _, err := statePut(writer.info.HTTP, key, v); err != nil {
				loopDone <- err
				return
			}
			mu.Lock()
			written[key] = v
			acked++
			mu.Unlock()
		}
	}()
	// waitAcked waits until the loop has had n more writes acknowledged.
	waitAcked := func(n int, why string) {
		t.Helper()
		mu.Lock()
		target := acked + n
		mu.Unlock()
		deadline := time.After(90 * time.Second)
		for {
			mu.Lock()
			done := acked >= target
			mu.Unlock()
			if done {
				return
			}
			select {
			case err := <-loopDone:
				t.Fatalf("write loop: %v", err)
			case <-deadline:
				t.Fatalf("fewer than %d writes acknowledged within 90 s %s", n, why)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}

	tmpDir := filepath.Join(victimDir, "shards", "tmp")
	caught := false
	for attempt := 1; attempt <= 3 && !caught; attempt++ {
		waitAcked(1, "with the victim up")
		// Poll the victim's store for a temp file (a shard being written),
		// bounded, and kill it the moment one appears.
		deadline := time.Now().Add(60 * time.Second)
		for {
			if ents, err := os.ReadDir(tmpDir); err == nil && len(ents) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the victim wrote no shard within 60 s")
			}
			time.Sleep(time.Millisecond)
		}
		victim.kill() // SIGKILL
		shards, tmps := checkShardDir(t, victimDir)
		caught = tmps > 0
		t.Logf("attempt %d: SIGKILL left %d shard files, all complete and verified, and %d temp files", attempt, shards, tmps)

		waitAcked(2, "with the victim killed") // writes go on without it

		victim = net.peer(fmt.Sprintf("peer2-restart%d", attempt), victimDir, victimListen, flags...)
		if victim.info.PeerID != victimID {
			t.Fatalf("victim restarted as %s, was %s", victim.info.PeerID, victimID)
		}
		victim.waitLog("state service started", 10*time.Second)
		victim.mu.Lock()
		cleaned := 0
		for _, l := range victim.logs {
			switch l["msg"] {
			case "removing unverifiable shard file":
				t.Errorf("store found a partial or corrupt shard file at startup: %v", l)
			case "removing leftover temp file":
				cleaned++
			}
		}
		victim.mu.Unlock()
		after, tmpsAfter := checkShardDir(t, victimDir)
		if tmpsAfter != 0 || cleaned != tmps {
			t.Errorf("restart: %d temp files removed (logged), %d left, of %d", cleaned, tmpsAfter, tmps)
		}
		if after != shards {
			t.Errorf("restart changed the shard files: %d before, %d after", shards, after)
		}
		if n := stateMetric(t, victim.info.HTTP, "immense_state_shards"); int(n) != after {
			t.Errorf("store indexes %v shards, %d files on disk", n, after)
		}
		stateWaitConnected(t, writer, peers) // the victim is back: it takes shards again
	}
	if !caught {
		t.Error("no SIGKILL in 3 landed while a shard file was being written")
	}
	close(stop)
	if err := <-loopDone; err != nil {
		t.Fatalf("write loop: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	for key, v := range written {
		for _, p := range []*proc{ps[1], victim} {
			if got := stateGet(t, p.info.HTTP, key); !bytes.Equal(got, v) {
				t.Fatalf("%s on %s: %d bytes differ from the %d written", key, p.name, len(got), len(v))
			}
		}
	}
	t.Logf("%d acknowledged values read back from two peers", len(written))
}

// TestStateQuota: a peer whose --storage-quota is too small for a shard
// refuses it with a clear error, and the writer places the shard elsewhere.
func TestStateQuota(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	net := newStateNet(t)
	var ps []*proc
	for i := range 4 {
		ps = append(ps, net.peer(fmt.Sprintf("peer%d", i), t.TempDir(), anyPort, "--app-key", net.keyFile, "--storage-quota", "1GiB"))
	}
	// A volunteer (no app key) with room for 4 KiB of shards.
	full := net.peer("full", t.TempDir(), anyPort, "--storage-quota", "4KiB")
	writer := ps[0]
	stateWaitConnected(t, writer, 5) // 3 peers, the full one and the bootstrap node

	r := rand.New(rand.NewPCG(4, 4))
	for i := range 3 {
		key, v := fmt.Sprintf("q-%d", i), stateValue(r, 256<<10)
		res, err := statePut(writer.info.HTTP, key, v)
		if err != nil {
			t.Fatalf("PUT %s with one peer full: %v", key, err)
		}
		if slices.Contains(res.Holders, full.info.PeerID) {
			t.Fatalf("PUT %s placed a shard on the full peer: holders %v", key, res.Holders)
		}
		if len(res.Holders) != res.K+res.M {
			t.Fatalf("PUT %s: %d holders for k=%d m=%d", key, len(res.Holders), res.K, res.M)
		}
		if got := stateGet(t, ps[1].info.HTTP, key); !bytes.Equal(got, v) {
			t.Fatalf("GET %s differs", key)
		}
	}
	if n := stateMetric(t, full.info.HTTP, `immense_state_shards_refused_total{reason="quota"}`); n < 1 {
		t.Errorf("full peer counted %v quota refusals", n)
	}
	if used := stateMetric(t, full.info.HTTP, "immense_state_storage_used_bytes"); used > 4<<10 {
		t.Errorf("full peer uses %v bytes, over its 4 KiB quota", used)
	}
	// The writer saw the refusal, with the reason, and moved on.
	writer.mu.Lock()
	defer writer.mu.Unlock()
	for _, l := range writer.logs {
		err, _ := l["err"].(string)
		if l["msg"] == "shard holder failed, placing elsewhere" && l["peer"] == full.info.PeerID &&
			strings.Contains(err, "quota exceeded") {
			t.Logf("writer: %v", err)
			return
		}
	}
	t.Errorf("writer never logged the full peer's quota refusal")
}

type stateHealth struct {
	Version   uint64 `json:"version"`
	Reachable int    `json:"reachable"`
	Total     int    `json:"total"`
	Holders   []struct {
		Index     int    `json:"index"`
		Peer      string `json:"peer"`
		Reachable bool   `json:"reachable"`
		Complete  bool   `json:"complete"`
		HandedOff bool   `json:"handed_off"`
	} `json:"holders"`
}

func getStateHealth(t *testing.T, base, key string) stateHealth {
	t.Helper()
	resp, err := http.Get(base + "/v1/state/" + key + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("health of %s on %s: %s: %s", key, base, resp.Status, body)
	}
	var h stateHealth
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatalf("health of %s: %v in %s", key, err, body)
	}
	return h
}

// stateRepair is the JSON answer to POST /v1/state/{key}/repair.
type stateRepair struct {
	Version     uint64 `json:"version"`
	Action      string `json:"action"`
	Reason      string `json:"reason"`
	Regenerated []int  `json:"regenerated"`
}

// postStateRepair asks base to repair key now and checks the status code.
func postStateRepair(t *testing.T, base, key string, want int) stateRepair {
	t.Helper()
	resp, err := http.Post(base+"/v1/state/"+key+"/repair", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("repair of %s on %s: %s (want %d): %s", key, base, resp.Status, want, body)
	}
	var r stateRepair
	if want == http.StatusOK {
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatalf("repair of %s: %v in %s", key, err, body)
		}
	}
	return r
}

// TestStateHandoff: a peer that holds shards and is stopped with SIGTERM
// hands them to another peer before it exits ("handoff done" in its log,
// exit code 0), and the writer's health endpoint then reports every value
// at full redundancy, with no holder on the departed peer, and GETs return
// the values. Five app peers take every value (k=3, m=2 on all of them); a
// volunteer that joins after the writes is the only peer outside the
// placements, so it is the one the shards go to. A repair asked for over
// HTTP then adopts the volunteer into the manifest, and a second SIGTERM
// cuts a slow peer's handoff short.
func TestStateHandoff(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	net := newStateNet(t)
	// TCP only: a departed peer's port refuses at once, so the writer does
	// not wait out a dial timeout before following the hint.
	const listen = "/ip4/127.0.0.1/tcp/0"
	flags := []string{"--app-key", net.keyFile, "--storage-quota", "1GiB"}
	const peers = 5
	var ps []*proc
	for i := range peers {
		ps = append(ps, net.peer(fmt.Sprintf("peer%d", i), t.TempDir(), listen, flags...))
	}
	writer, victim := ps[0], ps[2]
	stateWaitConnected(t, writer, peers)

	r := rand.New(rand.NewPCG(6, 6))
	values := map[string][]byte{}
	for i := range 3 {
		key, v := fmt.Sprintf("handoff-%d", i), stateValue(r, 200<<10)
		res, err := statePut(writer.info.HTTP, key, v)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(res.Holders, victim.info.PeerID) {
			t.Fatalf("PUT %s: the victim is not among the holders %v", key, res.Holders)
		}
		values[key] = v
	}
	volunteer := net.peer("volunteer", t.TempDir(), listen, "--storage-quota", "1GiB")
	stateWaitConnected(t, victim, peers+1) // the other peers, the volunteer and the bootstrap node

	start := time.Now()
	victim.cmd.Process.Signal(syscall.SIGTERM)
	victim.waitLog("handoff done", 30*time.Second)
	select {
	case <-victim.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("victim still running 30 s after SIGTERM; logs:\n%s", victim.dump())
	}
	if code := victim.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("victim exit code %d; logs:\n%s", code, victim.dump())
	}
	victim.mu.Lock()
	for _, l := range victim.logs {
		if l["msg"] == "handoff done" {
			elapsed, _ := l["elapsed"].(float64)
			t.Logf("victim, %v after SIGTERM: handoff done, handed_off=%v failed=%v shards_sent=%v bytes_sent=%v in %v",
				time.Since(start).Round(time.Millisecond), l["handed_off"], l["failed"], l["shards_sent"], l["bytes_sent"], time.Duration(elapsed))
			if l["handed_off"] != float64(len(values)) || l["failed"] != float64(0) {
				t.Errorf("victim handed off %v of %d values' shards, %v failed", l["handed_off"], len(values), l["failed"])
			}
		}
	}
	victim.mu.Unlock()
	if n := stateMetric(t, volunteer.info.HTTP, "immense_state_shards"); int(n) != len(values) {
		t.Errorf("the volunteer holds %v shards, want the victim's %d", n, len(values))
	}

	for key, v := range values {
		h := getStateHealth(t, writer.info.HTTP, key)
		if h.Reachable != h.Total || h.Version != 1 {
			t.Errorf("%s after the handoff: %d of %d shards reachable, version %d; %+v", key, h.Reachable, h.Total, h.Version, h.Holders)
		}
		handedOff := 0
		for _, hh := range h.Holders {
			if hh.Peer == victim.info.PeerID {
				t.Errorf("%s: shard %d still reported on the departed peer", key, hh.Index)
			}
			if hh.HandedOff {
				handedOff++
				if hh.Peer != volunteer.info.PeerID || !hh.Complete {
					t.Errorf("%s: shard %d handed off to %s (complete %v), want the volunteer %s", key, hh.Index, hh.Peer, hh.Complete, volunteer.info.PeerID)
				}
			}
		}
		if handedOff != 1 {
			t.Errorf("%s: %d holders reported as handed off, want 1: %+v", key, handedOff, h.Holders)
		}
		for _, p := range []*proc{writer, ps[1]} {
			if got := stateGet(t, p.info.HTTP, key); !bytes.Equal(got, v) {
				t.Fatalf("GET %s on %s differs", key, p.name)
			}
		}
	}

	// A repair asked for now (POST .../repair, what the hourly loop does)
	// adopts the volunteer: a new manifest version names it, and nothing
	// is regenerated.
	for key := range values {
		rep := postStateRepair(t, writer.info.HTTP, key, http.StatusOK)
		if rep.Action != "none" || len(rep.Regenerated) != 0 || rep.Version != 2 {
			t.Errorf("repair of %s: %+v, want action none, nothing regenerated, version 2", key, rep)
		}
		h := getStateHealth(t, writer.info.HTTP, key)
		named := false
		for _, hh := range h.Holders {
			named = named || hh.Peer == volunteer.info.PeerID
			if hh.HandedOff || hh.Peer == victim.info.PeerID {
				t.Errorf("%s after adoption: holder %+v", key, hh)
			}
		}
		if !named || h.Reachable != h.Total || h.Version != 2 {
			t.Errorf("%s after adoption: version %d, %d of %d reachable, volunteer named %v", key, h.Version, h.Reachable, h.Total, named)
		}
	}
	postStateRepair(t, writer.info.HTTP, "no-such-key", http.StatusNotFound)
	postStateRepair(t, writer.info.HTTP, "bad%20key", http.StatusBadRequest)

	// A second SIGTERM cuts a handoff short: a peer with a slow uplink
	// and a long handoff timeout exits soon after it, not when the handoff
	// would have ended.
	slow := net.peer("slow", t.TempDir(), listen, "--storage-quota", "1GiB", "--max-upload", "16KiB/s", "--handoff-timeout", "10m")
	stateWaitConnected(t, slow, peers+1) // writer, peers 1, 3, 4, the volunteer, the bootstrap node
	held := 0
	for i := 0; held == 0 && i < 3; i++ {
		// 8 MiB: a shard of it (k is at most 32) outlasts the uplink's
		// 64 KiB burst by seconds, so the handoff is still running when
		// the second signal comes; of 1 MiB, k = 16 made it one burst.
		res, err := statePut(writer.info.HTTP, fmt.Sprintf("slow-%d", i), stateValue(r, 8<<20))
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(res.Holders, slow.info.PeerID) {
			held++
		}
	}
	if held == 0 {
		t.Fatal("three puts placed nothing on the slow peer")
	}
	slow.cmd.Process.Signal(syscall.SIGTERM)
	slow.waitLog("handing shards off before exit; a second SIGINT or SIGTERM cuts it short", 30*time.Second)
	cut := time.Now()
	slow.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-slow.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the slow peer still runs 30 s after a second SIGTERM; logs:\n%s", slow.dump())
	}
	t.Logf("slow peer: exited %v after the second SIGTERM", time.Since(cut).Round(time.Millisecond))
	if code := slow.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("slow peer exit code %d; logs:\n%s", code, slow.dump())
	}
	slow.waitLog("second signal: cutting the handoff short", time.Second)
	slow.waitLog("handoff stopped before the end", time.Second)
}
