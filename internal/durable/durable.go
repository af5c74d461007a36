// Package durable writes files so that a crash or power cut leaves either
// their old content or all of the new, never a torn mix: a temporary file
// on the same file system, fsync, rename over the target, fsync of the
// directory. The shard store, app keys, the erasure service's key list and
// peer identities use it.
package durable

import (
	"fmt"
	"io"
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

// ReadPrivate reads a file that must stay private to its owner (a key, a
// secret, a token): one that other users can read or write is refused with
// an error saying how to fix it, as is one larger than max bytes (the
// wrong file given by mistake). Errors name path; fs.ErrNotExist is kept
// for callers that create the file when it is missing.
func ReadPrivate(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is accessible by other users (mode %04o): run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes: is it the right file?", path, max)
	}
	return b, nil
}
