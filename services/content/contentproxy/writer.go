package contentproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"
	"google.golang.org/grpc"

	"github.com/berth-engine/berth/internal/errdefs"
	contentv1 "github.com/berth-engine/berth/proto/content/v1"
	"github.com/berth-engine/berth/services/content"
)

const (
	// chunkSize is the data carried by one WRITE message.
	chunkSize = 1 << 20
	// maxInFlight is how many messages may be sent before their responses
	// are read: enough to keep the server busy without waiting a round
	// trip per chunk.
	maxInFlight = 8
)

// Writer opens a Write stream for the ingest named by WithRef. Its first
// message, a STAT, opens the server's writer, so a busy ref (ErrUnavailable)
// or an existing blob (ErrAlreadyExists) is reported here, and the ingest's
// offset is known for resuming.
func (p *proxyStore) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	var wo content.WriterOpts
	for _, opt := range opts {
		if err := opt(&wo); err != nil {
			return nil, err
		}
	}
	if wo.Ref == "" {
		return nil, fmt.Errorf("opening a content writer: no ref given, name the ingest with content.WithRef: %w", errdefs.ErrInvalidArgument)
	}
	ctx, cancel := context.WithCancel(ctx)
	stream, err := p.client.Write(ctx)
	if err != nil {
		cancel()
		return nil, errdefs.FromGRPC(err)
	}
	w := &writer{
		ref:      wo.Ref,
		expected: wo.Desc.Digest,
		total:    wo.Desc.Size,
		stream:   stream,
		cancel:   cancel,
		buf:      make([]byte, 0, chunkSize),
	}
	err = w.send(&contentv1.WriteContentRequest{
		Action:   contentv1.WriteAction_WRITE_ACTION_STAT,
		Ref:      wo.Ref,
		Total:    wo.Desc.Size,
		Expected: wo.Desc.Digest.String(),
	}, -1)
	if err == nil {
		_, err = w.receive()
	}
	if err != nil {
		cancel()
		return nil, err
	}
	return w, nil
}

// writer sends an ingest over one Write stream. Data is gathered into
// chunkSize messages, and up to maxInFlight messages are sent before their
// responses are read; an error from the server therefore surfaces at a
// later call. It is not safe for concurrent use.
type writer struct {
	ref      string
	expected digest.Digest
	stream   grpc.BidiStreamingClient[contentv1.WriteContentRequest, contentv1.WriteContentResponse]
	cancel   context.CancelFunc

	buf    []byte // data not yet sent
	offset int64  // offset after the data sent so far

	// pending holds, for each message whose response is outstanding, the
	// offset the response must report (-1: not checked).
	pending []int64

	// From the last response.
	total     int64
	digest    digest.Digest
	startedAt time.Time
	updatedAt time.Time

	err  error // once set, the stream is unusable
	done bool  // closed or committed
}

// send sends req, expecting its response to report offset.
func (w *writer) send(req *contentv1.WriteContentRequest, offset int64) error {
	if err := w.stream.Send(req); err != nil {
		return w.fail(w.streamError(err))
	}
	w.pending = append(w.pending, offset)
	return nil
}

// streamError turns an error of Send into the server's error: Send only
// says io.EOF when the server ended the stream, Recv says why.
func (w *writer) streamError(err error) error {
	if !errors.Is(err, io.EOF) {
		return errdefs.FromGRPC(err)
	}
	for {
		if _, rerr := w.stream.Recv(); rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return fmt.Errorf("ingest %q: the content service ended the write stream: %w", w.ref, errdefs.ErrUnavailable)
			}
			return errdefs.FromGRPC(rerr)
		}
	}
}

// receive reads the oldest outstanding response and checks its offset.
func (w *writer) receive() (*contentv1.WriteContentResponse, error) {
	resp, err := w.stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("ingest %q: the content service ended the write stream early: %w", w.ref, errdefs.ErrUnavailable)
		} else {
			err = errdefs.FromGRPC(err)
		}
		return nil, w.fail(err)
	}
	want := w.pending[0]
	w.pending = w.pending[1:]
	if want < 0 {
		w.offset = resp.GetOffset() // the STAT that opened the stream
	} else if resp.GetOffset() != want {
		return nil, w.fail(fmt.Errorf("ingest %q: the content service is at offset %d where %d was expected: %w",
			w.ref, resp.GetOffset(), want, errdefs.ErrFailedPrecondition))
	}
	if resp.GetTotal() > 0 {
		w.total = resp.GetTotal()
	}
	w.digest = digest.Digest(resp.GetDigest())
	if t := asTime(resp.GetStartedAt()); !t.IsZero() {
		w.startedAt = t
	}
	if t := asTime(resp.GetUpdatedAt()); !t.IsZero() {
		w.updatedAt = t
	}
	return resp, nil
}

func (w *writer) fail(err error) error {
	if w.err == nil {
		w.err = err
		w.cancel()
	}
	return w.err
}

func (w *writer) usable() error {
	if w.err != nil {
		return w.err
	}
	if w.done {
		return fmt.Errorf("writer of ingest %q is closed: open a new one to resume: %w", w.ref, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// sendData sends data as one WRITE message at the current offset.
func (w *writer) sendData(data []byte) error {
	end := w.offset + int64(len(data))
	err := w.send(&contentv1.WriteContentRequest{
		Action: contentv1.WriteAction_WRITE_ACTION_WRITE,
		Offset: w.offset,
		Data:   data,
	}, end)
	if err != nil {
		return err
	}
	w.offset = end
	for len(w.pending) > maxInFlight {
		if _, err := w.receive(); err != nil {
			return err
		}
	}
	return nil
}

func (w *writer) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	// Send encodes the message before it returns, so buf can be reused.
	if err := w.sendData(w.buf); err != nil {
		return err
	}
	w.buf = w.buf[:0]
	return nil
}

// sync sends buffered data and reads every outstanding response.
func (w *writer) sync() error {
	if err := w.flush(); err != nil {
		return err
	}
	for len(w.pending) > 0 {
		if _, err := w.receive(); err != nil {
			return err
		}
	}
	return nil
}

func (w *writer) Write(p []byte) (int, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	if end := w.offset + int64(len(w.buf)) + int64(len(p)); w.total > 0 && end > w.total {
		return 0, fmt.Errorf("ingest %q: writing %d bytes at offset %d goes past the expected size of %d bytes: %w",
			w.ref, len(p), w.offset+int64(len(w.buf)), w.total, errdefs.ErrInvalidArgument)
	}
	n := len(p)
	for len(p) > 0 {
		if len(w.buf) == 0 && len(p) >= chunkSize {
			// Whole chunks go out from the caller's slice, without a copy.
			if err := w.sendData(p[:chunkSize]); err != nil {
				return n - len(p), err
			}
			p = p[chunkSize:]
			continue
		}
		c := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+c]
		p = p[c:]
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return n - len(p) - len(w.buf), err
			}
		}
	}
	return n, nil
}

// Digest is the digest of the data written so far, as the server computed
// it; it is empty when the stream failed.
func (w *writer) Digest() digest.Digest {
	if w.err != nil {
		return ""
	}
	if !w.done {
		if err := w.sync(); err != nil {
			return ""
		}
	}
	return w.digest
}

func (w *writer) Status() (content.Status, error) {
	if err := w.usable(); err != nil {
		return content.Status{}, err
	}
	if err := w.sync(); err != nil {
		return content.Status{}, err
	}
	return content.Status{
		Ref:       w.ref,
		Offset:    w.offset,
		Total:     w.total,
		Expected:  w.expected,
		StartedAt: w.startedAt,
		UpdatedAt: w.updatedAt,
	}, nil
}

// Truncate discards the data written so far; only size 0 is supported. A
// WRITE at offset 0 asks the server to restart the ingest.
func (w *writer) Truncate(size int64) error {
	if err := w.usable(); err != nil {
		return err
	}
	if size != 0 {
		return fmt.Errorf("ingest %q: truncating to %d bytes: only truncation to 0 is supported: %w", w.ref, size, errdefs.ErrInvalidArgument)
	}
	w.buf = w.buf[:0]
	if err := w.send(&contentv1.WriteContentRequest{Action: contentv1.WriteAction_WRITE_ACTION_WRITE, Offset: 0}, 0); err != nil {
		return err
	}
	w.offset = 0
	return w.sync()
}

// Commit sends the buffered data with a COMMIT and checks the digest the
// server committed. The stream ends with it, whatever the outcome: after a
// failed commit, open a new writer to resume the ingest.
func (w *writer) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.Opt) error {
	if err := w.usable(); err != nil {
		return err
	}
	var info content.Info
	for _, opt := range opts {
		if err := opt(&info); err != nil {
			return err
		}
	}
	end := w.offset + int64(len(w.buf))
	err := w.send(&contentv1.WriteContentRequest{
		Action:   contentv1.WriteAction_WRITE_ACTION_COMMIT,
		Offset:   w.offset,
		Data:     w.buf,
		Total:    size,
		Expected: expected.String(),
		Labels:   info.Labels,
	}, end)
	if err != nil {
		return err
	}
	w.offset = end
	w.buf = w.buf[:0]
	var resp *contentv1.WriteContentResponse
	for len(w.pending) > 0 {
		if resp, err = w.receive(); err != nil {
			return err
		}
	}
	w.done = true
	w.finish()
	if expected != "" && resp.GetDigest() != expected.String() {
		return fmt.Errorf("ingest %q: the content service committed %s, but %s was expected: %w",
			w.ref, resp.GetDigest(), expected, errdefs.ErrFailedPrecondition)
	}
	if size > 0 && resp.GetOffset() != size {
		return fmt.Errorf("ingest %q: the content service committed %d bytes, but %d were expected: %w",
			w.ref, resp.GetOffset(), size, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// Close sends what is buffered and ends the stream without committing: the
// ingest stays on the server for a later writer. It returns once the
// server has let go of the ingest.
func (w *writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	if w.err != nil {
		return nil // the stream is gone already
	}
	err := w.sync()
	w.finish()
	return err
}

// finish closes our side and waits for the server to end the stream, so
// that its writer is closed and the ref is free when we return.
func (w *writer) finish() {
	if w.err == nil {
		if err := w.stream.CloseSend(); err == nil {
			for {
				if _, err := w.stream.Recv(); err != nil {
					break
				}
			}
		}
	}
	w.cancel()
}
