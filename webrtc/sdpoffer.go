package webrtc

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/dtls/v3/pkg/crypto/fingerprint"
	"github.com/pion/sdp/v3"
)

// remoteOffer is what the server takes from a browser's SDP offer: the
// one data channel section's ICE credentials, DTLS fingerprints and
// candidates.
type remoteOffer struct {
	ufrag, pwd   string
	fingerprints []offerFingerprint
	mid          string
	bundle       bool // the offer bundles the section (a=group:BUNDLE): the answer says so too
	// maxMessageSize is the largest message the browser takes
	// (a=max-message-size; RFC 8841's 64 KiB when absent or 0).
	maxMessageSize uint32
	candidates     []string // a=candidate values, at most maxRemoteCandidates
}

type offerFingerprint struct {
	hash  crypto.Hash
	value string // upper-case hex pairs joined by ':'
}

// defaultMaxMessageSize is RFC 8841's default for a missing
// a=max-message-size.
const defaultMaxMessageSize = 64 << 10

// parseOffer reads a browser's SDP offer. It must have exactly one
// section, a data channel (UDP/DTLS/SCTP webrtc-datachannel, SCTP port
// 5000), with ICE credentials and a DTLS fingerprint, and leave the DTLS
// server role to the answerer (setup:actpass or active).
func parseOffer(raw string) (remoteOffer, error) {
	var o remoteOffer
	var d sdp.SessionDescription
	if err := d.UnmarshalString(raw); err != nil {
		return o, fmt.Errorf("not a session description: %w", err)
	}
	if len(d.MediaDescriptions) != 1 {
		return o, fmt.Errorf("%d media sections, want one: the data channel (no audio or video)", len(d.MediaDescriptions))
	}
	m := d.MediaDescriptions[0]
	if m.MediaName.Media != "application" || !slices.Equal(m.MediaName.Protos, []string{"UDP", "DTLS", "SCTP"}) ||
		!slices.Equal(m.MediaName.Formats, []string{"webrtc-datachannel"}) {
		return o, errors.New("the media section is not a data channel (m=application 9 UDP/DTLS/SCTP webrtc-datachannel)")
	}
	// An attribute of the section, or of the session when the section
	// has none.
	attr := func(key string) (string, bool) {
		if v, ok := m.Attribute(key); ok {
			return v, true
		}
		return d.Attribute(key)
	}
	var ok bool
	if o.ufrag, ok = attr("ice-ufrag"); !ok || !iceChars(o.ufrag, 4) {
		return o, errors.New("missing or bad a=ice-ufrag")
	}
	if o.pwd, ok = attr("ice-pwd"); !ok || !iceChars(o.pwd, 22) {
		return o, errors.New("missing or bad a=ice-pwd")
	}
	switch setup, _ := attr("setup"); setup {
	case "actpass", "active":
	default:
		return o, fmt.Errorf("a=setup:%s: the answerer must be able to take the DTLS server role (actpass or active)", setup)
	}
	if o.mid, ok = m.Attribute("mid"); !ok || !iceChars(o.mid, 1) || len(o.mid) > 32 {
		return o, errors.New("missing or bad a=mid")
	}
	if p, ok := m.Attribute("sctp-port"); ok && p != strconv.Itoa(sctpPort) {
		return o, fmt.Errorf("a=sctp-port:%s, this server speaks SCTP on port %d only", p, sctpPort)
	}
	o.maxMessageSize = defaultMaxMessageSize
	if v, ok := m.Attribute("max-message-size"); ok {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return o, fmt.Errorf("a=max-message-size:%q is not a number", v)
		}
		if n > 0 {
			o.maxMessageSize = uint32(min(n, math.MaxUint32))
		}
	}
	for _, a := range slices.Concat(m.Attributes, d.Attributes) {
		if a.Key != "fingerprint" {
			continue
		}
		name, value, _ := strings.Cut(a.Value, " ")
		h, err := fingerprint.HashFromString(name)
		if err != nil || value == "" {
			continue // a hash we do not know: another line may do
		}
		o.fingerprints = append(o.fingerprints, offerFingerprint{h, strings.ToUpper(value)})
	}
	if len(o.fingerprints) == 0 {
		return o, errors.New("no a=fingerprint with a known hash (sha-256, sha-384, sha-512)")
	}
	for _, a := range m.Attributes {
		if a.Key == "candidate" && len(o.candidates) < maxRemoteCandidates && !isMDNSCandidate(a.Value) {
			o.candidates = append(o.candidates, a.Value)
		}
	}
	if g, ok := d.Attribute("group"); ok {
		f := strings.Fields(g)
		o.bundle = len(f) > 1 && f[0] == "BUNDLE" && slices.Contains(f[1:], o.mid)
	}
	return o, nil
}

// iceChars reports whether s is min to 256 ice-chars (RFC 8839:
// ALPHA / DIGIT / "+" / "/"), which ICE credentials are, or "-", "_",
// "." (seen in mids, held to the same).
func iceChars(s string, min int) bool {
	if len(s) < min || len(s) > 256 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// isMDNSCandidate reports whether a candidate's address is an mDNS name
// (a browser hiding its LAN address). The server does not resolve them:
// the browser's checks reveal the address (a peer-reflexive candidate).
func isMDNSCandidate(c string) bool {
	f := strings.Fields(c)
	return len(f) > 4 && strings.HasSuffix(f[4], ".local")
}

// verifyCertificate checks the browser's DTLS certificate against the
// offer's fingerprints.
func (o *remoteOffer) verifyCertificate(raw [][]byte) error {
	if len(raw) == 0 {
		return errors.New("no certificate")
	}
	cert, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	for _, f := range o.fingerprints {
		if got, err := fingerprint.Fingerprint(cert, f.hash); err == nil && strings.EqualFold(got, f.value) {
			return nil
		}
	}
	return errors.New("certificate does not match the offer's fingerprint")
}
