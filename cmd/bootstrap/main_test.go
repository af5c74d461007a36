package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestHelpOffersNoTopicFlags: a bootstrap node joins no topic and serves
// no topic API, so --help offers none of the flags about topics.
func TestHelpOffersNoTopicFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"-h"}, &out, &errb); code != 0 {
		t.Fatalf("-h: exit %d: %s", code, errb.String())
	}
	help := errb.String()
	if !strings.Contains(help, "\n  -max-conns int") {
		t.Fatalf("-h printed no flags:\n%s", help)
	}
	for _, name := range []string{"presence", "open-topics", "app-pub", "require-bound-tokens"} {
		if strings.Contains(help, "\n  -"+name+" ") || strings.Contains(help, "\n  -"+name+"\n") {
			t.Errorf("-h lists --%s", name)
		}
	}
}
