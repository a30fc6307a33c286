// Package namespaceserver serves the berth.namespaces.v1.Namespaces gRPC API
// from a namespaces.Store.
package namespaceserver

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/filters"
	namespacesv1 "github.com/berth-engine/berth/proto/namespaces/v1"
	"github.com/berth-engine/berth/services/namespaces"
)

type service struct {
	namespacesv1.UnimplementedNamespacesServer
	store namespaces.Store
}

// New returns the Namespaces service backed by store.
func New(store namespaces.Store) namespacesv1.NamespacesServer {
	return &service{store: store}
}

// Register serves the Namespaces service of store on s.
func Register(s *grpc.Server, store namespaces.Store) {
	namespacesv1.RegisterNamespacesServer(s, New(store))
}

func (s *service) Get(ctx context.Context, req *namespacesv1.GetNamespaceRequest) (*namespacesv1.GetNamespaceResponse, error) {
	ns, err := s.get(ctx, req.GetName())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &namespacesv1.GetNamespaceResponse{Namespace: ns}, nil
}

// List returns the namespaces matching the filter, over the fields name and
// labels.
func (s *service) List(ctx context.Context, req *namespacesv1.ListNamespacesRequest) (*namespacesv1.ListNamespacesResponse, error) {
	filter, err := filters.Parse(req.GetFilter())
	if err != nil {
		return nil, errdefs.ToGRPC(fmt.Errorf("listing namespaces: %w", err))
	}
	names, err := s.store.List(ctx)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	resp := &namespacesv1.ListNamespacesResponse{Namespaces: make([]*namespacesv1.Namespace, 0, len(names))}
	for _, name := range names {
		ns, err := s.get(ctx, name)
		if errdefs.IsNotFound(err) {
			continue // deleted since List
		} else if err != nil {
			return nil, errdefs.ToGRPC(err)
		}
		if filter.Match(adapt(ns)) {
			resp.Namespaces = append(resp.Namespaces, ns)
		}
	}
	return resp, nil
}

func (s *service) Create(ctx context.Context, req *namespacesv1.CreateNamespaceRequest) (*namespacesv1.CreateNamespaceResponse, error) {
	in := req.GetNamespace()
	if in == nil {
		return nil, errdefs.ToGRPC(fmt.Errorf("creating a namespace: the request has no namespace: %w", errdefs.ErrInvalidArgument))
	}
	if err := s.store.Create(ctx, in.GetName(), in.GetLabels()); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	ns, err := s.get(ctx, in.GetName())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &namespacesv1.CreateNamespaceResponse{Namespace: ns}, nil
}

// Update sets the labels named by the mask ("labels" replaces them all,
// "labels.KEY" sets one, and an empty value removes it); with no mask it
// replaces all labels.
func (s *service) Update(ctx context.Context, req *namespacesv1.UpdateNamespaceRequest) (*namespacesv1.UpdateNamespaceResponse, error) {
	in := req.GetNamespace()
	if in == nil {
		return nil, errdefs.ToGRPC(fmt.Errorf("updating a namespace: the request has no namespace: %w", errdefs.ErrInvalidArgument))
	}
	name := in.GetName()
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		paths = []string{"labels"}
	}
	// Check every path before changing anything.
	for _, path := range paths {
		if path != "labels" && !strings.HasPrefix(path, "labels.") {
			return nil, errdefs.ToGRPC(fmt.Errorf("updating namespace %q: field %q cannot be updated, only \"labels\" and \"labels.KEY\": %w", name, path, errdefs.ErrInvalidArgument))
		}
	}
	for _, path := range paths {
		if path == "labels" {
			if err := s.replaceLabels(ctx, name, in.GetLabels()); err != nil {
				return nil, errdefs.ToGRPC(err)
			}
			continue
		}
		key := strings.TrimPrefix(path, "labels.")
		if err := s.store.SetLabel(ctx, name, key, in.GetLabels()[key]); err != nil {
			return nil, errdefs.ToGRPC(err)
		}
	}
	ns, err := s.get(ctx, name)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &namespacesv1.UpdateNamespaceResponse{Namespace: ns}, nil
}

func (s *service) Delete(ctx context.Context, req *namespacesv1.DeleteNamespaceRequest) (*emptypb.Empty, error) {
	if err := s.store.Delete(ctx, req.GetName()); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *service) get(ctx context.Context, name string) (*namespacesv1.Namespace, error) {
	labels, err := s.store.Labels(ctx, name)
	if err != nil {
		return nil, err
	}
	return &namespacesv1.Namespace{Name: name, Labels: labels}, nil
}

// replaceLabels makes the labels of name exactly labels. The store has no
// call for that, so it removes the others one by one.
func (s *service) replaceLabels(ctx context.Context, name string, labels map[string]string) error {
	existing, err := s.store.Labels(ctx, name)
	if err != nil {
		return err
	}
	for k := range existing {
		if _, keep := labels[k]; !keep {
			if err := s.store.SetLabel(ctx, name, k, ""); err != nil {
				return err
			}
		}
	}
	for k, v := range labels {
		if existing[k] == v {
			continue
		}
		if err := s.store.SetLabel(ctx, name, k, v); err != nil {
			return err
		}
	}
	return nil
}

func adapt(ns *namespacesv1.Namespace) filters.Adaptor {
	return filters.AdaptorFunc(func(path []string) (string, bool) {
		switch {
		case len(path) == 1 && path[0] == "name":
			return ns.GetName(), true
		case len(path) > 0 && path[0] == "labels":
			return filters.MapField(ns.GetLabels(), path)
		}
		return "", false
	})
}
