package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"github.com/immense-p2p/immense/internal/simtest"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/immense-p2p/immense/erasure"
	"github.com/immense-p2p/immense/overlay"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
)

// seededAppKey writes an app key derived from seed to a temp file and
// returns its path: object ids, and so placement, repeat from run to run.
func seededAppKey(t *testing.T, seed string) string {
	t.Helper()
	r := rand.NewChaCha8(sha256.Sum256([]byte(seed)))
	var sk, secret [32]byte
	r.Read(sk[:])
	r.Read(secret[:])
	key, err := erasure.ParseAppKey(fmt.Appendf(nil, `{"type":"immense-app-key","version":1,"signing_key":%q,"secret":%q}`,
		base64.StdEncoding.EncodeToString(sk[:]), base64.StdEncoding.EncodeToString(secret[:])))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "app.key")
	if err := erasure.SaveAppKey(path, key); err != nil {
		t.Fatal(err)
	}
	return path
}

// stateValue returns size bytes of seeded content; values long enough start
// with marker, so that a grep of the holders' disks can look for it.
func stateValue(r *rand.Rand, size int, marker []byte) []byte {
	v := make([]byte, size)
	for i := 0; i < size; i += 8 {
		var w [8]byte
		u := r.Uint64()
		for j := range w {
			w[j] = byte(u >> (8 * j))
		}
		copy(v[i:], w[:])
	}
	if size >= len(marker) {
		copy(v, marker)
	}
	return v
}

// dirContains reports whether any file under dir contains needle.
func dirContains(t *testing.T, dir string, needle []byte) (hit string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || hit != "" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) {
			hit = p
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return hit
}

// TestStateChurn is issue 3's churn acceptance test on full nodes (overlay,
// DHT, shard protocol, disk stores): 30 nodes sharing one app key; 50
// objects of 1 B to 8 MiB (log-spaced); 60% of the nodes go offline at
// random and every object still reads back byte-identical from a survivor;
// they come back, six others go down, and repair returns every object to
// full redundancy. No node's data directory ever contains a marker that
// every value carries.
//
// Why the read with 60% offline cannot fail, whatever the placement: 18 of
// the 30 nodes go down. With MinParity = 18, Put keeps m >= 18 (the test
// checks it) and lowers k below DataShards rather than m when there are
// fewer than DataShards+18 candidates, so an object has k+m >= k+18 holders
// on distinct nodes and at least k of them are among the 12 survivors: any
// k shards rebuild a segment. With DataShards = 4 and MaxShards = 22 an
// object has 4 data and 18 parity shards on 22 of the 30 nodes, 5.5 times
// its size on disk: the price of certainty rather than probability. Its
// manifest is on the 20 DHT nodes closest to its key, of which at least 2
// survive, and a lookup in a 12-node network reaches all 12.
//
// Why repair can always finish: of the 8 nodes outside an object's
// placement, at most 6 - lost are among the 6 nodes down in phase 2 (lost
// being how many of its holders are), so at least 2 + lost are online to
// take the lost shards. Repair.Target is set just below 1 so that every
// lost shard is replaced at once (by default they are replaced lazily while
// the availability estimate stays above 99.99%), which is what full
// redundancy asks for.
func TestStateChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("moves ~250 MiB through simulated QUIC")
	}
	synctest.Test(t, func(t *testing.T) {
		const (
			nodes    = 30
			objects  = 50
			offline  = nodes * 6 / 10 // 18
			downLate = 6
		)
		keyFile := seededAppKey(t, "churn")
		net := newStateNet(t, nodes, func(i int, c *Config) {
			c.AppKeyFile = keyFile
			sc := erasure.DevnetConfig()
			sc.DataShards = 4
			sc.MinParity = offline
			sc.MaxShards = 4 + offline
			sc.Repair.Target = 1 - 1e-9
			// Holders unseen for 10 s count as lost, and each object is
			// checked every 30-50 s: repair is due within a minute of the
			// departures, with few checks (each costs two DHT lookups and a
			// question to every holder).
			sc.Repair.GracePeriod = 10 * time.Second
			sc.Scheduler.Interval = 40 * time.Second
			sc.Scheduler.ChecksPerSecond, sc.Scheduler.CheckBurst = 10, 50
			sc.Scheduler.Seed = uint64(i + 1)
			// GC would cost a DHT lookup per object on every node every
			// minute; it has its own tests in erasure/.
			sc.GCInterval = 0
			c.State = &sc
		})
		for _, nd := range net.nodes {
			<-nd.n.Joined()
		}
		time.Sleep(time.Minute) // identify and routing-table refreshes settle

		r := rand.New(rand.NewPCG(3, 50))
		perm := r.Perm(nodes)
		// The first node taken offline writes: reads then come from other
		// app peers, and its repairs after the restart rely on the keys it
		// persisted.
		down1 := perm[:offline]
		reader := net.nodes[perm[offline]]
		down2 := perm[offline+1 : offline+1+downLate]
		writer := net.nodes[down1[0]]

		marker := []byte("IMMENSE-PLAINTEXT-MARKER-5d1c0e7a")
		ctx := context.Background()
		key := func(i int) string { return fmt.Sprintf("obj-%02d", i) }
		values := make([][]byte, objects)
		var total int
		for i := range values {
			size := int(math.Round(math.Pow(8<<20, float64(i)/(objects-1))))
			values[i] = stateValue(r, size, marker)
			total += size
			pctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			res, err := writer.n.Put(pctx, key(i), values[i])
			cancel()
			if err != nil {
				t.Fatalf("put %s (%d bytes): %v", key(i), size, err)
			}
			if res.M < offline {
				t.Fatalf("put %s: k=%d m=%d: with fewer than %d parity shards, %d nodes offline could make it unreadable",
					key(i), res.K, res.M, offline, offline)
			}
		}
		if len(values[0]) != 1 || len(values[objects-1]) != 8<<20 {
			t.Fatalf("values of %d to %d bytes", len(values[0]), len(values[objects-1]))
		}
		t.Logf("put %d objects, %.1f MiB", objects, float64(total)/(1<<20))
		assertNoPlaintext(t, net, marker)

		// Phase 1: 60% of the nodes go offline.
		for _, i := range down1 {
			net.stop(net.nodes[i])
		}
		for i, v := range values {
			gctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			got, err := reader.n.Get(gctx, key(i))
			cancel()
			if err != nil {
				t.Fatalf("with %d of %d nodes offline, %s: %v", offline, nodes, key(i), err)
			}
			if !bytes.Equal(got, v) {
				t.Fatalf("with %d of %d nodes offline, %s differs (%d bytes, want %d)", offline, nodes, key(i), len(got), len(v))
			}
		}

		// Phase 2: they come back; six of the others go down.
		for _, i := range down1 {
			net.start(net.nodes[i], net.bootstrapAddrs())
		}
		for _, i := range down1 {
			<-net.nodes[i].n.Joined()
		}
		gone := map[peer.ID]bool{}
		for _, i := range down2 {
			gone[net.nodes[i].id] = true
			net.stop(net.nodes[i])
		}
		// The writer checks each object within 50 s and starts at most 5
		// repairs a second: 70 s lets most repairs finish before the first
		// look; later looks come every 30 s, for at most 5 minutes.
		pending := map[int]string{}
		for i := range values {
			pending[i] = "not checked"
		}
		wait := 70 * time.Second
		for start := time.Now(); len(pending) > 0; wait = 30 * time.Second {
			if time.Since(start) > 5*time.Minute {
				for i, why := range pending {
					t.Errorf("%s: %s", key(i), why)
				}
				t.Fatalf("%d objects not back to full redundancy %v after the departures", len(pending), time.Since(start))
			}
			time.Sleep(wait)
			for i := range pending {
				hctx, cancel := context.WithTimeout(ctx, time.Minute)
				h, err := writer.n.Health(hctx, key(i))
				cancel()
				if err != nil {
					pending[i] = err.Error()
					continue
				}
				why := ""
				for _, hh := range h.Holders {
					if !hh.Reachable || !hh.Complete || gone[hh.Peer] {
						why += fmt.Sprintf(" shard %d on node %d (reachable %v, complete %v, %v);",
							hh.Index, net.index(hh.Peer), hh.Reachable, hh.Complete, hh.State)
					}
				}
				if h.Reachable == h.Total && why == "" {
					delete(pending, i)
				} else {
					pending[i] = fmt.Sprintf("version %d: %d of %d shards reachable, repair %v:%s", h.Version, h.Reachable, h.Total, h.Repair, why)
				}
			}
		}
		if v := metricSum(t, writer.n, "immense_state_repaired_shards_total"); v == 0 {
			t.Error("no shard was repaired")
		} else {
			t.Logf("writer regenerated %v shards", v)
		}
		for i, v := range values {
			gctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			got, err := reader.n.Get(gctx, key(i))
			cancel()
			if err != nil || !bytes.Equal(got, v) {
				t.Fatalf("after repair, %s: %v (equal: %v)", key(i), err, bytes.Equal(got, v))
			}
		}
		assertNoPlaintext(t, net, marker)
	})
}

// assertNoPlaintext greps every node's data directory for marker.
func assertNoPlaintext(t *testing.T, net *simNet, marker []byte) {
	t.Helper()
	// The grep must be able to find what it looks for.
	probe := t.TempDir()
	if err := os.WriteFile(filepath.Join(probe, "f"), append([]byte("xx"), marker...), 0o600); err != nil {
		t.Fatal(err)
	}
	if dirContains(t, probe, marker) == "" {
		t.Fatal("dirContains misses a marker that is there")
	}
	files := 0
	for _, nd := range net.nodes {
		if hit := dirContains(t, nd.dir, marker); hit != "" {
			t.Fatalf("plaintext marker found on node %d's disk: %s", nd.i, hit)
		}
		filepath.WalkDir(filepath.Join(nd.dir, shardDir), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files++
			}
			return nil
		})
	}
	if files == 0 {
		t.Fatal("no shard file on any node: nothing was checked")
	}
}

// TestStateManifestRejected checks the DHT validator on full nodes, over
// the wire: a peer without the app key sends PUT_VALUE messages straight to
// every other node's DHT server (bypassing its own DHT, which validates
// before sending) with a manifest signed by its own key, the owner's
// manifest with a raised version and the old signature, a replay of an
// older version, and garbage. Every node refuses them all, keeps the
// current record, and the value still reads back. The genuine current
// record, sent the same way, is accepted: the refusals are the validator's.
func TestStateManifestRejected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const nodes = 6
		keyFile := seededAppKey(t, "manifest")
		net := newStateNet(t, nodes, func(i int, c *Config) {
			if i < nodes-1 {
				c.AppKeyFile = keyFile // the last node is the attacker, with a key of its own
			}
			sc := erasure.DevnetConfig()
			sc.GCInterval = 0
			c.State = &sc
		})
		for _, nd := range net.nodes {
			<-nd.n.Joined()
		}
		time.Sleep(10 * time.Second)
		ctx := context.Background()
		writer, attacker := net.nodes[1].n, net.nodes[nodes-1].n
		owner, err := erasure.LoadAppKey(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		dhtKey := erasure.DHTKey(owner.Namespace(), owner.ObjectID("doc"))
		if _, err := writer.Put(ctx, "doc", []byte("first")); err != nil {
			t.Fatal(err)
		}
		v1, err := writer.Overlay().DHT().GetValue(ctx, dhtKey)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := writer.Put(ctx, "doc", []byte("second")); err != nil {
			t.Fatal(err)
		}
		v2, err := writer.Overlay().DHT().GetValue(ctx, dhtKey)
		if err != nil {
			t.Fatal(err)
		}

		own, err := erasure.LoadAppKey(filepath.Join(net.nodes[nodes-1].dir, appKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		m, err := erasure.ParseManifest(v2)
		if err != nil {
			t.Fatal(err)
		}
		m.Version = 100
		signedBadly, err := m.Marshal() // the owner's signature over version 2
		if err != nil {
			t.Fatal(err)
		}
		notOwner, err := m.Sign(own)
		if err != nil {
			t.Fatal(err)
		}
		attacks := map[string][]byte{
			"signed by a non-owner":   notOwner,
			"version raised, old sig": signedBadly,
			"older version":           v1,
			"garbage":                 []byte("IMMF\x01\x00 not a manifest at all"),
		}
		for name, rec := range attacks {
			if err := attacker.Overlay().DHT().PutValue(ctx, dhtKey, rec); err == nil {
				t.Errorf("%s: the attacker's own DHT accepted it", name)
			}
		}
		for _, nd := range net.nodes[:nodes-1] {
			for name, rec := range attacks {
				if err := rawPutValue(ctx, attacker, nd.id, dhtKey, rec); err == nil {
					t.Errorf("node %d accepted a manifest %s", nd.i, name)
				}
			}
			if err := rawPutValue(ctx, attacker, nd.id, dhtKey, v2); err != nil {
				t.Errorf("node %d refused the genuine current manifest: %v", nd.i, err)
			}
		}
		for _, nd := range net.nodes[:nodes-1] {
			if got, err := nd.n.Overlay().DHT().GetValue(ctx, dhtKey, routing.Offline); err != nil || !bytes.Equal(got, v2) {
				t.Errorf("node %d does not hold the current record (%v)", nd.i, err)
			}
		}
		if got, err := net.nodes[0].n.Get(ctx, "doc"); err != nil || string(got) != "second" {
			t.Fatalf("after the attacks: %q, %v", got, err)
		}
	})
}

// rawPutValue sends one DHT PUT_VALUE message from a to p and reports
// whether p accepted it (a DHT server echoes a record it stored and resets
// the stream otherwise).
func rawPutValue(ctx context.Context, a *Node, p peer.ID, key string, value []byte) error {
	return simtest.RawPutValue(ctx, a.Host(), p, overlay.DefaultConfig().ProtocolPrefix, key, value)
}
