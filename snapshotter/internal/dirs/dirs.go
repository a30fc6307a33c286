// Package dirs keeps a snapshotter's snapshot folders in step with its
// metadata, so that a crash at any point leaves nothing that Cleanup cannot
// tell apart and remove:
//
//   - a snapshot's folder is made under a temporary name and renamed to
//     its id inside the transaction that records it, so a record never
//     exists without its folder;
//   - a removed snapshot's folder is renamed aside inside the transaction
//     that forgets it and deleted after;
//   - Cleanup removes every folder whose name is not the id of a record.
package dirs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/berth-engine/berth/internal/mount"
	"github.com/berth-engine/berth/snapshotter/snapshots"
	"github.com/berth-engine/berth/snapshotter/storage"
)

const (
	tempPrefix  = "new-"
	trashPrefix = "rm-"
)

// Dirs manages the folder that holds one folder per snapshot, named by id.
type Dirs struct {
	root string

	// made counts the temporary folders made, so that no two calls of
	// this process ever get the same name.
	made atomic.Uint64

	mu sync.Mutex
	// inUse are the temporary and trash folders that calls in progress
	// own; Cleanup leaves them alone.
	inUse map[string]struct{}
}

// New manages the snapshot folders in root, creating it if needed.
func New(root string) (*Dirs, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("creating the snapshots folder %s: %w", root, err)
	}
	return &Dirs{root: root, inUse: map[string]struct{}{}}, nil
}

// Path returns the folder of the snapshot with id.
func (d *Dirs) Path(id string) string { return filepath.Join(d.root, id) }

func (d *Dirs) claim(path string) {
	d.mu.Lock()
	d.inUse[filepath.Base(path)] = struct{}{}
	d.mu.Unlock()
}

func (d *Dirs) release(path string) {
	d.mu.Lock()
	delete(d.inUse, filepath.Base(path))
	d.mu.Unlock()
}

func (d *Dirs) claimed(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.inUse[name]
	return ok
}

// Temp makes a fresh temporary folder for a snapshot being made. Call
// done when the call ends: it removes the folder unless Place moved it.
func (d *Dirs) Temp() (path string, done func(), err error) {
	for {
		// The random part keeps apart the names of earlier processes'
		// leftovers.
		name := tempPrefix + strconv.FormatUint(d.made.Add(1), 10) + "-" + strconv.FormatUint(uint64(rand.Uint32()), 36)
		path = filepath.Join(d.root, name)
		d.mu.Lock() // so that Cleanup cannot see the folder before it is claimed
		err = os.Mkdir(path, 0o700)
		if err == nil {
			d.inUse[name] = struct{}{}
		}
		d.mu.Unlock()
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) {
			return "", nil, fmt.Errorf("creating a folder for a new snapshot: %w", err)
		}
	}
	return path, func() {
		if err := os.RemoveAll(path); err != nil {
			slog.Warn("removing the folder of a snapshot that was not made", "path", path, "error", err)
		}
		d.release(path)
	}, nil
}

// Place renames the temporary folder temp to the folder of id; call it in
// the transaction that records id. A folder already at id has no record
// (the id was just handed out): a crash between a rename like this one and
// its transaction's commit left it, so it is removed first.
func (d *Dirs) Place(temp, id string) error {
	dest := d.Path(id)
	err := os.Rename(temp, dest)
	if errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY) {
		if err := d.removeTree(dest); err != nil {
			return fmt.Errorf("removing %s, left by a crash: %w", dest, err)
		}
		err = os.Rename(temp, dest)
	}
	if err != nil {
		return fmt.Errorf("moving the new snapshot's folder into place: %w", err)
	}
	return nil
}

// Trash renames the folder of id aside; call it in the transaction that
// forgets id, then Delete the returned path once the transaction committed,
// or Restore it if the transaction failed. A missing folder gives "".
func (d *Dirs) Trash(id string) (string, error) {
	trash := d.trashPath(id)
	d.claim(trash)
	if err := os.Rename(d.Path(id), trash); err != nil {
		d.release(trash)
		if errors.Is(err, os.ErrNotExist) {
			return "", nil
		}
		return "", fmt.Errorf("moving the folder of snapshot %s aside: %w", id, err)
	}
	return trash, nil
}

func (d *Dirs) trashPath(name string) string {
	return filepath.Join(d.root, trashPrefix+name+"-"+strconv.FormatUint(rand.Uint64(), 36))
}

// Restore renames a trashed folder back to id after its transaction failed.
func (d *Dirs) Restore(trash, id string) error {
	if trash == "" {
		return nil
	}
	defer d.release(trash)
	if err := os.Rename(trash, d.Path(id)); err != nil {
		return fmt.Errorf("moving the folder of snapshot %s back: %w", id, err)
	}
	return nil
}

// Delete removes a trashed folder. What it cannot remove, Cleanup will.
func (d *Dirs) Delete(trash string) error {
	if trash == "" {
		return nil
	}
	defer d.release(trash)
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("removing the folder of a removed snapshot: %w", err)
	}
	return nil
}

// Orphans moves aside every folder whose name is not one of owned (the ids
// that have records) and that no call in progress uses; call it in a
// read-write transaction so that no folder is placed meanwhile, then
// DeleteAll the result once it ended.
func (d *Dirs) Orphans(owned map[string]string) ([]string, error) {
	entries, err := os.ReadDir(d.root)
	if err != nil {
		return nil, fmt.Errorf("listing the snapshots folder: %w", err)
	}
	var trash []string
	for _, e := range entries {
		name := e.Name()
		if _, ok := owned[name]; ok || d.claimed(name) {
			continue
		}
		if strings.HasPrefix(name, trashPrefix) {
			// Already aside, by a Remove or Cleanup that did not finish.
			d.claim(name)
			trash = append(trash, filepath.Join(d.root, name))
			continue
		}
		path := d.trashPath(name)
		d.claim(path)
		if err := os.Rename(filepath.Join(d.root, name), path); err != nil {
			d.release(path)
			return trash, fmt.Errorf("moving %s aside: %w", name, err)
		}
		trash = append(trash, path)
	}
	return trash, nil
}

// DeleteAll removes trashed folders, unmounting anything mounted below
// them first so that no mounted data is deleted through them.
func (d *Dirs) DeleteAll(ctx context.Context, trash []string) error {
	var errs []error
	for _, path := range trash {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			d.release(path)
			continue
		}
		errs = append(errs, d.removeTree(path))
		d.release(path)
	}
	return errors.Join(errs...)
}

func (d *Dirs) removeTree(path string) error {
	if err := mount.UnmountAll(path); err != nil {
		return fmt.Errorf("unmounting what is mounted under %s before removing it: %w", path, err)
	}
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// Usage returns the disk space and inodes that the tree at dir uses, as du
// counts them: allocated blocks, and each inode once however many hard
// links it has.
func Usage(ctx context.Context, dir string) (snapshots.Usage, error) {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]struct{}{}
	var u snapshots.Usage
	n := 0
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(path, &st); err != nil {
			return &fs.PathError{Op: "lstat", Path: path, Err: err}
		}
		in := inode{uint64(st.Dev), st.Ino}
		if _, ok := seen[in]; ok {
			return nil
		}
		seen[in] = struct{}{}
		u.Inodes++
		u.Size += st.Blocks * 512
		return nil
	})
	if err != nil {
		return snapshots.Usage{}, fmt.Errorf("measuring the disk usage of %s: %w", dir, err)
	}
	return u, nil
}

// Remove forgets key in ms and deletes its folder: the folder is moved aside
// in the same transaction and deleted after it.
func (d *Dirs) Remove(ctx context.Context, ms *storage.MetaStore, key string) error {
	var id, trash string
	err := ms.Update(ctx, func(tx *storage.Tx) (err error) {
		if id, _, err = tx.Remove(key); err != nil {
			return err
		}
		trash, err = d.Trash(id)
		return err
	})
	if err != nil {
		if rerr := d.Restore(trash, id); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return err
	}
	if err := d.Delete(trash); err != nil {
		// The record is gone; Cleanup removes the rest.
		slog.WarnContext(ctx, "removed snapshot left files behind", "key", key, "error", err)
	}
	return nil
}

// Cleanup removes the snapshot folders that no record of ms owns.
func (d *Dirs) Cleanup(ctx context.Context, ms *storage.MetaStore) error {
	var trash []string
	err := ms.Update(ctx, func(tx *storage.Tx) error {
		ids, err := tx.IDs()
		if err != nil {
			return err
		}
		trash, err = d.Orphans(ids)
		return err
	})
	// What was moved aside is trash even when the transaction failed.
	return errors.Join(err, d.DeleteAll(ctx, trash))
}
