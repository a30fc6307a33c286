package local

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/content"
)

// Writer opens the ingest named by WithRef, resuming it when it exists. The
// expected size and digest of WithDescriptor are checked while writing and
// at Commit.
func (s *Store) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	var wo content.WriterOpts
	for _, opt := range opts {
		if err := opt(&wo); err != nil {
			return nil, err
		}
	}
	if wo.Ref == "" {
		return nil, fmt.Errorf("opening a content writer: no ref given, name the ingest with content.WithRef: %w", errdefs.ErrInvalidArgument)
	}
	if wo.Desc.Size < 0 {
		return nil, fmt.Errorf("ingest %q: negative expected size %d: %w", wo.Ref, wo.Desc.Size, errdefs.ErrInvalidArgument)
	}
	if wo.Desc.Digest != "" {
		if err := validateDigest(wo.Desc.Digest); err != nil {
			return nil, fmt.Errorf("ingest %q: %w", wo.Ref, err)
		}
		if _, err := os.Stat(s.blobPath(wo.Desc.Digest)); err == nil {
			return nil, fmt.Errorf("blob %s already exists in the content store: %w", wo.Desc.Digest, errdefs.ErrAlreadyExists)
		}
	}
	lock, err := s.lockIngest(wo.Ref, true)
	if err != nil {
		return nil, err
	}
	w, err := s.openIngest(lock, wo.Ref, wo.Desc)
	if err != nil {
		lock.release()
		return nil, err
	}
	return w, nil
}

// openIngest starts or resumes the ingest of ref; the caller holds its lock.
func (s *Store) openIngest(lock *ingestLocker, ref string, desc ocispec.Descriptor) (*writer, error) {
	dir := s.ingestDir(ref)
	now := time.Now()
	w := &writer{
		s:         s,
		ref:       ref,
		dir:       dir,
		lock:      lock,
		hash:      sha256.New(),
		startedAt: now,
		updatedAt: now,
	}

	if storedRef, err := os.ReadFile(filepath.Join(dir, ingestRef)); err == nil && string(storedRef) == ref {
		w.total = readInt(dir, ingestTotal)
		w.expected = digest.Digest(readString(dir, ingestExpected))
		if t := readTime(dir, ingestStartedAt); !t.IsZero() {
			w.startedAt = t
		}
	} else {
		// New, or half-created by a crash before its ref was written.
		for name, value := range map[string]string{ingestRef: ref, ingestStartedAt: formatTime(now)} {
			if err := writeIngestFile(dir, name, value); err != nil {
				return nil, fmt.Errorf("creating ingest %q: %w", ref, err)
			}
		}
	}

	if desc.Size > 0 && desc.Size != w.total {
		if w.total > 0 {
			return nil, fmt.Errorf("ingest %q was started for a blob of %d bytes, not %d: abort it to start over: %w",
				ref, w.total, desc.Size, errdefs.ErrFailedPrecondition)
		}
		w.total = desc.Size
		if err := writeIngestFile(dir, ingestTotal, strconv.FormatInt(w.total, 10)); err != nil {
			return nil, fmt.Errorf("ingest %q: %w", ref, err)
		}
	}
	if desc.Digest != "" && desc.Digest != w.expected {
		if w.expected != "" {
			return nil, fmt.Errorf("ingest %q was started for blob %s, not %s: abort it to start over: %w",
				ref, w.expected, desc.Digest, errdefs.ErrFailedPrecondition)
		}
		w.expected = desc.Digest
		if err := writeIngestFile(dir, ingestExpected, w.expected.String()); err != nil {
			return nil, fmt.Errorf("ingest %q: %w", ref, err)
		}
	}

	f, err := os.OpenFile(filepath.Join(dir, ingestData), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening ingest %q: %w", ref, err)
	}
	w.file = f
	if err := w.restoreHash(); err != nil {
		f.Close()
		return nil, fmt.Errorf("resuming ingest %q: %w", ref, err)
	}
	return w, nil
}

// writer writes one ingest. It is not safe for concurrent use.
type writer struct {
	s    *Store
	ref  string
	dir  string
	lock *ingestLocker
	file *os.File // nil once closed or committed
	hash hash.Hash

	offset    int64
	total     int64
	expected  digest.Digest
	startedAt time.Time
	updatedAt time.Time
}

// restoreHash hashes the data already in the ingest, so that a resumed
// writer's digest covers all of it, and positions the file at its end.
func (w *writer) restoreHash() error {
	fi, err := w.file.Stat()
	if err != nil {
		return err
	}
	if fi.Size() > 0 {
		buf := w.s.getBuffer()
		defer w.s.putBuffer(buf)
		n, err := io.CopyBuffer(w.hash, io.NewSectionReader(w.file, 0, fi.Size()), *buf)
		if err != nil {
			return err
		}
		w.offset = n
		w.updatedAt = fi.ModTime()
	}
	_, err = w.file.Seek(w.offset, io.SeekStart)
	return err
}

func (w *writer) closedError() error {
	return fmt.Errorf("writer of ingest %q is closed: open a new one to resume: %w", w.ref, errdefs.ErrFailedPrecondition)
}

// Write appends p to the ingest and to the running digest.
func (w *writer) Write(p []byte) (int, error) {
	if w.file == nil {
		return 0, w.closedError()
	}
	if w.total > 0 && w.offset+int64(len(p)) > w.total {
		return 0, fmt.Errorf("ingest %q: writing %d bytes at offset %d goes past the expected size of %d bytes: %w",
			w.ref, len(p), w.offset, w.total, errdefs.ErrInvalidArgument)
	}
	n, err := w.file.Write(p)
	w.hash.Write(p[:n])
	w.offset += int64(n)
	w.updatedAt = time.Now()
	if err != nil {
		return n, fmt.Errorf("writing ingest %q: %w", w.ref, err)
	}
	return n, nil
}

// ReadFrom copies r into the ingest in large blocks; io.Copy uses it.
func (w *writer) ReadFrom(r io.Reader) (int64, error) {
	buf := w.s.getBuffer()
	defer w.s.putBuffer(buf)
	var total int64
	for {
		n, rerr := io.ReadFull(r, *buf)
		if n > 0 {
			m, err := w.Write((*buf)[:n])
			total += int64(m)
			if err != nil {
				return total, err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// Digest is the digest of everything written so far.
func (w *writer) Digest() digest.Digest {
	return digest.NewDigest(digest.SHA256, w.hash)
}

// Status is the progress of the ingest.
func (w *writer) Status() (content.Status, error) {
	return content.Status{
		Ref:       w.ref,
		Offset:    w.offset,
		Total:     w.total,
		Expected:  w.expected,
		StartedAt: w.startedAt,
		UpdatedAt: w.updatedAt,
	}, nil
}

// Truncate discards the data written so far; only size 0 is supported.
func (w *writer) Truncate(size int64) error {
	if w.file == nil {
		return w.closedError()
	}
	if size != 0 {
		return fmt.Errorf("ingest %q: truncating to %d bytes: only truncation to 0 is supported: %w", w.ref, size, errdefs.ErrInvalidArgument)
	}
	if err := w.file.Truncate(0); err != nil {
		return fmt.Errorf("truncating ingest %q: %w", w.ref, err)
	}
	if _, err := w.file.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("truncating ingest %q: %w", w.ref, err)
	}
	w.hash.Reset()
	w.offset = 0
	w.updatedAt = time.Now()
	return nil
}

// Commit verifies the data against size and expected (falling back to the
// writer's descriptor when they are zero) and moves it into blobs/ by an
// atomic rename. A short ingest is kept so that it can be resumed; one with
// the wrong digest is removed, since its data can never become that blob.
func (w *writer) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.Opt) error {
	if w.file == nil {
		return w.closedError()
	}
	var info content.Info // labels are not kept here; options are still checked
	for _, opt := range opts {
		if err := opt(&info); err != nil {
			return err
		}
	}
	if size == 0 {
		size = w.total
	}
	if expected == "" {
		expected = w.expected
	}
	if expected != "" {
		if err := validateDigest(expected); err != nil {
			return fmt.Errorf("committing ingest %q: %w", w.ref, err)
		}
	}
	if size > 0 && w.offset < size {
		return fmt.Errorf("committing ingest %q: it holds %d of the %d bytes expected: write the rest and commit again: %w",
			w.ref, w.offset, size, errdefs.ErrFailedPrecondition)
	}
	if size > 0 && w.offset > size {
		return fmt.Errorf("committing ingest %q: it holds %d bytes, more than the %d expected: abort it and write the blob again: %w",
			w.ref, w.offset, size, errdefs.ErrFailedPrecondition)
	}
	dgst := w.Digest()
	if expected != "" && dgst != expected {
		w.discard()
		return fmt.Errorf("committing ingest %q: its data has digest %s, but %s was expected: the ingest was removed, write the blob again: %w",
			w.ref, dgst, expected, errdefs.ErrFailedPrecondition)
	}
	target := w.s.blobPath(dgst)
	if _, err := os.Stat(target); err == nil {
		w.discard()
		return fmt.Errorf("blob %s already exists in the content store: %w", dgst, errdefs.ErrAlreadyExists)
	}

	// The data must be on disk before its name says it is a verified blob.
	if err := w.file.Sync(); err != nil {
		return fmt.Errorf("committing ingest %q: %w", w.ref, err)
	}
	if err := w.file.Chmod(0o444); err != nil {
		return fmt.Errorf("committing ingest %q: %w", w.ref, err)
	}
	if err := w.file.Close(); err != nil {
		w.file = nil
		w.lock.release()
		return fmt.Errorf("committing ingest %q: %w", w.ref, err)
	}
	w.file = nil
	defer w.lock.release()

	if err := renameNoReplace(filepath.Join(w.dir, ingestData), target); err != nil {
		if errors.Is(err, fs.ErrExist) {
			os.RemoveAll(w.dir)
			return fmt.Errorf("blob %s already exists in the content store: %w", dgst, errdefs.ErrAlreadyExists)
		}
		return fmt.Errorf("committing ingest %q as blob %s: %w", w.ref, dgst, err)
	}
	if err := syncDir(w.s.blobsDir()); err != nil {
		return fmt.Errorf("committing blob %s: %w", dgst, err)
	}
	// The blob is committed; a leftover ingest directory holds no data and
	// is harmless, so a failure to remove it is not the caller's problem.
	os.RemoveAll(w.dir)
	return nil
}

// discard closes the writer and removes its ingest.
func (w *writer) discard() {
	if w.file != nil {
		w.file.Close()
		w.file = nil
	}
	os.RemoveAll(w.dir)
	w.lock.release()
}

// Close releases the ingest, keeping its data for a later writer.
func (w *writer) Close() error {
	if w.file == nil {
		return nil
	}
	err := w.file.Close()
	w.file = nil
	if werr := writeIngestFile(w.dir, ingestUpdatedAt, formatTime(w.updatedAt)); err == nil {
		err = werr
	}
	w.lock.release()
	if err != nil {
		return fmt.Errorf("closing writer of ingest %q: %w", w.ref, err)
	}
	return nil
}

// renameNoReplace renames oldpath to newpath, failing with fs.ErrExist when
// newpath exists, so that a blob is never replaced.
func renameNoReplace(oldpath, newpath string) error {
	err := unix.Renameat2(unix.AT_FDCWD, oldpath, unix.AT_FDCWD, newpath, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		return fs.ErrExist
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EOPNOTSUPP):
		// The filesystem cannot refuse to replace. A blob that appeared
		// meanwhile has the same verified bytes, so replacing it is safe.
		return os.Rename(oldpath, newpath)
	}
	return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
