// Package supervisor is the part of berthd that watches containers run, as
// Docker's daemon does: it listens to the task events in process, records
// what it observes in each container's state extension (the only writer
// of it), deletes the task of an init process that exited, then removes
// the container (--rm) or applies its restart policy with Docker's
// back-off. When berthd starts it reconciles: containers whose task is
// gone are marked exited, always and unless-stopped ones are started, and
// tasks and cgroups without a container are removed.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/namespaces"
	eventsv1 "github.com/berth-engine/berth/proto/events/v1"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
	"github.com/berth-engine/berth/services/events"
	nsstore "github.com/berth-engine/berth/services/namespaces"
	"github.com/berth-engine/berth/services/removal"
	"github.com/berth-engine/berth/services/tasks"
	"github.com/berth-engine/berth/services/tasks/ocispec"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

// Event topics the supervisor follows.
const (
	TopicStart = "/tasks/start"
	TopicExit  = "/tasks/exit"
	TopicOOM   = "/tasks/oom"
	// TopicContainerDelete ends the bookkeeping of a removed container.
	TopicContainerDelete = "/containers/delete"
)

// Docker's restart back-off: 100 ms, doubled at each restart up to a
// minute, and back to 100 ms after a run of 10 s or more.
const (
	backoffInitial = 100 * time.Millisecond
	backoffMax     = time.Minute
	backoffReset   = 10 * time.Second
)

// LostExitCode is the exit status recorded for a container whose task
// vanished without a recorded exit (a reboot), as containerd's unknown
// exit status.
const LostExitCode = 255

// orphanKillTimeout bounds the wait for an orphan task to die.
const orphanKillTimeout = 10 * time.Second

// Config is what the supervisor needs.
type Config struct {
	Events     events.Subscriber
	Containers containers.Store
	Namespaces nsstore.Store
	// Snapshotter returns the snapshotter by name ("" is the default).
	Snapshotter func(name string) snapshots.Snapshotter
	// Root is berthd's root (container folders are under it).
	Root string
	// CgroupRoot is where cgroup hierarchies are mounted; berth's own
	// cgroups are <CgroupRoot>/<controller>/berth/<id>. Empty skips
	// cleaning orphan cgroups.
	CgroupRoot string
}

// Supervisor watches the containers of every namespace. Make it with New
// before the tasks service recovers its shims (so that no exit reported
// during recovery is missed), then Start it.
type Supervisor struct {
	cfg   Config
	tasks tasks.Service

	ctx    context.Context
	cancel context.CancelFunc
	events <-chan *events.Envelope
	errs   <-chan error

	mu     sync.Mutex
	closed bool
	queues map[string]*queue // pending jobs, by namespace/id
	runs   map[string]*run   // restart bookkeeping, by namespace/id
	wg     sync.WaitGroup
}

// queue serialises the work on one container.
type queue struct{ jobs []func(context.Context) }

// run is the in-memory part of a container's restart policy, as Docker's
// restart manager.
type run struct {
	timeout   time.Duration
	timer     *time.Timer
	selfStart bool // the next start event is the supervisor's own
}

// New subscribes to the task events; they are buffered until Start.
func New(ctx context.Context, cfg Config) (*Supervisor, error) {
	if cfg.Events == nil || cfg.Containers == nil || cfg.Namespaces == nil || cfg.Snapshotter == nil {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "supervisor: events, containers, namespaces and snapshotters are required")
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Supervisor{cfg: cfg, ctx: sctx, cancel: cancel, queues: map[string]*queue{}, runs: map[string]*run{}}
	s.events, s.errs = s.subscribe()
	return s, nil
}

func (s *Supervisor) subscribe() (<-chan *events.Envelope, <-chan error) {
	return s.cfg.Events.Subscribe(s.ctx,
		`topic=="`+TopicStart+`"`, `topic=="`+TopicExit+`"`, `topic=="`+TopicOOM+`"`, `topic=="`+TopicContainerDelete+`"`)
}

// Start reconciles the containers with the tasks found, then handles the
// events from then on (those buffered since New first).
func (s *Supervisor) Start(ctx context.Context, ts tasks.Service) error {
	s.tasks = ts
	if err := s.reconcileAll(ctx, true); err != nil {
		return err
	}
	s.wg.Add(1)
	go s.loop()
	return nil
}

// Close stops handling events and cancels pending restarts; running
// containers are left alone.
func (s *Supervisor) Close() {
	s.cancel()
	s.mu.Lock()
	s.closed = true
	for _, r := range s.runs {
		if r.timer != nil {
			r.timer.Stop()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// loop dispatches events to the per-container queues; it never blocks on
// a container, so the exchange never drops it for being slow. If it is
// dropped anyway, it subscribes again and reconciles what it may have
// missed.
func (s *Supervisor) loop() {
	defer s.wg.Done()
	for {
		for env := range s.events {
			s.dispatch(env)
		}
		var err error
		for e := range s.errs {
			err = e
		}
		if s.ctx.Err() != nil || err == nil || errdefs.IsUnavailable(err) {
			return
		}
		slog.Warn("supervisor: event subscription lost: subscribing again", "error", err)
		s.events, s.errs = s.subscribe()
		if err := s.reconcileAll(s.ctx, false); err != nil {
			slog.Warn("supervisor: reconciling after a lost subscription", "error", err)
		}
	}
}

func (s *Supervisor) dispatch(env *events.Envelope) {
	switch ev := env.Event.(type) {
	case *eventsv1.TaskStart:
		at := env.Timestamp
		s.enqueue(env.Namespace, ev.GetContainerId(), func(ctx context.Context) { s.started(ctx, ev.GetContainerId(), ev.GetPid(), at) })
	case *eventsv1.TaskExit:
		if ev.GetId() != "" {
			return // an exec
		}
		e := exit{pid: ev.GetPid(), status: ev.GetExitStatus(), at: env.Timestamp, reason: ev.GetReason()}
		if ev.GetExitedAt() != nil && !ev.GetExitedAt().AsTime().IsZero() {
			e.at = ev.GetExitedAt().AsTime()
		}
		s.enqueue(env.Namespace, ev.GetContainerId(), func(ctx context.Context) { s.exited(ctx, ev.GetContainerId(), e) })
	case *eventsv1.TaskOOM:
		s.enqueue(env.Namespace, ev.GetContainerId(), func(ctx context.Context) { s.oom(ctx, ev.GetContainerId()) })
	case *eventsv1.ContainerDelete:
		s.enqueue(env.Namespace, ev.GetId(), func(context.Context) { s.forget(env.Namespace, ev.GetId()) })
	}
}

func key(ns, id string) string { return ns + "/" + id }

// enqueue runs job after the jobs already queued for the container, with
// a context in its namespace.
func (s *Supervisor) enqueue(ns, id string, job func(context.Context)) {
	k := key(ns, id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if q, ok := s.queues[k]; ok {
		q.jobs = append(q.jobs, job)
		return
	}
	q := &queue{jobs: []func(context.Context){job}}
	s.queues[k] = q
	s.wg.Add(1)
	go s.drain(namespaces.WithNamespace(s.ctx, ns), k, q)
}

func (s *Supervisor) drain(ctx context.Context, k string, q *queue) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if len(q.jobs) == 0 || s.closed {
			delete(s.queues, k)
			s.mu.Unlock()
			return
		}
		job := q.jobs[0]
		q.jobs = q.jobs[1:]
		s.mu.Unlock()
		job(ctx)
	}
}

// runOf returns the container's restart bookkeeping; s.mu is not held.
func (s *Supervisor) runOf(ns, id string) *run {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.runs[key(ns, id)]
	if !ok {
		r = &run{}
		s.runs[key(ns, id)] = r
	}
	return r
}

func (s *Supervisor) forget(ns, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.runs[key(ns, id)]; ok && r.timer != nil {
		r.timer.Stop()
	}
	delete(s.runs, key(ns, id))
}

// save records st as the container's observed state.
func (s *Supervisor) save(ctx context.Context, c containers.Container, st containers.State) error {
	if err := containers.SetState(&c, st); err != nil {
		return err
	}
	if _, err := s.cfg.Containers.Update(ctx, c, "extensions."+containers.StateExtension); err != nil {
		if errdefs.IsNotFound(err) {
			return nil // removed meanwhile
		}
		slog.WarnContext(ctx, "supervisor: recording the state of a container", "id", c.ID, "error", err)
		return fmt.Errorf("recording the state of container %s: %w", c.Name, err)
	}
	return nil
}

// task returns the container's task, or nil when it has none.
func (s *Supervisor) task(ctx context.Context, id string) (*tasksv1.Process, error) {
	resp, err := s.tasks.Get(ctx, &tasksv1.GetRequest{ContainerId: id})
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return resp.GetProcess(), nil
}

func isRunning(p *tasksv1.Process) bool {
	if p == nil {
		return false
	}
	s := p.GetStatus()
	return s == tasksv1.Status_STATUS_RUNNING || s == tasksv1.Status_STATUS_PAUSED
}

// started records a start of the container's init process. A start the
// supervisor did not make (a user's start) resets the restart count and
// cancels a pending restart, as Docker's.
func (s *Supervisor) started(ctx context.Context, id string, pid uint32, at time.Time) {
	ns, _ := namespaces.Namespace(ctx)
	c, err := s.cfg.Containers.Get(ctx, id)
	if err != nil {
		return
	}
	r := s.runOf(ns, id)
	s.mu.Lock()
	self := r.selfStart
	r.selfStart = false
	if !self && r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	s.mu.Unlock()
	st := containers.StateOf(c)
	if !self {
		st.RestartCount = 0
	}
	st.Running, st.Restarting, st.Dead, st.OOMKilled = true, false, false, false
	st.Pid, st.StartedAt, st.ExitCode, st.Error = pid, at.UTC(), 0, ""
	s.save(ctx, c, st)
}

// exit is an init process's exit.
type exit struct {
	pid    uint32
	status uint32
	at     time.Time
	reason string
}

// exited records the exit of the container's init process, deletes its
// task, and removes or restarts the container as asked.
func (s *Supervisor) exited(ctx context.Context, id string, e exit) {
	ns, _ := namespaces.Namespace(ctx)
	p, err := s.task(ctx, id)
	if err != nil {
		slog.WarnContext(ctx, "supervisor: asking for the task of a container that exited", "id", id, "error", err)
	}
	c, cerr := s.cfg.Containers.Get(ctx, id)
	if errdefs.IsNotFound(cerr) {
		// A task without a container (removed meanwhile): clean it up.
		if p != nil && !isRunning(p) {
			removal.DeleteTask(ctx, s.tasks, id)
		}
		s.forget(ns, id)
		return
	}
	if cerr != nil {
		slog.WarnContext(ctx, "supervisor: reading a container that exited", "id", id, "error", cerr)
		return
	}
	st := containers.StateOf(c)
	// The exit was handled already (its task is deleted), or is stale
	// (a new task runs).
	if (p == nil && err == nil && !st.Running) || isRunning(p) {
		return
	}
	st.Running, st.Restarting, st.Pid = false, false, 0
	st.ExitCode, st.FinishedAt, st.Error = e.status, e.at.UTC(), e.reason
	if st.FinishedAt.IsZero() {
		st.FinishedAt = time.Now().UTC()
	}
	if err := s.save(ctx, c, st); err != nil {
		return
	}
	if p != nil {
		if err := removal.DeleteTask(ctx, s.tasks, id); err != nil {
			slog.WarnContext(ctx, "supervisor: deleting the task of a container that exited", "id", id, "error", err)
			st.Error = fmt.Sprintf("deleting its task after it exited: %v", err)
			s.save(ctx, c, st)
			return
		}
	}
	s.afterExit(ctx, c, st)
}

// afterExit removes the container (--rm) or applies its restart policy.
func (s *Supervisor) afterExit(ctx context.Context, c containers.Container, st containers.State) {
	ns, _ := namespaces.Namespace(ctx)
	in := containers.IntentOf(c)
	if in.AutoRemove {
		s.remove(ctx, c, st)
		return
	}
	policy := containers.RestartPolicyOf(c)
	r := s.runOf(ns, c.ID)
	s.mu.Lock()
	if st.FinishedAt.Sub(st.StartedAt) >= backoffReset {
		r.timeout = 0
	}
	restart := !in.ManuallyStopped && shouldRestart(policy, st)
	if restart {
		r.timeout = nextBackoff(r.timeout)
	}
	delay := r.timeout
	s.mu.Unlock()
	if !restart {
		return
	}
	st.RestartCount++
	st.Restarting = true
	if err := s.save(ctx, c, st); err != nil {
		return
	}
	id := c.ID
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	r.timer = time.AfterFunc(delay, func() {
		s.enqueue(ns, id, func(ctx context.Context) { s.restart(ctx, id) })
	})
}

// nextBackoff is the wait before the next restart after a wait of prev
// (0 for the first restart, or after a long enough run).
func nextBackoff(prev time.Duration) time.Duration {
	if prev == 0 {
		return backoffInitial
	}
	return min(prev*2, backoffMax)
}

// shouldRestart applies Docker's rules to an exit that was not asked for.
func shouldRestart(p containers.RestartPolicy, st containers.State) bool {
	switch p.Name {
	case containers.RestartAlways, containers.RestartUnlessStopped:
		return true
	case containers.RestartOnFailure:
		return st.ExitCode != 0 && (p.MaximumRetryCount == 0 || st.RestartCount < p.MaximumRetryCount)
	}
	return false
}

// restart runs once the back-off has passed, unless the container was
// stopped, started or removed meanwhile.
func (s *Supervisor) restart(ctx context.Context, id string) {
	ns, _ := namespaces.Namespace(ctx)
	s.mu.Lock()
	if r, ok := s.runs[key(ns, id)]; ok {
		r.timer = nil
	}
	s.mu.Unlock()
	c, err := s.cfg.Containers.Get(ctx, id)
	if err != nil {
		return
	}
	st := containers.StateOf(c)
	if !st.Restarting {
		return
	}
	if containers.IntentOf(c).ManuallyStopped {
		st.Restarting = false
		s.save(ctx, c, st)
		return
	}
	if p, err := s.task(ctx, id); err != nil || p != nil {
		return // started by someone else
	}
	s.startTask(ctx, c, st, "restarting")
}

// startTask creates and starts the container's task as its restart
// policy asks; a failure is recorded in the state.
func (s *Supervisor) startTask(ctx context.Context, c containers.Container, st containers.State, why string) {
	ns, _ := namespaces.Namespace(ctx)
	r := s.runOf(ns, c.ID)
	s.mu.Lock()
	r.selfStart = true
	s.mu.Unlock()
	err := s.createAndStart(ctx, c.ID)
	if err == nil {
		return
	}
	s.mu.Lock()
	r.selfStart = false
	s.mu.Unlock()
	slog.WarnContext(ctx, "supervisor: starting a container", "id", c.ID, "why", why, "error", err)
	st.Running, st.Restarting = false, false
	st.Error = fmt.Sprintf("%s: %v", why, err)
	s.save(ctx, c, st)
}

func (s *Supervisor) createAndStart(ctx context.Context, id string) error {
	if _, err := s.tasks.Create(ctx, &tasksv1.CreateTaskRequest{ContainerId: id}); err != nil {
		return err
	}
	if _, err := s.tasks.Start(ctx, &tasksv1.StartRequest{ContainerId: id}); err != nil {
		removal.DeleteTask(context.WithoutCancel(ctx), s.tasks, id)
		return err
	}
	return nil
}

// remove removes a container run with --rm; a failure leaves it dead.
func (s *Supervisor) remove(ctx context.Context, c containers.Container, st containers.State) {
	ns, _ := namespaces.Namespace(ctx)
	s.forget(ns, c.ID)
	err := removal.Remove(ctx, removal.Deps{
		Tasks: s.tasks, Containers: s.cfg.Containers, Snapshotter: s.cfg.Snapshotter, Root: s.cfg.Root,
	}, c)
	if err == nil {
		return
	}
	slog.WarnContext(ctx, "supervisor: removing a container run with --rm", "id", c.ID, "error", err)
	st.Dead = true
	st.Error = fmt.Sprintf("removing it after it exited (--rm): %v: remove it with 'berth rm'", err)
	s.save(ctx, c, st)
}

// oom records that the container's cgroup hit its memory limit.
func (s *Supervisor) oom(ctx context.Context, id string) {
	c, err := s.cfg.Containers.Get(ctx, id)
	if err != nil {
		return
	}
	st := containers.StateOf(c)
	st.OOMKilled = true
	s.save(ctx, c, st)
}

// reconcileAll compares every namespace's containers with its tasks. At
// berthd's start (atStart), containers whose task is gone are marked
// exited and always and unless-stopped ones are started again.
func (s *Supervisor) reconcileAll(ctx context.Context, atStart bool) error {
	nss, err := s.cfg.Namespaces.List(ctx)
	if err != nil {
		return fmt.Errorf("supervisor: listing namespaces: %w", err)
	}
	known := map[string]bool{}
	for _, ns := range nss {
		nctx := namespaces.WithNamespace(ctx, ns)
		cs, err := s.cfg.Containers.List(nctx)
		if err != nil {
			return fmt.Errorf("supervisor: listing the containers of namespace %q: %w", ns, err)
		}
		tl, err := s.tasks.List(nctx, &tasksv1.ListTasksRequest{})
		if err != nil {
			return fmt.Errorf("supervisor: listing the tasks of namespace %q: %w", ns, err)
		}
		byID := map[string]*tasksv1.Process{}
		for _, p := range tl.GetTasks() {
			byID[p.GetId()] = p
		}
		for _, c := range cs {
			known[c.ID] = true
			p := byID[c.ID]
			delete(byID, c.ID)
			s.enqueue(ns, c.ID, func(ctx context.Context) { s.reconcile(ctx, c.ID, p, atStart) })
		}
		for id := range byID {
			s.enqueue(ns, id, func(ctx context.Context) { s.removeOrphanTask(ctx, id) })
		}
	}
	if atStart {
		s.removeOrphanCgroups(known)
	}
	return nil
}

// reconcile brings one container's state in line with its task p (nil
// when it has none), as listed before the queued events were handled.
func (s *Supervisor) reconcile(ctx context.Context, id string, p *tasksv1.Process, atStart bool) {
	c, err := s.cfg.Containers.Get(ctx, id)
	if err != nil {
		return
	}
	st := containers.StateOf(c)
	switch {
	case isRunning(p):
		if !st.Running || st.Pid != p.GetPid() {
			st.Running, st.Restarting, st.Pid = true, false, p.GetPid()
			if st.StartedAt.IsZero() {
				st.StartedAt = time.Now().UTC()
			}
			s.save(ctx, c, st)
		}
		return
	case p != nil && p.GetStatus() == tasksv1.Status_STATUS_STOPPED:
		if !atStart {
			e := exit{pid: p.GetPid(), status: p.GetExitStatus(), at: time.Now()}
			if p.GetExitedAt() != nil {
				e.at = p.GetExitedAt().AsTime()
			}
			s.exited(ctx, id, e)
		}
		return // at start, its exit event is queued already
	case p != nil:
		return // created, not started
	}
	if !atStart {
		return
	}
	// No task. A running or restarting container lost it (a reboot, or
	// berthd stopped while the back-off ran).
	lost := st.Running || st.Restarting
	due := st.Restarting // a restart decided before berthd stopped
	if st.Running {
		st.ExitCode, st.FinishedAt = LostExitCode, time.Now().UTC()
		st.Error = "its task was gone when berthd started (the host rebooted, or its shim and bundle were removed)"
	}
	st.Running, st.Restarting, st.Pid = false, false, 0
	in := containers.IntentOf(c)
	if in.AutoRemove && (lost || !st.FinishedAt.IsZero()) {
		s.remove(ctx, c, st)
		return
	}
	policy := containers.RestartPolicyOf(c)
	// As Docker: always ones start even when stopped by hand,
	// unless-stopped ones unless stopped by hand; never-started ones stay.
	start := !st.StartedAt.IsZero() && (policy.Name == containers.RestartAlways ||
		policy.Name == containers.RestartUnlessStopped && !in.ManuallyStopped ||
		due && !in.ManuallyStopped)
	if lost {
		if err := s.save(ctx, c, st); err != nil {
			return
		}
	}
	if start {
		s.startTask(ctx, c, st, "starting it as berthd starts (restart policy "+policy.String()+")")
	}
}

// removeOrphanTask kills and deletes a task whose container is gone.
func (s *Supervisor) removeOrphanTask(ctx context.Context, id string) {
	if _, err := s.cfg.Containers.Get(ctx, id); err == nil {
		return // recreated meanwhile
	}
	slog.InfoContext(ctx, "supervisor: removing a task without a container", "id", id)
	p, err := s.task(ctx, id)
	if err != nil || p == nil {
		return
	}
	if isRunning(p) {
		s.tasks.Kill(ctx, &tasksv1.KillRequest{ContainerId: id, Signal: uint32(syscall.SIGKILL), All: true})
		wctx, cancel := context.WithTimeout(ctx, orphanKillTimeout)
		s.tasks.Wait(wctx, &tasksv1.WaitRequest{ContainerId: id})
		cancel()
	}
	if err := removal.DeleteTask(ctx, s.tasks, id); err != nil {
		slog.WarnContext(ctx, "supervisor: removing a task without a container", "id", id, "error", err)
	}
	if s.cfg.Root != "" {
		os.RemoveAll(removal.Dir(s.cfg.Root, id))
	}
}

// removeOrphanCgroups removes berth's empty cgroups (<controller>/berth/
// <id>) of containers that no namespace has. A cgroup with processes in
// it cannot be removed and is left.
func (s *Supervisor) removeOrphanCgroups(known map[string]bool) {
	if s.cfg.CgroupRoot == "" {
		return
	}
	dirs, _ := filepath.Glob(filepath.Join(s.cfg.CgroupRoot, "*", ocispec.CgroupParent, "*"))
	more, _ := filepath.Glob(filepath.Join(s.cfg.CgroupRoot, ocispec.CgroupParent, "*")) // cgroup v2
	for _, d := range append(dirs, more...) {
		id := filepath.Base(d)
		if containers.ValidateID(id) != nil || known[id] {
			continue
		}
		// Busy: processes (or child cgroups) still in it, not an orphan.
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.EBUSY) {
			slog.Warn("supervisor: removing an orphan cgroup", "path", d, "error", err)
		}
	}
}
