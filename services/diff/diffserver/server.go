// Package diffserver serves the berth.diff.v1.Diff gRPC API from a
// diff.Applier and diff.Comparer.
package diffserver

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/protoconv"
	diffv1 "github.com/berth-engine/berth/proto/diff/v1"
	"github.com/berth-engine/berth/services/diff"
)

// Differ applies and computes layers.
type Differ interface {
	diff.Applier
	diff.Comparer
}

type service struct {
	diffv1.UnimplementedDiffServer
	differ Differ
}

// New returns the Diff service backed by d.
func New(d Differ) diffv1.DiffServer {
	return &service{differ: d}
}

// Register serves the Diff service of d on s.
func Register(s *grpc.Server, d Differ) {
	diffv1.RegisterDiffServer(s, New(d))
}

func (s *service) Apply(ctx context.Context, req *diffv1.ApplyRequest) (*diffv1.ApplyResponse, error) {
	if req.GetDiff() == nil {
		return nil, errdefs.ToGRPC(fmt.Errorf("apply needs the descriptor of the layer blob in diff: %w", errdefs.ErrInvalidArgument))
	}
	desc := protoconv.DescriptorFromProto(req.GetDiff())
	if err := desc.Digest.Validate(); err != nil {
		return nil, errdefs.ToGRPC(fmt.Errorf("layer digest %q: %v: %w", desc.Digest, err, errdefs.ErrInvalidArgument))
	}
	if len(req.GetMounts()) == 0 {
		return nil, errdefs.ToGRPC(fmt.Errorf("apply of layer %s needs the mounts to apply it to: %w", desc.Digest, errdefs.ErrInvalidArgument))
	}
	applied, err := s.differ.Apply(ctx, desc, protoconv.MountsFromProto(req.GetMounts()))
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &diffv1.ApplyResponse{Applied: protoconv.DescriptorToProto(applied)}, nil
}

func (s *service) Diff(ctx context.Context, req *diffv1.DiffRequest) (*diffv1.DiffResponse, error) {
	if len(req.GetRight()) == 0 {
		return nil, errdefs.ToGRPC(fmt.Errorf("diff needs the mounts of the changed (right) snapshot: %w", errdefs.ErrInvalidArgument))
	}
	var opts []diff.CompareOpt
	if mt := req.GetMediaType(); mt != "" {
		opts = append(opts, diff.WithMediaType(mt))
	}
	if ref := req.GetRef(); ref != "" {
		opts = append(opts, diff.WithReference(ref))
	}
	if labels := req.GetLabels(); len(labels) > 0 {
		opts = append(opts, diff.WithLabels(labels))
	}
	desc, err := s.differ.Compare(ctx, protoconv.MountsFromProto(req.GetLeft()), protoconv.MountsFromProto(req.GetRight()), opts...)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &diffv1.DiffResponse{Diff: protoconv.DescriptorToProto(desc)}, nil
}
