// Package leaseserver serves the berth.leases.v1.Leases gRPC API from a
// leases.Manager.
package leaseserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/protoconv"
	leasesv1 "github.com/berth-engine/berth/proto/leases/v1"
	"github.com/berth-engine/berth/services/leases"
)

type service struct {
	leasesv1.UnimplementedLeasesServer
	manager leases.Manager
}

// New returns the Leases service backed by manager.
func New(manager leases.Manager) leasesv1.LeasesServer {
	return &service{manager: manager}
}

// Register serves the Leases service of manager on s.
func Register(s *grpc.Server, manager leases.Manager) {
	leasesv1.RegisterLeasesServer(s, New(manager))
}

// Create makes a lease, naming it when the request gives no id.
func (s *service) Create(ctx context.Context, req *leasesv1.CreateRequest) (*leasesv1.CreateResponse, error) {
	id := req.GetId()
	if id == "" {
		id = newID()
	}
	opts := []leases.Opt{leases.WithID(id)}
	if len(req.GetLabels()) > 0 {
		opts = append(opts, leases.WithLabels(req.GetLabels()))
	}
	l, err := s.manager.Create(ctx, opts...)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &leasesv1.CreateResponse{Lease: leaseToProto(l)}, nil
}

func (s *service) Delete(ctx context.Context, req *leasesv1.DeleteRequest) (*emptypb.Empty, error) {
	var opts []leases.DeleteOpt
	if req.GetSync() {
		opts = append(opts, leases.SynchronousDelete())
	}
	if err := s.manager.Delete(ctx, leases.Lease{ID: req.GetId()}, opts...); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *service) List(ctx context.Context, req *leasesv1.ListRequest) (*leasesv1.ListResponse, error) {
	ls, err := s.manager.List(ctx, req.GetFilters()...)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	resp := &leasesv1.ListResponse{Leases: make([]*leasesv1.Lease, 0, len(ls))}
	for _, l := range ls {
		resp.Leases = append(resp.Leases, leaseToProto(l))
	}
	return resp, nil
}

func (s *service) AddResource(ctx context.Context, req *leasesv1.AddResourceRequest) (*emptypb.Empty, error) {
	r, err := resourceFromProto(req.GetId(), req.GetResource())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if err := s.manager.AddResource(ctx, leases.Lease{ID: req.GetId()}, r); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *service) DeleteResource(ctx context.Context, req *leasesv1.DeleteResourceRequest) (*emptypb.Empty, error) {
	r, err := resourceFromProto(req.GetId(), req.GetResource())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if err := s.manager.DeleteResource(ctx, leases.Lease{ID: req.GetId()}, r); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *service) ListResources(ctx context.Context, req *leasesv1.ListResourcesRequest) (*leasesv1.ListResourcesResponse, error) {
	rs, err := s.manager.ListResources(ctx, leases.Lease{ID: req.GetId()})
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	resp := &leasesv1.ListResourcesResponse{Resources: make([]*leasesv1.Resource, 0, len(rs))}
	for _, r := range rs {
		resp.Resources = append(resp.Resources, &leasesv1.Resource{Id: r.ID, Type: r.Type})
	}
	return resp, nil
}

// newID names a lease by its creation time and a random suffix, so that ids
// sort by age and do not collide.
func newID() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail on Linux
	return time.Now().UTC().Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(b[:])
}

func resourceFromProto(lease string, r *leasesv1.Resource) (leases.Resource, error) {
	if r == nil {
		return leases.Resource{}, fmt.Errorf("lease %q: the request names no resource: %w", lease, errdefs.ErrInvalidArgument)
	}
	return leases.Resource{ID: r.GetId(), Type: r.GetType()}, nil
}

func leaseToProto(l leases.Lease) *leasesv1.Lease {
	return &leasesv1.Lease{
		Id:        l.ID,
		CreatedAt: protoconv.TimestampToProto(l.CreatedAt),
		Labels:    l.Labels,
	}
}
