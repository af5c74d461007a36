package durable

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, path, 0o640, []byte("new "), []byte("content")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(b, []byte("new content")) {
		t.Fatalf("read %q %v", b, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", fi.Mode())
	}
	// A write that fails (the target is a non-empty directory) leaves the
	// target and no temporary file.
	sub := filepath.Join(dir, "sub")
	if err := os.MkdirAll(filepath.Join(sub, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(sub, []byte("x"), 0o600); err == nil {
		t.Fatal("rename over a non-empty directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("directory holds %d entries after a failed write, want 2 (f, sub)", len(entries))
	}
}

// TestReadPrivate: a private file reads back; one others can read, or one
// over the size cap, is refused; a missing one keeps fs.ErrNotExist.
func TestReadPrivate(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key")
	if err := WriteFile(p, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadPrivate(p, 6); err != nil || string(b) != "secret" {
		t.Fatalf("ReadPrivate = %q, %v", b, err)
	}
	if _, err := ReadPrivate(p, 5); err == nil || !strings.Contains(err.Error(), "larger than 5 bytes") {
		t.Errorf("over the cap: %v", err)
	}
	os.Chmod(p, 0o640)
	if _, err := ReadPrivate(p, 6); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("mode 0640: %v", err)
	}
	if _, err := ReadPrivate(filepath.Join(dir, "missing"), 6); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}
