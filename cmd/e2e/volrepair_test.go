package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestStateVolunteerRepair: the app peer writes a value with
// --delegate-repair, then is killed. Volunteers (no app key) that hold its
// shards find holders that came back without them, regenerate the lost
// shards onto spare peers under the app's delegation and publish repair
// hints (immense_state_repair_role_bytes_total{role="volunteer"} and
// /v1/status storage.repair_bytes.volunteer grow). One more original
// holder then goes, so that k original shards are no longer online, and a
// fresh app peer (the app key, nothing stored) still reads the value:
// through the repair hints.
func TestStateVolunteerRepair(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	net := newStateNet(t)
	const listen = "/ip4/127.0.0.1/tcp/0"
	volFlags := []string{"--storage-quota", "1GiB", "--volunteer-repair-interval", "2s"}
	// The app peer stores nothing itself (its quota takes no shard), so
	// that killing it loses no shard: what is lost is what the test wipes.
	app := net.peer("app", t.TempDir(), listen, "--app-key", net.keyFile, "--storage-quota", "1KiB", "--delegate-repair", "1h")
	const volunteers = 5
	vols := map[string]*proc{}
	dirs := map[string]string{}
	for i := range volunteers {
		dir := t.TempDir()
		p := net.peer(fmt.Sprintf("vol%d", i), dir, listen, volFlags...)
		vols[p.info.PeerID], dirs[p.info.PeerID] = p, dir
	}
	stateWaitConnected(t, app, volunteers+1)
	app.waitLog("published repair delegation", 30*time.Second)

	value := stateValue(rand.New(rand.NewPCG(14, 14)), 200<<10)
	res, err := statePut(app.info.HTTP, "volunteer", value)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(res.Holders, app.info.PeerID) {
		t.Fatalf("the app peer holds a shard: %v", res.Holders)
	}
	t.Logf("k=%d m=%d holders %v", res.K, res.M, res.Holders)
	// Spare peers that hold nothing yet, for the regenerated shards.
	for i := range 2 {
		dir := t.TempDir()
		p := net.peer(fmt.Sprintf("spare%d", i), dir, listen, volFlags...)
		vols[p.info.PeerID], dirs[p.info.PeerID] = p, dir
	}
	// Every holder knows the spare peers before it may need them: the
	// app, the other volunteers, the spares and the bootstrap node.
	for _, id := range res.Holders {
		stateWaitConnected(t, vols[id], volunteers+2+1)
	}
	app.kill()

	// floor(m/2)+1 holders come back without their shards: fewer than
	// k+ceil(m/2) remain, so repair is due at once (no grace period for a
	// holder that answers without its shard).
	// All stop before any restarts, so that none of them can be the one
	// that repairs (its counters would restart from 0).
	wiped := res.M/2 + 1
	for _, id := range res.Holders[:wiped] {
		vols[id].kill()
		if err := os.RemoveAll(filepath.Join(dirs[id], "shards")); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range res.Holders[:wiped] {
		vols[id] = net.peer(vols[id].name+"-wiped", dirs[id], listen, volFlags...)
	}

	// Wait until a volunteer has regenerated them all.
	// One segment: the value and its 40 bytes of nonce and tag, in k
	// shards.
	shardSize := (len(value) + 40 + res.K - 1) / res.K
	want := float64(wiped * shardSize)
	deadline := time.Now().Add(90 * time.Second)
	var repairer *proc
	for repairer == nil {
		var total float64
		for _, p := range vols {
			b := stateMetric(t, p.info.HTTP, `immense_state_repair_role_bytes_total{role="volunteer"}`)
			if b > 0 {
				total += b
				repairer = p
			}
		}
		if repairer != nil && total < want {
			repairer = nil
		}
		if repairer == nil {
			if time.Now().After(deadline) {
				for _, p := range vols {
					t.Logf("%s:\n%s", p.name, p.dump())
				}
				t.Fatalf("no volunteer repaired %d shards within 90 s", wiped)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	st := getStorageStatus(t, repairer.info.HTTP)
	if st.RepairBytes.Volunteer <= 0 || st.RepairBytes.Server != 0 {
		t.Fatalf("%s /v1/status repair_bytes: %+v", repairer.name, st.RepairBytes)
	}
	t.Logf("%s regenerated %d bytes as a volunteer", repairer.name, st.RepairBytes.Volunteer)

	// One more original holder goes: the k original shards still online
	// are k-1, so the read needs the regenerated ones.
	gone := vols[res.Holders[wiped]]
	goneBytes := stateMetric(t, gone.info.HTTP, `immense_state_repair_role_bytes_total{role="volunteer"}`)
	gone.kill()
	reader := net.peer("reader", t.TempDir(), listen, "--app-key", net.keyFile, "--storage-quota", "1KiB")
	stateWaitConnected(t, reader, 3)
	deadline = time.Now().Add(60 * time.Second)
	for {
		got, err := stateGetErr(reader.info.HTTP, "volunteer")
		if err == nil {
			if !bytes.Equal(got, value) {
				t.Fatal("the value read back differs")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("read through repair hints: %v", err)
		}
		time.Sleep(500 * time.Millisecond) // the reader is still finding peers
	}
	// Several volunteer passes later, nobody has regenerated anything
	// again: the repair hints count for the indices they repaired.
	total := goneBytes
	for _, p := range vols {
		if p != gone {
			total += stateMetric(t, p.info.HTTP, `immense_state_repair_role_bytes_total{role="volunteer"}`)
		}
	}
	if total != want {
		t.Errorf("volunteers uploaded %v bytes, want %v (%d shards of %d)", total, want, wiped, shardSize)
	}
}

// storageStatus is the storage part of /v1/status.
type storageStatus struct {
	RepairBytes struct {
		Server    int64 `json:"server"`
		Volunteer int64 `json:"volunteer"`
	} `json:"repair_bytes"`
}

func getStorageStatus(t *testing.T, base string) storageStatus {
	t.Helper()
	var s struct {
		Storage storageStatus `json:"storage"`
	}
	getJSON(t, base+"/v1/status", &s)
	return s.Storage
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// stateGetErr is stateGet returning the failure instead of failing.
func stateGetErr(base, key string) ([]byte, error) {
	resp, err := http.Get(base + "/v1/state/" + key)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", key, resp.Status, body)
	}
	return body, nil
}
