// Package diffproxy implements diff.Applier and diff.Comparer over the
// berth.diff.v1.Diff gRPC API.
package diffproxy

import (
	"context"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
	"github.com/berth-engine/berth/internal/protoconv"
	diffv1 "github.com/berth-engine/berth/proto/diff/v1"
	"github.com/berth-engine/berth/services/diff"
)

// Differ calls the Diff service. The namespace and lease travel in the
// context, as for the content store that the service reads and writes.
type Differ struct {
	client diffv1.DiffClient
}

var (
	_ diff.Applier  = (*Differ)(nil)
	_ diff.Comparer = (*Differ)(nil)
)

// NewDiffer returns a Differ that calls client.
func NewDiffer(client diffv1.DiffClient) *Differ {
	return &Differ{client: client}
}

// Apply asks the service to unpack desc onto mounts.
func (d *Differ) Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount) (ocispec.Descriptor, error) {
	resp, err := d.client.Apply(ctx, &diffv1.ApplyRequest{
		Diff:   protoconv.DescriptorToProto(desc),
		Mounts: protoconv.MountsToProto(mounts),
	})
	if err != nil {
		return ocispec.Descriptor{}, errdefs.FromGRPC(err)
	}
	return protoconv.DescriptorFromProto(resp.GetApplied()), nil
}

// Compare asks the service to write the difference from lower to upper as
// a layer blob.
func (d *Differ) Compare(ctx context.Context, lower, upper []mount.Mount, opts ...diff.CompareOpt) (ocispec.Descriptor, error) {
	var o diff.CompareOpts
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	resp, err := d.client.Diff(ctx, &diffv1.DiffRequest{
		Left:      protoconv.MountsToProto(lower),
		Right:     protoconv.MountsToProto(upper),
		MediaType: o.MediaType,
		Ref:       o.Ref,
		Labels:    o.Labels,
	})
	if err != nil {
		return ocispec.Descriptor{}, errdefs.FromGRPC(err)
	}
	return protoconv.DescriptorFromProto(resp.GetDiff()), nil
}
