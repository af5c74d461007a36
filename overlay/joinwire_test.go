package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"
)

// testPeerID returns a deterministic Ed25519 peer ID.
func testPeerID(tb testing.TB, seed byte) peer.ID {
	tb.Helper()
	priv, _, err := crypto.GenerateEd25519Key(bytes.NewReader(bytes.Repeat([]byte{seed}, 64)))
	if err != nil {
		tb.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

func sampleJoinMessages(tb testing.TB) []joinMessage {
	var refs []peer.AddrInfo
	for i := range 3 {
		refs = append(refs, peer.AddrInfo{ID: testPeerID(tb, byte(i+1)), Addrs: []multiaddr.Multiaddr{
			multiaddr.StringCast(fmt.Sprintf("/ip4/1.0.0.%d/tcp/4001", i+1)),
			multiaddr.StringCast(fmt.Sprintf("/ip4/1.0.0.%d/udp/4001/quic-v1", i+1)),
		}})
	}
	return []joinMessage{
		{typ: joinRequest},
		{typ: joinOK},
		{typ: joinBusy, retryAfter: 1500 * time.Millisecond},
		{typ: joinBusy, retryAfter: 30 * time.Second, referrals: refs},
	}
}

func TestJoinWireRoundTrip(t *testing.T) {
	for _, m := range sampleJoinMessages(t) {
		b := m.encode()
		var buf bytes.Buffer
		if err := writeJoinFrame(&buf, b); err != nil {
			t.Fatal(err)
		}
		body, err := readJoinFrame(&buf)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeJoin(body)
		if err != nil {
			t.Fatalf("decode %x: %v", b, err)
		}
		if got.typ != m.typ || got.retryAfter != m.retryAfter || len(got.referrals) != len(m.referrals) {
			t.Fatalf("round trip: got %+v, want %+v", got, m)
		}
		for i, r := range got.referrals {
			if r.ID != m.referrals[i].ID || len(r.Addrs) != len(m.referrals[i].Addrs) || !r.Addrs[0].Equal(m.referrals[i].Addrs[0]) {
				t.Errorf("referral %d: got %v, want %v", i, r, m.referrals[i])
			}
		}
	}
}

// TestJoinWireEncodeCaps: whatever the server has at hand, a busy answer
// carries at most 8 referrals of at most 4 usable addresses, no peer twice,
// and fits the frame cap.
func TestJoinWireEncodeCaps(t *testing.T) {
	long := multiaddr.StringCast("/dns4/" + string(bytes.Repeat([]byte("a"), 250)) + ".example.com/tcp/1")
	var refs []peer.AddrInfo
	for i := range 20 {
		ai := peer.AddrInfo{ID: testPeerID(t, byte(i+1))}
		for j := range 10 {
			ai.Addrs = append(ai.Addrs, multiaddr.StringCast(fmt.Sprintf("/ip4/1.0.%d.%d/tcp/4001", i, j)))
		}
		ai.Addrs = append([]multiaddr.Multiaddr{long}, ai.Addrs...) // too long for the wire: skipped
		refs = append(refs, ai)
	}
	refs = append(refs[:1], refs...) // a duplicate
	m := joinMessage{typ: joinBusy, retryAfter: 2 * time.Hour, referrals: refs}
	b := m.encode()
	if len(b) > maxJoinFrame {
		t.Fatalf("encoded %d bytes, over %d", len(b), maxJoinFrame)
	}
	got, err := decodeJoin(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.referrals) != maxReferrals || got.retryAfter != maxRetryHint {
		t.Fatalf("got %d referrals, retry %v; want %d, %v", len(got.referrals), got.retryAfter, maxReferrals, maxRetryHint)
	}
	for _, r := range got.referrals {
		if len(r.Addrs) != maxReferralAddrs {
			t.Errorf("%s: %d addresses, want %d", r.ID, len(r.Addrs), maxReferralAddrs)
		}
	}
}

func TestJoinWireDecodeErrors(t *testing.T) {
	id := []byte(testPeerID(t, 1))
	addr := multiaddr.StringCast("/ip4/1.0.0.1/tcp/4001").Bytes()
	ref := func(id []byte, addrs ...[]byte) []byte {
		b := append([]byte{byte(len(id))}, id...)
		b = append(b, byte(len(addrs)))
		for _, a := range addrs {
			b = append(b, byte(len(a)))
			b = append(b, a...)
		}
		return b
	}
	busy := func(n byte, rest ...[]byte) []byte {
		b := []byte{joinVersion, joinBusy, 0, 0, 0x03, 0xe8, n}
		for _, r := range rest {
			b = append(b, r...)
		}
		return b
	}
	for name, b := range map[string][]byte{
		"empty":            {},
		"short":            {joinVersion},
		"version":          {2, joinRequest},
		"type":             {joinVersion, 9},
		"request trailing": {joinVersion, joinRequest, 0},
		"ok trailing":      {joinVersion, joinOK, 1, 2},
		"busy short":       {joinVersion, joinBusy, 0, 0},
		"retry too long":   {joinVersion, joinBusy, 0xff, 0xff, 0xff, 0xff, 0},
		"too many":         busy(9),
		"missing referral": busy(1),
		"bad peer id":      busy(1, ref([]byte("not a peer id"), addr)),
		"no addresses":     busy(1, ref(id)),
		"five addresses":   busy(1, ref(id, addr, addr, addr, addr, addr)),
		"bad multiaddr":    busy(1, ref(id, []byte{0xff, 0xff, 0xff})),
		"empty multiaddr":  busy(1, ref(id, []byte{})),
		"cut address":      busy(1, ref(id, addr)[:len(ref(id, addr))-2]),
		"same peer twice":  busy(2, ref(id, addr), ref(id, addr)),
		"busy trailing":    busy(1, ref(id, addr), []byte{0}),
		"oversize":         make([]byte, maxJoinFrame+1),
	} {
		if _, err := decodeJoin(b); !errors.Is(err, errBadJoin) {
			t.Errorf("%s: decodeJoin(%x) = %v, want errBadJoin", name, b, err)
		}
	}
	if _, err := decodeJoin(busy(1, ref(id, addr))); err != nil {
		t.Fatalf("the valid base of the cases above: %v", err)
	}
	var buf bytes.Buffer
	buf.Write([]byte{0xff, 0xff})
	if _, err := readJoinFrame(&buf); !errors.Is(err, errBadJoin) {
		t.Errorf("frame over the cap: %v", err)
	}
	buf.Reset()
	buf.Write([]byte{0, 5, 1, 2})
	if _, err := readJoinFrame(&buf); err == nil {
		t.Error("truncated frame accepted")
	}
}

// FuzzJoinDecode: bytes from the network either decode into a message that
// re-encodes to the same bytes, or fail with errBadJoin; never a panic.
func FuzzJoinDecode(f *testing.F) {
	for _, m := range sampleJoinMessages(f) {
		f.Add(m.encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeJoin(b)
		if err != nil {
			if !errors.Is(err, errBadJoin) {
				t.Fatalf("error not errBadJoin: %v", err)
			}
			return
		}
		if again := m.encode(); !bytes.Equal(again, b) {
			t.Fatalf("round trip changed %x to %x", b, again)
		}
		readJoinFrame(bytes.NewReader(b))
	})
}

func TestJoinConfigValidate(t *testing.T) {
	for name, mutate := range map[string]func(*Config){
		"negative rate":  func(c *Config) { c.JoinRate = -1 },
		"zero burst":     func(c *Config) { c.JoinBurst = 0 },
		"negative peers": func(c *Config) { c.JoinMaxPeers = -1 },
		"referrals":      func(c *Config) { c.JoinReferrals = 9 },
		"timeout":        func(c *Config) { c.JoinTimeout = 0 },
		"retry max":      func(c *Config) { c.JoinRetryMax = 2 * time.Hour },
		"retry below":    func(c *Config) { c.JoinRetryMax = c.BootstrapBackoffMin / 2 },
	} {
		c := DefaultConfig()
		mutate(&c)
		if err := c.validate(); err == nil {
			t.Errorf("%s: validate accepted %+v", name, c)
		}
	}
	c := DefaultConfig()
	c.JoinRate, c.JoinBurst = 0, 0 // no limit
	if err := c.validate(); err != nil {
		t.Errorf("no join limit: %v", err)
	}
}
