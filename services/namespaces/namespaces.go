// Package namespaces defines the store of namespaces themselves.
package namespaces

import "context"

// Namespace is a tenant; every other object lives in exactly one.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Store creates, lists and deletes namespaces.
type Store interface {
	Create(ctx context.Context, name string, labels map[string]string) error
	Labels(ctx context.Context, name string) (map[string]string, error)
	SetLabel(ctx context.Context, name, key, value string) error
	List(ctx context.Context) ([]string, error)
	// Delete refuses (ErrFailedPrecondition) a namespace that still holds objects.
	Delete(ctx context.Context, name string) error
}
