package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/filters"
	"github.com/berth-engine/berth/services/content"
)

// The files of an ingest directory.
const (
	ingestData      = "data"
	ingestRef       = "ref"
	ingestTotal     = "total"
	ingestExpected  = "expected"
	ingestStartedAt = "startedat"
	ingestUpdatedAt = "updatedat"
	ingestLock      = "lock"
)

func ingestNotFound(ref string) error {
	return fmt.Errorf("no ingest %q in the content store: %w", ref, errdefs.ErrNotFound)
}

func ingestBusy(ref string) error {
	return fmt.Errorf("ingest %q is being written by another writer: retry later, or abort it if that writer is gone: %w", ref, errdefs.ErrUnavailable)
}

// ingestLocker holds an ingest against other writers: in this process through
// Store.active, in other processes through an flock on the lock file.
type ingestLocker struct {
	s    *Store
	ref  string
	file *os.File
}

// lockIngest locks the ingest of ref, creating its directory when create is
// set. A held lock gives ErrUnavailable; it never waits.
func (s *Store) lockIngest(ref string, create bool) (*ingestLocker, error) {
	s.mu.Lock()
	if _, busy := s.active[ref]; busy {
		s.mu.Unlock()
		return nil, ingestBusy(ref)
	}
	s.active[ref] = struct{}{}
	s.mu.Unlock()

	f, err := s.flockIngest(ref, create)
	if err != nil {
		s.mu.Lock()
		delete(s.active, ref)
		s.mu.Unlock()
		return nil, err
	}
	return &ingestLocker{s: s, ref: ref, file: f}, nil
}

func (s *Store) flockIngest(ref string, create bool) (*os.File, error) {
	dir := s.ingestDir(ref)
	path := filepath.Join(dir, ingestLock)
	// A few attempts, because the ingest may be committed or aborted (and its
	// lock file removed) between our open and our flock.
	for range 5 {
		if create {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("creating ingest %q: %w", ref, err)
			}
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, ingestNotFound(ref)
			}
			return nil, fmt.Errorf("locking ingest %q: %w", ref, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, ingestBusy(ref)
			}
			return nil, fmt.Errorf("locking ingest %q: %w", ref, err)
		}
		held, err1 := f.Stat()
		onDisk, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(held, onDisk) {
			return f, nil
		}
		f.Close()
		if !create {
			return nil, ingestNotFound(ref)
		}
	}
	return nil, fmt.Errorf("locking ingest %q: it keeps being removed while we lock it, retry later: %w", ref, errdefs.ErrUnavailable)
}

func (l *ingestLocker) release() {
	if l.file != nil {
		l.file.Close() // closing drops the flock
		l.file = nil
	}
	l.s.mu.Lock()
	delete(l.s.active, l.ref)
	l.s.mu.Unlock()
}

// Status returns the progress of the ingest of ref.
func (s *Store) Status(ctx context.Context, ref string) (content.Status, error) {
	st, err := readStatus(s.ingestDir(ref))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return content.Status{}, ingestNotFound(ref)
		}
		return content.Status{}, fmt.Errorf("status of ingest %q: %w", ref, err)
	}
	return st, nil
}

// ListStatuses returns the ingests whose fields (ref, expected) match any of
// filters.
func (s *Store) ListStatuses(ctx context.Context, fltrs ...string) ([]content.Status, error) {
	filter, err := filters.Parse(fltrs...)
	if err != nil {
		return nil, fmt.Errorf("listing ingests: %w", err)
	}
	root := filepath.Join(s.root, "ingest")
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("listing ingests: %w", err)
	}
	var out []content.Status
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		st, err := readStatus(filepath.Join(root, e.Name()))
		if err != nil {
			// Half-created by a crash, or removed while listing: not an
			// ingest anyone can resume.
			continue
		}
		if filter.Match(content.StatusAdaptor(st)) {
			out = append(out, st)
		}
	}
	return out, nil
}

// Abort removes the ingest of ref and its data. An ingest with an open
// writer is refused with ErrUnavailable.
func (s *Store) Abort(ctx context.Context, ref string) error {
	dir := s.ingestDir(ref)
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ingestNotFound(ref)
		}
		return fmt.Errorf("aborting ingest %q: %w", ref, err)
	}
	lock, err := s.lockIngest(ref, false)
	if err != nil {
		return fmt.Errorf("aborting: %w", err)
	}
	defer lock.release()
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("aborting ingest %q: %w", ref, err)
	}
	return nil
}

// readStatus reads an ingest directory. Offset is the size of the data file;
// the ref file must exist, the others are optional.
func readStatus(dir string) (content.Status, error) {
	ref, err := os.ReadFile(filepath.Join(dir, ingestRef))
	if err != nil {
		return content.Status{}, err
	}
	fi, err := os.Stat(filepath.Join(dir, ingestData))
	if err != nil {
		return content.Status{}, err
	}
	st := content.Status{
		Ref:       string(ref),
		Offset:    fi.Size(),
		Total:     readInt(dir, ingestTotal),
		Expected:  digest.Digest(readString(dir, ingestExpected)),
		StartedAt: readTime(dir, ingestStartedAt),
		UpdatedAt: fi.ModTime(),
	}
	if t := readTime(dir, ingestUpdatedAt); t.After(st.UpdatedAt) {
		st.UpdatedAt = t
	}
	return st, nil
}

func readString(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func readInt(dir, name string) int64 {
	n, _ := strconv.ParseInt(readString(dir, name), 10, 64)
	return n
}

func readTime(dir, name string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, readString(dir, name))
	return t
}

func writeIngestFile(dir, name, value string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(value), 0o600)
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
