// Package containerproxy implements containers.Store over the
// berth.containers.v1.Containers gRPC API, so that a client uses berthd's
// containers as it would a local store.
package containerproxy

import (
	"context"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/berth-engine/berth/internal/errdefs"
	containersv1 "github.com/berth-engine/berth/proto/containers/v1"
	"github.com/berth-engine/berth/services/containers"
	"github.com/berth-engine/berth/services/containers/containerconv"
)

type store struct {
	client containersv1.ContainersClient
}

// NewStore returns a containers.Store that calls client. The namespace
// travels in the context (namespaces.WithNamespace).
func NewStore(client containersv1.ContainersClient) containers.Store {
	return &store{client: client}
}

func (s *store) Get(ctx context.Context, id string) (containers.Container, error) {
	resp, err := s.client.Get(ctx, &containersv1.GetContainerRequest{Id: id})
	if err != nil {
		return containers.Container{}, errdefs.FromGRPC(err)
	}
	return containerconv.FromProto(resp.GetContainer()), nil
}

func (s *store) List(ctx context.Context, filters ...string) ([]containers.Container, error) {
	resp, err := s.client.List(ctx, &containersv1.ListContainersRequest{Filters: filters})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	out := make([]containers.Container, 0, len(resp.GetContainers()))
	for _, c := range resp.GetContainers() {
		out = append(out, containerconv.FromProto(c))
	}
	return out, nil
}

func (s *store) Create(ctx context.Context, c containers.Container) (containers.Container, error) {
	resp, err := s.client.Create(ctx, &containersv1.CreateContainerRequest{Container: containerconv.ToProto(c)})
	if err != nil {
		return containers.Container{}, errdefs.FromGRPC(err)
	}
	return containerconv.FromProto(resp.GetContainer()), nil
}

func (s *store) Update(ctx context.Context, c containers.Container, fieldpaths ...string) (containers.Container, error) {
	req := &containersv1.UpdateContainerRequest{Container: containerconv.ToProto(c)}
	if len(fieldpaths) > 0 {
		req.UpdateMask = &fieldmaskpb.FieldMask{Paths: fieldpaths}
	}
	resp, err := s.client.Update(ctx, req)
	if err != nil {
		return containers.Container{}, errdefs.FromGRPC(err)
	}
	return containerconv.FromProto(resp.GetContainer()), nil
}

func (s *store) Delete(ctx context.Context, id string) error {
	_, err := s.client.Delete(ctx, &containersv1.DeleteContainerRequest{Id: id})
	return errdefs.FromGRPC(err)
}
