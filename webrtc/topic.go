package webrtc

import (
	"fmt"

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
	if err := topicname.CheckPattern(p); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidTopic, err)
	}
	return nil
}

// matchTopic reports whether topic matches any of patterns (validated by
// validatePattern).
func matchTopic(patterns []string, topic string) bool { return topicname.Match(patterns, topic) }
