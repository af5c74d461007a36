package overlay

import "fmt"

// MaxTopicLength is the longest topic name accepted, in bytes.
const MaxTopicLength = 128

// wirePrefix is prepended to topic names to form gossipsub topic names.
const wirePrefix = "immense/"

// ValidateTopic reports whether name is an acceptable topic name: 1 to
// MaxTopicLength bytes of ASCII letters, digits and . _ : / -.
// The alphabet is deliberately small: topic names end up in URLs, metric
// labels, log lines and DHT keys, and none of those should need escaping.
func ValidateTopic(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrInvalidTopic)
	}
	if len(name) > MaxTopicLength {
		return fmt.Errorf("%w: %d bytes, at most %d allowed", ErrInvalidTopic, len(name), MaxTopicLength)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == ':', c == '/', c == '-':
		default:
			return fmt.Errorf("%w: byte %q at offset %d is not one of [A-Za-z0-9._:/-]", ErrInvalidTopic, c, i)
		}
	}
	return nil
}

func wireTopic(name string) string { return wirePrefix + name }
