// Package native is the copying snapshotter, for filesystems that overlayfs
// cannot use. An active snapshot is a full copy of its parent's tree
// (sharing blocks with reflinks where the filesystem has them); a view is
// its parent's folder itself, mounted read-only, since a committed snapshot
// never changes. Layout:
//
//	<root>/metadata.db          the records (package storage)
//	<root>/snapshots/<id>/fs    the snapshot's files
package native

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
	"github.com/berth-engine/berth/snapshotter/internal/dirs"
	"github.com/berth-engine/berth/snapshotter/snapshots"
	"github.com/berth-engine/berth/snapshotter/storage"
)

// Snapshotter keeps snapshots as plain copies under one root.
type Snapshotter struct {
	ms   *storage.MetaStore
	dirs *dirs.Dirs
}

var _ snapshots.Snapshotter = (*Snapshotter)(nil)

// New opens (creating if needed) the native snapshotter at root.
func New(root string) (*Snapshotter, error) {
	// Mounts carry absolute paths, whatever the caller's working directory.
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("finding the native snapshotter's root: %w", err)
	}
	d, err := dirs.New(filepath.Join(root, "snapshots"))
	if err != nil {
		return nil, err
	}
	ms, err := storage.NewMetaStore(filepath.Join(root, "metadata.db"))
	if err != nil {
		return nil, err
	}
	return &Snapshotter{ms: ms, dirs: d}, nil
}

func (n *Snapshotter) fsPath(id string) string { return filepath.Join(n.dirs.Path(id), "fs") }

// Stat returns the metadata of key.
func (n *Snapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	_, info, err := n.ms.Stat(ctx, key)
	return info, err
}

// Update changes the labels of info.Name.
func (n *Snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	return n.ms.UpdateInfo(ctx, info, fieldpaths...)
}

// Usage returns the space the snapshot's folder uses: all of its tree for
// an active or committed snapshot, which is a full copy.
func (n *Snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	id, _, err := n.ms.Stat(ctx, key)
	if err != nil {
		return snapshots.Usage{}, err
	}
	return dirs.Usage(ctx, n.fsPath(id))
}

// Mounts returns the mounts of an active snapshot or view.
func (n *Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	s, err := n.ms.Mountable(ctx, key)
	if err != nil {
		return nil, err
	}
	return n.mounts(s), nil
}

// mounts returns a read-write bind mount of an active snapshot's folder, or
// a read-only one of a view's parent (of its own empty folder without one).
func (n *Snapshotter) mounts(s storage.Snapshot) []mount.Mount {
	if s.Info.Kind == snapshots.KindView {
		source := n.fsPath(s.ID)
		if len(s.ParentIDs) > 0 {
			source = n.fsPath(s.ParentIDs[0])
		}
		return []mount.Mount{{Type: "bind", Source: source, Options: []string{"ro", "rbind"}}}
	}
	return []mount.Mount{{Type: "bind", Source: n.fsPath(s.ID), Options: []string{"rw", "rbind"}}}
}

// Prepare creates the active snapshot key as a copy of parent.
func (n *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return n.create(ctx, snapshots.KindActive, key, parent, opts)
}

// View creates the read-only snapshot key of parent.
func (n *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return n.create(ctx, snapshots.KindView, key, parent, opts)
}

func (n *Snapshotter) create(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) ([]mount.Mount, error) {
	// The copy is made before the transaction, which must not be held for
	// as long as a copy takes, and checked against the record after.
	var copyFrom string
	if kind == snapshots.KindActive && parent != "" {
		err := n.ms.View(ctx, func(tx *storage.Tx) error {
			id, info, err := tx.Stat(parent)
			if err == nil && info.Kind == snapshots.KindCommitted {
				copyFrom = id
			}
			return nil // Create below says what is wrong with parent
		})
		if err != nil {
			return nil, err
		}
	}
	temp, done, err := n.dirs.Temp()
	if err != nil {
		return nil, err
	}
	defer done()
	fs := filepath.Join(temp, "fs")
	if copyFrom != "" {
		if err := copyTree(ctx, fs, n.fsPath(copyFrom)); err != nil {
			return nil, fmt.Errorf("creating snapshot %q: copying its parent %q: %w", key, parent, err)
		}
	} else if err := mkdirRoot(fs); err != nil {
		return nil, fmt.Errorf("creating snapshot %q: %w", key, err)
	}
	var s storage.Snapshot
	err = n.ms.Update(ctx, func(tx *storage.Tx) (err error) {
		if s, err = tx.Create(kind, key, parent, opts...); err != nil {
			return err
		}
		if copyFrom != "" && s.ParentIDs[0] != copyFrom {
			return fmt.Errorf("creating snapshot %q: its parent %q was replaced while it was copied: try again: %w", key, parent, errdefs.ErrAborted)
		}
		return n.dirs.Place(temp, s.ID)
	})
	if err != nil {
		return nil, err
	}
	return n.mounts(s), nil
}

// mkdirRoot makes the root folder of a snapshot without parent: mode 0755,
// whatever the umask.
func mkdirRoot(path string) error {
	if err := os.Mkdir(path, 0o755); err != nil {
		return err
	}
	return os.Chmod(path, 0o755)
}

// Commit turns the active snapshot key into the committed snapshot name.
// The native snapshotter cannot rebase: WithParent must name key's parent.
func (n *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	var want snapshots.Info
	for _, opt := range opts {
		if err := opt(&want); err != nil {
			return fmt.Errorf("committing snapshot %q: %w", key, err)
		}
	}
	return n.ms.Update(ctx, func(tx *storage.Tx) error {
		if want.Parent != "" {
			_, info, err := tx.Stat(key)
			if err != nil {
				return err
			}
			if info.Parent != want.Parent {
				return fmt.Errorf("committing snapshot %q onto parent %q: the native snapshotter cannot rebase snapshots (it has no %q capability): prepare it on %q instead: %w",
					key, want.Parent, snapshots.CapabilityRebase, want.Parent, errdefs.ErrNotImplemented)
			}
		}
		_, err := tx.Commit(key, name, opts...)
		return err
	})
}

// Remove removes key; a committed snapshot with children is refused.
func (n *Snapshotter) Remove(ctx context.Context, key string) error {
	return n.dirs.Remove(ctx, n.ms, key)
}

// Walk calls fn for each snapshot matching any of filters.
func (n *Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	return n.ms.Walk(ctx, fn, filters...)
}

// Cleanup removes the snapshot folders that no record owns.
func (n *Snapshotter) Cleanup(ctx context.Context) error {
	return n.dirs.Cleanup(ctx, n.ms)
}

// Capabilities reports none: the native snapshotter cannot rebase.
func (n *Snapshotter) Capabilities(context.Context) ([]string, error) {
	return []string{}, nil
}

// Close closes the metadata database.
func (n *Snapshotter) Close() error { return n.ms.Close() }
