package local

import (
	"errors"
	"hash"
	"io"
	"sync"
)

const (
	readaheadChunk   = 1 << 20
	readaheadBuffers = 4
)

// readahead reads (and so decompresses) its source in a goroutine of its
// own, hashing what it reads, so that decompression and writing the files
// run on two cores, as `tar -xzf` does with its gzip child process.
type readahead struct {
	full chan []byte // chunks read, in order
	free chan []byte // chunks to read into
	stop chan struct{}
	done chan struct{}
	once sync.Once

	cur  []byte // what is left of the chunk being read
	back []byte // the whole chunk being read, to give back

	// Set by the goroutine before it closes full: the bytes read and the
	// error that ended the source (io.EOF at a clean end; nil if stopped).
	n   int64
	err error
}

func newReadahead(src io.Reader, h hash.Hash) *readahead {
	r := &readahead{
		full: make(chan []byte, readaheadBuffers),
		free: make(chan []byte, readaheadBuffers),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for range readaheadBuffers {
		r.free <- make([]byte, readaheadChunk)
	}
	go r.run(src, h)
	return r
}

func (r *readahead) run(src io.Reader, h hash.Hash) {
	defer close(r.done)
	defer close(r.full)
	for {
		var buf []byte
		select {
		case buf = <-r.free:
		case <-r.stop:
			return
		}
		n, err := fill(src, buf)
		if n > 0 {
			h.Write(buf[:n])
			r.n += int64(n)
			select {
			case r.full <- buf[:n]:
			case <-r.stop:
				return
			}
		}
		if err != nil {
			r.err = err
			return
		}
	}
}

// fill reads into buf until it is full or src fails; unlike io.ReadFull it
// keeps io.ErrUnexpectedEOF from src apart from a short last read.
func fill(src io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := src.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (r *readahead) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.back != nil {
			r.free <- r.back[:cap(r.back)]
			r.back = nil
		}
		buf, ok := <-r.full
		if !ok {
			if r.err == nil {
				return 0, errors.New("read after close")
			}
			return 0, r.err
		}
		r.cur, r.back = buf, buf
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// Close stops the goroutine and waits for it.
func (r *readahead) Close() {
	r.once.Do(func() { close(r.stop) })
	<-r.done
}

// sourceErr is the error that ended reading the source, nil at a clean
// end or when stopped first; valid after Close.
func (r *readahead) sourceErr() error {
	if errors.Is(r.err, io.EOF) {
		return nil
	}
	return r.err
}
