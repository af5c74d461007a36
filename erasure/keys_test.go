package erasure

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateKey(t *testing.T) {
	for _, c := range []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"user:42.settings_v2-old", true},
		{strings.Repeat("k", MaxKeyLen), true},
		{"", false},
		{strings.Repeat("k", MaxKeyLen+1), false},
		{"a/b", false}, // would make /v1/state/{key}/health ambiguous
		{"a b", false},
		{"clé", false},
		{"a\x00", false},
	} {
		err := ValidateKey(c.key)
		if (err == nil) != c.ok {
			t.Errorf("ValidateKey(%.20q) = %v, want ok %v", c.key, err, c.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidateKey(%.20q) = %v, not ErrInvalidKey", c.key, err)
		}
	}
}
