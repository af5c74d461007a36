package erasure

import (
	"context"
	"encoding/binary"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/immense-p2p/immense/internal/simtest"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peerstore"
)

// TestShardServerReservesBeforeReading: a shard server holds at most
// MaxConcurrent request frames. Peers that announce large frames and then
// trickle (or stall) take the slots; the next request is answered busy at
// once, without its body being read, and a stream that never sends its
// header is dropped after headerTimeout. Before, every frame was read in
// full before the slot was taken: 48 streams of 7 MiB grew the heap by
// 400 MiB with MaxConcurrent 16.
func TestShardServerReservesBeforeReading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := simtest.New(t, simtest.Config{})
		hs := simtest.NewHosts(t, net)
		client, server := hs.Start(0), hs.Start(1)
		client.Peerstore().AddAddrs(server.ID(), server.Addrs(), peerstore.PermanentAddrTTL)
		store, err := OpenStore(StoreConfig{Dir: t.TempDir(), Quota: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := NewShardServer(server, store, ServerConfig{RequestTimeout: time.Minute, MaxConcurrent: 2, Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		ctx := context.Background()

		// A store request announcing 7 MiB, of which only the type arrives.
		stall := func() network.Stream {
			st, err := client.NewStream(ctx, server.ID(), ShardProtocol)
			if err != nil {
				t.Fatal(err)
			}
			var head [6]byte
			binary.BigEndian.PutUint32(head[:4], 7<<20)
			head[4], head[5] = wireVersion, msgStore
			if _, err := st.Write(head[:]); err != nil {
				t.Fatal(err)
			}
			return st
		}
		a, b := stall(), stall()
		defer a.Reset()
		defer b.Reset()
		time.Sleep(time.Second) // virtual: both arrive and hold a slot, reading their bodies

		c := stall()
		c.CloseWrite() // the body never comes: only a busy answer can end this
		body, err := readFrame(c, maxFrame)
		if err != nil {
			t.Fatalf("third request: %v, want a busy answer before its body is read", err)
		}
		resp, err := decodeResponse(body, msgStore)
		if err != nil || resp.status != StatusBusy {
			t.Fatalf("third request: %+v, %v; want StatusBusy", resp, err)
		}

		// A stream that sends nothing is reset after headerTimeout.
		silent, err := client.NewStream(ctx, server.ID(), ShardProtocol)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := silent.Read(make([]byte, 1)); err == nil {
			t.Fatal("a silent stream got an answer")
		}
		if d := time.Since(start); d > headerTimeout+time.Second {
			t.Errorf("silent stream dropped after %v, want about %v", d, headerTimeout)
		}
	})
}
