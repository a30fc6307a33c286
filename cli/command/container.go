package command

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/internal/errdefs"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
)

// Container records carry what Docker keeps in a container's state, in
// extensions the CLI reads and writes.
const (
	// stateExtension holds a containerState as JSON.
	stateExtension = "berth-state"
	stateTypeURL   = "types.berth.dev/berth/cli/ContainerState"
	// runtimeName is the runtime recorded in containers berth creates.
	runtimeName = "runc"
)

// containerState is what a container's record remembers of its last run,
// so that `ps -a` can say "Exited (3) 2 minutes ago" once the task is gone.
type containerState struct {
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	ExitCode   uint32    `json:"exit_code"`
	// AutoRemove removes the container when it exits (--rm); the CLI that
	// waits for the exit does it.
	AutoRemove bool `json:"auto_remove,omitempty"`
	// Entrypoint and Cmd are what the container runs, apart, as create
	// merged them from the image and the flags; Docker's inspect shows
	// them so. Records made before they were kept have neither.
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
}

func stateOf(c containers.Container) containerState {
	var st containerState
	if a := c.Extensions[stateExtension]; a != nil {
		_ = json.Unmarshal(a.GetValue(), &st) // a damaged state reads as "never ran"
	}
	return st
}

// setState sets st in c's extensions.
func setState(c *containers.Container, st containerState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	c.Extensions = map[string]*anypb.Any{stateExtension: {TypeUrl: stateTypeURL, Value: b}}
	return nil
}

// saveState records st in the container's record.
func saveState(ctx context.Context, cl *client.Client, c containers.Container, st containerState) error {
	if err := setState(&c, st); err != nil {
		return err
	}
	if _, err := cl.Containers.Update(ctx, c, "extensions."+stateExtension); err != nil {
		return fmt.Errorf("recording the state of container %s: %w", c.Name, err)
	}
	return nil
}

// newContainerID returns 64 random hexadecimal digits.
func newContainerID() (string, error) {
	b := make([]byte, containers.IDLength/2)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// noSuchContainer is Docker's message for an unknown container.
func noSuchContainer(arg string) error {
	return errdefs.Errorf(errdefs.ErrNotFound, "No such container: %s", arg)
}

// resolveContainer finds the container arg names, as Docker does: a full
// ID, then a name, then a unique ID prefix.
func resolveContainer(ctx context.Context, cl *client.Client, arg string) (containers.Container, error) {
	if arg == "" {
		return containers.Container{}, noSuchContainer(arg)
	}
	if containers.ValidateID(arg) == nil {
		c, err := cl.Containers.Get(ctx, arg)
		if err == nil || !errdefs.IsNotFound(err) {
			return c, err
		}
	}
	// Ask berthd for the name, then for the prefix, rather than read every
	// record (specs included) on each command.
	name := strings.TrimPrefix(arg, "/")
	byName, err := cl.Containers.List(ctx, "name=="+strconv.Quote(name))
	if err != nil {
		return containers.Container{}, fmt.Errorf("listing containers: %w", err)
	}
	if len(byName) > 0 {
		return byName[0], nil
	}
	if !isHex(arg) {
		return containers.Container{}, noSuchContainer(arg)
	}
	found, err := cl.Containers.List(ctx, "id~="+strconv.Quote("^"+strings.ToLower(arg)))
	if err != nil {
		return containers.Container{}, fmt.Errorf("listing containers: %w", err)
	}
	switch len(found) {
	case 0:
		return containers.Container{}, noSuchContainer(arg)
	case 1:
		return found[0], nil
	}
	return containers.Container{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "multiple IDs found with provided prefix: %s", arg)
}

// isHex says whether s is made of hexadecimal digits only.
func isHex(s string) bool {
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F') {
			return false
		}
	}
	return s != ""
}

// taskOf returns the container's task, or nil when it has none.
func taskOf(ctx context.Context, cl *client.Client, id string) (*tasksv1.Process, error) {
	resp, err := cl.Tasks.Get(ctx, &tasksv1.GetRequest{ContainerId: id})
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("asking for the task of container %s: %w", id, err)
	}
	return resp.GetProcess(), nil
}

func isRunning(p *tasksv1.Process) bool {
	if p == nil {
		return false
	}
	switch p.GetStatus() {
	case tasksv1.Status_STATUS_RUNNING, tasksv1.Status_STATUS_PAUSED:
		return true
	}
	return false
}

// reapTask deletes the container's stopped task, if any, and records its
// exit in the container's state. A task deleted meanwhile (by another
// berth waiting for it) is not an error.
func reapTask(ctx context.Context, cl *client.Client, c containers.Container) (containerState, error) {
	st := stateOf(c)
	resp, err := cl.Tasks.Delete(ctx, &tasksv1.DeleteTaskRequest{ContainerId: c.ID})
	if errdefs.IsNotFound(err) {
		if fresh, gerr := cl.Containers.Get(ctx, c.ID); gerr == nil {
			return stateOf(fresh), nil
		}
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("deleting the task of container %s: %w", c.Name, err)
	}
	st.ExitCode = resp.GetExitStatus()
	st.FinishedAt = time.Now().UTC()
	if resp.GetExitedAt() != nil && !resp.GetExitedAt().AsTime().IsZero() {
		st.FinishedAt = resp.GetExitedAt().AsTime()
	}
	return st, saveState(ctx, cl, c, st)
}

// removeContainer deletes the container's task, record, snapshot and files.
func removeContainer(ctx context.Context, cl *client.Client, c containers.Container) error {
	if _, err := cl.Tasks.Delete(ctx, &tasksv1.DeleteTaskRequest{ContainerId: c.ID}); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("removing container %s: deleting its task: %w", c.Name, err)
	}
	if err := cl.Containers.Delete(ctx, c.ID); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("removing container %s: %w", c.Name, err)
	}
	var errs []error
	if c.SnapshotKey != "" && c.Snapshotter != "" {
		if err := cl.Snapshotter(c.Snapshotter).Remove(ctx, c.SnapshotKey); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("removing the root filesystem snapshot of container %s: %w", c.Name, err))
		}
	}
	if dir, err := containerDir(ctx, cl, c.ID); err == nil {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("removing the files of container %s: %w", c.Name, err))
		}
	} else {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// containerDir is <root>/containers/<id> on berthd's root, where the
// container's log and network files live. berth runs on berthd's machine.
func containerDir(ctx context.Context, cl *client.Client, id string) (string, error) {
	info, err := cl.Introspection.Info(ctx, &emptypb.Empty{})
	if err != nil {
		return "", fmt.Errorf("asking berthd for its root: %w", errdefs.FromGRPC(err))
	}
	if info.GetRoot() == "" {
		return "", errdefs.Errorf(errdefs.ErrFailedPrecondition, "berthd does not report its root folder")
	}
	return filepath.Join(info.GetRoot(), "containers", id), nil
}

// specOf decodes the container's OCI spec.
func specOf(c containers.Container) (*specs.Spec, error) {
	var s specs.Spec
	if c.Spec == nil {
		return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "container %s has no OCI spec", c.Name)
	}
	if err := json.Unmarshal(c.Spec.GetValue(), &s); err != nil {
		return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "container %s has an invalid OCI spec: %v", c.Name, err)
	}
	return &s, nil
}
