package webrtc

import (
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
)

// chromiumOffer is the shape of a Chromium data channel offer (one
// section, candidates inline, an mDNS-named host candidate).
const chromiumOffer = "v=0\r\n" +
	"o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n" +
	"s=-\r\n" +
	"t=0 0\r\n" +
	"a=group:BUNDLE 0\r\n" +
	"a=extmap-allow-mixed\r\n" +
	"a=msid-semantic: WMS\r\n" +
	"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n" +
	"c=IN IP4 0.0.0.0\r\n" +
	"a=candidate:1467250027 1 udp 2122260223 192.168.0.196 46243 typ host generation 0 network-id 1\r\n" +
	"a=candidate:2135799473 1 udp 2122129151 4a6f2c5b-6f0e-4e4a-9f4c-5a2e9f7b3c1d.local 50000 typ host generation 0 network-id 3\r\n" +
	"a=ice-ufrag:n3E3\r\n" +
	"a=ice-pwd:auh7I7RsuhlZQgS2XYLStR05\r\n" +
	"a=ice-options:trickle\r\n" +
	"a=fingerprint:sha-256 75:74:5A:A6:A4:E5:52:F4:A7:67:4C:01:C7:EE:91:3F:21:3D:A2:E3:53:7B:6F:30:86:F2:30:AA:65:FB:04:24\r\n" +
	"a=setup:actpass\r\n" +
	"a=mid:0\r\n" +
	"a=sctp-port:5000\r\n" +
	"a=max-message-size:262144\r\n"

func TestParseOffer(t *testing.T) {
	o, err := parseOffer(chromiumOffer)
	if err != nil {
		t.Fatal(err)
	}
	if o.ufrag != "n3E3" || o.pwd != "auh7I7RsuhlZQgS2XYLStR05" || o.mid != "0" || !o.bundle || o.maxMessageSize != 262144 {
		t.Errorf("parsed %+v", o)
	}
	if len(o.fingerprints) != 1 || !strings.HasPrefix(o.fingerprints[0].value, "75:74:5A") {
		t.Errorf("fingerprints %+v", o.fingerprints)
	}
	if len(o.candidates) != 1 || !strings.Contains(o.candidates[0], "192.168.0.196") {
		t.Errorf("candidates %q: want the host one, not the mDNS one", o.candidates)
	}

	// The answer is a description the parser reads back, with the
	// section's mid, the DTLS server role and the candidates.
	ans := buildAnswer(o, false, "abcd", "0123456789abcdef0123456789", "sha-256 AA:BB", 65535, []string{"1 1 udp 1 127.0.0.1 5000 typ host"})
	var d sdp.SessionDescription
	if err := d.UnmarshalString(ans); err != nil {
		t.Fatalf("answer does not parse: %v\n%s", err, ans)
	}
	for _, want := range []string{"a=group:BUNDLE 0\r\n", "a=setup:passive\r\n", "a=mid:0\r\n", "a=candidate:1 1 udp", "a=end-of-candidates\r\n", "a=max-message-size:65535\r\n"} {
		if !strings.Contains(ans, want) {
			t.Errorf("answer lacks %q:\n%s", want, ans)
		}
	}

	bad := map[string]func(string) string{
		"audio too": func(s string) string {
			return s + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n"
		},
		"old SCTP syntax": func(s string) string {
			return strings.Replace(s, "UDP/DTLS/SCTP webrtc-datachannel", "DTLS/SCTP 5000", 1)
		},
		"passive":          func(s string) string { return strings.Replace(s, "setup:actpass", "setup:passive", 1) },
		"no fingerprint":   func(s string) string { return strings.Replace(s, "a=fingerprint:sha-256", "a=x:sha-256", 1) },
		"unknown hash":     func(s string) string { return strings.Replace(s, "fingerprint:sha-256", "fingerprint:md-17", 1) },
		"other SCTP port":  func(s string) string { return strings.Replace(s, "sctp-port:5000", "sctp-port:5001", 1) },
		"short ufrag":      func(s string) string { return strings.Replace(s, "ice-ufrag:n3E3", "ice-ufrag:n3", 1) },
		"ufrag with space": func(s string) string { return strings.Replace(s, "ice-ufrag:n3E3", "ice-ufrag:n3E3 x", 1) },
		"no pwd":           func(s string) string { return strings.Replace(s, "a=ice-pwd", "a=ice-pw", 1) },
		"no mid":           func(s string) string { return strings.Replace(s, "a=mid:0", "a=mi:0", 1) },
		"bad size":         func(s string) string { return strings.Replace(s, "262144", "big", 1) },
		"not SDP":          func(string) string { return "hello" },
	}
	for name, mutate := range bad {
		if _, err := parseOffer(mutate(chromiumOffer)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}

	// Candidates are capped.
	many := strings.Replace(chromiumOffer, "a=ice-ufrag", strings.Repeat("a=candidate:1 1 udp 1 10.0.0.1 9 typ host\r\n", 100)+"a=ice-ufrag", 1)
	if o, err := parseOffer(many); err != nil || len(o.candidates) != maxRemoteCandidates {
		t.Errorf("%d candidates kept (%v), want %d", len(o.candidates), err, maxRemoteCandidates)
	}
}

// FuzzParseOffer: whatever the bytes, parseOffer returns an error or an
// offer within its bounds, whose answer is a valid description.
func FuzzParseOffer(f *testing.F) {
	// More seeds in testdata/fuzz/FuzzParseOffer.
	f.Add(chromiumOffer)
	f.Fuzz(func(t *testing.T, raw string) {
		o, err := parseOffer(raw)
		if err != nil {
			return
		}
		if !iceChars(o.ufrag, 4) || !iceChars(o.pwd, 22) || !iceChars(o.mid, 1) || len(o.fingerprints) == 0 ||
			len(o.candidates) > maxRemoteCandidates || o.maxMessageSize == 0 {
			t.Fatalf("accepted an offer out of bounds: %+v", o)
		}
		var d sdp.SessionDescription
		if err := d.UnmarshalString(buildAnswer(o, false, "abcd", "0123456789abcdef0123456789", "sha-256 AA:BB", 65535, nil)); err != nil {
			t.Fatalf("answer to %q does not parse: %v", raw, err)
		}
	})
}

// TestVerifyCertificate: the browser's DTLS certificate must match a
// fingerprint of its offer; any other certificate is refused.
func TestVerifyCertificate(t *testing.T) {
	mine, fp, err := newCertificate()
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := newCertificate()
	if err != nil {
		t.Fatal(err)
	}
	offer := strings.Replace(chromiumOffer, "sha-256 75:74:5A:A6:A4:E5:52:F4:A7:67:4C:01:C7:EE:91:3F:21:3D:A2:E3:53:7B:6F:30:86:F2:30:AA:65:FB:04:24", fp, 1)
	o, err := parseOffer(offer)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.verifyCertificate(mine.Certificate); err != nil {
		t.Errorf("the offer's own certificate refused: %v", err)
	}
	if err := o.verifyCertificate(other.Certificate); err == nil {
		t.Error("another certificate accepted")
	}
	if err := o.verifyCertificate(nil); err == nil {
		t.Error("no certificate accepted")
	}
	if err := o.verifyCertificate([][]byte{[]byte("junk")}); err == nil {
		t.Error("junk accepted")
	}
}
