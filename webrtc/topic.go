package webrtc

import (
	"fmt"
	"strings"
)

// MaxTopicLength is the longest topic name, in bytes.
const MaxTopicLength = 128

// ValidateTopic reports whether name is an acceptable topic name: 1 to
// MaxTopicLength bytes of ASCII letters, digits and . _ : / -. These are
// the overlay's rules; they are repeated here so that a browser gets a
// precise error frame before anything reaches the overlay.
func ValidateTopic(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrInvalidTopic)
	}
	if len(name) > MaxTopicLength {
		return fmt.Errorf("%w: %d bytes, at most %d allowed", ErrInvalidTopic, len(name), MaxTopicLength)
	}
	if i := invalidTopicByte(name); i >= 0 {
		return fmt.Errorf("%w: byte %q at offset %d is not one of [A-Za-z0-9._:/-]", ErrInvalidTopic, name[i], i)
	}
	return nil
}

// invalidTopicByte returns the offset of the first byte of s outside the
// topic alphabet, or -1.
func invalidTopicByte(s string) int {
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

// validatePattern checks a topic pattern of a token: either an exact topic
// name, or a prefix of one followed by a single trailing "*" ("chat/*",
// "*"). A "*" anywhere else is refused rather than guessed at.
func validatePattern(p string) error {
	prefix, wildcard := strings.CutSuffix(p, "*")
	if !wildcard {
		return ValidateTopic(p)
	}
	if len(prefix) >= MaxTopicLength {
		return fmt.Errorf("%w: pattern %q: prefix longer than %d bytes", ErrInvalidTopic, p, MaxTopicLength-1)
	}
	if i := invalidTopicByte(prefix); i >= 0 {
		return fmt.Errorf("%w: pattern %q: byte %q at offset %d (only a single trailing * is allowed)", ErrInvalidTopic, p, prefix[i], i)
	}
	return nil
}

// matchTopic reports whether topic matches any of patterns (validated by
// validatePattern).
func matchTopic(patterns []string, topic string) bool {
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
