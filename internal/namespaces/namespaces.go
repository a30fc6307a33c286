// Package namespaces carries the namespace of a request in its context and,
// across gRPC, in the "berth-namespace" metadata header.
package namespaces

import (
	"context"
	"fmt"
	"os"

	"google.golang.org/grpc/metadata"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/identifiers"
)

const (
	// Default is the namespace for people; Kubernetes uses "k8s.io".
	Default = "default"
	// EnvVar names the environment variable the CLI reads the namespace from.
	EnvVar = "BERTH_NAMESPACE"
	// GRPCHeader is the gRPC metadata key that carries the namespace.
	GRPCHeader = "berth-namespace"
)

type key struct{}

// WithNamespace returns a context carrying namespace, both for in-process
// calls and as outgoing gRPC metadata.
func WithNamespace(ctx context.Context, namespace string) context.Context {
	ctx = context.WithValue(ctx, key{}, namespace)
	md, ok := metadata.FromOutgoingContext(ctx)
	if !ok {
		md = metadata.MD{}
	} else {
		md = md.Copy()
	}
	md.Set(GRPCHeader, namespace)
	return metadata.NewOutgoingContext(ctx, md)
}

// Namespace returns the namespace in ctx: the one set by WithNamespace or,
// in a server, the one in the incoming gRPC metadata.
func Namespace(ctx context.Context) (string, bool) {
	if ns, ok := ctx.Value(key{}).(string); ok {
		return ns, true
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(GRPCHeader); len(v) > 0 {
			return v[0], true
		}
	}
	return "", false
}

// NamespaceRequired returns the valid namespace in ctx or an error saying how
// to give one.
func NamespaceRequired(ctx context.Context) (string, error) {
	ns, ok := Namespace(ctx)
	if !ok || ns == "" {
		return "", fmt.Errorf("no namespace in the request: set the %q gRPC header (the CLI sends --namespace): %w", GRPCHeader, errdefs.ErrFailedPrecondition)
	}
	if err := identifiers.Validate(ns); err != nil {
		return "", fmt.Errorf("namespace %q: %w", ns, err)
	}
	return ns, nil
}

// FromEnv returns the namespace named by BERTH_NAMESPACE, or Default.
func FromEnv() string {
	if ns := os.Getenv(EnvVar); ns != "" {
		return ns
	}
	return Default
}
