package overlay

import (
	"fmt"

	"github.com/immense-p2p/immense/internal/topicname"
)

// MaxTopicLength is the longest topic name accepted, in bytes.
const MaxTopicLength = topicname.MaxLength

// wirePrefix is prepended to topic names to form gossipsub topic names.
const wirePrefix = "immense/"

// ValidateTopic reports whether name is an acceptable topic name: 1 to
// MaxTopicLength bytes of ASCII letters, digits and . _ : / -. The rule is
// internal/topicname's, which webrtc checks browsers' frames with too.
func ValidateTopic(name string) error {
	if err := topicname.Check(name); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidTopic, err)
	}
	return nil
}

func wireTopic(name string) string { return wirePrefix + name }
