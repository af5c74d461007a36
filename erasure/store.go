package erasure

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/immense-p2p/immense/internal/durable"
)

// ShardRef says which object a stored shard claims to belong to. It comes
// from the peer that stored the shard and is not trusted for anything but
// garbage collection, which checks it against the signed manifest.
type ShardRef struct {
	Namespace NamespaceID
	Object    ObjectID
	Version   uint64 // manifest data version the shard was written for
	Segment   uint32
	Index     uint16
}

// ShardInfo describes a shard in a Store.
type ShardInfo struct {
	Hash Hash
	// Ref is the first of Refs. During GC (KeepFunc) it is the one ref
	// being decided on, and Stored is when that ref was added.
	Ref ShardRef
	// Refs are every object that stored these bytes here, at least one:
	// the same bytes can be claimed by several namespaces, and each keeps
	// the shard until its own owner deletes it or GC finds its manifest
	// no longer places it here (see MaxShardRefs).
	Refs   []StoredRef
	Size   int64     // shard bytes, without the file header
	Stored time.Time // when the file was written (its mtime)
	// refsFile: the refs are in a <hash>.refs file beside the shard.
	refsFile bool
}

// diskBytes is what the shard costs against the quota: its file and, if
// it has one, its refs file, each rounded up to whole diskBlocks.
func (i *ShardInfo) diskBytes() int64 {
	n := fileCost(i.Size + shardHeaderLen)
	if i.refsFile {
		n += fileCost(refsFileLen(len(i.Refs)))
	}
	return n
}

// diskBlock is the least a file costs against the quota: a file takes a
// filesystem block on disk however small it is, besides its entry in the
// index. Counted in bytes, a stranger's 4-byte shards were charged 91
// bytes each while they took 4 KiB of disk and 0.5 KiB of memory.
const diskBlock = 4096

// fileCost is what a file of n bytes costs against the quota.
func fileCost(n int64) int64 { return (n + diskBlock - 1) / diskBlock * diskBlock }

// clone returns info with its own copy of Refs.
func (i ShardInfo) clone() ShardInfo {
	i.Refs = append([]StoredRef(nil), i.Refs...)
	return i
}

// StoreConfig configures a Store.
type StoreConfig struct {
	// Dir holds the store: Dir/shards/<2 hex>/<64 hex> files and Dir/tmp.
	Dir string
	// Quota caps the bytes of shard files (headers included); the store
	// never holds more. Default 10 GiB, the --storage-quota default.
	Quota int64
	// VerifyOnOpen makes OpenStore read and hash every shard file, removing
	// those that do not verify. Default true: it is what makes a crash at
	// any point leave no unverifiable shard, at the cost of reading the
	// whole store at startup (about 1 s per GiB with SHA-NI). With it off,
	// OpenStore checks headers and sizes only, and reads still verify.
	VerifyOnOpen bool
	// Logger defaults to slog.Default() with component=erasure.store.
	Logger *slog.Logger
	// Now stamps ShardInfo.Stored of new shards (shards found at open are
	// stamped with their file's mtime). Default time.Now; GC compares it
	// with the service's clock, so both must be the same clock.
	Now func() time.Time
}

// DefaultStoreConfig returns the defaults for a store in dir.
func DefaultStoreConfig(dir string) StoreConfig {
	return StoreConfig{Dir: dir, Quota: 10 << 30, VerifyOnOpen: true}
}

func (c *StoreConfig) validate() error {
	if c.Dir == "" {
		return errors.New("store config: Dir is empty")
	}
	if c.Quota < 0 {
		return fmt.Errorf("store config: Quota %d is negative", c.Quota)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Logger = c.Logger.With("component", "erasure.store")
	return nil
}

// Shard file format: a fixed header, then the shard bytes. The header
// carries the ShardRef (needed by GC) and a CRC-32C of itself; the shard
// bytes are checked against the SHA-256 that names the file.
const (
	shardFileVersion = 1
	shardHeaderLen   = 4 + 1 + 32 + 32 + 8 + 4 + 2 + 4
	tmpDirName       = "tmp"
	shardsDirName    = "shards"
)

var (
	shardMagic = [4]byte{'I', 'M', 'S', 'H'}
	crcTable   = crc32.MakeTable(crc32.Castagnoli)
)

func encodeShardHeader(ref ShardRef) []byte {
	b := make([]byte, 0, shardHeaderLen)
	b = append(b, shardMagic[:]...)
	b = append(b, shardFileVersion)
	b = append(b, ref.Namespace[:]...)
	b = append(b, ref.Object[:]...)
	b = binary.BigEndian.AppendUint64(b, ref.Version)
	b = binary.BigEndian.AppendUint32(b, ref.Segment)
	b = binary.BigEndian.AppendUint16(b, ref.Index)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crcTable))
}

func decodeShardHeader(b []byte) (ShardRef, error) {
	var ref ShardRef
	if len(b) < shardHeaderLen {
		return ref, errors.New("short header")
	}
	b = b[:shardHeaderLen]
	if !bytes.Equal(b[:4], shardMagic[:]) || b[4] != shardFileVersion {
		return ref, errors.New("bad magic or version")
	}
	if crc32.Checksum(b[:shardHeaderLen-4], crcTable) != binary.BigEndian.Uint32(b[shardHeaderLen-4:]) {
		return ref, errors.New("header checksum mismatch")
	}
	copy(ref.Namespace[:], b[5:37])
	copy(ref.Object[:], b[37:69])
	ref.Version = binary.BigEndian.Uint64(b[69:77])
	ref.Segment = binary.BigEndian.Uint32(b[77:81])
	ref.Index = binary.BigEndian.Uint16(b[81:83])
	return ref, nil
}

// Store keeps shards as files on disk. Writes go to a temp file that is
// fsynced and atomically renamed into place, and the directory is fsynced,
// so a crash leaves each shard either absent or complete. Reads verify the
// content hash; a file that fails is removed and reported. The quota is
// reserved under the lock before a write starts, so concurrent writes can
// never take the store over it. A Store is safe for concurrent use.
type Store struct {
	cfg StoreConfig
	log *slog.Logger

	mu      sync.Mutex
	index   map[Hash]ShardInfo
	objects map[objectKey]int // refs in index per object, kept by setIndex
	pending map[Hash]bool
	used    int64 // bytes of committed files plus reservations
	closed  bool
}

// objectKey names an object across namespaces.
type objectKey struct {
	ns  NamespaceID
	obj ObjectID
}

// setIndex records info as h's entry, keeping the per-object ref counts
// that Counts reports without a scan. s.mu is held, or s is not shared
// yet (OpenStore).
func (s *Store) setIndex(h Hash, info ShardInfo) {
	s.countRefs(s.index[h].Refs, -1)
	s.countRefs(info.Refs, +1)
	s.index[h] = info
}

// dropIndex forgets h's entry; s.mu is held.
func (s *Store) dropIndex(h Hash) {
	s.countRefs(s.index[h].Refs, -1)
	delete(s.index, h)
}

func (s *Store) countRefs(refs []StoredRef, d int) {
	for _, r := range refs {
		k := objectKey{r.Namespace, r.Object}
		if n := s.objects[k] + d; n > 0 {
			s.objects[k] = n
		} else {
			delete(s.objects, k)
		}
	}
}

// OpenStore opens (creating if needed) the store in cfg.Dir. It first
// removes leftover temp files and any shard file it cannot verify: see
// StoreConfig.VerifyOnOpen.
func OpenStore(cfg StoreConfig) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, log: cfg.Logger, index: map[Hash]ShardInfo{}, objects: map[objectKey]int{}, pending: map[Hash]bool{}}
	for _, d := range []string{cfg.Dir, s.tmpDir(), s.shardsDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	if err := s.scan(); err != nil {
		return nil, fmt.Errorf("open store %s: %w", cfg.Dir, err)
	}
	if s.used > cfg.Quota {
		s.log.Warn("store holds more than its quota; refusing new shards until it shrinks",
			"used", s.used, "quota", cfg.Quota)
	}
	return s, nil
}

func (s *Store) tmpDir() string    { return filepath.Join(s.cfg.Dir, tmpDirName) }
func (s *Store) shardsDir() string { return filepath.Join(s.cfg.Dir, shardsDirName) }

func (s *Store) path(h Hash) string {
	x := h.String()
	return filepath.Join(s.shardsDir(), x[:2], x)
}

func (s *Store) refsPath(h Hash) string { return s.path(h) + refsSuffix }

// scan rebuilds the index from disk, removing temp files (writes a crash
// interrupted) and files that are not valid shards.
func (s *Store) scan() error {
	tmps, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return err
	}
	for _, e := range tmps {
		s.log.Info("removing leftover temp file", "file", e.Name())
		if err := os.RemoveAll(filepath.Join(s.tmpDir(), e.Name())); err != nil {
			return err
		}
	}
	if len(tmps) > 0 {
		if err := durable.SyncDir(s.tmpDir()); err != nil {
			return err
		}
	}
	fans, err := os.ReadDir(s.shardsDir())
	if err != nil {
		return err
	}
	for _, fan := range fans {
		dir := filepath.Join(s.shardsDir(), fan.Name())
		if !fan.IsDir() || len(fan.Name()) != 2 {
			s.log.Warn("removing unexpected entry in store", "path", dir)
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
			continue
		}
		files, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		removed := false
		var refsFiles []fs.DirEntry
		for _, f := range files {
			p := filepath.Join(dir, f.Name())
			if strings.HasSuffix(f.Name(), refsSuffix) {
				refsFiles = append(refsFiles, f) // once the shards are known
				continue
			}
			info, err := s.load(fan.Name(), f)
			if err != nil {
				s.log.Warn("removing unverifiable shard file", "path", p, "err", err)
				if err := os.RemoveAll(p); err != nil {
					return err
				}
				removed = true
				continue
			}
			s.setIndex(info.Hash, info)
			s.used += info.diskBytes()
		}
		for _, f := range refsFiles {
			if err := s.loadRefs(dir, f); err != nil {
				p := filepath.Join(dir, f.Name())
				s.log.Warn("removing refs file; the shard keeps the ref in its header", "path", p, "err", err)
				if err := os.RemoveAll(p); err != nil {
					return err
				}
				removed = true
			}
		}
		if removed {
			if err := durable.SyncDir(dir); err != nil {
				return err
			}
		}
	}
	return nil
}

// loadRefs applies a refs file found by scan to its shard, which must
// have been loaded.
func (s *Store) loadRefs(dir string, f fs.DirEntry) error {
	var h Hash
	name := strings.TrimSuffix(f.Name(), refsSuffix)
	if _, err := hex.Decode(h[:], []byte(name)); err != nil || h.String() != name || !f.Type().IsRegular() {
		return errors.New("not a refs file name")
	}
	info, ok := s.index[h]
	if !ok {
		return errors.New("no shard file for it (a removal a crash interrupted)")
	}
	b, err := os.ReadFile(filepath.Join(dir, f.Name()))
	if err != nil {
		return err
	}
	refs, err := decodeRefs(b)
	if err != nil {
		return err
	}
	s.used -= info.diskBytes()
	info.Refs, info.Ref, info.refsFile = refs, refs[0].ShardRef, true
	s.used += info.diskBytes()
	s.setIndex(h, info)
	return nil
}

// load checks one file found by scan.
func (s *Store) load(fan string, f fs.DirEntry) (ShardInfo, error) {
	var info ShardInfo
	name := f.Name()
	if !f.Type().IsRegular() || len(name) != 64 || name[:2] != fan {
		return info, errors.New("not a shard file name")
	}
	if _, err := hex.Decode(info.Hash[:], []byte(name)); err != nil || info.Hash.String() != name {
		return info, errors.New("not a shard file name")
	}
	fi, err := f.Info()
	if err != nil {
		return info, err
	}
	info.Stored = fi.ModTime()
	if s.cfg.VerifyOnOpen {
		ref, data, err := s.readFile(info.Hash)
		if err != nil {
			return info, err
		}
		info.Ref, info.Size = ref, int64(len(data))
		info.Refs = []StoredRef{{ShardRef: ref, Added: info.Stored}}
		return info, nil
	}
	if fi.Size() < shardHeaderLen || fi.Size() > shardHeaderLen+MaxShardSize {
		return info, fmt.Errorf("size %d out of range", fi.Size())
	}
	fh, err := os.Open(s.path(info.Hash))
	if err != nil {
		return info, err
	}
	defer fh.Close()
	hdr := make([]byte, shardHeaderLen)
	if _, err := io.ReadFull(fh, hdr); err != nil {
		return info, err
	}
	if info.Ref, err = decodeShardHeader(hdr); err != nil {
		return info, err
	}
	info.Size = fi.Size() - shardHeaderLen
	info.Refs = []StoredRef{{ShardRef: info.Ref, Added: info.Stored}}
	return info, nil
}

// readFile reads and fully verifies the shard file of h.
func (s *Store) readFile(h Hash) (ShardRef, []byte, error) {
	f, err := os.Open(s.path(h))
	if err != nil {
		return ShardRef{}, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ShardRef{}, nil, err
	}
	if fi.Size() < shardHeaderLen || fi.Size() > shardHeaderLen+MaxShardSize {
		return ShardRef{}, nil, fmt.Errorf("%w: file size %d out of range", ErrCorrupt, fi.Size())
	}
	b := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		return ShardRef{}, nil, err
	}
	ref, err := decodeShardHeader(b)
	if err != nil {
		return ShardRef{}, nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	data := b[shardHeaderLen:]
	if HashShard(data) != h {
		return ShardRef{}, nil, fmt.Errorf("%w: content does not match its hash", ErrCorrupt)
	}
	return ref, data, nil
}

// Put stores data under its hash h for ref. It returns ErrHashMismatch if
// data does not hash to h, ErrQuotaExceeded if the store cannot take it
// without going over its quota, and ErrBusy if the same shard is being
// written right now. Storing a shard that is already present adds ref to
// its refs (durably, before Put returns) unless it is there already;
// ErrTooManyRefs if it has MaxShardRefs.
func (s *Store) Put(h Hash, ref ShardRef, data []byte) error {
	if len(data) > MaxShardSize {
		return fmt.Errorf("put shard %s: %d bytes, over %d: %w", h, len(data), MaxShardSize, ErrQuotaExceeded)
	}
	if HashShard(data) != h {
		return fmt.Errorf("put shard %s: %w", h, ErrHashMismatch)
	}
	need := fileCost(int64(len(data)) + shardHeaderLen)
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case s.pending[h]:
		s.mu.Unlock()
		return fmt.Errorf("put shard %s: being written: %w", h, ErrBusy)
	}
	if info, ok := s.index[h]; ok {
		defer s.mu.Unlock()
		return s.addRef(info, ref)
	}
	if s.used+need > s.cfg.Quota {
		used := s.used
		s.mu.Unlock()
		return fmt.Errorf("put shard %s: %w (%d of %d bytes used, shard needs %d)", h, ErrQuotaExceeded, used, s.cfg.Quota, need)
	}
	s.used += need
	s.pending[h] = true
	s.mu.Unlock()

	err := s.write(h, ref, data)
	stored := s.cfg.Now()

	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, h)
	if err != nil {
		s.used -= need
		return fmt.Errorf("put shard %s: %w", h, err)
	}
	s.setIndex(h, ShardInfo{Hash: h, Ref: ref, Refs: []StoredRef{{ShardRef: ref, Added: stored}},
		Size: int64(len(data)), Stored: stored})
	return nil
}

// refRenewAge is how old a ref must be for a store of it again to renew
// its Added time.
const refRenewAge = time.Minute

// addRef adds ref to the stored shard info, writing its refs file. s.mu
// is held on entry and on return, but not while writing: the shard is
// marked pending meanwhile, so no other change to it runs.
//
// Storing a ref that is there already renews its Added time (at most once
// per refRenewAge, each renewal being a durable write): the writer placed
// the shard here again, for a newer manifest than GC may have looked up,
// and GCMinAge must protect it from that moment, not from the first store.
func (s *Store) addRef(info ShardInfo, ref ShardRef) error {
	h := info.Hash
	now := s.cfg.Now()
	next := info.clone()
	renew := false
	if i := refIndex(info.Refs, ref); i >= 0 {
		if now.Sub(info.Refs[i].Added) < refRenewAge {
			return nil
		}
		next.Refs[i].Added = now
		renew = true
	} else {
		if len(info.Refs) >= MaxShardRefs {
			return fmt.Errorf("put shard %s: %w (%d)", h, ErrTooManyRefs, MaxShardRefs)
		}
		next.Refs = append(next.Refs, StoredRef{ShardRef: ref, Added: now})
	}
	next.refsFile = true
	need := next.diskBytes() - info.diskBytes()
	if s.used+need > s.cfg.Quota {
		if renew {
			// The shard is here: the store succeeds, the time stays (a
			// renewal that needs a refs file the quota has no room for).
			return nil
		}
		return fmt.Errorf("put shard %s: add ref: %w (%d of %d bytes used, ref needs %d)", h, ErrQuotaExceeded, s.used, s.cfg.Quota, need)
	}
	s.used += need
	s.pending[h] = true
	s.mu.Unlock()
	err := s.writeRefs(h, next.Refs)
	s.mu.Lock()
	delete(s.pending, h)
	if err != nil {
		s.used -= need
		if renew {
			s.log.Warn("could not renew a shard's ref time; keeping the old one", "hash", h, "err", err)
			return nil
		}
		return fmt.Errorf("put shard %s: add ref: %w", h, err)
	}
	s.setIndex(h, next)
	return nil
}

// writeRefs replaces the refs file of h durably.
func (s *Store) writeRefs(h Hash, refs []StoredRef) error {
	return durable.Write(s.tmpDir(), s.refsPath(h), 0o600, encodeRefs(refs))
}

// write puts the file in place durably: temp file, fsync, rename, fsync dir.
func (s *Store) write(h Hash, ref ShardRef, data []byte) error {
	final := s.path(h)
	dir := filepath.Dir(final)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := durable.SyncDir(s.shardsDir()); err != nil {
			return err
		}
	}
	// The temp file lives in the store's tmp directory, which Open empties:
	// a crash mid-write leaves nothing in the shard tree.
	return durable.Write(s.tmpDir(), final, 0o600, encodeShardHeader(ref), data)
}

// Get returns the shard stored under h, verified. A shard that fails
// verification is removed and ErrCorrupt returned; a missing one gives
// ErrNotFound.
func (s *Store) Get(h Hash) (ShardInfo, []byte, error) {
	s.mu.Lock()
	info, ok := s.index[h]
	info = info.clone()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ShardInfo{}, nil, ErrClosed
	}
	if !ok {
		return ShardInfo{}, nil, fmt.Errorf("shard %s: %w", h, ErrNotFound)
	}
	_, data, err := s.readFile(h)
	if err != nil {
		s.drop(h, err)
		if errors.Is(err, fs.ErrNotExist) {
			return ShardInfo{}, nil, fmt.Errorf("shard %s: %w", h, ErrNotFound)
		}
		return ShardInfo{}, nil, fmt.Errorf("shard %s: %w", h, err)
	}
	return info, data, nil
}

// Verify reads and checks the shard under h, as Get does, without
// returning its bytes.
func (s *Store) Verify(h Hash) error {
	_, _, err := s.Get(h)
	return err
}

// drop forgets and removes a shard that failed to read.
func (s *Store) drop(h Hash, cause error) {
	s.log.Warn("removing corrupt or vanished shard", "hash", h, "err", cause)
	if err := s.remove(h); err != nil && !errors.Is(err, ErrNotFound) {
		s.log.Error("remove corrupt shard", "hash", h, "err", err)
	}
}

// Stat returns what the index knows about h without reading the file.
func (s *Store) Stat(h Hash) (ShardInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info, ok := s.index[h]
	return info.clone(), ok
}

// Delete removes the shard under h with all its refs; deleting a missing
// shard gives ErrNotFound. A delete on behalf of a namespace is Unref.
func (s *Store) Delete(h Hash) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if err := s.remove(h); err != nil {
		return fmt.Errorf("delete shard %s: %w", h, err)
	}
	return nil
}

// Unref removes the refs of namespace ns from the shard under h, and the
// shard itself when no other namespace's ref is left. It reports whether
// the shard went. A shard without a ref of ns gives ErrNotFound.
func (s *Store) Unref(h Hash, ns NamespaceID) (bool, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return false, ErrClosed
	}
	n := 0
	gone, _, err := s.dropRefs(h, func(r StoredRef) bool {
		if r.Namespace == ns {
			n++
			return true
		}
		return false
	})
	if err == nil && n == 0 {
		err = fmt.Errorf("no ref of namespace %s: %w", ns, ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("delete shard %s: %w", h, err)
	}
	return gone, nil
}

// dropRefs removes the refs of h for which drop says true, and the shard
// when none is left. It reports whether the shard went and the bytes
// freed; dropping no ref changes nothing.
func (s *Store) dropRefs(h Hash, drop func(StoredRef) bool) (gone bool, freed int64, err error) {
	s.mu.Lock()
	info, ok := s.index[h]
	switch {
	case !ok:
		s.mu.Unlock()
		return false, 0, ErrNotFound
	case s.pending[h]:
		s.mu.Unlock()
		return false, 0, fmt.Errorf("being written: %w", ErrBusy)
	}
	next := info.clone()
	next.Refs = next.Refs[:0]
	for _, r := range info.Refs {
		if !drop(r) {
			next.Refs = append(next.Refs, r)
		}
	}
	switch len(next.Refs) {
	case len(info.Refs):
		s.mu.Unlock()
		return false, 0, nil
	case 0:
		s.mu.Unlock()
		freed = info.diskBytes()
		if err := s.remove(h); err != nil {
			return false, 0, err
		}
		return true, freed, nil
	}
	next.Ref = next.Refs[0].ShardRef
	freed = info.diskBytes() - next.diskBytes()
	s.pending[h] = true
	s.mu.Unlock()
	err = s.writeRefs(h, next.Refs)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, h)
	if err != nil {
		return false, 0, err
	}
	s.setIndex(h, next)
	s.used -= freed
	return false, freed, nil
}

// remove forgets h and removes its files: the shard file first, so that
// a crash in between leaves only a refs file without a shard, which the
// next open removes.
func (s *Store) remove(h Hash) error {
	s.mu.Lock()
	info, ok := s.index[h]
	pending := s.pending[h]
	if ok && !pending {
		s.dropIndex(h)
		s.used -= info.diskBytes()
	}
	s.mu.Unlock()
	switch {
	case !ok:
		return ErrNotFound
	case pending:
		return fmt.Errorf("being written: %w", ErrBusy)
	}
	p := s.path(h)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if info.refsFile {
		if err := os.Remove(s.refsPath(h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return durable.SyncDir(filepath.Dir(p))
}

// List returns every shard in the store, sorted by hash.
func (s *Store) List() []ShardInfo {
	s.mu.Lock()
	out := make([]ShardInfo, 0, len(s.index))
	for _, info := range s.index {
		out = append(out, info.clone())
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].Hash[:], out[j].Hash[:]) < 0 })
	return out
}

// Len returns the number of shards stored.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.index)
}

// Counts returns the number of shards stored and of distinct objects
// (namespace and object id) they hold refs of, without listing them: a
// status page can ask every second.
func (s *Store) Counts() (shards, objects int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.index), len(s.objects)
}

// Used returns the bytes held, in-flight writes included.
func (s *Store) Used() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}

// Quota returns the configured quota in bytes.
func (s *Store) Quota() int64 { return s.cfg.Quota }

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.cfg.Dir }

// KeepFunc decides during GC whether a ref of a shard is still needed:
// info.Ref is that ref and info.Stored when it was added. An error keeps
// the ref: GC never deletes on doubt.
type KeepFunc func(ctx context.Context, info ShardInfo) (bool, error)

// GC asks keep about every ref of every shard, drops the refs it says
// false for, and removes a shard once none of its refs is left. It
// returns how many shards it removed and the bytes freed. The caller's
// keep function typically looks up the ref's manifest (see
// Service.CollectGarbage).
func (s *Store) GC(ctx context.Context, keep KeepFunc) (removed int, freed int64, err error) {
	for _, info := range s.List() {
		drop := map[ShardRef]bool{}
		for _, r := range info.Refs {
			if err := ctx.Err(); err != nil {
				return removed, freed, err
			}
			one := info
			one.Ref, one.Stored = r.ShardRef, r.Added
			ok, kerr := keep(ctx, one)
			if kerr == nil && !ok {
				drop[r.ShardRef] = true
			}
		}
		if len(drop) == 0 {
			continue
		}
		gone, n, err := s.dropRefs(info.Hash, func(r StoredRef) bool { return drop[r.ShardRef] })
		if err != nil {
			if errors.Is(err, ErrNotFound) || errors.Is(err, ErrBusy) {
				continue
			}
			return removed, freed, fmt.Errorf("gc: %w", err)
		}
		if gone {
			removed++
		}
		freed += n
	}
	return removed, freed, nil
}

// Close makes further operations fail with ErrClosed. Files are always
// durable once Put returns, so Close has nothing to flush.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}
