// Package leaseproxy implements leases.Manager over the berth.leases.v1.Leases
// gRPC API.
package leaseproxy

import (
	"context"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/protoconv"
	leasesv1 "github.com/berth-engine/berth/proto/leases/v1"
	"github.com/berth-engine/berth/services/leases"
)

type manager struct {
	client leasesv1.LeasesClient
}

// NewManager returns a leases.Manager that calls client. The namespace
// travels in the context (namespaces.WithNamespace).
func NewManager(client leasesv1.LeasesClient) leases.Manager {
	return &manager{client: client}
}

// Create sends the id and labels that opts set; the server names the lease
// when no id is set.
func (m *manager) Create(ctx context.Context, opts ...leases.Opt) (leases.Lease, error) {
	var l leases.Lease
	for _, opt := range opts {
		if err := opt(&l); err != nil {
			return leases.Lease{}, err
		}
	}
	resp, err := m.client.Create(ctx, &leasesv1.CreateRequest{Id: l.ID, Labels: l.Labels})
	if err != nil {
		return leases.Lease{}, errdefs.FromGRPC(err)
	}
	return leaseFromProto(resp.GetLease()), nil
}

func (m *manager) Delete(ctx context.Context, l leases.Lease, opts ...leases.DeleteOpt) error {
	var o leases.DeleteOptions
	for _, opt := range opts {
		opt(&o)
	}
	_, err := m.client.Delete(ctx, &leasesv1.DeleteRequest{Id: l.ID, Sync: o.Synchronous})
	return errdefs.FromGRPC(err)
}

func (m *manager) List(ctx context.Context, filters ...string) ([]leases.Lease, error) {
	resp, err := m.client.List(ctx, &leasesv1.ListRequest{Filters: filters})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	ls := make([]leases.Lease, 0, len(resp.GetLeases()))
	for _, l := range resp.GetLeases() {
		ls = append(ls, leaseFromProto(l))
	}
	return ls, nil
}

func (m *manager) AddResource(ctx context.Context, l leases.Lease, r leases.Resource) error {
	_, err := m.client.AddResource(ctx, &leasesv1.AddResourceRequest{Id: l.ID, Resource: &leasesv1.Resource{Id: r.ID, Type: r.Type}})
	return errdefs.FromGRPC(err)
}

func (m *manager) DeleteResource(ctx context.Context, l leases.Lease, r leases.Resource) error {
	_, err := m.client.DeleteResource(ctx, &leasesv1.DeleteResourceRequest{Id: l.ID, Resource: &leasesv1.Resource{Id: r.ID, Type: r.Type}})
	return errdefs.FromGRPC(err)
}

func (m *manager) ListResources(ctx context.Context, l leases.Lease) ([]leases.Resource, error) {
	resp, err := m.client.ListResources(ctx, &leasesv1.ListResourcesRequest{Id: l.ID})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	rs := make([]leases.Resource, 0, len(resp.GetResources()))
	for _, r := range resp.GetResources() {
		rs = append(rs, leases.Resource{ID: r.GetId(), Type: r.GetType()})
	}
	return rs, nil
}

func leaseFromProto(l *leasesv1.Lease) leases.Lease {
	return leases.Lease{
		ID:        l.GetId(),
		CreatedAt: protoconv.TimestampFromProto(l.GetCreatedAt()),
		Labels:    l.GetLabels(),
	}
}
