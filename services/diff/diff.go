// Package diff defines how layers become snapshots and snapshots layers:
// an Applier unpacks a layer blob onto mounts, a Comparer writes the
// difference between two mounts as a layer blob.
package diff

import (
	"context"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/mount"
)

// Applier unpacks layers.
type Applier interface {
	// Apply unpacks the layer blob desc (gzip, zstd or uncompressed) from
	// the content store onto mounts and returns the descriptor of the
	// uncompressed layer: its digest is the layer's diff ID, which the
	// caller checks against the image config.
	Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount) (ocispec.Descriptor, error)
}

// CompareOpts are the options of Comparer.Compare.
type CompareOpts struct {
	MediaType string            // of the layer to write; gzip-compressed OCI layer when empty
	Ref       string            // content ingest ref; generated when empty
	Labels    map[string]string // set on the written blob
}

// CompareOpt sets an option of Compare.
type CompareOpt func(*CompareOpts) error

// WithMediaType sets the media type of the layer to write.
func WithMediaType(m string) CompareOpt {
	return func(o *CompareOpts) error { o.MediaType = m; return nil }
}

// WithReference names the content ingest.
func WithReference(ref string) CompareOpt {
	return func(o *CompareOpts) error { o.Ref = ref; return nil }
}

// WithLabels sets labels on the written blob.
func WithLabels(labels map[string]string) CompareOpt {
	return func(o *CompareOpts) error { o.Labels = labels; return nil }
}

// LabelUncompressed holds a compressed layer blob's diff ID.
const LabelUncompressed = "berth.uncompressed"

// Comparer computes layers.
type Comparer interface {
	// Compare writes the difference from lower to upper as a layer into the
	// content store and returns its descriptor.
	Compare(ctx context.Context, lower, upper []mount.Mount, opts ...CompareOpt) (ocispec.Descriptor, error)
}
