package topicname

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		want string // "" for accepted
	}{
		{"chat", ""},
		{"app/room-1.v2:events_x", ""},
		{strings.Repeat("a", MaxLength), ""},
		{"", "empty"},
		{strings.Repeat("a", MaxLength+1), "129 bytes, at most 128 allowed"},
		{"with space", `byte ' ' at offset 4 is not one of [A-Za-z0-9._:/-]`},
		{"nul\x00", `byte '\x00' at offset 3 is not one of [A-Za-z0-9._:/-]`},
		{"é", `byte 'Ã' at offset 0 is not one of [A-Za-z0-9._:/-]`},
		{"chat/*", `byte '*' at offset 5 is not one of [A-Za-z0-9._:/-]`},
	} {
		err := Check(tc.name)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("Check(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestInvalidByte(t *testing.T) {
	for s, want := range map[string]int{"": -1, "chat/": -1, "a b": 1, "*": 0} {
		if got := InvalidByte(s); got != want {
			t.Errorf("InvalidByte(%q) = %d, want %d", s, got, want)
		}
	}
}

func TestPatterns(t *testing.T) {
	for p, ok := range map[string]bool{
		"chat": true, "chat/*": true, "room*": true, "*": true,
		"a*b": false, "**": false, "*a": false, "": false, "with space*": false,
		strings.Repeat("a", MaxLength) + "*": false,
	} {
		if err := CheckPattern(p); (err == nil) != ok {
			t.Errorf("CheckPattern(%q) = %v, want ok=%v", p, err, ok)
		}
	}
	for topic, want := range map[string]bool{
		"chat": true, "chat/lobby": true, "room42": true, "news": false, "cha": false,
	} {
		if got := Match([]string{"chat", "chat/*", "room*"}, topic); got != want {
			t.Errorf("Match(%q) = %v, want %v", topic, got, want)
		}
	}
	if !Match([]string{"*"}, "anything") || Match(nil, "x") {
		t.Error(`"*" must match everything and no pattern nothing`)
	}
}
