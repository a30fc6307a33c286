package supervisor

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/namespaces"
	eventsv1 "github.com/berth-engine/berth/proto/events/v1"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
	"github.com/berth-engine/berth/services/content/local"
	"github.com/berth-engine/berth/services/events/exchange"
	"github.com/berth-engine/berth/services/metadata"
	"github.com/berth-engine/berth/services/tasks"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

const ns = "test"

// fakeTasks is a tasks service without processes: a test makes a task
// exit, and it publishes the events the real one does.
type fakeTasks struct {
	tasks.Service // methods the supervisor does not call panic
	pub           *exchange.Exchange

	mu      sync.Mutex
	tasks   map[string]*tasksv1.Process
	nextPid uint32
	creates int
}

func newFakeTasks(pub *exchange.Exchange) *fakeTasks {
	return &fakeTasks{pub: pub, tasks: map[string]*tasksv1.Process{}, nextPid: 100}
}

func (f *fakeTasks) Create(ctx context.Context, req *tasksv1.CreateTaskRequest) (*tasksv1.CreateTaskResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.tasks[req.GetContainerId()]; ok {
		return nil, errdefs.Errorf(errdefs.ErrAlreadyExists, "task %q exists", req.GetContainerId())
	}
	f.tasks[req.GetContainerId()] = &tasksv1.Process{Id: req.GetContainerId(), Status: tasksv1.Status_STATUS_CREATED}
	f.creates++
	return &tasksv1.CreateTaskResponse{ContainerId: req.GetContainerId()}, nil
}

func (f *fakeTasks) Start(ctx context.Context, req *tasksv1.StartRequest) (*tasksv1.StartResponse, error) {
	f.mu.Lock()
	p, ok := f.tasks[req.GetContainerId()]
	if !ok {
		f.mu.Unlock()
		return nil, errdefs.Errorf(errdefs.ErrNotFound, "no task %q", req.GetContainerId())
	}
	f.nextPid++
	p.Status, p.Pid = tasksv1.Status_STATUS_RUNNING, f.nextPid
	pid := p.Pid
	f.mu.Unlock()
	f.pub.Publish(namespaces.WithNamespace(ctx, ns), TopicStart, &eventsv1.TaskStart{ContainerId: req.GetContainerId(), Pid: pid})
	return &tasksv1.StartResponse{Pid: pid}, nil
}

// exit makes the task's init process exit with status.
func (f *fakeTasks) exit(id string, status uint32) {
	f.mu.Lock()
	p := f.tasks[id]
	p.Status, p.ExitStatus, p.ExitedAt = tasksv1.Status_STATUS_STOPPED, status, timestamppb.Now()
	ev := &eventsv1.TaskExit{ContainerId: id, Pid: p.Pid, ExitStatus: status, ExitedAt: p.ExitedAt}
	f.mu.Unlock()
	f.pub.Publish(namespaces.WithNamespace(context.Background(), ns), TopicExit, ev)
}

func (f *fakeTasks) Delete(ctx context.Context, req *tasksv1.DeleteTaskRequest) (*tasksv1.DeleteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.tasks[req.GetContainerId()]
	if !ok {
		return nil, errdefs.Errorf(errdefs.ErrNotFound, "no task %q", req.GetContainerId())
	}
	if p.Status == tasksv1.Status_STATUS_RUNNING {
		return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "task %q is running", req.GetContainerId())
	}
	delete(f.tasks, req.GetContainerId())
	return &tasksv1.DeleteResponse{Id: p.Id, Pid: p.Pid, ExitStatus: p.ExitStatus, ExitedAt: p.ExitedAt}, nil
}

func (f *fakeTasks) Get(ctx context.Context, req *tasksv1.GetRequest) (*tasksv1.GetResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.tasks[req.GetContainerId()]
	if !ok {
		return nil, errdefs.Errorf(errdefs.ErrNotFound, "no task %q", req.GetContainerId())
	}
	return &tasksv1.GetResponse{Process: &tasksv1.Process{Id: p.Id, Pid: p.Pid, Status: p.Status, ExitStatus: p.ExitStatus, ExitedAt: p.ExitedAt}}, nil
}

func (f *fakeTasks) List(ctx context.Context, _ *tasksv1.ListTasksRequest) (*tasksv1.ListTasksResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &tasksv1.ListTasksResponse{}
	for _, p := range f.tasks {
		resp.Tasks = append(resp.Tasks, &tasksv1.Process{Id: p.Id, Pid: p.Pid, Status: p.Status, ExitStatus: p.ExitStatus})
	}
	return resp, nil
}

func (f *fakeTasks) Kill(ctx context.Context, req *tasksv1.KillRequest) (*emptypb.Empty, error) {
	if req.GetSignal() == uint32(syscall.SIGKILL) {
		f.exit(req.GetContainerId(), 137)
	}
	return &emptypb.Empty{}, nil
}

func (f *fakeTasks) Wait(ctx context.Context, req *tasksv1.WaitRequest) (*tasksv1.WaitResponse, error) {
	return &tasksv1.WaitResponse{}, nil
}

func (f *fakeTasks) has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.tasks[id]
	return ok
}

// env is a supervisor on a real metadata store and a fake tasks service.
type env struct {
	t     *testing.T
	ctx   context.Context
	store containers.Store
	tasks *fakeTasks
	sup   *Supervisor
	db    *metadata.DB
	start func() // starts the supervisor, as berthd does after recovery
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	bdb, err := bolt.Open(filepath.Join(dir, "metadata.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	ex := exchange.New()
	db := metadata.NewDB(bdb, cs, ex, metadata.WithGCDelay(time.Hour))
	ctx := namespaces.WithNamespace(context.Background(), ns)
	if err := db.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Namespaces().Create(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, store: db.Containers(), tasks: newFakeTasks(ex), db: db}
	e.sup, err = New(ctx, Config{
		Events: ex, Containers: e.store, Namespaces: db.Namespaces(),
		Snapshotter: func(string) snapshots.Snapshotter { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	e.start = func() {
		if err := e.sup.Start(ctx, e.tasks); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		e.sup.Close()
		ex.Close()
		db.Close()
		bdb.Close()
	})
	return e
}

var ids int

// container records a container with the given restart policy, intent
// and state.
func (e *env) container(policy string, in containers.Intent, st containers.State) string {
	e.t.Helper()
	ids++
	c := containers.Container{
		ID: fmt.Sprintf("%064x", ids), Name: fmt.Sprintf("c%d", ids), Runtime: containers.RuntimeInfo{Name: "runc"},
		Spec:   &anypb.Any{TypeUrl: containers.SpecTypeURL, Value: []byte("{}")},
		Labels: map[string]string{containers.RestartPolicyLabel: policy},
	}
	if err := containers.SetIntent(&c, in); err != nil {
		e.t.Fatal(err)
	}
	if err := containers.SetState(&c, st); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.Create(e.ctx, c); err != nil {
		e.t.Fatal(err)
	}
	return c.ID
}

// run starts the container's task, as `berth start` does.
func (e *env) run(id string) {
	e.t.Helper()
	if _, err := e.tasks.Create(e.ctx, &tasksv1.CreateTaskRequest{ContainerId: id}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.tasks.Start(e.ctx, &tasksv1.StartRequest{ContainerId: id}); err != nil {
		e.t.Fatal(err)
	}
	e.waitState(id, "running", func(st containers.State) bool { return st.Running })
}

func (e *env) state(id string) (containers.State, bool) {
	c, err := e.store.Get(e.ctx, id)
	if errdefs.IsNotFound(err) {
		return containers.State{}, false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return containers.StateOf(c), true
}

func (e *env) waitState(id, what string, cond func(containers.State) bool) containers.State {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ := e.state(id)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("container %s: not %s within 5s: %+v", id[60:], what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) setIntent(id string, in containers.Intent) {
	e.t.Helper()
	c, err := e.store.Get(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := containers.SetIntent(&c, in); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.Update(e.ctx, c, "extensions."+containers.IntentExtension); err != nil {
		e.t.Fatal(err)
	}
}

func TestExitIsRecordedAndTaskDeleted(t *testing.T) {
	e := newEnv(t)
	e.start()
	id := e.container("no", containers.Intent{}, containers.State{})
	e.run(id)
	e.tasks.exit(id, 3)
	st := e.waitState(id, "exited", func(st containers.State) bool { return !st.Running && st.ExitCode == 3 })
	if st.FinishedAt.IsZero() || st.Pid != 0 || st.RestartCount != 0 || st.Restarting {
		t.Errorf("state after an exit: %+v", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.tasks.has(id) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if e.tasks.has(id) {
		t.Errorf("the task of an exited container was not deleted")
	}
	// The intent written meanwhile is kept: the supervisor updates only
	// its own extension.
	e.setIntent(id, containers.Intent{ManuallyStopped: true})
	c, _ := e.store.Get(e.ctx, id)
	if !containers.IntentOf(c).ManuallyStopped || containers.StateOf(c).ExitCode != 3 {
		t.Errorf("intent and state side by side: %+v %+v", containers.IntentOf(c), containers.StateOf(c))
	}
}

func TestOnFailureRestartsWithBackoffAndCount(t *testing.T) {
	e := newEnv(t)
	e.start()
	id := e.container("on-failure:2", containers.Intent{}, containers.State{})
	e.run(id)
	start := time.Now()
	for i := 1; i <= 2; i++ {
		e.tasks.exit(id, 1)
		e.waitState(id, "restarted", func(st containers.State) bool { return st.Running && st.RestartCount == i })
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("two restarts in %v: want the 100 ms and 200 ms back-off", el)
	}
	e.tasks.exit(id, 1)
	e.waitState(id, "exited for good", func(st containers.State) bool { return !st.Running && !st.Restarting && st.ExitCode == 1 })
	time.Sleep(300 * time.Millisecond)
	if st, _ := e.state(id); st.Running || st.RestartCount != 2 || e.tasks.has(id) {
		t.Errorf("after the last allowed restart: %+v (task %v)", st, e.tasks.has(id))
	}
	// A start by hand resets the count.
	e.run(id)
	if st, _ := e.state(id); st.RestartCount != 0 {
		t.Errorf("restart count after a start by hand: %d", st.RestartCount)
	}
	// Removing the container ends its bookkeeping.
	e.tasks.exit(id, 0)
	e.waitState(id, "exited", func(st containers.State) bool { return !st.Running })
	if err := e.store.Delete(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		e.sup.mu.Lock()
		_, kept := e.sup.runs[key(ns, id)]
		e.sup.mu.Unlock()
		if !kept {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the supervisor keeps the restart bookkeeping of a removed container")
		}
	}
}

func TestStopByHandIsNotRestarted(t *testing.T) {
	e := newEnv(t)
	e.start()
	id := e.container("always", containers.Intent{}, containers.State{})
	e.run(id)
	e.setIntent(id, containers.Intent{ManuallyStopped: true})
	e.tasks.exit(id, 143)
	e.waitState(id, "exited", func(st containers.State) bool { return !st.Running && st.ExitCode == 143 })
	time.Sleep(300 * time.Millisecond)
	if st, _ := e.state(id); st.Running || st.Restarting || st.RestartCount != 0 {
		t.Errorf("always after a stop by hand: %+v", st)
	}
}

func TestAutoRemove(t *testing.T) {
	e := newEnv(t)
	e.start()
	id := e.container("no", containers.Intent{AutoRemove: true}, containers.State{})
	e.run(id)
	e.tasks.exit(id, 0)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := e.state(id); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a --rm container was not removed after its exit")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if e.tasks.has(id) {
		t.Error("the task of a removed container is left")
	}
}

func TestDaemonStart(t *testing.T) {
	e := newEnv(t)
	started := containers.State{Running: true, Pid: 42, StartedAt: time.Now().Add(-time.Hour)}
	// Their tasks vanished (a reboot).
	always := e.container("always", containers.Intent{}, started)
	alwaysStopped := e.container("always", containers.Intent{ManuallyStopped: true}, containers.State{StartedAt: started.StartedAt, FinishedAt: time.Now()})
	unlessStopped := e.container("unless-stopped", containers.Intent{ManuallyStopped: true}, containers.State{StartedAt: started.StartedAt, FinishedAt: time.Now()})
	onFailure := e.container("on-failure", containers.Intent{}, started)
	neverStarted := e.container("always", containers.Intent{}, containers.State{})
	removed := e.container("no", containers.Intent{AutoRemove: true}, started)
	// A task without a container.
	orphan := fmt.Sprintf("%064x", 999)
	e.tasks.Create(e.ctx, &tasksv1.CreateTaskRequest{ContainerId: orphan})
	e.tasks.Start(e.ctx, &tasksv1.StartRequest{ContainerId: orphan})
	e.start()

	for _, id := range []string{always, alwaysStopped} {
		e.waitState(id, "started at berthd's start", func(st containers.State) bool { return st.Running && st.Pid > 100 })
	}
	for _, id := range []string{unlessStopped, neverStarted} {
		if st, _ := e.state(id); st.Running || e.tasks.has(id) {
			t.Errorf("container %s started at berthd's start: %+v", id[60:], st)
		}
	}
	st := e.waitState(onFailure, "marked lost", func(st containers.State) bool { return !st.Running })
	if st.ExitCode != LostExitCode || !strings.Contains(st.Error, "task was gone") || e.tasks.has(onFailure) {
		t.Errorf("on-failure container that lost its task: %+v", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.tasks.has(orphan) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if e.tasks.has(orphan) {
		t.Error("the orphan task was not removed")
	}
	if _, ok := e.state(removed); ok {
		t.Error("a --rm container that lost its task was not removed")
	}
}

func TestRestartingWhileBackingOffAndOOM(t *testing.T) {
	e := newEnv(t)
	e.start()
	id := e.container("always", containers.Intent{}, containers.State{})
	e.run(id)
	e.tasks.pub.Publish(e.ctx, TopicOOM, &eventsv1.TaskOOM{ContainerId: id})
	e.tasks.exit(id, 137)
	st := e.waitState(id, "restarting", func(st containers.State) bool { return st.Restarting })
	if st.Running || st.RestartCount != 1 || !st.OOMKilled || st.ExitCode != 137 {
		t.Errorf("state while restarting: %+v", st)
	}
	st = e.waitState(id, "restarted", func(st containers.State) bool { return st.Running })
	if st.Restarting || st.OOMKilled || st.RestartCount != 1 {
		t.Errorf("state once restarted: %+v", st)
	}
}
