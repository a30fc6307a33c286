package content

import (
	"context"
	"errors"
	"fmt"
	"io"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
)

// ReadBlob reads a whole blob into memory; use it for manifests and configs,
// never for layers.
func ReadBlob(ctx context.Context, p Provider, desc ocispec.Descriptor) ([]byte, error) {
	ra, err := p.ReaderAt(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer ra.Close()
	p2 := make([]byte, ra.Size())
	if _, err := ra.ReadAt(p2, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading blob %s: %w", desc.Digest, err)
	}
	return p2, nil
}

// NewReader returns a sequential reader over a ReaderAt.
func NewReader(ra ReaderAt) io.Reader {
	return io.NewSectionReader(ra, 0, ra.Size())
}

// WriteBlob writes the data of r into the store as the blob described by
// desc, under the ingest ref, resuming a partial ingest of the same ref. A
// blob that exists already is not an error.
func WriteBlob(ctx context.Context, cs Ingester, ref string, r io.Reader, desc ocispec.Descriptor, opts ...Opt) error {
	w, err := cs.Writer(ctx, WithRef(ref), WithDescriptor(desc))
	if err != nil {
		if errdefs.IsAlreadyExists(err) {
			return nil
		}
		return fmt.Errorf("opening writer %q: %w", ref, err)
	}
	defer w.Close()
	return Copy(ctx, w, r, desc.Size, desc.Digest, opts...)
}

// Copy writes r into w, skipping what w already holds, and commits it.
func Copy(ctx context.Context, w Writer, r io.Reader, size int64, expected digest.Digest, opts ...Opt) error {
	st, err := w.Status()
	if err != nil {
		return fmt.Errorf("ingest status: %w", err)
	}
	if st.Offset > 0 {
		if seeker, ok := r.(io.Seeker); ok {
			if _, err := seeker.Seek(st.Offset, io.SeekStart); err != nil {
				return fmt.Errorf("seeking to resume at %d: %w", st.Offset, err)
			}
		} else if _, err := io.CopyN(io.Discard, r, st.Offset); err != nil {
			return fmt.Errorf("skipping %d bytes already written: %w", st.Offset, err)
		}
	}
	buf := make([]byte, 1<<20)
	if _, err := io.CopyBuffer(w, r, buf); err != nil {
		return fmt.Errorf("copying content: %w", err)
	}
	if err := w.Commit(ctx, size, expected, opts...); err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("committing %s: %w", expected, err)
	}
	return nil
}
