// Package containerserver serves the berth.containers.v1.Containers gRPC API
// from a containers.Store.
package containerserver

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/internal/errdefs"
	containersv1 "github.com/berth-engine/berth/proto/containers/v1"
	"github.com/berth-engine/berth/services/containers"
	"github.com/berth-engine/berth/services/containers/containerconv"
)

type service struct {
	containersv1.UnimplementedContainersServer
	store containers.Store
}

// New returns the Containers service backed by store.
func New(store containers.Store) containersv1.ContainersServer {
	return &service{store: store}
}

// Register serves the Containers service of store on s.
func Register(s *grpc.Server, store containers.Store) {
	containersv1.RegisterContainersServer(s, New(store))
}

func (s *service) Get(ctx context.Context, req *containersv1.GetContainerRequest) (*containersv1.GetContainerResponse, error) {
	c, err := s.store.Get(ctx, req.GetId())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &containersv1.GetContainerResponse{Container: containerconv.ToProto(c)}, nil
}

func (s *service) List(ctx context.Context, req *containersv1.ListContainersRequest) (*containersv1.ListContainersResponse, error) {
	cs, err := s.store.List(ctx, req.GetFilters()...)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	resp := &containersv1.ListContainersResponse{Containers: make([]*containersv1.Container, 0, len(cs))}
	for _, c := range cs {
		resp.Containers = append(resp.Containers, containerconv.ToProto(c))
	}
	return resp, nil
}

func (s *service) Create(ctx context.Context, req *containersv1.CreateContainerRequest) (*containersv1.CreateContainerResponse, error) {
	if req.GetContainer() == nil {
		return nil, errdefs.ToGRPC(fmt.Errorf("creating a container: the request has no container: %w", errdefs.ErrInvalidArgument))
	}
	c, err := s.store.Create(ctx, containerconv.FromProto(req.GetContainer()))
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &containersv1.CreateContainerResponse{Container: containerconv.ToProto(c)}, nil
}

func (s *service) Update(ctx context.Context, req *containersv1.UpdateContainerRequest) (*containersv1.UpdateContainerResponse, error) {
	if req.GetContainer() == nil {
		return nil, errdefs.ToGRPC(fmt.Errorf("updating a container: the request has no container: %w", errdefs.ErrInvalidArgument))
	}
	c, err := s.store.Update(ctx, containerconv.FromProto(req.GetContainer()), req.GetUpdateMask().GetPaths()...)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &containersv1.UpdateContainerResponse{Container: containerconv.ToProto(c)}, nil
}

func (s *service) Delete(ctx context.Context, req *containersv1.DeleteContainerRequest) (*emptypb.Empty, error) {
	if err := s.store.Delete(ctx, req.GetId()); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}
