package command

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	eventsv1 "github.com/berth-engine/berth/proto/events/v1"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/internal/errdefs"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
	"github.com/berth-engine/berth/services/removal"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

// runtimeName is the runtime recorded in containers berth creates.
const runtimeName = "runc"

// recordTimeout bounds the wait for berthd's supervisor to record an exit
// or remove a container run with --rm.
const recordTimeout = 10 * time.Second

// saveIntent records what the user asked of the container; berthd's
// supervisor owns the rest of its state.
func saveIntent(ctx context.Context, cl *client.Client, c containers.Container, in containers.Intent) error {
	if err := containers.SetIntent(&c, in); err != nil {
		return err
	}
	if _, err := cl.Containers.Update(ctx, c, "extensions."+containers.IntentExtension); err != nil {
		return fmt.Errorf("recording the intent for container %s: %w", c.Name, err)
	}
	return nil
}

// setManuallyStopped records whether the user stopped the container, so
// that its restart policy does not start it again.
func setManuallyStopped(ctx context.Context, cl *client.Client, c containers.Container, stopped bool) error {
	in := containers.IntentOf(c)
	if in.ManuallyStopped == stopped {
		return nil
	}
	in.ManuallyStopped = stopped
	return saveIntent(ctx, cl, c, in)
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
	if c, ok, err := containerNamed(ctx, cl, name); err != nil || ok {
		return c, err
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

// containerNamed returns the container named name, asking berthd for it
// alone.
func containerNamed(ctx context.Context, cl *client.Client, name string) (containers.Container, bool, error) {
	found, err := cl.Containers.List(ctx, "name=="+strconv.Quote(name))
	if err != nil {
		return containers.Container{}, false, fmt.Errorf("listing containers: %w", err)
	}
	if len(found) == 0 {
		return containers.Container{}, false, nil
	}
	return found[0], true, nil
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

// waitRecorded waits until berthd's supervisor has handled the exit of
// the container's task: recorded it and deleted the task (or restarted
// it, or removed the container, --rm), and returns the fresh record (ok
// false when it is gone). After a timeout it returns the record as it is.
func waitRecorded(ctx context.Context, cl *client.Client, id string) (c containers.Container, ok bool, err error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changed := recordChanges(wctx, cl)
	deadline := time.After(recordTimeout)
	for {
		c, err := cl.Containers.Get(ctx, id)
		if errdefs.IsNotFound(err) {
			return containers.Container{}, false, nil
		}
		if err != nil {
			return c, false, err
		}
		if containers.StateOf(c).Dead {
			return c, true, nil // berthd could not remove it
		}
		if !containers.IntentOf(c).AutoRemove {
			p, err := taskOf(ctx, cl, id)
			if err != nil {
				return c, true, err
			}
			st := containers.StateOf(c)
			switch {
			case p == nil && !st.Running:
				return c, true, nil
			case isRunning(p) && st.Running && st.Pid == p.GetPid():
				return c, true, nil // restarted by its policy
			}
		}
		select {
		case <-ctx.Done():
			return c, true, ctx.Err()
		case <-deadline:
			return c, true, nil
		case <-changed:
		}
	}
}

// recordSettleTopics are the events after which a container's record or
// task may have reached what waitRecorded waits for.
var recordSettleTopics = []string{"/containers/update", "/containers/delete", "/tasks/delete", "/tasks/start"}

// taskTopics are the events after which a task may have stopped.
var taskTopics = []string{"/tasks/exit", "/tasks/delete"}

// taskChanges signals (coalesced) each time a task exits or is deleted,
// until ctx ends; see recordChanges.
func taskChanges(ctx context.Context, cl *client.Client) <-chan struct{} {
	return eventSignals(ctx, cl, taskTopics)
}

// recordChanges signals (coalesced) each time berthd publishes one of
// recordSettleTopics, until ctx ends; it returns once the subscription is
// in place. Should the event stream fail, it signals every 50 ms instead,
// so that a waiter still makes progress.
func recordChanges(ctx context.Context, cl *client.Client) <-chan struct{} {
	return eventSignals(ctx, cl, recordSettleTopics)
}

// eventSignals signals (coalesced) each time berthd publishes an event on
// one of topics, until ctx ends; it returns once the subscription is in
// place, and signals every 50 ms instead should the event stream fail.
func eventSignals(ctx context.Context, cl *client.Client, topics []string) <-chan struct{} {
	ch := make(chan struct{}, 1)
	notify := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	var fs []string
	for _, t := range topics {
		fs = append(fs, "topic=="+strconv.Quote(t))
	}
	stream, err := cl.Events.Subscribe(ctx, &eventsv1.SubscribeRequest{Filters: fs})
	if err == nil {
		// berthd sends the headers once the subscription is in place: no
		// change after this returns is missed.
		_, err = stream.Header()
	}
	go func() {
		if err == nil {
			for {
				if _, err := stream.Recv(); err != nil {
					break
				}
				notify()
			}
		}
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				notify()
			}
		}
	}()
	return ch
}

// removeContainer deletes the container's task, record, snapshot and files.
func removeContainer(ctx context.Context, cl *client.Client, c containers.Container) error {
	root, err := berthdRoot(ctx, cl)
	if err != nil {
		return err
	}
	return removal.Remove(ctx, removal.Deps{
		Tasks: cl.Tasks, Containers: cl.Containers, Root: root,
		Snapshotter: func(name string) snapshots.Snapshotter {
			if name == "" {
				return nil
			}
			return cl.Snapshotter(name)
		},
	}, c)
}

// berthdRoot is berthd's root folder. berth runs on berthd's machine.
func berthdRoot(ctx context.Context, cl *client.Client) (string, error) {
	info, err := cl.Info(ctx)
	if err != nil {
		return "", fmt.Errorf("asking berthd for its root: %w", err)
	}
	if info.GetRoot() == "" {
		return "", errdefs.Errorf(errdefs.ErrFailedPrecondition, "berthd does not report its root folder")
	}
	return info.GetRoot(), nil
}

// containerDir is <root>/containers/<id> on berthd's root, where the
// container's log and network files live.
func containerDir(ctx context.Context, cl *client.Client, id string) (string, error) {
	root, err := berthdRoot(ctx, cl)
	if err != nil {
		return "", err
	}
	return removal.Dir(root, id), nil
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
