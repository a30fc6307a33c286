// Package logs writes a container's output in Docker's json-file format: one
// JSON object per line, {"log":"...","stream":"stdout","time":"..."}, in a
// file rotated by size (<path>, <path>.1, ... <path>.N-1, oldest last).
package logs

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/berth-engine/berth/internal/errdefs"
)

const (
	// DefaultMaxSize is the size at which a log is rotated when none is set.
	DefaultMaxSize = 10 << 20
	// DefaultMaxFiles is how many files are kept when no count is set.
	DefaultMaxFiles = 3
	// maxLine is the longest piece of a line written as one entry, as in
	// Docker: longer lines are split into several entries.
	maxLine = 16 << 10
)

// Entry is one line of a json-file log.
type Entry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// Options say where the log goes and how it is rotated.
type Options struct {
	Path string
	// MaxSize is the size in bytes past which the file is rotated; 0 means DefaultMaxSize.
	MaxSize int64
	// MaxFiles is the number of files kept, the current one included; 0 means DefaultMaxFiles.
	MaxFiles int
}

// Writer appends entries to a json-file log, rotating it by size. It is safe
// for concurrent use by the stdout and stderr copiers.
type Writer struct {
	opts Options

	mu   sync.Mutex
	f    *os.File
	size int64
	buf  []byte
	now  func() time.Time
}

// NewWriter opens (appending) or creates the log file at opts.Path.
func NewWriter(opts Options) (*Writer, error) {
	if opts.Path == "" {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "opening a json-file log: no path given")
	}
	if opts.MaxSize < 0 || opts.MaxFiles < 0 {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "json-file log %s: max-size %d and max-file %d must not be negative", opts.Path, opts.MaxSize, opts.MaxFiles)
	}
	if opts.MaxSize == 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.MaxFiles == 0 {
		opts.MaxFiles = DefaultMaxFiles
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the folder of json-file log %s: %w", opts.Path, err)
	}
	f, err := os.OpenFile(opts.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("opening json-file log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening json-file log: %w", err)
	}
	return &Writer{opts: opts, f: f, size: st.Size(), now: time.Now}, nil
}

// WriteEntry appends one entry with the current time.
func (w *Writer) WriteEntry(stream string, line []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return fmt.Errorf("writing json-file log %s: %w", w.opts.Path, os.ErrClosed)
	}
	b, err := json.Marshal(Entry{Log: string(line), Stream: stream, Time: w.now().UTC()})
	if err != nil {
		return fmt.Errorf("encoding a json-file log entry: %w", err)
	}
	w.buf = append(append(w.buf[:0], b...), '\n')
	if w.size > 0 && w.size+int64(len(w.buf)) > w.opts.MaxSize {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	n, err := w.f.Write(w.buf)
	if err != nil {
		// A half-written entry (a full disk) would break every reader:
		// cut it off.
		if n > 0 {
			w.f.Truncate(w.size)
		}
		return fmt.Errorf("writing json-file log %s: %w", w.opts.Path, err)
	}
	w.size += int64(n)
	return nil
}

// rotate shifts <path>.i to <path>.i+1, dropping the oldest, and starts an
// empty <path>.
func (w *Writer) rotate() error {
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("rotating json-file log %s: %w", w.opts.Path, err)
	}
	w.f = nil
	name := func(i int) string {
		if i == 0 {
			return w.opts.Path
		}
		return w.opts.Path + "." + strconv.Itoa(i)
	}
	last := w.opts.MaxFiles - 1
	if err := os.Remove(name(last)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("rotating json-file log %s: %w", w.opts.Path, err)
	}
	for i := last - 1; i >= 0; i-- {
		if err := os.Rename(name(i), name(i+1)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("rotating json-file log %s: %w", w.opts.Path, err)
		}
	}
	f, err := os.OpenFile(w.opts.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("rotating json-file log: %w", err)
	}
	w.f, w.size = f, 0
	return nil
}

// Close closes the log file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

// Copy reads r until end of file and writes each line (with its newline) as
// one entry of stream; a line longer than 16 KiB is split, and a last line
// without newline is written as it is. Each line is also written to tee
// when tee is not nil; a tee that fails is dropped, the log goes on.
//
// A line that cannot be logged (a full disk) is dropped, and reading goes
// on so that the container is never blocked on its output; once the log
// can be written again, an entry says how many lines were lost and why.
// Copy then returns the first such error, after end of file.
func (w *Writer) Copy(stream string, r io.Reader, tee io.Writer) error {
	br := bufio.NewReaderSize(r, maxLine)
	var (
		dropped  int
		firstErr error
		lastErr  error
	)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if dropped > 0 {
				note := fmt.Sprintf("berth: %d lines of %s were not logged: %v\n", dropped, stream, lastErr)
				if w.WriteEntry(stream, []byte(note)) == nil {
					dropped = 0
				}
			}
			if dropped > 0 {
				dropped++
			} else if werr := w.WriteEntry(stream, line); werr != nil {
				lastErr = werr
				if firstErr == nil {
					firstErr = werr
				}
				dropped++
			}
			if tee != nil {
				if _, terr := tee.Write(line); terr != nil {
					tee = nil
				}
			}
		}
		switch err {
		case nil, bufio.ErrBufferFull:
		case io.EOF:
			return firstErr
		default:
			return fmt.Errorf("reading the %s of the container: %w", stream, err)
		}
	}
}
