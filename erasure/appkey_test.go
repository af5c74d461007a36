package erasure

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAppKeyRoundTrip(t *testing.T) {
	k, err := GenerateAppKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "app.key")
	if err := SaveAppKey(path, k); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := LoadAppKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(k) || got.Namespace() != k.Namespace() {
		t.Fatal("loaded key differs")
	}
	if got.ObjectID("a") != k.ObjectID("a") || k.ObjectID("a") == k.ObjectID("b") {
		t.Fatal("object ids not deterministic or not distinct")
	}
	if NamespaceOf(k.PublicKey()) != k.Namespace() {
		t.Fatal("namespace is not the hash of the public key")
	}
	// No temp file left behind.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("%d entries in key dir, want 1", len(entries))
	}
}

func TestLoadOrGenerateAppKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "own.key")
	k1, err := LoadOrGenerateAppKey(path)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := LoadOrGenerateAppKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Fatal("second call generated a new key instead of loading")
	}
	other, _ := GenerateAppKey()
	if k1.Equal(other) || k1.Namespace() == other.Namespace() {
		t.Fatal("two generated keys are equal")
	}
}

func TestParseAppKeyRejects(t *testing.T) {
	k, _ := GenerateAppKey()
	good, _ := k.Marshal()
	cases := map[string]string{
		"empty":         "",
		"not json":      "hello",
		"wrong type":    strings.Replace(string(good), appKeyFileType, "other", 1),
		"wrong version": strings.Replace(string(good), `"version": 1`, `"version": 2`, 1),
		"unknown field": strings.Replace(string(good), `"version": 1`, `"version": 1, "x": 1`, 1),
		"short secret":  strings.Replace(string(good), `"secret": "`, `"secret": "AAAA`, 1),
		"bad namespace": strings.Replace(string(good), k.Namespace().String(), strings.Repeat("0", 64), 1),
		"trailing":      string(good) + "{}",
		"huge":          strings.Repeat(" ", maxAppKeyFile+1),
	}
	for name, in := range cases {
		if _, err := ParseAppKey([]byte(in)); !errors.Is(err, ErrInvalidAppKey) {
			t.Errorf("%s: err %v, want ErrInvalidAppKey", name, err)
		}
	}
	if _, err := ParseAppKey(good); err != nil {
		t.Fatalf("good key rejected: %v", err)
	}
	if _, err := LoadAppKey(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// TestAppKeyFileMode: an app key other users can read is refused, as the
// identity is: whoever reads it can read and write the namespace.
func TestAppKeyFileMode(t *testing.T) {
	k, _ := GenerateAppKey()
	path := filepath.Join(t.TempDir(), "app.key")
	if err := SaveAppKey(path, k); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAppKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("mode 0640: %v", err)
	}
}
