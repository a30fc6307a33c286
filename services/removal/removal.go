// Package removal removes a container with everything it owns: its task
// (shim, bundle, rootfs mount), its record, its root filesystem snapshot
// and its folder of logs and network files. berthd's supervisor (for
// --rm) and the CLI (rm) share it, so a container goes the same way
// whoever removes it, and two removers racing do not fail each other.
package removal

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-engine/berth/internal/errdefs"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
	"github.com/berth-engine/berth/services/tasks"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

// taskGoneTimeout bounds the wait for a task whose process is being reaped.
const taskGoneTimeout = 15 * time.Second

// Deps are the services a removal uses, scoped to the namespace of the
// context passed to Remove.
type Deps struct {
	Tasks      tasks.Service
	Containers containers.Store
	// Snapshotter returns the snapshotter by name ("" is the default), or
	// nil when it is not available.
	Snapshotter func(name string) snapshots.Snapshotter
	// Root is berthd's root; the container's files are in
	// <root>/containers/<id>.
	Root string
}

// Remove deletes the container's stopped task, snapshot, files and,
// last, its record: a container that is listed no more is gone entirely,
// and one whose removal failed half-way can be removed again. What is
// already gone is not an error, so a second removal succeeds.
func Remove(ctx context.Context, d Deps, c containers.Container) error {
	if err := DeleteTask(ctx, d.Tasks, c.ID); err != nil {
		return fmt.Errorf("removing container %s: %w", c.Name, err)
	}
	if c.SnapshotKey != "" {
		if sn := d.Snapshotter(c.Snapshotter); sn != nil {
			if err := sn.Remove(ctx, c.SnapshotKey); err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("removing the root filesystem snapshot of container %s: %w", c.Name, err)
			}
		}
	}
	if d.Root != "" {
		if err := os.RemoveAll(Dir(d.Root, c.ID)); err != nil {
			return fmt.Errorf("removing the files of container %s: %w", c.Name, err)
		}
	}
	if err := d.Containers.Delete(ctx, c.ID); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("removing container %s: %w", c.Name, err)
	}
	return nil
}

// Dir is the folder of the container's logs and network files.
func Dir(root, id string) string { return filepath.Join(root, "containers", id) }

// DeleteTask deletes the container's stopped task. A task that is already
// gone is fine (the tasks service waits for a delete in progress); one
// whose process is still being reaped is waited for, once; a running or
// paused one is an error: stop it first.
func DeleteTask(ctx context.Context, ts tasks.Service, id string) error {
	for retried := false; ; retried = true {
		_, err := ts.Delete(ctx, &tasksv1.DeleteTaskRequest{ContainerId: id})
		switch {
		case err == nil, errdefs.IsNotFound(err):
			return nil
		case !errdefs.IsFailedPrecondition(err) || retried:
			return fmt.Errorf("deleting the task: %w", err)
		}
		if p, gerr := ts.Get(ctx, &tasksv1.GetRequest{ContainerId: id}); gerr == nil {
			switch p.GetProcess().GetStatus() {
			case tasksv1.Status_STATUS_RUNNING, tasksv1.Status_STATUS_PAUSED:
				return fmt.Errorf("deleting the task: %w", err)
			}
		}
		wctx, cancel := context.WithTimeout(ctx, taskGoneTimeout)
		_, werr := ts.Wait(wctx, &tasksv1.WaitRequest{ContainerId: id})
		cancel()
		if werr != nil && !errdefs.IsNotFound(werr) {
			return fmt.Errorf("deleting the task: waiting for it to stop: %w", werr)
		}
	}
}
