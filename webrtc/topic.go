package webrtc

import (
	"fmt"
	"strings"

	"github.com/immense-p2p/immense/internal/topicname"
)

// MaxTopicLength is the longest topic name, in bytes.
const MaxTopicLength = topicname.MaxLength

// ValidateTopic reports whether name is an acceptable topic name: 1 to
// MaxTopicLength bytes of ASCII letters, digits and . _ : / -. It is the
// overlay's rule (internal/topicname), checked here too so that a browser
// gets a precise error frame before anything reaches the overlay.
func ValidateTopic(name string) error {
	if err := topicname.Check(name); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidTopic, err)
	}
	return nil
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
	if i := topicname.InvalidByte(prefix); i >= 0 {
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
