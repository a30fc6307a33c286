// Package snapshotproxy implements snapshots.Snapshotter over the
// berth.snapshots.v1.Snapshots gRPC API, so that berthd and the CLI use a
// snapshotter in another process as they would one in their own.
package snapshotproxy

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
	"github.com/berth-engine/berth/internal/protoconv"
	snapshotsv1 "github.com/berth-engine/berth/proto/snapshots/v1"
	"github.com/berth-engine/berth/snapshotter/snapshotconv"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

type proxy struct {
	client snapshotsv1.SnapshotsClient
	name   string
}

// NewSnapshotter returns the snapshotter called name that client serves.
// Close does not close client's connection, which belongs to the caller.
func NewSnapshotter(client snapshotsv1.SnapshotsClient, name string) snapshots.Snapshotter {
	return &proxy{client: client, name: name}
}

// options applies opts to find the labels and parent they set.
func options(what string, opts []snapshots.Opt) (snapshots.Info, error) {
	var info snapshots.Info
	for _, opt := range opts {
		if err := opt(&info); err != nil {
			return info, fmt.Errorf("%s: %w", what, err)
		}
	}
	return info, nil
}

func (p *proxy) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	resp, err := p.client.Stat(ctx, &snapshotsv1.StatSnapshotRequest{Snapshotter: p.name, Key: key})
	if err != nil {
		return snapshots.Info{}, errdefs.FromGRPC(err)
	}
	return snapshotconv.InfoFromProto(resp.GetInfo()), nil
}

func (p *proxy) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	req := &snapshotsv1.UpdateSnapshotRequest{Snapshotter: p.name, Info: snapshotconv.InfoToProto(info)}
	if len(fieldpaths) > 0 {
		req.UpdateMask = &fieldmaskpb.FieldMask{Paths: fieldpaths}
	}
	resp, err := p.client.Update(ctx, req)
	if err != nil {
		return snapshots.Info{}, errdefs.FromGRPC(err)
	}
	return snapshotconv.InfoFromProto(resp.GetInfo()), nil
}

func (p *proxy) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	resp, err := p.client.Usage(ctx, &snapshotsv1.UsageRequest{Snapshotter: p.name, Key: key})
	if err != nil {
		return snapshots.Usage{}, errdefs.FromGRPC(err)
	}
	return snapshots.Usage{Size: resp.GetSize(), Inodes: resp.GetInodes()}, nil
}

func (p *proxy) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	resp, err := p.client.Mounts(ctx, &snapshotsv1.MountsRequest{Snapshotter: p.name, Key: key})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return protoconv.MountsFromProto(resp.GetMounts()), nil
}

func (p *proxy) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	o, err := options(fmt.Sprintf("preparing snapshot %q", key), opts)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Prepare(ctx, &snapshotsv1.PrepareSnapshotRequest{Snapshotter: p.name, Key: key, Parent: parent, Labels: o.Labels})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return protoconv.MountsFromProto(resp.GetMounts()), nil
}

func (p *proxy) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	o, err := options(fmt.Sprintf("creating view %q", key), opts)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.View(ctx, &snapshotsv1.ViewSnapshotRequest{Snapshotter: p.name, Key: key, Parent: parent, Labels: o.Labels})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return protoconv.MountsFromProto(resp.GetMounts()), nil
}

func (p *proxy) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	o, err := options(fmt.Sprintf("committing snapshot %q", key), opts)
	if err != nil {
		return err
	}
	_, err = p.client.Commit(ctx, &snapshotsv1.CommitSnapshotRequest{Snapshotter: p.name, Name: name, Key: key, Labels: o.Labels, Parent: o.Parent})
	return errdefs.FromGRPC(err)
}

func (p *proxy) Remove(ctx context.Context, key string) error {
	_, err := p.client.Remove(ctx, &snapshotsv1.RemoveSnapshotRequest{Snapshotter: p.name, Key: key})
	return errdefs.FromGRPC(err)
}

func (p *proxy) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	// Stop the stream when fn returns early.
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := p.client.List(streamCtx, &snapshotsv1.ListSnapshotsRequest{Snapshotter: p.name, Filters: filters})
	if err != nil {
		return errdefs.FromGRPC(err)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return errdefs.FromGRPC(err)
		}
		for _, info := range resp.GetInfo() {
			if err := fn(ctx, snapshotconv.InfoFromProto(info)); err != nil {
				return err
			}
		}
	}
}

func (p *proxy) Cleanup(ctx context.Context) error {
	_, err := p.client.Cleanup(ctx, &snapshotsv1.CleanupRequest{Snapshotter: p.name})
	return errdefs.FromGRPC(err)
}

func (p *proxy) Capabilities(ctx context.Context) ([]string, error) {
	resp, err := p.client.Capabilities(ctx, &snapshotsv1.CapabilitiesRequest{Snapshotter: p.name})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp.GetCapabilities(), nil
}

// Close does nothing: the connection belongs to the caller.
func (p *proxy) Close() error { return nil }
