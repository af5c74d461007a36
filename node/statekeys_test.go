package node

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"testing/synctest"
)

// TestStateKeysFile: the keys a node writes are in <data-dir>/state-keys.json
// (kept by its erasure service), and a file of the format node/ wrote
// itself before loads on restart.
func TestStateKeysFile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		keyFile := seededAppKey(t, "keys")
		net := newStateNet(t, 4, func(i int, c *Config) { c.AppKeyFile = keyFile })
		for _, nd := range net.nodes {
			<-nd.n.Joined()
		}
		writer := net.nodes[0]
		path := filepath.Join(writer.dir, stateKeyFile)
		ctx := context.Background()
		if _, err := writer.n.Put(ctx, "doc", []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if got := trackedInFile(t, path); !slices.Equal(got, []string{"doc"}) {
			t.Fatalf("after a put, the file tracks %v", got)
		}

		net.stop(writer)
		if err := os.WriteFile(path, []byte(`["doc","older-key"]`), 0o600); err != nil {
			t.Fatal(err)
		}
		net.start(writer, net.bootstrapAddrs())
		<-writer.n.Joined()
		if got := writer.n.state.svc.Keys(); !slices.Equal(got, []string{"doc", "older-key"}) {
			t.Fatalf("after a restart, tracked keys %v", got)
		}
		if err := writer.n.Delete(ctx, "doc"); err != nil {
			t.Fatal(err)
		}
		if got := trackedInFile(t, path); !slices.Equal(got, []string{"older-key"}) {
			t.Fatalf("after a delete, the file tracks %v", got)
		}
	})
}

// trackedInFile returns the keys the service's key list at path tracks
// (format 2: an object with a "keys" array; see erasure/keys.go).
func trackedInFile(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Keys []struct {
			Key     string `json:"key"`
			Tracked bool   `json:"tracked"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	var keys []string
	for _, k := range f.Keys {
		if k.Tracked {
			keys = append(keys, k.Key)
		}
	}
	return keys
}
