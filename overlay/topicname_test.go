package overlay

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidateTopic(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"chat", true},
		{"app/room-1.v2:events_x", true},
		{strings.Repeat("a", MaxTopicLength), true},
		{"", false},
		{strings.Repeat("a", MaxTopicLength+1), false},
		{"with space", false},
		{"semi;colon", false},
		{"new\nline", false},
		{"nul\x00", false},
		{"é", false},
		{"😀", false},
		{"percent%20", false},
	} {
		err := ValidateTopic(tc.name)
		if tc.ok != (err == nil) {
			t.Errorf("ValidateTopic(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("ValidateTopic(%q) error %v is not ErrInvalidTopic", tc.name, err)
		}
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	now := time.Unix(1700000000, 123456789)
	b := encodeEnvelope(now, credNone, nil, []byte("payload"))
	e, err := decodeEnvelope(b)
	got, p := e.published, e.payload
	if err != nil || !got.Equal(now) || string(p) != "payload" {
		t.Fatalf("decode = %v, %q, %v", got, p, err)
	}
	for _, bad := range [][]byte{nil, {1}, {2, 0, 0, 0, 0, 0, 0, 0, 0, 'x'}, make([]byte, 8)} {
		if _, err := decodeEnvelope(bad); !errors.Is(err, errBadEnvelope) {
			t.Errorf("decodeEnvelope(%x) = %v, want errBadEnvelope", bad, err)
		}
	}
}

// FuzzDecodeEnvelope: any bytes from the network either decode into a
// payload that re-encodes to the same bytes, or fail cleanly.
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(encodeEnvelope(time.Unix(0, 0), credNone, nil, []byte("hi")))
	f.Add(encodeEnvelope(time.Unix(0, 0), credPeer, make([]byte, certSize), []byte("hi")))
	f.Add(encodeEnvelope(time.Unix(0, 0), credToken, []byte("a.b.c"), nil))
	f.Add(encodeEnvelope(time.Unix(0, 0), credBoundToken, append(make([]byte, 64), "a.b.c"...), []byte("hi")))
	f.Add(encodeEnvelope(time.Unix(0, 0), credBoundToken, make([]byte, 64), []byte("hi")))
	f.Add([]byte{})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		if len(e.cred) > maxCredential || e.kind > credBoundToken || (e.kind == credBoundToken && len(e.cred) <= 64) || (e.kind == credNone) != (len(e.cred) == 0) {
			t.Fatalf("%x decoded to an envelope the encoder never makes: kind %d, %d credential bytes", b, e.kind, len(e.cred))
		}
		if b[0] == envelopeV1 {
			if again := append([]byte{1}, encodeEnvelope(e.published, credNone, nil, e.payload)[1:9]...); string(append(again, e.payload...)) != string(b) {
				t.Fatalf("v1 round trip changed %x", b)
			}
			return
		}
		if again := encodeEnvelope(e.published, e.kind, e.cred, e.payload); string(again) != string(b) {
			t.Fatalf("round trip changed %x to %x", b, again)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Config){
		"ipfs prefix":    func(c *Config) { c.ProtocolPrefix = "/ipfs" },
		"no slash":       func(c *Config) { c.ProtocolPrefix = "immense" },
		"backoff":        func(c *Config) { c.BootstrapBackoffMax = c.BootstrapBackoffMin / 2 },
		"message size":   func(c *Config) { c.MaxMessageSize = 0 },
		"huge message":   func(c *Config) { c.MaxMessageSize = 1 << 30 },
		"topics":         func(c *Config) { c.MaxTopics = 0 },
		"mode":           func(c *Config) { c.Mode = 7 },
		"check interval": func(c *Config) { c.BootstrapCheckInterval = 0 },
	} {
		c := DefaultConfig()
		mutate(&c)
		if err := c.validate(); err == nil {
			t.Errorf("%s: validate accepted %+v", name, c)
		}
	}
}
