// Package containers defines the container store: records of what a
// container is made of (image, runtime, OCI spec, root filesystem snapshot),
// kept apart from what runs in it (tasks).
package containers

import (
	"context"
	"encoding/hex"
	"fmt"
	"regexp"
	"time"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berth-engine/berth/internal/errdefs"
)

// SpecTypeURL is the type URL of the Any in Container.Spec: its value is
// the JSON of a github.com/opencontainers/runtime-spec specs.Spec.
const SpecTypeURL = "types.berth.dev/opencontainers/runtime-spec/1/Spec"

// Container is a container record.
type Container struct {
	// ID is 64 lowercase hexadecimal digits.
	ID string
	// Name is unique in its namespace; see ValidateName.
	Name   string
	Labels map[string]string
	// Image is the name of the image the container was made from.
	Image   string
	Runtime RuntimeInfo
	// Spec holds the OCI runtime spec as JSON, typed SpecTypeURL.
	Spec *anypb.Any
	// Snapshotter and SnapshotKey name the root filesystem snapshot; the
	// container keeps it from garbage collection.
	Snapshotter string
	SnapshotKey string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	// Extensions carry data clients attach to the container.
	Extensions map[string]*anypb.Any
}

// RuntimeInfo says which runtime runs the container, with its options.
type RuntimeInfo struct {
	Name    string
	Options *anypb.Any
}

// Store keeps container records in one namespace (taken from the context).
type Store interface {
	Get(ctx context.Context, id string) (Container, error)
	// List returns the containers matching any of the filters (all when
	// none), over the fields id, name, image, runtime.name, snapshotter,
	// snapshot_key and labels.KEY, ordered by name.
	List(ctx context.Context, filters ...string) ([]Container, error)
	// Create records the container; its name must be free in the
	// namespace.
	Create(ctx context.Context, container Container) (Container, error)
	// Update sets the fields named by fieldpaths ("name", "image", "spec",
	// "snapshot_key", "labels", "labels.KEY", "extensions",
	// "extensions.KEY"); with none, it replaces all of them. Updating
	// "name" renames the container.
	Update(ctx context.Context, container Container, fieldpaths ...string) (Container, error)
	Delete(ctx context.Context, id string) error
}

// IDLength is the number of hexadecimal digits of a container ID.
const IDLength = 64

// ValidateID returns an invalid-argument error unless id is 64 lowercase
// hexadecimal digits.
func ValidateID(id string) error {
	if len(id) != IDLength {
		return fmt.Errorf("container ID %q must be %d hexadecimal digits: %w", id, IDLength, errdefs.ErrInvalidArgument)
	}
	if _, err := hex.DecodeString(id); err != nil || !isLower(id) {
		return fmt.Errorf("container ID %q must be %d lowercase hexadecimal digits: %w", id, IDLength, errdefs.ErrInvalidArgument)
	}
	return nil
}

func isLower(s string) bool {
	for _, c := range s {
		if c >= 'A' && c <= 'F' {
			return false
		}
	}
	return true
}

// namePattern is Docker's rule for container names.
var namePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// maxNameLength bounds a name, which becomes a bbolt key and a host name
// source.
const maxNameLength = 253

// ValidateName returns an invalid-argument error unless name follows
// Docker's rule: a letter or digit, then at least one letter, digit, '_',
// '.' or '-'. The name is given without Docker's leading '/'.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("container name must not be empty: %w", errdefs.ErrInvalidArgument)
	case len(name) > maxNameLength:
		return fmt.Errorf("container name %q is longer than %d characters: %w", name, maxNameLength, errdefs.ErrInvalidArgument)
	case !namePattern.MatchString(name):
		return fmt.Errorf("invalid container name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-]+ are allowed: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}
