package webrtc

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/immense-p2p/immense/internal/browsersig"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/frames.json from the Go encoder")

const testMaxFrame = 64 << 10

// goldenFrames are the frames of testdata/frames.json, which the JS client's
// tests decode and re-encode too: one wire format, two implementations.
func goldenFrames(t testing.TB) []struct {
	Name  string
	Frame frame
} {
	msg := frame{typ: frameMessage, topic: "chat/lobby", id: "0a1b", from: "12D3KooWpeer", time: 1700000000123456, payload: []byte("hi \x00\xff")}
	encMsg, err := appendFrame(nil, &msg)
	if err != nil {
		t.Fatal(err)
	}
	ack := frame{typ: frameAck, req: 7}
	encAck, _ := appendFrame(nil, &ack)
	return []struct {
		Name  string
		Frame frame
	}{
		{"subscribe", frame{typ: frameSubscribe, req: 1, topic: "chat"}},
		{"subscribe-since", frame{typ: frameSubscribe, req: 2, topic: "chat", since: "1700000000123456789-42-12D3KooWpeer"}},
		{"presence-join", frame{typ: framePresence, topic: "chat", joined: true, id: "token:alice", from: "12D3KooWpeer"}},
		{"presence-leave", frame{typ: framePresence, topic: "chat", id: "session:7", from: "12D3KooWpeer"}},
		{"error-gap", frame{typ: frameError, code: CodeGap, topic: "chat", reason: "resumed from before the topic's history: messages were lost"}},
		{"unsubscribe", frame{typ: frameUnsubscribe, req: 0xfffffffe, topic: "a.b_c:d/e-f"}},
		{"publish", frame{typ: framePublish, req: 3, topic: "chat", payload: []byte("héllo")}},
		{"publish-empty", frame{typ: framePublish, topic: "x", payload: []byte{}}},
		{"message", msg},
		{"message-no-time", frame{typ: frameMessage, topic: "t", payload: []byte{1, 2, 3}}},
		{"ack", ack},
		{"error", frame{typ: frameError, req: 9, code: CodeForbidden, topic: "b", reason: "token does not allow publishing to \"b\""}},
		{"error-unsolicited", frame{typ: frameError, code: CodeMessagesDropped, reason: "12 messages dropped"}},
		{"batch", frame{typ: frameBatch, batch: [][]byte{encMsg, encAck, encMsg}}},
		// Signed by goldenBrowserKey (Ed25519 signatures are deterministic,
		// so the JS client's test signs the same bytes and compares).
		{"signed-publish", frame{typ: frameSignedPublish, req: 4, topic: "chat", time: 1700000000123,
			sig: browsersig.Sign(goldenBrowserKey, "chat", time.UnixMilli(1700000000123), []byte("héllo")), payload: []byte("héllo")}},
		// Relay frames (relayframe.go). The RECORD is signed by
		// goldenRelayKey, whose public half the ATTACH and INVITE carry,
		// so that the JS client verifies a Go signature.
		{"relay-ready", frame{typ: frameRelayReady, req: 5, relay: &relayFields{flags: relayFlagMetered, upload: 1 << 20, maxChildren: 8}}},
		{"relay-ready-withdraw", frame{typ: frameRelayReady, req: 6, relay: &relayFields{}}},
		{"relay-invite", frame{typ: frameRelayInvite, topic: "news", relay: &relayFields{maxChildren: 4, upload: 250_000, key: goldenRelayPub}}},
		{"attach", frame{typ: frameAttach, topic: "news", relay: &relayFields{link: 7, seq: 41, key: goldenRelayPub}}},
		{"attach-peer", frame{typ: frameAttach, topic: "news", relay: &relayFields{seq: 1 << 40, key: goldenRelayPub}}},
		{"signal-offer", frame{typ: frameSignal, topic: "news", relay: &relayFields{link: 7, kind: signalOffer, data: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}}},
		{"signal-close", frame{typ: frameSignal, topic: "news", relay: &relayFields{link: 0xfffffffe, kind: signalClose}}},
		{"record", goldenRecord(t)},
		{"from", frame{typ: frameFrom, topic: "news", relay: &relayFields{seq: 41}}},
		{"head", frame{typ: frameHead, topic: "news", relay: &relayFields{seq: 57}}},
		{"report-forged", frame{typ: frameReport, req: 3, topic: "news", relay: &relayFields{link: 7, reason: ReportForged, evidence: []byte{1, 14, 0}}}},
		{"report-stalled", frame{typ: frameReport, topic: "news", relay: &relayFields{link: 7, reason: ReportStalled}}},
		{"hello", frame{typ: frameHello, topic: "news", relay: &relayFields{link: 7, seq: 41}}},
		{"relay-probe", frame{typ: frameProbe, relay: &relayFields{probe: []byte{0, 0, 0}}}},
		{"relay-probe-last", frame{typ: frameProbe, req: 8, relay: &relayFields{flags: probeFlagLast, probe: []byte{}}}},
		{"batch-records", frame{typ: frameBatch, batch: [][]byte{mustEncode(t, goldenRecord(t)), mustEncode(t, goldenRecord(t))}}},
	}
}

// goldenRelayKey signs the golden RECORD: the Ed25519 key of the seed 32
// bytes of 7.
var (
	goldenRelayKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	goldenRelayPub = goldenRelayKey.Public().(ed25519.PublicKey)
)

// goldenRecord is message "héllo" of topic news at seq 42, signed by
// goldenRelayKey.
func goldenRecord(t testing.TB) frame {
	m := Message{Topic: "news", ID: "1700000000123456789-3-12D3KooWpeer", From: "token:alice", Time: time.UnixMicro(1700000000123456), Data: []byte("héllo")}
	b, err := signRecord(goldenRelayKey, 42, &m)
	if err != nil {
		t.Fatal(err)
	}
	f, err := decodeFrame(b, testMaxFrame)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func mustEncode(t testing.TB, f frame) []byte {
	b, err := appendFrame(nil, &f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// goldenBrowserKey signs the signed-publish golden frame: the Ed25519 key
// of the seed 32 bytes of 9 (the JS test imports the same seed).
var goldenBrowserKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))

type goldenEntry struct {
	Name string `json:"name"`
	Hex  string `json:"hex"`
}

func TestFrameGolden(t *testing.T) {
	var entries []goldenEntry
	for _, g := range goldenFrames(t) {
		b, err := appendFrame(nil, &g.Frame)
		if err != nil {
			t.Fatalf("%s: %v", g.Name, err)
		}
		entries = append(entries, goldenEntry{g.Name, hex.EncodeToString(b)})
	}
	path := filepath.Join("testdata", "frames.json")
	if *updateGolden {
		b, _ := json.MarshalIndent(entries, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []goldenEntry
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(entries) {
		t.Fatalf("%s has %d frames, encoder %d (run with -update after a deliberate change)", path, len(want), len(entries))
	}
	for i := range want {
		if want[i] != entries[i] {
			t.Errorf("frame %s: encoder gives %s, %s has %s (a wire format change needs a new FrameVersion)", entries[i].Name, entries[i].Hex, path, want[i].Hex)
		}
	}
}

func TestFrameRoundTrip(t *testing.T) {
	for _, g := range goldenFrames(t) {
		t.Run(g.Name, func(t *testing.T) {
			b, err := appendFrame(nil, &g.Frame)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeFrame(b, testMaxFrame)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			re, err := reencode(&got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(re, b) {
				t.Fatalf("re-encoding differs:\n%x\n%x", re, b)
			}
			if got.typ != g.Frame.typ || got.req != g.Frame.req || got.topic != g.Frame.topic || got.code != g.Frame.code ||
				got.reason != g.Frame.reason || got.id != g.Frame.id || got.from != g.Frame.from || got.time != g.Frame.time ||
				!bytes.Equal(got.payload, g.Frame.payload) || len(got.items) != len(g.Frame.batch) {
				t.Fatalf("decoded %+v, want %+v", got, g.Frame)
			}
		})
	}
}

func TestMessageTime(t *testing.T) {
	now := time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.UTC)
	b, err := encodeMessage(&Message{Topic: "t", ID: "i", From: "p", Time: now, Data: []byte("d")})
	if err != nil {
		t.Fatal(err)
	}
	f, err := decodeFrame(b, testMaxFrame)
	if err != nil {
		t.Fatal(err)
	}
	if got := fromMicros(f.time); !got.Equal(now.Truncate(time.Microsecond)) {
		t.Fatalf("time %v, want %v", got, now)
	}
	if !fromMicros(toMicros(time.Time{})).IsZero() {
		t.Fatal("zero time must survive the wire")
	}
}

// reencode encodes a decoded frame again, batches included.
func reencode(f *frame) ([]byte, error) {
	if f.typ == frameBatch {
		g := *f
		g.batch = nil
		for i := range f.items {
			b, err := reencode(&f.items[i])
			if err != nil {
				return nil, err
			}
			g.batch = append(g.batch, b)
		}
		return appendFrame(nil, &g)
	}
	return appendFrame(nil, f)
}

func TestFrameDecodeRejects(t *testing.T) {
	sub, _ := appendFrame(nil, &frame{typ: frameSubscribe, req: 42, topic: "chat"})
	pub, _ := appendFrame(nil, &frame{typ: framePublish, req: 5, topic: "chat", payload: []byte("abc")})
	batch, _ := appendFrame(nil, &frame{typ: frameBatch, batch: [][]byte{sub}})
	with := func(b []byte, i int, v byte) []byte { c := bytes.Clone(b); c[i] = v; return c }
	tests := []struct {
		name    string
		in      []byte
		want    error
		wantReq uint32
	}{
		{"empty", nil, ErrBadFrame, 0},
		{"one byte", []byte{1}, ErrBadFrame, 0},
		{"version 0", with(sub, 0, 0), ErrUnsupportedVersion, 42},
		{"version 2", with(sub, 0, 2), ErrUnsupportedVersion, 42},
		{"unknown type", with(sub, 1, 99), ErrBadFrame, 0},
		{"type 0", with(sub, 1, 0), ErrBadFrame, 0},
		{"truncated req", sub[:4], ErrBadFrame, 0},
		{"truncated topic", sub[:len(sub)-1], ErrBadFrame, 42},
		{"trailing byte", append(bytes.Clone(sub), 0), ErrBadFrame, 42},
		{"empty topic", []byte{1, 1, 0, 0, 0, 1, 0}, ErrInvalidTopic, 1},
		{"topic with space", []byte{1, 1, 0, 0, 0, 1, 3, 'a', ' ', 'b'}, ErrInvalidTopic, 1},
		{"topic too long", append([]byte{1, 1, 0, 0, 0, 1, 129}, strings.Repeat("a", 129)...), ErrInvalidTopic, 1},
		{"payload length beyond frame", with(pub, len(pub)-4, 0xff), ErrBadFrame, 5},
		{"payload length huge", append(pub[:len(pub)-7], 0xff, 0xff, 0xff, 0xff), ErrBadFrame, 5},
		{"too large", make([]byte, testMaxFrame+1), ErrFrameTooLarge, 0},
		{"empty batch", []byte{1, 7, 0, 0}, ErrBadFrame, 0},
		{"batch count beyond data", []byte{1, 7, 0xff, 0xff, 0, 0, 0, 2, 1, 5}, ErrBadFrame, 0},
		{"batch of garbage", []byte{1, 7, 0, 1, 0, 0, 0, 2, 1, 99}, ErrBadFrame, 0},
		{"batch in batch", append([]byte{1, 7, 0, 1}, appendBytes32(nil, batch)...), ErrBadFrame, 0},
		{"batch trailing", append(bytes.Clone(batch), 0), ErrBadFrame, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := decodeFrame(tc.in, testMaxFrame)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if f.req != tc.wantReq {
				t.Fatalf("req = %d, want %d", f.req, tc.wantReq)
			}
		})
	}
}

func TestFrameEncodeRejects(t *testing.T) {
	for name, f := range map[string]frame{
		"bad topic":     {typ: frameSubscribe, topic: "a b"},
		"no topic":      {typ: framePublish},
		"unknown type":  {typ: 0},
		"empty batch":   {typ: frameBatch},
		"nested batch":  {typ: frameBatch, batch: [][]byte{{1, 7, 0, 0}}},
		"error topic":   {typ: frameError, topic: "*"},
		"long id":       {typ: frameMessage, topic: "t", id: strings.Repeat("x", 1<<16)},
		"message topic": {typ: frameMessage, topic: ""},
	} {
		if _, err := appendFrame(nil, &f); err == nil {
			t.Errorf("%s: encoded %+v", name, f)
		}
	}
}

func FuzzDecodeFrame(f *testing.F) {
	// Seeds live in testdata/fuzz/FuzzDecodeFrame; the golden frames are
	// added here as well so the corpus follows format changes.
	for _, g := range goldenFrames(f) {
		b, _ := appendFrame(nil, &g.Frame)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeFrame(b, 4096)
		if err != nil {
			if codeFor(err) == 0 {
				t.Fatalf("error without a code: %v", err)
			}
			return
		}
		// The encoding is canonical: what decodes re-encodes to the same
		// bytes, so no two byte strings mean the same frame.
		re, err := reencode(&fr)
		if err != nil {
			t.Fatalf("decoded frame does not re-encode: %v (%+v)", err, fr)
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, re)
		}
	})
}

// TestBatchFrames: the fan-out's packing keeps order, respects the frame
// limit, and sends a lone frame as is.
func TestBatchFrames(t *testing.T) {
	var frames [][]byte
	for i := range 50 {
		b, err := encodeMessage(&Message{Topic: "t", ID: fmt.Sprint(i), Data: bytes.Repeat([]byte{byte(i)}, 10+i*7)})
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, b)
	}
	if w := batchFrames(frames[:1], 2000); len(w) != 1 || !bytes.Equal(w[0], frames[0]) {
		t.Fatal("a lone frame must go as is")
	}
	const max = 2000
	wire := batchFrames(frames, max)
	var got []string
	for _, w := range wire {
		if len(w) > max {
			t.Fatalf("wire frame of %d bytes, max %d", len(w), max)
		}
		f, err := decodeFrame(w, max)
		if err != nil {
			t.Fatal(err)
		}
		if f.typ == frameMessage {
			got = append(got, f.id)
			continue
		}
		for _, it := range f.items {
			got = append(got, it.id)
		}
	}
	if len(got) != len(frames) {
		t.Fatalf("%d messages in %d wire frames, want %d", len(got), len(wire), len(frames))
	}
	for i, id := range got {
		if id != fmt.Sprint(i) {
			t.Fatalf("message %d is %s: order lost", i, id)
		}
	}
	if len(wire) < 5 || len(wire) > 15 {
		t.Fatalf("%d wire frames for %d bytes of frames under a %d limit: packing is off", len(wire), 50*200, max)
	}
}
