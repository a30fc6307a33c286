// Package content defines the content store: immutable blobs addressed by
// digest, and the resumable ingests that create them. The local package
// implements it on disk, the metadata package scopes it to namespaces, and
// proxy implements it over gRPC.
package content

import (
	"context"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ReaderAt reads a blob at random offsets.
type ReaderAt interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// Provider opens blobs for reading.
type Provider interface {
	// ReaderAt opens the blob of desc.Digest. desc.Size may be 0 when unknown.
	ReaderAt(ctx context.Context, desc ocispec.Descriptor) (ReaderAt, error)
}

// Ingester opens writers for new blobs.
type Ingester interface {
	// Writer opens the ingest named by WithRef, resuming it if it exists.
	// A second concurrent writer of one ref gets ErrUnavailable.
	Writer(ctx context.Context, opts ...WriterOpt) (Writer, error)
}

// Info is the metadata of a committed blob.
type Info struct {
	Digest    digest.Digest
	Size      int64
	CreatedAt time.Time
	UpdatedAt time.Time
	Labels    map[string]string
}

// Status is the progress of an ingest.
type Status struct {
	Ref       string
	Offset    int64
	Total     int64
	Expected  digest.Digest
	StartedAt time.Time
	UpdatedAt time.Time
}

// WalkFunc is called for each blob by Walk.
type WalkFunc func(Info) error

// Manager reads and changes the metadata of committed blobs.
type Manager interface {
	Info(ctx context.Context, dgst digest.Digest) (Info, error)
	// Update sets the fields named by fieldpaths ("labels", "labels.KEY");
	// with none, it replaces all labels.
	Update(ctx context.Context, info Info, fieldpaths ...string) (Info, error)
	// Walk calls fn for each blob that matches any of the filters (all blobs
	// when there are none). Filters use the syntax of internal/filters over
	// the fields digest, size and labels.
	Walk(ctx context.Context, fn WalkFunc, filters ...string) error
	Delete(ctx context.Context, dgst digest.Digest) error
}

// IngestManager inspects and aborts ingests.
type IngestManager interface {
	Status(ctx context.Context, ref string) (Status, error)
	// ListStatuses returns the ingests matching any of the filters (over ref).
	ListStatuses(ctx context.Context, filters ...string) ([]Status, error)
	Abort(ctx context.Context, ref string) error
}

// Store is the whole content store.
type Store interface {
	Manager
	Provider
	IngestManager
	Ingester
}

// Writer writes one ingest. Data written is kept across Close so that a
// later Writer with the same ref resumes at Status().Offset.
type Writer interface {
	io.WriteCloser
	// Digest is the digest of the data written so far.
	Digest() digest.Digest
	// Commit verifies size and expected (when non-zero) against the data
	// written, then moves the blob into the store. A blob that is already
	// there gives ErrAlreadyExists and the ingest is removed.
	Commit(ctx context.Context, size int64, expected digest.Digest, opts ...Opt) error
	Status() (Status, error)
	// Truncate discards data after size; only 0 needs to be supported.
	Truncate(size int64) error
}

// Opt changes the Info of a blob being committed.
type Opt func(*Info) error

// WithLabels sets labels on the committed blob.
func WithLabels(labels map[string]string) Opt {
	return func(info *Info) error {
		if info.Labels == nil {
			info.Labels = map[string]string{}
		}
		for k, v := range labels {
			info.Labels[k] = v
		}
		return nil
	}
}

// WriterOpts are the options of Ingester.Writer.
type WriterOpts struct {
	Ref  string
	Desc ocispec.Descriptor
}

// WriterOpt sets an option of Ingester.Writer.
type WriterOpt func(*WriterOpts) error

// WithRef names the ingest; it is required.
func WithRef(ref string) WriterOpt {
	return func(o *WriterOpts) error {
		o.Ref = ref
		return nil
	}
}

// WithDescriptor gives the expected size and digest of the blob, when known.
func WithDescriptor(desc ocispec.Descriptor) WriterOpt {
	return func(o *WriterOpts) error {
		o.Desc = desc
		return nil
	}
}
