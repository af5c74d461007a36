package erasure

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func sampleRequests() []*request {
	k, _ := GenerateAppKey()
	h := HashShard([]byte("x"))
	ref := ShardRef{Namespace: k.Namespace(), Object: k.ObjectID("o"), Version: 3, Segment: 2, Index: 1}
	return []*request{
		{typ: msgStore, hash: h, ref: ref, data: []byte("x")},
		{typ: msgStore, hash: h, ref: ref, data: []byte{}},
		{typ: msgFetch, hash: h},
		{typ: msgCheck, hashes: []Hash{h, {}}, verify: true},
		{typ: msgCheck, hashes: []Hash{}},
		{typ: msgDelete, hash: h, pub: k.PublicKey(), sig: k.Sign(deleteMessage(h))},
	}
}

func sampleResponses() []*response {
	return []*response{
		{typ: msgStore},
		{typ: msgStore, status: StatusQuotaExceeded, msg: "quota exceeded"},
		{typ: msgFetch, ref: ShardRef{Version: 1}, data: []byte("shard")},
		{typ: msgFetch, status: StatusNotFound},
		{typ: msgCheck, checks: []CheckResult{{Present: true, Size: 10}, {}}},
		{typ: msgDelete, status: StatusUnauthorized, msg: "no"},
	}
}

func TestWireRoundTrip(t *testing.T) {
	for _, q := range sampleRequests() {
		b := q.encode()
		got, err := decodeRequest(b)
		if err != nil {
			t.Fatalf("type %d: %v", q.typ, err)
		}
		if !bytes.Equal(got.encode(), b) {
			t.Fatalf("type %d: re-encoding differs", q.typ)
		}
	}
	for _, r := range sampleResponses() {
		b := r.encode()
		got, err := decodeResponse(b, r.typ)
		if err != nil {
			t.Fatalf("response %d/%d: %v", r.typ, r.status, err)
		}
		if !bytes.Equal(got.encode(), b) {
			t.Fatalf("response %d: re-encoding differs", r.typ)
		}
	}
	if err := (&response{status: StatusQuotaExceeded, msg: "full"}).err(); !errors.Is(err, ErrQuotaExceeded) {
		t.Fatalf("status mapping: %v", err)
	}
}

func TestWireRejects(t *testing.T) {
	bad := [][]byte{
		nil, {1}, {2, msgFetch}, {1, 99}, {1, msgFetch, 0},
		{1, msgCheck, 2, 0, 0}, // unknown flag
		append([]byte{1, msgCheck, 0, 0xff, 0xff}, make([]byte, 32)...), // count over cap
		append([]byte{1, msgDelete}, make([]byte, 10)...),
	}
	for _, b := range bad {
		if _, err := decodeRequest(b); !errors.Is(err, ErrBadMessage) {
			t.Errorf("request %x accepted: %v", b, err)
		}
	}
	if _, err := decodeResponse([]byte{1, msgFetch | msgResponse, 0, 0}, msgStore); err == nil {
		t.Error("response to another request type accepted")
	}
	if _, err := decodeResponse([]byte{1, msgStore | msgResponse, 42, 0}, msgStore); err == nil {
		t.Error("unknown status accepted")
	}
	// A frame announcing more than the cap is refused before it is read.
	var buf bytes.Buffer
	buf.Write([]byte{0xff, 0xff, 0xff, 0xff})
	if _, err := readFrame(&buf, maxFrame); !errors.Is(err, ErrBadMessage) {
		t.Errorf("oversized frame: %v", err)
	}
	buf.Reset()
	writeFrame(&buf, []byte("abc"))
	buf.Truncate(5)
	if _, err := readFrame(&buf, maxFrame); err == nil {
		t.Error("truncated frame accepted")
	}
}

// FuzzWireDecode feeds arbitrary bytes to both decoders: they must never
// panic, and whatever they accept must re-encode to the same bytes.
func FuzzWireDecode(f *testing.F) {
	for _, q := range sampleRequests() {
		f.Add(q.encode())
	}
	for _, r := range sampleResponses() {
		f.Add(r.encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if q, err := decodeRequest(b); err == nil {
			if !bytes.Equal(q.encode(), b) {
				t.Fatalf("request not canonical: %x", b)
			}
		}
		for _, typ := range []byte{msgStore, msgFetch, msgCheck, msgDelete} {
			if r, err := decodeResponse(b, typ); err == nil {
				if !bytes.Equal(r.encode(), b) {
					t.Fatalf("response not canonical: %x", b)
				}
			}
		}
		var buf bytes.Buffer
		buf.Write(b)
		readFrame(&buf, 1<<16)
	})
}

func TestShardProtocolDeleteAuthorization(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tn := newTestNet(t, 2, netOpts{})
		ctx := context.Background()
		owner, _ := GenerateAppKey()
		other, _ := GenerateAppKey()
		server, client := tn.nodes[1], NewClient(tn.nodes[0].h, 5*time.Second)
		p := server.h.ID()
		data := []byte("a shard")
		h := HashShard(data)
		ref := ShardRef{Namespace: owner.Namespace()}
		if err := client.Store(ctx, p, h, ref, data); err != nil {
			t.Fatal(err)
		}
		if err := client.Store(ctx, p, HashShard([]byte("other")), ref, data); !errors.Is(err, ErrHashMismatch) {
			t.Fatalf("store with a wrong hash: %v", err)
		}
		got, err := client.Fetch(ctx, p, h)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("fetch: %v", err)
		}
		res, err := client.Check(ctx, p, []Hash{h, HashShard([]byte("nope"))}, true)
		if err != nil || !res[0].Present || res[0].Size != int64(len(data)) || res[1].Present {
			t.Fatalf("check: %+v %v", res, err)
		}
		if err := client.Delete(ctx, p, h, other); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("delete by a stranger: %v", err)
		}
		if _, ok := server.store.Stat(h); !ok {
			t.Fatal("shard gone after an unauthorized delete")
		}
		if err := client.Delete(ctx, p, h, owner); err != nil {
			t.Fatalf("delete by the owner: %v", err)
		}
		if _, err := client.Fetch(ctx, p, h); !errors.Is(err, ErrNotFound) {
			t.Fatalf("fetch after delete: %v", err)
		}
	})
}

// TestCheckVerifyBounded: a check with verify set names at most
// MaxVerifyHashes shards (each a whole shard read and hashed by the
// holder); more is a bad request, so 32 KiB of request no longer buys the
// reading of 1,024 shards. Without verify the cap stays MaxCheckHashes.
func TestCheckVerifyBounded(t *testing.T) {
	hashes := make([]Hash, MaxVerifyHashes+1)
	for i := range hashes {
		hashes[i] = Hash{byte(i)}
	}
	if _, err := decodeRequest((&request{typ: msgCheck, verify: true, hashes: hashes[:MaxVerifyHashes]}).encode()); err != nil {
		t.Fatalf("verified check of %d hashes: %v", MaxVerifyHashes, err)
	}
	if _, err := decodeRequest((&request{typ: msgCheck, verify: true, hashes: hashes}).encode()); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("verified check of %d hashes: %v, want ErrBadMessage", len(hashes), err)
	}
	if _, err := decodeRequest((&request{typ: msgCheck, hashes: make([]Hash, MaxCheckHashes)}).encode()); err != nil {
		t.Fatalf("check of %d hashes without verify: %v", MaxCheckHashes, err)
	}
}
