// Package namespaceproxy implements namespaces.Store over the
// berth.namespaces.v1.Namespaces gRPC API.
package namespaceproxy

import (
	"context"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/berth-engine/berth/internal/errdefs"
	namespacesv1 "github.com/berth-engine/berth/proto/namespaces/v1"
	"github.com/berth-engine/berth/services/namespaces"
)

type store struct {
	client namespacesv1.NamespacesClient
}

// NewStore returns a namespaces.Store that calls client.
func NewStore(client namespacesv1.NamespacesClient) namespaces.Store {
	return &store{client: client}
}

func (s *store) Create(ctx context.Context, name string, labels map[string]string) error {
	_, err := s.client.Create(ctx, &namespacesv1.CreateNamespaceRequest{
		Namespace: &namespacesv1.Namespace{Name: name, Labels: labels},
	})
	return errdefs.FromGRPC(err)
}

func (s *store) Labels(ctx context.Context, name string) (map[string]string, error) {
	resp, err := s.client.Get(ctx, &namespacesv1.GetNamespaceRequest{Name: name})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp.GetNamespace().GetLabels(), nil
}

// SetLabel sets one label; an empty value removes it.
func (s *store) SetLabel(ctx context.Context, name, key, value string) error {
	_, err := s.client.Update(ctx, &namespacesv1.UpdateNamespaceRequest{
		Namespace:  &namespacesv1.Namespace{Name: name, Labels: map[string]string{key: value}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels." + key}},
	})
	return errdefs.FromGRPC(err)
}

func (s *store) List(ctx context.Context) ([]string, error) {
	resp, err := s.client.List(ctx, &namespacesv1.ListNamespacesRequest{})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	names := make([]string, 0, len(resp.GetNamespaces()))
	for _, ns := range resp.GetNamespaces() {
		names = append(names, ns.GetName())
	}
	return names, nil
}

func (s *store) Delete(ctx context.Context, name string) error {
	_, err := s.client.Delete(ctx, &namespacesv1.DeleteNamespaceRequest{Name: name})
	return errdefs.FromGRPC(err)
}
