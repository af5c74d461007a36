package erasure

import "fmt"

// MaxKeyLen is the longest object key, in bytes.
const MaxKeyLen = 256

// ValidateKey checks an object key: 1 to MaxKeyLen bytes of
// [A-Za-z0-9._:-]. No slash, so that an HTTP path such as
// /v1/state/{key}/health is never ambiguous.
func ValidateKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: want 1 to %d bytes, got %d", ErrInvalidKey, MaxKeyLen, len(key))
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return fmt.Errorf("%w: byte %q at offset %d is not one of [A-Za-z0-9._:-]", ErrInvalidKey, c, i)
		}
	}
	return nil
}
