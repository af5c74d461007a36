package erasure

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/klauspost/reedsolomon"
	"golang.org/x/crypto/chacha20poly1305"
)

// The codec benchmarks time the codec and a bare baseline in the same
// iterations, alternating, so both see the same machine load, and report:
//
//	codec-MB/s, bare-MB/s  plaintext throughput of each
//	ratio                  bare time / codec time (target >= 0.8)
//	ratio-nohash           the same against a baseline without SHA-256
//
// The like-for-like baseline does what the codec must do with the raw
// primitives and nothing else: XChaCha20-Poly1305 seal, reedsolomon
// Split+Encode, SHA-256 of each shard (decode: hash k shards, Join, open).
// ratio-nohash shows what the per-shard content hashes cost on top.

var benchShapes = []struct {
	name string
	p    Params
}{
	{"k4m4-1MiB", Params{4, 4, 1 << 20}},
	{"k8m8-1MiB", Params{8, 8, 1 << 20}},
	{"k4m2-64KiB", Params{4, 2, 64 << 10}},
}

type bareCodec struct {
	aead cipher.AEAD
	rs   reedsolomon.Encoder
	k, n int
}

func newBare(b *testing.B, p Params) *bareCodec {
	a, err := chacha20poly1305.NewX(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	rs, err := reedsolomon.New(p.DataShards, p.ParityShards)
	if err != nil {
		b.Fatal(err)
	}
	return &bareCodec{aead: a, rs: rs, k: p.DataShards, n: p.Total()}
}

func (c *bareCodec) encode(plain []byte, hash bool) [][]byte {
	nonce := make([]byte, 24)
	rand.Read(nonce)
	ct := c.aead.Seal(nonce, nonce, plain, nil)
	shards, _ := c.rs.Split(ct)
	c.rs.Encode(shards)
	if hash {
		for _, s := range shards {
			sha256.Sum256(s)
		}
	}
	return shards
}

func (c *bareCodec) decode(shards [][]byte, ctLen int, hash bool) {
	if hash {
		// Verify the k shards that will be used, as a reader must.
		n := 0
		for _, s := range shards {
			if s != nil && n < c.k {
				sha256.Sum256(s)
				n++
			}
		}
	}
	c.rs.ReconstructData(shards)
	ct := make([]byte, 0, ctLen+len(shards[0]))
	for _, s := range shards[:c.k] {
		ct = append(ct, s...)
	}
	ct = ct[:ctLen]
	if _, err := c.aead.Open(nil, ct[:24], ct[24:], nil); err != nil {
		panic(err)
	}
}

func report(b *testing.B, bytes int, codec, bare, bareNoHash time.Duration) {
	mbs := func(d time.Duration) float64 { return float64(bytes) * float64(b.N) / d.Seconds() / 1e6 }
	b.ReportMetric(mbs(codec), "codec-MB/s")
	b.ReportMetric(mbs(bare), "bare-MB/s")
	b.ReportMetric(float64(bare)/float64(codec), "ratio")
	b.ReportMetric(float64(bareNoHash)/float64(codec), "ratio-nohash")
	b.ReportMetric(0, "ns/op") // the custom metrics say it all
}

func BenchmarkCodecEncode(b *testing.B) {
	k, _ := GenerateAppKey()
	oc, _ := k.ObjectCipher("bench", 1)
	for _, sh := range benchShapes {
		b.Run(sh.name, func(b *testing.B) {
			c, _ := NewCodec(sh.p)
			bare := newBare(b, sh.p)
			plain := make([]byte, sh.p.SegmentSize)
			rand.Read(plain)
			var tc, tb, tn time.Duration
			b.ResetTimer()
			for b.Loop() {
				t0 := time.Now()
				if _, _, err := c.EncodeSegment(oc, 0, plain); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				bare.encode(plain, true)
				t2 := time.Now()
				bare.encode(plain, false)
				t3 := time.Now()
				tc, tb, tn = tc+t1.Sub(t0), tb+t2.Sub(t1), tn+t3.Sub(t2)
			}
			report(b, len(plain), tc, tb, tn)
		})
	}
}

func BenchmarkCodecDecode(b *testing.B) {
	k, _ := GenerateAppKey()
	oc, _ := k.ObjectCipher("bench", 1)
	for _, sh := range benchShapes {
		b.Run(sh.name, func(b *testing.B) {
			c, _ := NewCodec(sh.p)
			bare := newBare(b, sh.p)
			plain := make([]byte, sh.p.SegmentSize)
			rand.Read(plain)
			shards, hashes, _ := c.EncodeSegment(oc, 0, plain)
			bshards := bare.encode(plain, false)
			ctLen := len(plain) + segmentOverhead
			// Lose the first m data shards (or all parity when m > k) so
			// both sides really reconstruct.
			lose := min(sh.p.ParityShards, sh.p.DataShards)
			work := make([][]byte, len(shards))
			bwork := make([][]byte, len(bshards))
			var tc, tb, tn time.Duration
			b.ResetTimer()
			for b.Loop() {
				copy(work, shards)
				copy(bwork, bshards)
				for i := range lose {
					work[i], bwork[i] = nil, nil
				}
				t0 := time.Now()
				if _, err := c.DecodeSegment(oc, 0, len(plain), work, hashes); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				bare.decode(bwork, ctLen, true)
				t2 := time.Now()
				copy(bwork, bshards)
				for i := range lose {
					bwork[i] = nil
				}
				t3 := time.Now()
				bare.decode(bwork, ctLen, false)
				t4 := time.Now()
				tc, tb, tn = tc+t1.Sub(t0), tb+t2.Sub(t1), tn+t4.Sub(t3)
			}
			report(b, len(plain), tc, tb, tn)
		})
	}
}
