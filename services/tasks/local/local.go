// Package local is the tasks service inside berthd: it makes each task's
// OCI bundle from its container record, starts one berth-shim per task and
// forwards the task API to it over ttrpc. Shims outlive berthd; New finds
// them again from the bundles under <state>/tasks.
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
	"github.com/berth-engine/berth/internal/namespaces"
	eventsv1 "github.com/berth-engine/berth/proto/events/v1"
	shimv1 "github.com/berth-engine/berth/proto/shim/v1"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	typesv1 "github.com/berth-engine/berth/proto/types/v1"
	"github.com/berth-engine/berth/services/containers"
	"github.com/berth-engine/berth/services/events"
	"github.com/berth-engine/berth/services/tasks"
	"github.com/berth-engine/berth/shim"
	"github.com/berth-engine/berth/shim/runtime"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

// Event topics the service publishes.
const (
	TopicCreate = "/tasks/create"
	TopicStart  = "/tasks/start"
	TopicExit   = "/tasks/exit"
	TopicDelete = "/tasks/delete"
	TopicOOM    = "/tasks/oom"
	// TopicExecAdded is published when an exec process is added to a
	// task (before it starts).
	TopicExecAdded = "/tasks/exec-added"
)

const (
	// shimBinaryName is the program started for each task.
	shimBinaryName = "berth-shim"
	// connectTimeout bounds dialling a shim.
	connectTimeout = 5 * time.Second
	// shimExitTimeout bounds the wait for a shim to exit after Shutdown.
	shimExitTimeout = 10 * time.Second
)

// Config is what the tasks service needs.
type Config struct {
	// Root is berthd's root; logs go to <root>/containers/<id>/<id>-json.log.
	Root string
	// State is berthd's state directory; bundles are <state>/tasks/<ns>/<id>.
	State string
	// ShimBinary is the berth-shim program; empty means the one next to
	// the running binary, else berth-shim on PATH.
	ShimBinary string
	// Runtime is the OCI runtime the shims drive (path or name); empty
	// means the shim's default (runc).
	Runtime string
	// Containers holds the container records tasks are created from.
	Containers containers.Store
	// Snapshotter returns the (namespaced) snapshotter by name, or nil.
	Snapshotter func(name string) snapshots.Snapshotter
	// Publisher receives the task events; nil publishes none.
	Publisher events.Publisher
}

// Service is the local tasks.Service. Close it to drop its connections to
// the shims, which keep running.
type Service struct {
	cfg        Config
	shimBin    string
	shimBinErr error

	mu    sync.Mutex
	tasks map[string]*task // by namespace/id
	// deleted keeps the exit of each task deleted since its container's
	// last Create, so that a Wait that comes after the supervisor deleted
	// an exited task still gets its status.
	deleted map[string]deletedExit

	ctx    context.Context // ends on Close, stopping the exit watchers
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ tasks.Service = (*Service)(nil)

// deletedExit is the exit of a deleted task.
type deletedExit struct {
	status    uint32
	exitedAt  *timestamppb.Timestamp
	deletedAt time.Time
}

// deletedExitTTL bounds how long the exit of a deleted task is kept.
const deletedExitTTL = 10 * time.Minute

// task is one task: a live shim, or the recorded exit of one that died.
type task struct {
	ns, id, bundle string
	shimPid        int
	pid            uint32 // of the init process
	client         *ttrpc.Client
	shim           shimv1.TaskService
	// exit is set when the shim is gone; the task is then stopped and only
	// Get, Wait, List and Delete work.
	exit *shim.Exit
	// deleteDone is made when a Delete starts and closed when it ends;
	// it stays (closed) once the task is deleted, and is nil again when
	// the Delete failed. The exit watcher does not take the shim's going
	// for a death while it is set, and Create and Wait wait on it.
	deleteDone chan struct{}
	// oomPublished counts the /tasks/oom events published for the task.
	oomPublished uint64
	// started is closed once the start of the init process was published
	// (or will never be), so that its exit is never published before it.
	started   chan struct{}
	startOnce sync.Once
}

func newTask(ns, id, bundle string) *task {
	return &task{ns: ns, id: id, bundle: bundle, started: make(chan struct{})}
}

// markStarted lets the init process's exit be published.
func (t *task) markStarted() { t.startOnce.Do(func() { close(t.started) }) }

// New returns the tasks service and reconnects to the shims of the tasks
// found under <state>/tasks; a task whose shim died is cleaned up with
// `berth-shim delete` and kept, stopped with its recorded exit, until
// Delete.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Containers == nil || cfg.Snapshotter == nil {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "tasks service: a containers store and snapshotters are required")
	}
	// Without a shim program berthd still serves; creating a task says why
	// it cannot.
	bin, binErr := findShimBinary(cfg.ShimBinary)
	if err := os.MkdirAll(filepath.Join(cfg.State, "tasks"), 0o711); err != nil {
		return nil, fmt.Errorf("tasks service: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Service{cfg: cfg, shimBin: bin, shimBinErr: binErr, tasks: map[string]*task{}, deleted: map[string]deletedExit{}, ctx: sctx, cancel: cancel}
	if err := s.recover(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close stops watching the shims and closes the connections to them; the
// shims and their containers keep running.
func (s *Service) Close() error {
	s.cancel()
	s.mu.Lock()
	for _, t := range s.tasks {
		if t.client != nil {
			t.client.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// findShimBinary returns configured, else berth-shim next to the running
// binary, else on PATH.
func findShimBinary(configured string) (string, error) {
	if configured != "" {
		p, err := exec.LookPath(configured)
		if err != nil {
			return "", errdefs.Errorf(errdefs.ErrInvalidArgument, "shim binary %q not found: %v: set shim_binary to the berth-shim program", configured, err)
		}
		return filepath.Abs(p)
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), shimBinaryName)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath(shimBinaryName)
	if err != nil {
		return "", errdefs.Errorf(errdefs.ErrNotFound, "%s not found next to this program nor on PATH: install it or configure shim_binary", shimBinaryName)
	}
	return filepath.Abs(p)
}

func key(ns, id string) string { return ns + "/" + id }

func (s *Service) bundleDir(ns, id string) string {
	return filepath.Join(s.cfg.State, "tasks", ns, id)
}

// LogPath is where the shim writes a container's output as json lines.
func LogPath(root, id string) string {
	return filepath.Join(root, "containers", id, id+"-json.log")
}

func (s *Service) shimArgs(cmd, ns, id, bundle string) []string {
	args := []string{cmd, "--id", id, "--namespace", ns, "--bundle", bundle, "--state", s.cfg.State}
	if s.cfg.Runtime != "" {
		args = append(args, "--runtime", s.cfg.Runtime)
	}
	return args
}

func (s *Service) publish(ctx context.Context, ns, topic string, ev proto.Message) {
	if s.cfg.Publisher == nil {
		return
	}
	if err := s.cfg.Publisher.Publish(namespaces.WithNamespace(context.WithoutCancel(ctx), ns), topic, ev); err != nil {
		slog.WarnContext(ctx, "publishing task event", "topic", topic, "namespace", ns, "error", err)
	}
}

// lookup returns the task id of the request's namespace.
func (s *Service) lookup(ctx context.Context, id string) (*task, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tasks[key(ns, id)]
	if !ok {
		return nil, errdefs.Errorf(errdefs.ErrNotFound, "task %q not found in namespace %q: create it first", id, ns)
	}
	return t, nil
}

// live returns the task's shim, or a failed-precondition error when the
// task's shim is gone.
func (s *Service) live(ctx context.Context, id, what string) (*task, shimv1.TaskService, error) {
	t, err := s.lookup(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.shim == nil {
		if t.exit == nil {
			return nil, nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "%s task %q: it is still being created: try again", what, id)
		}
		return nil, nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "%s task %q: it is stopped (its shim is gone): delete it", what, id)
	}
	return t, t.shim, nil
}

// Create makes the bundle, starts the shim and creates the task in it.
func (s *Service) Create(ctx context.Context, req *tasksv1.CreateTaskRequest) (_ *tasksv1.CreateTaskResponse, retErr error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	id := req.GetContainerId()
	if s.shimBinErr != nil {
		return nil, fmt.Errorf("creating the task of container %q: %w", id, s.shimBinErr)
	}
	c, err := s.cfg.Containers.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("creating the task of container %q: %w", id, err)
	}
	s.mu.Lock()
	// A task being deleted (its exit handled by the supervisor) goes in a
	// moment: wait for it rather than fail.
	for {
		old, ok := s.tasks[key(ns, id)]
		if !ok {
			break
		}
		exists := errdefs.Errorf(errdefs.ErrAlreadyExists, "task %q already exists in namespace %q: delete it first", id, ns)
		done := old.deleteDone
		if done == nil {
			s.mu.Unlock()
			return nil, exists
		}
		s.mu.Unlock()
		if !waitDone(ctx, done, shimExitTimeout) {
			return nil, exists
		}
		s.mu.Lock()
	}
	// Reserve the name while the shim starts.
	t := newTask(ns, id, s.bundleDir(ns, id))
	s.tasks[key(ns, id)] = t
	delete(s.deleted, key(ns, id))
	s.mu.Unlock()
	defer func() {
		if retErr != nil {
			s.mu.Lock()
			delete(s.tasks, key(ns, id))
			s.mu.Unlock()
		}
	}()

	mounts, err := s.rootfsMounts(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(t.bundle), 0o711); err != nil {
		return nil, fmt.Errorf("creating the task of container %q: %w", id, err)
	}
	if err := os.Mkdir(t.bundle, 0o711); err != nil {
		if os.IsExist(err) {
			return nil, errdefs.Errorf(errdefs.ErrAlreadyExists, "creating the task of container %q: its bundle %s already exists: restart berthd to recover it", id, t.bundle)
		}
		return nil, fmt.Errorf("creating the task of container %q: %w", id, err)
	}
	defer func() {
		if retErr != nil {
			t.markStarted()
			s.teardown(context.WithoutCancel(ctx), t)
		}
	}()
	if err := writeSpec(t.bundle, c); err != nil {
		return nil, fmt.Errorf("creating the task of container %q: %w", id, err)
	}
	logPath := LogPath(s.cfg.Root, id)
	logCfg, err := containers.LogConfigOf(c.Labels)
	if err != nil {
		return nil, fmt.Errorf("creating the task of container %q: %w", id, err)
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return nil, fmt.Errorf("creating the task of container %q: %w", id, err)
	}
	if err := s.startShim(ctx, t); err != nil {
		return nil, err
	}
	cr, err := t.shim.Create(ctx, &shimv1.CreateTaskRequest{
		Id: id, Bundle: t.bundle, Rootfs: mounts, Terminal: req.GetTerminal(),
		Stdin: req.GetStdin(), Stdout: req.GetStdout(), Stderr: req.GetStderr(),
		Log: &shimv1.Log{Path: logPath, MaxSize: logCfg.MaxSize, MaxFiles: int32(logCfg.MaxFiles)},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the task of container %q: %w", id, errdefs.FromGRPC(err))
	}
	t.pid = cr.GetPid()
	s.watch(t, "", t.pid)
	s.watchOOM(t, false)
	s.publish(ctx, ns, TopicCreate, &eventsv1.TaskCreate{ContainerId: id, Bundle: t.bundle, Pid: cr.GetPid()})
	return &tasksv1.CreateTaskResponse{ContainerId: id, Pid: cr.GetPid()}, nil
}

func (s *Service) rootfsMounts(ctx context.Context, c containers.Container) ([]*typesv1.Mount, error) {
	if c.SnapshotKey == "" {
		return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "creating the task of container %q: it has no root filesystem snapshot: create the container from an image", c.ID)
	}
	sn := s.cfg.Snapshotter(c.Snapshotter)
	if sn == nil {
		return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "creating the task of container %q: snapshotter %q is not available: check berthd's configuration", c.ID, c.Snapshotter)
	}
	ms, err := sn.Mounts(ctx, c.SnapshotKey)
	if err != nil {
		return nil, fmt.Errorf("creating the task of container %q: the mounts of snapshot %q: %w", c.ID, c.SnapshotKey, err)
	}
	out := make([]*typesv1.Mount, 0, len(ms))
	for _, m := range ms {
		out = append(out, &typesv1.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	return out, nil
}

// writeSpec writes the container's OCI spec as the bundle's config.json,
// with the root at <bundle>/rootfs where the shim mounts the snapshot.
func writeSpec(bundle string, c containers.Container) error {
	if c.Spec == nil || len(c.Spec.GetValue()) == 0 {
		return errdefs.Errorf(errdefs.ErrFailedPrecondition, "container %q has no OCI spec: recreate it", c.ID)
	}
	var spec specs.Spec
	if err := json.Unmarshal(c.Spec.GetValue(), &spec); err != nil {
		return errdefs.Errorf(errdefs.ErrFailedPrecondition, "container %q has an invalid OCI spec: %v: recreate it", c.ID, err)
	}
	if spec.Root == nil {
		spec.Root = &specs.Root{}
	}
	spec.Root.Path = "rootfs"
	b, err := json.Marshal(&spec)
	if err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(bundle, "rootfs"), 0o711); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644)
}

// startShim runs `berth-shim start` for the task and connects to it.
func (s *Service) startShim(ctx context.Context, t *task) error {
	// berthd starts the daemon itself rather than through `berth-shim
	// start`: one program start less on every run. The shim runs in its own
	// session and outlives berthd; while berthd runs, it reaps it.
	cfg := shim.Config{ID: t.id, Namespace: t.ns, Bundle: t.bundle}
	if s.cfg.Runtime != "" {
		cfg.Runtime = &runtime.Runtime{Binary: s.cfg.Runtime}
	}
	address, proc, err := shim.StartDaemon(shim.StartOpts{
		Config: cfg, StateDir: s.cfg.State, Binary: s.shimBin, Args: shim.ServeArgs(cfg, s.cfg.State),
	})
	if err != nil {
		return fmt.Errorf("starting the shim of task %q: %w", t.id, err)
	}
	go proc.Wait()
	t.shimPid = proc.Pid
	return s.connect(ctx, t, address)
}

func (s *Service) connect(ctx context.Context, t *task, address string) error {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	client, svc, err := shim.Connect(cctx, address)
	if err != nil {
		return fmt.Errorf("task %q: %w", t.id, err)
	}
	s.mu.Lock()
	t.client, t.shim = client, svc
	s.mu.Unlock()
	return nil
}

// teardown stops the task's shim and removes its bundle, for a Create that
// failed half-way.
func (s *Service) teardown(ctx context.Context, t *task) {
	s.mu.Lock()
	client, svc := t.client, t.shim
	t.client, t.shim = nil, nil
	s.mu.Unlock()
	if svc != nil {
		dctx, cancel := context.WithTimeout(ctx, shimExitTimeout)
		svc.Delete(dctx, &shimv1.DeleteRequest{Id: t.id})
		svc.Shutdown(dctx, &shimv1.ShutdownRequest{Id: t.id, Now: true})
		cancel()
		client.Close()
	}
	if t.shimPid > 0 {
		waitGone(t.shimPid, shimExitTimeout)
	}
	// Whatever the shim left: runtime state, mounts, socket.
	cmd := exec.CommandContext(ctx, s.shimBin, s.shimArgs("delete", t.ns, t.id, t.bundle)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		slog.WarnContext(ctx, "cleaning up after a failed task create", "id", t.id, "error", err, "output", strings.TrimSpace(string(out)))
	}
	if err := removeBundle(t.bundle); err != nil {
		slog.WarnContext(ctx, "removing a task bundle", "bundle", t.bundle, "error", err)
	}
}

// removeBundle removes the bundle once nothing is mounted on its rootfs:
// the rootfs folder is removed with rmdir so that a mount left there is
// never emptied.
func removeBundle(bundle string) error {
	rootfs := filepath.Join(bundle, "rootfs")
	if err := mount.UnmountAll(rootfs); err != nil {
		return fmt.Errorf("removing bundle %s: %w", bundle, err)
	}
	if err := os.Remove(rootfs); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("removing bundle %s: its rootfs: %w", bundle, err)
	}
	if err := os.RemoveAll(bundle); err != nil {
		return fmt.Errorf("removing bundle %s: %w", bundle, err)
	}
	return nil
}

// watch waits in the background for the exit of the task's process
// execID (pid) and publishes it. For the init process, a shim that dies is
// cleaned up and its task kept as stopped.
func (s *Service) watch(t *task, execID string, pid uint32) {
	s.mu.Lock()
	svc := t.shim
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		wr, err := svc.Wait(s.ctx, &shimv1.WaitRequest{Id: t.id, ExecId: execID})
		if err == nil {
			if execID == "" {
				select {
				case <-t.started:
				case <-s.ctx.Done():
					return
				}
				if wr.GetOomKilled() {
					s.publishOOM(t, 0)
				}
			}
			s.publish(s.ctx, t.ns, TopicExit, &eventsv1.TaskExit{
				ContainerId: t.id, Id: execID, Pid: pid, ExitStatus: wr.GetExitStatus(), ExitedAt: wr.GetExitedAt(),
			})
			return
		}
		if execID != "" || s.ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		deleting := t.deleteDone != nil
		s.mu.Unlock()
		if deleting || (t.shimPid > 0 && !waitGone(t.shimPid, time.Second)) {
			return
		}
		s.reapDeadShim(s.ctx, t)
	}()
}

// reapDeadShim cleans up after the task's shim that died and keeps the
// task as stopped with its recorded exit.
func (s *Service) reapDeadShim(ctx context.Context, t *task) {
	cmd := exec.CommandContext(ctx, s.shimBin, s.shimArgs("delete", t.ns, t.id, t.bundle)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		slog.WarnContext(ctx, "cleaning up after a dead shim", "namespace", t.ns, "id", t.id, "error", err, "output", strings.TrimSpace(string(out)))
	}
	e, err := shim.ReadExit(t.bundle)
	if err != nil {
		e = &shim.Exit{ExitStatus: 137, ExitedAt: time.Now().UTC(), Dead: true}
	}
	reason := ""
	if e.Dead {
		reason = "the container's shim died (was it killed?): its processes were killed and exit status 137 is assumed"
	}
	s.mu.Lock()
	if t.client != nil {
		t.client.Close()
	}
	t.client, t.shim, t.exit = nil, nil, e
	s.mu.Unlock()
	if e.OOMKilled {
		s.publishOOM(t, 0)
	}
	s.publish(ctx, t.ns, TopicExit, &eventsv1.TaskExit{
		ContainerId: t.id, Pid: e.Pid, ExitStatus: e.ExitStatus, ExitedAt: timestamppb.New(e.ExitedAt), Reason: reason,
	})
}

// recover finds the tasks of a previous berthd under <state>/tasks.
func (s *Service) recover(ctx context.Context) error {
	root := filepath.Join(s.cfg.State, "tasks")
	var found []*task
	nsDirs, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("tasks service: reading %s: %w", root, err)
	}
	for _, nd := range nsDirs {
		if !nd.IsDir() {
			continue
		}
		ids, err := os.ReadDir(filepath.Join(root, nd.Name()))
		if err != nil {
			return fmt.Errorf("tasks service: %w", err)
		}
		for _, d := range ids {
			if !d.IsDir() {
				continue
			}
			t := newTask(nd.Name(), d.Name(), filepath.Join(root, nd.Name(), d.Name()))
			t.markStarted() // started by a previous berthd
			s.mu.Lock()
			s.tasks[key(t.ns, t.id)] = t
			s.mu.Unlock()
			found = append(found, t)
		}
	}
	// Shims answer in parallel: reconnect to several at once, so that a
	// berthd with many containers is back quickly.
	sem := make(chan struct{}, recoverParallel)
	var wg sync.WaitGroup
	for _, t := range found {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if s.reconnect(ctx, t) {
				s.watch(t, "", t.pid)
				s.watchOOM(t, true)
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					s.watchExecs(s.ctx, t)
				}()
				return
			}
			s.reapDeadShim(ctx, t)
		}()
	}
	wg.Wait()
	s.removeOrphanRuntimeState(ctx)
	return nil
}

// removeOrphanRuntimeState deletes the OCI runtime's state of containers
// that have no bundle (a crash between the runtime's create and the
// bundle's removal): only berth's own, under <state>/runc/<ns>/<id>.
func (s *Service) removeOrphanRuntimeState(ctx context.Context) {
	dirs, _ := filepath.Glob(filepath.Join(s.cfg.State, "runc", "*", "*"))
	for _, d := range dirs {
		ns, id := filepath.Base(filepath.Dir(d)), filepath.Base(d)
		if containers.ValidateID(id) != nil {
			continue
		}
		s.mu.Lock()
		_, known := s.tasks[key(ns, id)]
		s.mu.Unlock()
		if known {
			continue
		}
		runtime := s.cfg.Runtime
		if runtime == "" {
			runtime = "runc"
		}
		slog.InfoContext(ctx, "removing the runtime state of a container without a bundle", "namespace", ns, "id", id)
		out, err := exec.CommandContext(ctx, runtime, "--root", filepath.Dir(d), "delete", "--force", id).CombinedOutput()
		if err != nil {
			slog.WarnContext(ctx, "removing orphan runtime state", "path", d, "error", err, "output", strings.TrimSpace(string(out)))
			continue
		}
		os.RemoveAll(d) // runc removes it; another runtime may not
	}
}

// recoverParallel bounds the shims reconnected to at once.
const recoverParallel = 16

// watchExecs watches the exec processes of a task found again after a
// restart, so that their exits are published as if berthd had not gone.
func (s *Service) watchExecs(ctx context.Context, t *task) {
	sctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	pr, err := t.shim.Pids(sctx, &shimv1.PidsRequest{Id: t.id})
	if err != nil {
		slog.WarnContext(ctx, "listing the execs of a reconnected task", "namespace", t.ns, "id", t.id, "error", err)
		return
	}
	for _, p := range pr.GetProcesses() {
		if p.GetExecId() != "" {
			s.watch(t, p.GetExecId(), p.GetPid())
		}
	}
}

// reconnect connects to the task's shim when it still serves.
func (s *Service) reconnect(ctx context.Context, t *task) bool {
	b, err := os.ReadFile(filepath.Join(t.bundle, shim.AddressFile))
	if err != nil {
		return false
	}
	t.shimPid, _ = shim.ReadPidFile(filepath.Join(t.bundle, shim.PidFile))
	if err := s.connect(ctx, t, strings.TrimSpace(string(b))); err != nil {
		slog.WarnContext(ctx, "reconnecting to a shim", "namespace", t.ns, "id", t.id, "error", err)
		return false
	}
	sctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	st, err := t.shim.State(sctx, &shimv1.StateRequest{Id: t.id})
	if err != nil {
		slog.WarnContext(ctx, "a reconnected shim has no task", "namespace", t.ns, "id", t.id, "error", err)
		t.client.Close()
		t.client, t.shim = nil, nil
		if t.shimPid > 0 && shim.ProcessAlive(t.shimPid) {
			// An empty shim: stop it so that its bundle can be cleaned.
			syscallKill(t.shimPid)
			waitGone(t.shimPid, shimExitTimeout)
		}
		return false
	}
	t.pid = st.GetPid()
	return true
}

// Start runs the init process or an exec.
func (s *Service) Start(ctx context.Context, req *tasksv1.StartRequest) (*tasksv1.StartResponse, error) {
	t, svc, err := s.live(ctx, req.GetContainerId(), "starting")
	if err != nil {
		return nil, err
	}
	sr, err := svc.Start(ctx, &shimv1.StartRequest{Id: t.id, ExecId: req.GetExecId()})
	if err != nil {
		if req.GetExecId() == "" {
			t.markStarted()
		}
		return nil, errdefs.FromGRPC(err)
	}
	if req.GetExecId() == "" {
		s.publish(ctx, t.ns, TopicStart, &eventsv1.TaskStart{ContainerId: t.id, Pid: sr.GetPid()})
		t.markStarted()
	} else {
		s.watch(t, req.GetExecId(), sr.GetPid())
	}
	return &tasksv1.StartResponse{Pid: sr.GetPid()}, nil
}

// Delete deletes a stopped task: its shim deletes the container and
// stops, and the bundle is removed.
func (s *Service) Delete(ctx context.Context, req *tasksv1.DeleteTaskRequest) (*tasksv1.DeleteResponse, error) {
	t, err := s.lookup(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if done := t.deleteDone; done != nil {
		// Another caller deletes it: wait for that, then report what is
		// left (nothing, or the task if that delete failed).
		s.mu.Unlock()
		if !waitDone(ctx, done, shimExitTimeout) {
			return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "task %q is being deleted", t.id)
		}
		return s.Delete(ctx, req)
	}
	done := make(chan struct{})
	t.deleteDone = done
	svc, exit := t.shim, t.exit
	s.mu.Unlock()
	deleted := false
	defer func() {
		s.mu.Lock()
		if !deleted {
			t.deleteDone = nil
		}
		s.mu.Unlock()
		close(done)
	}()
	t.markStarted()
	resp := &tasksv1.DeleteResponse{Id: t.id}
	if svc != nil {
		dr, err := svc.Delete(ctx, &shimv1.DeleteRequest{Id: t.id})
		if err != nil {
			return nil, fmt.Errorf("deleting task %q: %w", t.id, errdefs.FromGRPC(err))
		}
		resp.Pid, resp.ExitStatus, resp.ExitedAt = dr.GetPid(), dr.GetExitStatus(), dr.GetExitedAt()
		// The shim may close the connection before it replies.
		if _, err := svc.Shutdown(ctx, &shimv1.ShutdownRequest{Id: t.id}); err != nil && !isClosed(err) {
			slog.WarnContext(ctx, "shutting a shim down", "id", t.id, "error", err)
		}
		s.mu.Lock()
		t.client.Close()
		t.client, t.shim = nil, nil
		s.mu.Unlock()
		if t.shimPid > 0 && !waitGone(t.shimPid, shimExitTimeout) {
			syscallKill(t.shimPid)
			waitGone(t.shimPid, shimExitTimeout)
		}
	} else if exit != nil {
		resp.Pid, resp.ExitStatus, resp.ExitedAt = exit.Pid, exit.ExitStatus, timestamppb.New(exit.ExitedAt)
	}
	if err := removeBundle(t.bundle); err != nil {
		return nil, fmt.Errorf("deleting task %q: %w", t.id, err)
	}
	s.mu.Lock()
	delete(s.tasks, key(t.ns, t.id))
	deleted = true
	now := time.Now()
	for k, e := range s.deleted {
		if now.Sub(e.deletedAt) > deletedExitTTL {
			delete(s.deleted, k)
		}
	}
	s.deleted[key(t.ns, t.id)] = deletedExit{status: resp.ExitStatus, exitedAt: resp.ExitedAt, deletedAt: now}
	s.mu.Unlock()
	s.publish(ctx, t.ns, TopicDelete, &eventsv1.TaskDelete{
		ContainerId: t.id, Pid: resp.Pid, ExitStatus: resp.ExitStatus, ExitedAt: resp.ExitedAt,
	})
	return resp, nil
}

func isClosed(err error) bool {
	return errors.Is(err, ttrpc.ErrClosed) || strings.Contains(err.Error(), "closed")
}

// DeleteProcess removes an exited exec.
func (s *Service) DeleteProcess(ctx context.Context, req *tasksv1.DeleteProcessRequest) (*tasksv1.DeleteResponse, error) {
	if req.GetExecId() == "" {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "deleting a process of task %q: no exec id given: use Delete for the task itself", req.GetContainerId())
	}
	t, svc, err := s.live(ctx, req.GetContainerId(), "deleting a process of")
	if err != nil {
		return nil, err
	}
	dr, err := svc.Delete(ctx, &shimv1.DeleteRequest{Id: t.id, ExecId: req.GetExecId()})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return &tasksv1.DeleteResponse{Id: req.GetExecId(), Pid: dr.GetPid(), ExitStatus: dr.GetExitStatus(), ExitedAt: dr.GetExitedAt()}, nil
}

// Get reports the task's init process or one of its execs.
func (s *Service) Get(ctx context.Context, req *tasksv1.GetRequest) (*tasksv1.GetResponse, error) {
	t, err := s.lookup(ctx, req.GetContainerId())
	if err != nil {
		return nil, err
	}
	p, err := s.state(ctx, t, req.GetExecId())
	if err != nil {
		return nil, err
	}
	return &tasksv1.GetResponse{Process: p}, nil
}

func (s *Service) state(ctx context.Context, t *task, execID string) (*tasksv1.Process, error) {
	s.mu.Lock()
	svc, exit := t.shim, t.exit
	s.mu.Unlock()
	if svc == nil {
		if execID != "" || exit == nil {
			return nil, errdefs.Errorf(errdefs.ErrNotFound, "process %q of task %q not found: the task is stopped", execID, t.id)
		}
		return &tasksv1.Process{Id: t.id, Pid: exit.Pid, Status: tasksv1.Status_STATUS_STOPPED,
			ExitStatus: exit.ExitStatus, ExitedAt: timestamppb.New(exit.ExitedAt), OomKilled: exit.OOMKilled}, nil
	}
	st, err := svc.State(ctx, &shimv1.StateRequest{Id: t.id, ExecId: execID})
	if err != nil {
		s.mu.Lock()
		deleting := t.deleteDone != nil
		s.mu.Unlock()
		if deleting {
			// Its shim is going away with it: as good as gone.
			return nil, errdefs.Errorf(errdefs.ErrNotFound, "task %q is being deleted", t.id)
		}
		return nil, errdefs.FromGRPC(err)
	}
	return &tasksv1.Process{
		Id: t.id, ExecId: st.GetExecId(), Pid: st.GetPid(), Status: tasksv1.Status(st.GetStatus()),
		Stdin: st.GetStdin(), Stdout: st.GetStdout(), Stderr: st.GetStderr(), Terminal: st.GetTerminal(),
		ExitStatus: st.GetExitStatus(), ExitedAt: st.GetExitedAt(), OomKilled: st.GetOomKilled(),
	}, nil
}

// List reports the tasks of the request's namespace, by id.
func (s *Service) List(ctx context.Context, _ *tasksv1.ListTasksRequest) (*tasksv1.ListTasksResponse, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	var ts []*task
	s.mu.Lock()
	for _, t := range s.tasks {
		if t.ns == ns && (t.shim != nil || t.exit != nil) {
			ts = append(ts, t)
		}
	}
	s.mu.Unlock()
	sort.Slice(ts, func(i, j int) bool { return ts[i].id < ts[j].id })
	resp := &tasksv1.ListTasksResponse{}
	for _, t := range ts {
		p, err := s.state(ctx, t, "")
		if err != nil {
			if errdefs.IsNotFound(err) {
				continue // deleted meanwhile
			}
			return nil, err
		}
		resp.Tasks = append(resp.Tasks, p)
	}
	return resp, nil
}

// Kill signals a process of the task.
func (s *Service) Kill(ctx context.Context, req *tasksv1.KillRequest) (*emptypb.Empty, error) {
	t, svc, err := s.live(ctx, req.GetContainerId(), "signalling")
	if err != nil {
		return nil, err
	}
	if _, err := svc.Kill(ctx, &shimv1.KillRequest{Id: t.id, ExecId: req.GetExecId(), Signal: req.GetSignal(), All: req.GetAll()}); err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// Exec adds a process to the running task.
func (s *Service) Exec(ctx context.Context, req *tasksv1.ExecProcessRequest) (*emptypb.Empty, error) {
	if req.GetExecId() == "" {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "exec in task %q: no exec id given: name the process", req.GetContainerId())
	}
	t, svc, err := s.live(ctx, req.GetContainerId(), "exec in")
	if err != nil {
		return nil, err
	}
	if _, err := svc.Exec(ctx, &shimv1.ExecProcessRequest{
		Id: t.id, ExecId: req.GetExecId(), Terminal: req.GetTerminal(),
		Stdin: req.GetStdin(), Stdout: req.GetStdout(), Stderr: req.GetStderr(), Spec: req.GetSpec(),
	}); err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	s.publish(ctx, t.ns, TopicExecAdded, &eventsv1.TaskExecAdded{ContainerId: t.id, ExecId: req.GetExecId()})
	return &emptypb.Empty{}, nil
}

// ResizePty resizes a process's terminal.
func (s *Service) ResizePty(ctx context.Context, req *tasksv1.ResizePtyRequest) (*emptypb.Empty, error) {
	t, svc, err := s.live(ctx, req.GetContainerId(), "resizing the terminal of")
	if err != nil {
		return nil, err
	}
	if _, err := svc.ResizePty(ctx, &shimv1.ResizePtyRequest{Id: t.id, ExecId: req.GetExecId(), Width: req.GetWidth(), Height: req.GetHeight()}); err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// CloseIO closes a process's stdin.
func (s *Service) CloseIO(ctx context.Context, req *tasksv1.CloseIORequest) (*emptypb.Empty, error) {
	t, svc, err := s.live(ctx, req.GetContainerId(), "closing the stdin of")
	if err != nil {
		return nil, err
	}
	if _, err := svc.CloseIO(ctx, &shimv1.CloseIORequest{Id: t.id, ExecId: req.GetExecId(), Stdin: req.GetStdin()}); err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// Pause freezes the task.
func (s *Service) Pause(ctx context.Context, req *tasksv1.PauseTaskRequest) (*emptypb.Empty, error) {
	t, svc, err := s.live(ctx, req.GetContainerId(), "pausing")
	if err != nil {
		return nil, err
	}
	if _, err := svc.Pause(ctx, &shimv1.PauseRequest{Id: t.id}); err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// Resume thaws the task.
func (s *Service) Resume(ctx context.Context, req *tasksv1.ResumeTaskRequest) (*emptypb.Empty, error) {
	t, svc, err := s.live(ctx, req.GetContainerId(), "resuming")
	if err != nil {
		return nil, err
	}
	if _, err := svc.Resume(ctx, &shimv1.ResumeRequest{Id: t.id}); err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// ListPids lists the task's processes.
func (s *Service) ListPids(ctx context.Context, req *tasksv1.ListPidsRequest) (*tasksv1.ListPidsResponse, error) {
	t, svc, err := s.live(ctx, req.GetContainerId(), "listing the processes of")
	if err != nil {
		return nil, err
	}
	pr, err := svc.Pids(ctx, &shimv1.PidsRequest{Id: t.id})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	resp := &tasksv1.ListPidsResponse{}
	for _, p := range pr.GetProcesses() {
		resp.Processes = append(resp.Processes, &tasksv1.ProcessInfo{Pid: p.GetPid(), ExecId: p.GetExecId()})
	}
	return resp, nil
}

// Wait blocks until the process exits; for a stopped task it returns the
// recorded exit.
func (s *Service) Wait(ctx context.Context, req *tasksv1.WaitRequest) (*tasksv1.WaitResponse, error) {
	t, err := s.lookup(ctx, req.GetContainerId())
	if err != nil {
		if wr := s.deletedExit(ctx, req); wr != nil {
			return wr, nil
		}
		return nil, err
	}
	s.mu.Lock()
	svc, exit := t.shim, t.exit
	s.mu.Unlock()
	if svc == nil {
		if exit == nil || req.GetExecId() != "" {
			return nil, errdefs.Errorf(errdefs.ErrNotFound, "process %q of task %q not found: the task is stopped", req.GetExecId(), t.id)
		}
		return &tasksv1.WaitResponse{ExitStatus: exit.ExitStatus, ExitedAt: timestamppb.New(exit.ExitedAt), OomKilled: exit.OOMKilled}, nil
	}
	wr, err := svc.Wait(ctx, &shimv1.WaitRequest{Id: t.id, ExecId: req.GetExecId()})
	if err != nil {
		// The task may be deleted (its shim shutting down) while the
		// reply was on its way: its exit is recorded once Delete ends.
		s.mu.Lock()
		done := t.deleteDone
		s.mu.Unlock()
		if done != nil && req.GetExecId() == "" && waitDone(ctx, done, shimExitTimeout) {
			if dw := s.deletedExit(ctx, req); dw != nil {
				return dw, nil
			}
		}
		return nil, errdefs.FromGRPC(err)
	}
	return &tasksv1.WaitResponse{ExitStatus: wr.GetExitStatus(), ExitedAt: wr.GetExitedAt(), OomKilled: wr.GetOomKilled()}, nil
}

// deletedExit returns the exit of the init process of a task deleted since
// its container's last Create, or nil.
func (s *Service) deletedExit(ctx context.Context, req *tasksv1.WaitRequest) *tasksv1.WaitResponse {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil || req.GetExecId() != "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.deleted[key(ns, req.GetContainerId())]
	if !ok {
		return nil
	}
	return &tasksv1.WaitResponse{ExitStatus: e.status, ExitedAt: e.exitedAt}
}
