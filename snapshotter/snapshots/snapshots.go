// Package snapshots defines the Snapshotter: filesystem snapshots with
// containerd's semantics. Committed snapshots are immutable and may be
// parents; active snapshots are writable and become committed by Commit;
// views are read-only and are never committed. The overlay and native
// packages implement it on disk, snapshotproxy over gRPC.
package snapshots

import (
	"context"
	"time"

	"github.com/berth-engine/berth/internal/mount"
)

// Kind is the kind of a snapshot.
type Kind uint8

// The kinds of snapshot.
const (
	KindUnknown Kind = iota
	KindView
	KindActive
	KindCommitted
)

// String returns "view", "active", "committed" or "unknown".
func (k Kind) String() string {
	switch k {
	case KindView:
		return "view"
	case KindActive:
		return "active"
	case KindCommitted:
		return "committed"
	}
	return "unknown"
}

// ParseKind parses the String form of a kind.
func ParseKind(s string) Kind {
	switch s {
	case "view":
		return KindView
	case "active":
		return KindActive
	case "committed":
		return KindCommitted
	}
	return KindUnknown
}

// Info is the metadata of a snapshot.
type Info struct {
	Kind    Kind
	Name    string // the key of an active snapshot or view, the name of a committed one
	Parent  string // the name of the committed parent, "" for none
	Labels  map[string]string
	Created time.Time
	Updated time.Time
}

// Usage is the disk space a snapshot uses of its own (not its parents').
type Usage struct {
	Inodes int64
	Size   int64
}

// WalkFunc is called for each snapshot by Walk.
type WalkFunc func(context.Context, Info) error

// Opt sets a property of a snapshot being prepared, viewed or committed.
type Opt func(*Info) error

// WithLabels sets labels on the snapshot.
func WithLabels(labels map[string]string) Opt {
	return func(info *Info) error {
		if info.Labels == nil {
			info.Labels = map[string]string{}
		}
		for k, v := range labels {
			info.Labels[k] = v
		}
		return nil
	}
}

// WithParent, given to Commit, re-parents the snapshot onto parent. Only a
// snapshotter with the CapabilityRebase capability accepts it: it lets an
// unpacker apply layers in parallel into parentless snapshots and chain
// them as it commits.
func WithParent(parent string) Opt {
	return func(info *Info) error {
		info.Parent = parent
		return nil
	}
}

// CapabilityRebase is the capability of snapshotters whose Commit accepts
// WithParent.
const CapabilityRebase = "rebase"

// LabelRebase, set to "true" on Prepare, says that the snapshot will be
// re-parented at Commit: the snapshotter returns mounts that a layer can be
// applied to as it would be onto a parent (an overlay upper directory).
const LabelRebase = "berth.snapshot.rebase"

// Snapshotter manages snapshots. Keys and names share one namespace per
// snapshotter: a key in use by an active snapshot or view cannot be the
// name of a committed one.
type Snapshotter interface {
	// Stat returns the snapshot's metadata; ErrNotFound when it does not exist.
	Stat(ctx context.Context, key string) (Info, error)
	// Update changes labels ("labels", "labels.KEY"); with no fieldpaths it
	// replaces them.
	Update(ctx context.Context, info Info, fieldpaths ...string) (Info, error)
	// Usage returns the space the snapshot uses of its own.
	Usage(ctx context.Context, key string) (Usage, error)
	// Mounts returns the mounts of an active snapshot or view.
	Mounts(ctx context.Context, key string) ([]mount.Mount, error)
	// Prepare creates an active snapshot key on top of the committed parent
	// ("" for an empty one) and returns its mounts. ErrAlreadyExists when key
	// is taken.
	Prepare(ctx context.Context, key, parent string, opts ...Opt) ([]mount.Mount, error)
	// View creates a read-only snapshot of parent.
	View(ctx context.Context, key, parent string, opts ...Opt) ([]mount.Mount, error)
	// Commit turns the active snapshot key into the committed snapshot name;
	// key is gone afterwards.
	Commit(ctx context.Context, name, key string, opts ...Opt) error
	// Remove removes a snapshot; a committed one with children is refused
	// with ErrFailedPrecondition.
	Remove(ctx context.Context, key string) error
	// Walk calls fn for each snapshot matching any of the filters (over
	// name, parent, kind, labels.KEY).
	Walk(ctx context.Context, fn WalkFunc, filters ...string) error
	// Cleanup removes what no snapshot owns (left by a crash).
	Cleanup(ctx context.Context) error
	// Capabilities lists optional features (CapabilityRebase).
	Capabilities(ctx context.Context) ([]string, error)
	Close() error
}
