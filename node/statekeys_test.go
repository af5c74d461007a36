package node

import (
	"context"
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
		if b, _ := os.ReadFile(path); string(b) != `["doc"]` {
			t.Fatalf("after a put: %s", b)
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
		if b, _ := os.ReadFile(path); string(b) != `["older-key"]` {
			t.Fatalf("after a delete: %s", b)
		}
	})
}
