// Package snapshotserver serves the berth.snapshots.v1.Snapshots gRPC API
// from snapshots.Snapshotter backends: one (berth-snapshotter, Register) or
// several chosen by the request's snapshotter field (berthd, RegisterMulti).
package snapshotserver

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/protoconv"
	snapshotsv1 "github.com/berth-engine/berth/proto/snapshots/v1"
	"github.com/berth-engine/berth/snapshotter/snapshotconv"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

// listBatchSize is the number of Info carried by one List response.
const listBatchSize = 100

type service struct {
	snapshotsv1.UnimplementedSnapshotsServer
	byName func(name string) (snapshots.Snapshotter, error)
}

// New returns the Snapshots service of sn, the backend called name: it
// accepts requests whose snapshotter field is name or empty.
func New(sn snapshots.Snapshotter, name string) snapshotsv1.SnapshotsServer {
	return NewMulti(func(req string) (snapshots.Snapshotter, error) {
		if req != "" && req != name {
			return nil, fmt.Errorf("snapshotter %q is not served here (this serves %q): %w", req, name, errdefs.ErrNotFound)
		}
		return sn, nil
	})
}

// NewMulti returns the Snapshots service of the backends byName finds by
// the request's snapshotter field; its error goes back to the client.
func NewMulti(byName func(name string) (snapshots.Snapshotter, error)) snapshotsv1.SnapshotsServer {
	return &service{byName: byName}
}

// Register serves the Snapshots service of sn, called name, on s.
func Register(s *grpc.Server, sn snapshots.Snapshotter, name string) {
	snapshotsv1.RegisterSnapshotsServer(s, New(sn, name))
}

// RegisterMulti serves the Snapshots service of the backends byName finds
// on s.
func RegisterMulti(s *grpc.Server, byName func(name string) (snapshots.Snapshotter, error)) {
	snapshotsv1.RegisterSnapshotsServer(s, NewMulti(byName))
}

func withLabels(labels map[string]string) []snapshots.Opt {
	if len(labels) == 0 {
		return nil
	}
	return []snapshots.Opt{snapshots.WithLabels(labels)}
}

func (s *service) Prepare(ctx context.Context, req *snapshotsv1.PrepareSnapshotRequest) (*snapshotsv1.PrepareSnapshotResponse, error) {
	sn, err := s.byName(req.GetSnapshotter())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	mounts, err := sn.Prepare(ctx, req.GetKey(), req.GetParent(), withLabels(req.GetLabels())...)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &snapshotsv1.PrepareSnapshotResponse{Mounts: protoconv.MountsToProto(mounts)}, nil
}

func (s *service) View(ctx context.Context, req *snapshotsv1.ViewSnapshotRequest) (*snapshotsv1.ViewSnapshotResponse, error) {
	sn, err := s.byName(req.GetSnapshotter())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	mounts, err := sn.View(ctx, req.GetKey(), req.GetParent(), withLabels(req.GetLabels())...)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &snapshotsv1.ViewSnapshotResponse{Mounts: protoconv.MountsToProto(mounts)}, nil
}

func (s *service) Mounts(ctx context.Context, req *snapshotsv1.MountsRequest) (*snapshotsv1.MountsResponse, error) {
	sn, err := s.byName(req.GetSnapshotter())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	mounts, err := sn.Mounts(ctx, req.GetKey())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &snapshotsv1.MountsResponse{Mounts: protoconv.MountsToProto(mounts)}, nil
}

func (s *service) Commit(ctx context.Context, req *snapshotsv1.CommitSnapshotRequest) (*emptypb.Empty, error) {
	sn, err := s.byName(req.GetSnapshotter())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	opts := withLabels(req.GetLabels())
	if req.GetParent() != "" {
		opts = append(opts, snapshots.WithParent(req.GetParent()))
	}
	if err := sn.Commit(ctx, req.GetName(), req.GetKey(), opts...); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *service) Remove(ctx context.Context, req *snapshotsv1.RemoveSnapshotRequest) (*emptypb.Empty, error) {
	sn, err := s.byName(req.GetSnapshotter())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if err := sn.Remove(ctx, req.GetKey()); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *service) Stat(ctx context.Context, req *snapshotsv1.StatSnapshotRequest) (*snapshotsv1.StatSnapshotResponse, error) {
	sn, err := s.byName(req.GetSnapshotter())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	info, err := sn.Stat(ctx, req.GetKey())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &snapshotsv1.StatSnapshotResponse{Info: snapshotconv.InfoToProto(info)}, nil
}

func (s *service) Update(ctx context.Context, req *snapshotsv1.UpdateSnapshotRequest) (*snapshotsv1.UpdateSnapshotResponse, error) {
	sn, err := s.byName(req.GetSnapshotter())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if req.GetInfo() == nil {
		return nil, errdefs.ToGRPC(fmt.Errorf("updating a snapshot: the request has no info: %w", errdefs.ErrInvalidArgument))
	}
	info, err := sn.Update(ctx, snapshotconv.InfoFromProto(req.GetInfo()), req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &snapshotsv1.UpdateSnapshotResponse{Info: snapshotconv.InfoToProto(info)}, nil
}

func (s *service) List(req *snapshotsv1.ListSnapshotsRequest, stream grpc.ServerStreamingServer[snapshotsv1.ListSnapshotsResponse]) error {
	sn, err := s.byName(req.GetSnapshotter())
	if err != nil {
		return errdefs.ToGRPC(err)
	}
	// Collect first, send after: a snapshotter may hold a database
	// transaction during Walk, and no network I/O should happen inside one.
	var infos []*snapshotsv1.Info
	err = sn.Walk(stream.Context(), func(_ context.Context, info snapshots.Info) error {
		infos = append(infos, snapshotconv.InfoToProto(info))
		return nil
	}, req.GetFilters()...)
	if err != nil {
		return errdefs.ToGRPC(err)
	}
	for len(infos) > 0 {
		n := min(len(infos), listBatchSize)
		if err := stream.Send(&snapshotsv1.ListSnapshotsResponse{Info: infos[:n]}); err != nil {
			return err
		}
		infos = infos[n:]
	}
	return nil
}

func (s *service) Usage(ctx context.Context, req *snapshotsv1.UsageRequest) (*snapshotsv1.UsageResponse, error) {
	sn, err := s.byName(req.GetSnapshotter())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	u, err := sn.Usage(ctx, req.GetKey())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &snapshotsv1.UsageResponse{Size: u.Size, Inodes: u.Inodes}, nil
}

func (s *service) Cleanup(ctx context.Context, req *snapshotsv1.CleanupRequest) (*emptypb.Empty, error) {
	sn, err := s.byName(req.GetSnapshotter())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if err := sn.Cleanup(ctx); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *service) Capabilities(ctx context.Context, req *snapshotsv1.CapabilitiesRequest) (*snapshotsv1.CapabilitiesResponse, error) {
	sn, err := s.byName(req.GetSnapshotter())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	caps, err := sn.Capabilities(ctx)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &snapshotsv1.CapabilitiesResponse{Capabilities: caps}, nil
}
