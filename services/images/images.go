// Package images defines the image store: names bound to the root
// descriptor (manifest or index) of an image in the content store.
package images

import (
	"context"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is a named image. Name is a normalised reference
// ("docker.io/library/busybox:latest").
type Image struct {
	Name      string
	Labels    map[string]string
	Target    ocispec.Descriptor
	CreatedAt time.Time
	UpdatedAt time.Time
}

// DeleteOpt changes how Delete behaves.
type DeleteOpt func(*DeleteOptions)

// DeleteOptions are the options of Store.Delete.
type DeleteOptions struct {
	// Synchronous makes Delete return only after garbage collection ran.
	Synchronous bool
}

// SynchronousDelete makes Delete wait for garbage collection.
func SynchronousDelete() DeleteOpt {
	return func(o *DeleteOptions) { o.Synchronous = true }
}

// Store keeps image records in one namespace (taken from the context).
type Store interface {
	Get(ctx context.Context, name string) (Image, error)
	// List returns the images matching any of the filters (all when none),
	// over the fields name, target.digest, target.mediatype and labels.
	List(ctx context.Context, filters ...string) ([]Image, error)
	Create(ctx context.Context, image Image) (Image, error)
	// Update sets the fields named by fieldpaths ("target", "labels",
	// "labels.KEY"); with none, it replaces target and labels.
	Update(ctx context.Context, image Image, fieldpaths ...string) (Image, error)
	Delete(ctx context.Context, name string, opts ...DeleteOpt) error
}
