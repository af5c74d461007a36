// Package durable writes files so that a crash or power cut leaves either
// their old content or all of the new, never a torn mix: a temporary file
// on the same file system, fsync, rename over the target, fsync of the
// directory. The shard store, app keys, the erasure service's key list and
// peer identities use it.
package durable

import (
	"os"
	"path/filepath"
)

// WriteFile writes data to path durably, with permissions perm.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return Write(filepath.Dir(path), path, perm, data)
}

// Write writes parts, in order, to a temporary file in tmpDir (which must
// be on path's file system), fsyncs it, renames it over path and fsyncs
// path's directory. A failed write leaves no temporary file behind.
func Write(tmpDir, path string, perm os.FileMode, parts ...[]byte) error {
	tmp, err := os.CreateTemp(tmpDir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := tmp.Write(p); err != nil {
			return err
		}
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return err
	}
	ok = true
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory, so that a rename, creation or unlink in it
// is durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
