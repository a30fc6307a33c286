package contentproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	digest "github.com/opencontainers/go-digest"
	"google.golang.org/grpc"

	"github.com/berth-engine/berth/internal/errdefs"
	contentv1 "github.com/berth-engine/berth/proto/content/v1"
)

// skipAhead is how far a read may jump forward and still be served by
// draining the open stream rather than starting a new one.
const skipAhead = 1 << 20

// readerAt reads a blob over the Read RPC. Sequential reads share one stream
// of the rest of the blob, which the server sends in ~1 MiB messages; a read
// elsewhere starts a new stream at its offset.
type readerAt struct {
	ctx    context.Context
	client contentv1.ContentClient
	dgst   digest.Digest
	size   int64

	mu     sync.Mutex // ReadAt may be called concurrently
	closed bool

	// chunk is the last message received, holding [chunkOff, chunkOff+len(chunk)).
	chunk    []byte
	chunkOff int64

	// stream is the open Read, whose next message starts at next.
	stream grpc.ServerStreamingClient[contentv1.ReadContentResponse]
	cancel context.CancelFunc
	next   int64
}

func (r *readerAt) Size() int64 { return r.size }

func (r *readerAt) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, fmt.Errorf("reading blob %s: reader is closed: %w", r.dgst, errdefs.ErrFailedPrecondition)
	}
	if off < 0 {
		return 0, fmt.Errorf("reading blob %s at negative offset %d: %w", r.dgst, off, errdefs.ErrInvalidArgument)
	}
	n := 0
	for n < len(p) && off < r.size {
		if off >= r.chunkOff && off < r.chunkOff+int64(len(r.chunk)) {
			c := copy(p[n:], r.chunk[off-r.chunkOff:])
			n += c
			off += int64(c)
			continue
		}
		if err := r.fetch(off); err != nil {
			return n, err
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// fetch receives the next message of a stream that will reach off, starting
// a new stream at off when the open one will not.
func (r *readerAt) fetch(off int64) error {
	if r.stream == nil || off < r.next || off-r.next > skipAhead {
		r.closeStream()
		ctx, cancel := context.WithCancel(r.ctx)
		stream, err := r.client.Read(ctx, &contentv1.ReadContentRequest{Digest: r.dgst.String(), Offset: off})
		if err != nil {
			cancel()
			return errdefs.FromGRPC(err)
		}
		r.stream, r.cancel, r.next = stream, cancel, off
	}
	resp, err := r.stream.Recv()
	if err != nil {
		r.closeStream()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("reading blob %s: it ended at %d bytes, before its size of %d: %w", r.dgst, r.next, r.size, io.ErrUnexpectedEOF)
		}
		return errdefs.FromGRPC(err)
	}
	if resp.GetOffset() != r.next || len(resp.GetData()) == 0 {
		r.closeStream()
		return fmt.Errorf("reading blob %s: content service sent %d bytes at offset %d where offset %d was due: %w",
			r.dgst, len(resp.GetData()), resp.GetOffset(), r.next, errdefs.ErrUnknown)
	}
	r.chunk, r.chunkOff = resp.GetData(), resp.GetOffset()
	r.next += int64(len(r.chunk))
	return nil
}

func (r *readerAt) closeStream() {
	if r.cancel != nil {
		r.cancel()
	}
	r.stream, r.cancel = nil, nil
}

func (r *readerAt) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closeStream()
	r.chunk = nil
	r.closed = true
	return nil
}
