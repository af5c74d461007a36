// Package topicname is the rule for topic names, written once. The overlay
// owns topics and the WebRTC bridge checks browsers' frames against the
// same rule before anything reaches the overlay; each exposes it as its own
// ValidateTopic wrapping its own ErrInvalidTopic. The rule lives here, a
// leaf, rather than in overlay, so that webrtc (and the Go WebRTC client
// built from it) does not pull in the DHT and gossipsub for twenty lines.
package topicname

import (
	"errors"
	"fmt"
	"strings"
)

// MaxLength is the longest topic name accepted, in bytes.
const MaxLength = 128

// Alphabet describes the bytes a topic name may contain, for messages.
const Alphabet = "[A-Za-z0-9._:/-]"

// InternalPrefix starts the names of the topics nodes keep for themselves:
// a topic's presence announcements go on "_presence:" + the topic. An app
// should not start its own topics' names with it: the topic listing for
// apps (GET /v1/topics) leaves such topics out.
const InternalPrefix = "_"

// Internal reports whether name is one of the nodes' own topics (it starts
// with InternalPrefix).
func Internal(name string) bool { return strings.HasPrefix(name, InternalPrefix) }

// Check returns nil if name is 1 to MaxLength bytes of Alphabet, or an
// error saying what is wrong with it (without a sentinel: callers wrap
// their own). The alphabet is deliberately small: topic names end up in
// URLs, metric labels, log lines and DHT keys, and none of those should
// need escaping.
func Check(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	if len(name) > MaxLength {
		return fmt.Errorf("%d bytes, at most %d allowed", len(name), MaxLength)
	}
	if i := InvalidByte(name); i >= 0 {
		return fmt.Errorf("byte %q at offset %d is not one of %s", name[i], i, Alphabet)
	}
	return nil
}

// InvalidByte returns the offset of the first byte of s outside Alphabet,
// or -1. Unlike Check it accepts any length, for callers checking a part
// of a name (a token's "chat/*" pattern).
func InvalidByte(s string) int {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == ':', c == '/', c == '-':
		default:
			return i
		}
	}
	return -1
}

// CheckPattern checks a topic pattern: an exact topic name, or a prefix of
// one followed by a single trailing "*" ("chat/*", "*"), which matches every
// topic starting with the prefix. A "*" anywhere else is refused rather than
// guessed at. Browser tokens' read and write lists and the overlay's open
// topics are patterns.
func CheckPattern(p string) error {
	prefix, wildcard := strings.CutSuffix(p, "*")
	if !wildcard {
		return Check(p)
	}
	if len(prefix) >= MaxLength {
		return fmt.Errorf("pattern %q: prefix longer than %d bytes", p, MaxLength-1)
	}
	if i := InvalidByte(prefix); i >= 0 {
		return fmt.Errorf("pattern %q: byte %q at offset %d (only a single trailing * is allowed)", p, prefix[i], i)
	}
	return nil
}

// Match reports whether topic matches any of patterns (each accepted by
// CheckPattern).
func Match(patterns []string, topic string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(topic, prefix) {
				return true
			}
		} else if p == topic {
			return true
		}
	}
	return false
}
