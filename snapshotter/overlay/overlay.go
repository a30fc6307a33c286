// Package overlay is the overlayfs snapshotter. Each snapshot has a folder
// named by its short numeric id:
//
//	<root>/metadata.db          the records (package storage)
//	<root>/snapshots/<id>/fs    the snapshot's own files: an overlay upper folder
//	<root>/snapshots/<id>/work  overlayfs's work folder (active snapshots)
//	<root>/empty                an always-empty lower folder for rebased snapshots
//
// A committed snapshot is the fs folder of each of its ancestors stacked as
// overlay lower folders; mounts list them with absolute paths, nearest
// first. A chain too long for the kernel's one-page limit on mount options
// still mounts through package mount, which then passes the lower folders
// relative to <root>/snapshots ("12/fs:11/fs:..."): with short ids, 128
// layers fit in a page whatever the root.
package overlay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
	"github.com/berth-engine/berth/snapshotter/internal/dirs"
	"github.com/berth-engine/berth/snapshotter/snapshots"
	"github.com/berth-engine/berth/snapshotter/storage"
)

// Snapshotter keeps snapshots as overlayfs layers under one root.
type Snapshotter struct {
	root  string
	ms    *storage.MetaStore
	dirs  *dirs.Dirs
	empty string
	// options are added to every overlay mount.
	options []string
}

var _ snapshots.Snapshotter = (*Snapshotter)(nil)

// New opens (creating if needed) the overlay snapshotter at root. It fails
// with ErrNotImplemented when the kernel has no overlayfs or root is on a
// filesystem overlayfs cannot use.
func New(root string) (*Snapshotter, error) {
	if err := checkOverlay("/proc/filesystems"); err != nil {
		return nil, err
	}
	// Mounts carry absolute paths, whatever the caller's working directory.
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("finding the overlay snapshotter's root: %w", err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("creating the overlay snapshotter's root %s: %w", root, err)
	}
	if err := checkBackingFS(root); err != nil {
		return nil, err
	}
	d, err := dirs.New(filepath.Join(root, "snapshots"))
	if err != nil {
		return nil, err
	}
	empty := filepath.Join(root, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("creating %s: %w", empty, err)
	}
	ms, err := storage.NewMetaStore(filepath.Join(root, "metadata.db"))
	if err != nil {
		return nil, err
	}
	var options []string
	// With the inodes index on, overlayfs ties a lower folder to the upper
	// folder it was first mounted with; a rebased or shared layer is
	// mounted under many, so the index must be off where it exists.
	if _, err := os.Stat("/sys/module/overlay/parameters/index"); err == nil {
		options = append(options, "index=off")
	}
	return &Snapshotter{root: root, ms: ms, dirs: d, empty: empty, options: options}, nil
}

// checkOverlay reads filesystems (/proc/filesystems) for overlay.
func checkOverlay(filesystems string) error {
	b, err := os.ReadFile(filesystems)
	if err != nil {
		return fmt.Errorf("checking whether the kernel supports overlayfs: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == "overlay" {
			return nil
		}
	}
	return fmt.Errorf("the kernel does not support overlayfs (no \"overlay\" in %s): load it with 'modprobe overlay', or use the native snapshotter (--backend native): %w",
		filesystems, errdefs.ErrNotImplemented)
}

// checkBackingFS refuses a root on a filesystem that cannot hold overlay
// upper folders.
func checkBackingFS(root string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return fmt.Errorf("checking the filesystem of %s: %w", root, err)
	}
	if st.Type == unix.OVERLAYFS_SUPER_MAGIC {
		return fmt.Errorf("%s is on an overlay filesystem, which overlayfs cannot stack upon: choose a root on another filesystem, or use the native snapshotter (--backend native): %w",
			root, errdefs.ErrNotImplemented)
	}
	return nil
}

func (o *Snapshotter) fsPath(id string) string   { return filepath.Join(o.dirs.Path(id), "fs") }
func (o *Snapshotter) workPath(id string) string { return filepath.Join(o.dirs.Path(id), "work") }

// Stat returns the metadata of key.
func (o *Snapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	_, info, err := o.ms.Stat(ctx, key)
	return info, err
}

// Update changes the labels of info.Name.
func (o *Snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	return o.ms.UpdateInfo(ctx, info, fieldpaths...)
}

// Usage returns the space the snapshot's own folder uses.
func (o *Snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	id, _, err := o.ms.Stat(ctx, key)
	if err != nil {
		return snapshots.Usage{}, err
	}
	return dirs.Usage(ctx, o.fsPath(id))
}

// Mounts returns the mounts of an active snapshot or view.
func (o *Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	s, err := o.ms.Mountable(ctx, key)
	if err != nil {
		return nil, err
	}
	return o.mounts(s), nil
}

// Prepare creates the active snapshot key on parent.
func (o *Snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return o.create(ctx, snapshots.KindActive, key, parent, opts)
}

// View creates the read-only snapshot key of parent.
func (o *Snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return o.create(ctx, snapshots.KindView, key, parent, opts)
}

func (o *Snapshotter) create(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) ([]mount.Mount, error) {
	temp, done, err := o.dirs.Temp()
	if err != nil {
		return nil, err
	}
	defer done()
	fs := filepath.Join(temp, "fs")
	if err := os.Mkdir(fs, 0o755); err != nil {
		return nil, fmt.Errorf("creating snapshot %q: %w", key, err)
	}
	// The fs folder is the root of what is mounted: 0755, whatever the
	// umask, unless it takes its parent's below.
	if err := os.Chmod(fs, 0o755); err != nil {
		return nil, fmt.Errorf("creating snapshot %q: %w", key, err)
	}
	if kind == snapshots.KindActive {
		if err := os.Mkdir(filepath.Join(temp, "work"), 0o711); err != nil {
			return nil, fmt.Errorf("creating snapshot %q: %w", key, err)
		}
	}
	var s storage.Snapshot
	err = o.ms.Update(ctx, func(tx *storage.Tx) (err error) {
		if s, err = tx.Create(kind, key, parent, opts...); err != nil {
			return err
		}
		if len(s.ParentIDs) > 0 {
			// The upper folder is the merged root: it must look like
			// the parent's.
			if err := copyRootAttrs(fs, o.fsPath(s.ParentIDs[0])); err != nil {
				return fmt.Errorf("creating snapshot %q: %w", key, err)
			}
		}
		return o.dirs.Place(temp, s.ID)
	})
	if err != nil {
		return nil, err
	}
	return o.mounts(s), nil
}

// copyRootAttrs gives dst the owner and mode of src.
func copyRootAttrs(dst, src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("reading the parent's root folder: %w", err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil && !errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("giving the root folder its parent's owner: %w", err)
	}
	if err := os.Chmod(dst, fi.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky)); err != nil {
		return fmt.Errorf("giving the root folder its parent's mode: %w", err)
	}
	return nil
}

// mounts returns the mounts of s:
//   - no parent: a bind mount of its folder (read-only for a view), or,
//     for an active snapshot labelled LabelRebase, an overlay on the empty
//     folder so that whiteouts can be written to its upper folder;
//   - active with parents: an overlay of the parents under its folder;
//   - a view of one parent: a read-only bind mount of the parent's folder;
//   - a view of more: an overlay of the parents only, read-only by nature.
func (o *Snapshotter) mounts(s storage.Snapshot) []mount.Mount {
	info := s.Info
	if len(s.ParentIDs) == 0 {
		if info.Kind == snapshots.KindActive && info.Labels[snapshots.LabelRebase] == "true" {
			return []mount.Mount{o.overlay([]string{o.empty}, s.ID)}
		}
		rw := "rw"
		if info.Kind == snapshots.KindView {
			rw = "ro"
		}
		return []mount.Mount{{Type: "bind", Source: o.fsPath(s.ID), Options: []string{rw, "rbind"}}}
	}
	lowers := make([]string, len(s.ParentIDs))
	for i, id := range s.ParentIDs {
		lowers[i] = o.fsPath(id)
	}
	if info.Kind == snapshots.KindActive {
		return []mount.Mount{o.overlay(lowers, s.ID)}
	}
	if len(lowers) == 1 {
		return []mount.Mount{{Type: "bind", Source: lowers[0], Options: []string{"ro", "rbind"}}}
	}
	return []mount.Mount{o.overlay(lowers, "")}
}

// overlay returns an overlay mount of lowers (nearest first) with the
// folders of upperID on top, or read-only without upper folder when
// upperID is "".
func (o *Snapshotter) overlay(lowers []string, upperID string) mount.Mount {
	options := append([]string(nil), o.options...)
	if upperID != "" {
		options = append(options, "workdir="+o.workPath(upperID), "upperdir="+o.fsPath(upperID))
	}
	options = append(options, "lowerdir="+strings.Join(lowers, ":"))
	return mount.Mount{Type: "overlay", Source: "overlay", Options: options}
}

// Commit turns the active snapshot key into the committed snapshot name.
// WithParent re-parents it (CapabilityRebase).
func (o *Snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	return o.ms.Update(ctx, func(tx *storage.Tx) error {
		_, err := tx.Commit(key, name, opts...)
		return err
	})
}

// Remove removes key; a committed snapshot with children is refused.
func (o *Snapshotter) Remove(ctx context.Context, key string) error {
	return o.dirs.Remove(ctx, o.ms, key)
}

// Walk calls fn for each snapshot matching any of filters.
func (o *Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	return o.ms.Walk(ctx, fn, filters...)
}

// Cleanup removes the snapshot folders that no record owns.
func (o *Snapshotter) Cleanup(ctx context.Context) error {
	return o.dirs.Cleanup(ctx, o.ms)
}

// Capabilities reports CapabilityRebase.
func (o *Snapshotter) Capabilities(context.Context) ([]string, error) {
	return []string{snapshots.CapabilityRebase}, nil
}

// Close closes the metadata database.
func (o *Snapshotter) Close() error { return o.ms.Close() }
