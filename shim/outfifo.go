package shim

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stallTimeout is how long a write to an output fifo may wait for its
// reader before the reader counts as gone.
const stallTimeout = time.Second

// outputFifo is the shim's end of a fifo an attached client reads a
// process's output from. It never makes the process wait for a client that
// went away (a detach leaves the fifo open but unread) or that stopped
// reading: once a write has waited stallTimeout, what does not fit in the
// fifo is dropped, at once, until the fifo takes a whole write again. The
// log gets everything either way.
type outputFifo struct {
	f  *os.File
	rc syscall.RawConn

	mu      sync.Mutex
	stalled bool // the last write had to drop output
	broken  bool // a write failed: everything is dropped
}

// openOutputFifo opens path for reading and writing, so that the open does
// not wait for a reader and a reader that goes away does not make writes
// fail. The file is non-blocking (Go's poller), so writes can time out.
func openOutputFifo(path string) (*outputFifo, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.Mode()&os.ModeNamedPipe == 0 {
		err = errors.New("not a fifo")
	}
	var rc syscall.RawConn
	if err == nil {
		rc, err = f.SyscallConn()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &outputFifo{f: f, rc: rc}, nil
}

// Write writes b, or drops what the fifo cannot take in time. It reports
// the whole of b written, so that callers keep copying to the log.
func (w *outputFifo) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken {
		return len(b), nil
	}
	n, err := w.tryWrite(b)
	if err == nil && n == len(b) {
		w.stalled = false
		return len(b), nil
	}
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		w.broken = true
		return len(b), nil
	}
	if w.stalled {
		return len(b), nil
	}
	// The fifo is full: give a slow reader some time before dropping.
	w.f.SetWriteDeadline(time.Now().Add(stallTimeout))
	m, err := w.f.Write(b[n:])
	w.f.SetWriteDeadline(time.Time{})
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		w.stalled = true
	case err != nil:
		w.broken = true
	case n+m == len(b):
		w.stalled = false
	}
	return len(b), nil
}

// tryWrite writes as much of b as the fifo takes now, without waiting.
func (w *outputFifo) tryWrite(b []byte) (int, error) {
	var (
		n    int
		werr error
	)
	err := w.rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, err := unix.Write(int(fd), b[n:])
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				werr = err
				break
			}
			n += m
		}
		return true // never wait in the poller
	})
	if err != nil {
		return n, err
	}
	return n, werr
}

// Close closes the fifo.
func (w *outputFifo) Close() error {
	return w.f.Close()
}
