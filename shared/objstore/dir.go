package objstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Dir is a Store in a local directory: the object "a/b" is the file
// Root/a/b. It suits a single machine or a shared filesystem (the demo,
// a plant without S3).
//
// The ETag of an object is the quoted SHA-256 of its content. It is
// recomputed on every Get: for a typical manifest of a few KiB that is
// about 0.2 ms (16 KiB on a busy 2-core box, BenchmarkDirGetNotModified),
// a few ms at the 4 MiB manifest limit, once per poll interval. Unlike
// mtime+size it cannot be fooled by a rewrite within the clock's
// resolution that keeps the size. Put writes a temp file in the
// target directory, fsyncs it, renames it into place and fsyncs the
// directory, so readers (an edge polling the same directory) see the old
// file or the complete new one. Conditional Puts hold an exclusive
// flock(2) on Root/.lock across the check and the rename, so writers on
// the same host cannot interleave.
type Dir struct {
	Root string
}

// Get implements Store.
func (d Dir) Get(ctx context.Context, key, ifNoneMatch string, limit int64) (Object, error) {
	path, err := d.path(key)
	if err != nil {
		return Object{}, err
	}
	data, err := readLimited(path, limit)
	if err != nil {
		return Object{}, err
	}
	etag := etagOf(data)
	if ifNoneMatch != "" && ifNoneMatch == etag {
		return Object{ETag: etag}, fmt.Errorf("get %s: %w", path, ErrNotModified)
	}
	return Object{Data: data, ETag: etag}, nil
}

// Exists implements Store.
func (d Dir) Exists(ctx context.Context, key string) (bool, error) {
	path, err := d.path(key)
	if err != nil {
		return false, err
	}
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.Mode().IsRegular():
		return true, nil
	case err == nil:
		return false, fmt.Errorf("%s is not a regular file", path)
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("stat %s: %w", path, err)
	}
}

// Put implements Store.
func (d Dir) Put(ctx context.Context, key string, data []byte, o PutOptions) error {
	path, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("put %s: %w", path, err)
	}
	if o.IfMatch != "" || o.IfNoneMatch != "" {
		unlock, err := d.lock()
		if err != nil {
			return err
		}
		defer unlock()
		cur, err := readLimited(path, 1<<62)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if o.IfNoneMatch == "*" && exists {
			return fmt.Errorf("put %s: exists: %w", path, ErrPrecondition)
		}
		if o.IfMatch != "" && (!exists || etagOf(cur) != o.IfMatch) {
			return fmt.Errorf("put %s: etag is no longer %s: %w", path, o.IfMatch, ErrPrecondition)
		}
	}
	if err := writeAtomic(path, data); err != nil {
		return fmt.Errorf("put %s: %w", path, err)
	}
	return nil
}

// Location implements Store.
func (d Dir) Location(key string) string {
	return filepath.Join(d.Root, filepath.FromSlash(key))
}

// path maps a key to a file under Root, refusing keys that would leave
// it ("..", absolute paths) or name the lock file.
func (d Dir) path(key string) (string, error) {
	if d.Root == "" {
		return "", errors.New("object directory is not set")
	}
	if key == "" || strings.Contains(key, `\`) || !filepath.IsLocal(filepath.FromSlash(key)) {
		return "", fmt.Errorf("object key %q is not a relative path inside %s", key, d.Root)
	}
	p := filepath.Join(d.Root, filepath.FromSlash(key))
	if p == filepath.Clean(d.Root) || p == filepath.Join(d.Root, lockFile) {
		return "", fmt.Errorf("object key %q names %s itself, not an object in it", key, d.Root)
	}
	return p, nil
}

const lockFile = ".lock"

func (d Dir) lock() (func(), error) {
	if err := os.MkdirAll(d.Root, 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", d.Root, err)
	}
	p := filepath.Join(d.Root, lockFile)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

func etagOf(data []byte) string {
	sum := sha256.Sum256(data)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("get %s: %w", path, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("read %s: object larger than the %d-byte limit", path, limit)
	}
	return data, nil
}

// writeAtomic: temp file in the same directory, fsync, rename, fsync of
// the directory; a crash leaves the old file or the complete new one.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	df, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s for fsync: %w", dir, err)
	}
	defer df.Close()
	if err := df.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
