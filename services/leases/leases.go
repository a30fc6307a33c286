// Package leases defines leases: handles that keep the resources a client
// is still assembling (blobs, ingests) safe from garbage collection.
package leases

import (
	"context"
	"time"

	"google.golang.org/grpc/metadata"
)

// Lease is a named handle on a set of resources.
type Lease struct {
	ID        string
	CreatedAt time.Time
	Labels    map[string]string
}

// Resource is one object held by a lease. Type is "content" (ID is a
// digest), "ingests" (ID is an ingest ref) or "snapshots/<snapshotter>"
// (ID is a snapshot key).
type Resource struct {
	ID   string
	Type string
}

// Opt sets a property of a new lease.
type Opt func(*Lease) error

// WithID names the lease.
func WithID(id string) Opt {
	return func(l *Lease) error { l.ID = id; return nil }
}

// WithLabels sets labels on the lease.
func WithLabels(labels map[string]string) Opt {
	return func(l *Lease) error {
		if l.Labels == nil {
			l.Labels = map[string]string{}
		}
		for k, v := range labels {
			l.Labels[k] = v
		}
		return nil
	}
}

// WithExpiration makes the lease expire after d (label berth.gc.expire).
func WithExpiration(d time.Duration) Opt {
	return WithLabels(map[string]string{LabelExpire: time.Now().Add(d).UTC().Format(time.RFC3339Nano)})
}

// LabelExpire holds the RFC 3339 time after which a lease is collected.
const LabelExpire = "berth.gc.expire"

// DeleteOpt changes how Delete behaves.
type DeleteOpt func(*DeleteOptions)

// DeleteOptions are the options of Manager.Delete.
type DeleteOptions struct {
	Synchronous bool
}

// SynchronousDelete makes Delete wait for garbage collection.
func SynchronousDelete() DeleteOpt {
	return func(o *DeleteOptions) { o.Synchronous = true }
}

// Manager creates and deletes leases in the namespace of the context.
type Manager interface {
	Create(ctx context.Context, opts ...Opt) (Lease, error)
	Delete(ctx context.Context, lease Lease, opts ...DeleteOpt) error
	List(ctx context.Context, filters ...string) ([]Lease, error)
	AddResource(ctx context.Context, lease Lease, r Resource) error
	DeleteResource(ctx context.Context, lease Lease, r Resource) error
	ListResources(ctx context.Context, lease Lease) ([]Resource, error)
}

type leaseKey struct{}

// GRPCHeader is the gRPC metadata key that carries the lease id.
const GRPCHeader = "berth-lease"

// WithLease returns a context whose writes are held by the lease id: every
// blob and ingest created with it is added to the lease. Over gRPC the lease
// travels in the "berth-lease" metadata header.
func WithLease(ctx context.Context, id string) context.Context {
	ctx = context.WithValue(ctx, leaseKey{}, id)
	md, ok := metadata.FromOutgoingContext(ctx)
	if !ok {
		md = metadata.MD{}
	} else {
		md = md.Copy()
	}
	md.Set(GRPCHeader, id)
	return metadata.NewOutgoingContext(ctx, md)
}

// FromContext returns the lease set by WithLease or, in a server, the one in
// the incoming gRPC metadata.
func FromContext(ctx context.Context) (string, bool) {
	if id, ok := ctx.Value(leaseKey{}).(string); ok {
		return id, true
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(GRPCHeader); len(v) > 0 && v[0] != "" {
			return v[0], true
		}
	}
	return "", false
}
