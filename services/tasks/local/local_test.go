package local

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
	"github.com/berth-engine/berth/internal/namespaces"
	eventsv1 "github.com/berth-engine/berth/proto/events/v1"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
	contentlocal "github.com/berth-engine/berth/services/content/local"
	"github.com/berth-engine/berth/services/metadata"
	"github.com/berth-engine/berth/services/tasks/ocispec"
	"github.com/berth-engine/berth/shim"
	"github.com/berth-engine/berth/snapshotter/native"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

const runcPath = "/usr/sbin/runc"

var applets = []string{"sh", "echo", "sleep", "cat", "true"}

func TestNewWithoutShimBinaryServesAndCreateSaysWhy(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PATH", dir)
	s, err := New(context.Background(), Config{
		Root: filepath.Join(dir, "root"), State: filepath.Join(dir, "state"),
		Containers:  fakeContainers{},
		Snapshotter: func(string) snapshots.Snapshotter { return nil },
	})
	if err != nil {
		t.Fatalf("New without a shim binary: %v", err)
	}
	defer s.Close()
	ctx := namespaces.WithNamespace(context.Background(), "t")
	if _, err := s.Create(ctx, &tasksv1.CreateTaskRequest{ContainerId: "x"}); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "berth-shim") {
		t.Fatalf("Create without a shim binary: %v, want not found naming berth-shim", err)
	}
	if _, err := s.Get(ctx, &tasksv1.GetRequest{ContainerId: "x"}); !errdefs.IsNotFound(err) {
		t.Fatalf("Get of a missing task: %v, want not found", err)
	}
	if r, err := s.List(ctx, &tasksv1.ListTasksRequest{}); err != nil || len(r.GetTasks()) != 0 {
		t.Fatalf("List: %v %v, want none", r, err)
	}
	if _, err := s.List(context.Background(), &tasksv1.ListTasksRequest{}); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("List without a namespace: %v, want failed precondition", err)
	}
}

type fakeContainers struct{ containers.Store }

// recorder is an events.Publisher that keeps the topics it got.
type recorder struct {
	mu     sync.Mutex
	topics []string
	events []proto.Message
}

func (r *recorder) Publish(ctx context.Context, topic string, ev proto.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.topics = append(r.topics, topic)
	r.events = append(r.events, ev)
	return nil
}

// exit returns the first exit event of the init process of id.
func (r *recorder) exit(id string) *eventsv1.TaskExit {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events {
		if e, ok := ev.(*eventsv1.TaskExit); ok && e.GetContainerId() == id && e.GetId() == "" {
			return e
		}
	}
	return nil
}

func (r *recorder) has(topic string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.topics {
		if t == topic {
			return true
		}
	}
	return false
}

// env is a tasks service over a real metadata DB, native snapshotter and
// berth-shim, with containers whose rootfs holds a static busybox.
type env struct {
	t      *testing.T
	dir    string
	db     *metadata.DB
	shim   string
	events *recorder
	svc    *Service
	ctx    context.Context
	ids    []string
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("runs containers with runc: needs root")
	}
	if _, err := os.Stat(runcPath); err != nil {
		t.Skipf("runc not installed at %s", runcPath)
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("busybox-static not installed at /bin/busybox")
	}
}

func newEnv(t *testing.T) *env {
	needRoot(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "berth-shim")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/berth-engine/berth/shim/cmd/berth-shim").CombinedOutput()
	if err != nil {
		t.Fatalf("building berth-shim: %v\n%s", err, out)
	}
	bdb, err := bolt.Open(filepath.Join(dir, "metadata.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := contentlocal.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	backend, err := native.New(filepath.Join(dir, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	db := metadata.NewDB(bdb, cs, nil, metadata.WithSnapshotters(map[string]snapshots.Snapshotter{"native": backend}))
	if err := db.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), "tasktest"), time.Minute)
	e := &env{t: t, dir: dir, db: db, shim: bin, events: &recorder{}, ctx: ctx}
	t.Cleanup(func() {
		e.cleanup()
		cancel()
		db.Close()
		backend.Close()
		bdb.Close()
	})
	e.svc = e.newService()
	return e
}

func (e *env) newService() *Service {
	s, err := New(context.Background(), Config{
		Root: filepath.Join(e.dir, "root"), State: filepath.Join(e.dir, "state"),
		ShimBinary: e.shim, Runtime: runcPath,
		Containers:  e.db.Containers(),
		Snapshotter: e.db.Snapshotter,
		Publisher:   e.events,
	})
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	return s
}

// container records a container running args in a fresh busybox snapshot.
func (e *env) container(args ...string) string {
	t := e.t
	id := fmt.Sprintf("%064x", time.Now().UnixNano())
	key := "rootfs-" + id[48:]
	mounts, err := e.db.Snapshotter("native").Prepare(e.ctx, key, "")
	if err != nil {
		t.Fatal(err)
	}
	err = mount.WithTempMount(e.ctx, mounts, func(root string) error {
		if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
			return err
		}
		bb, err := os.ReadFile("/bin/busybox")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), bb, 0o755); err != nil {
			return err
		}
		for _, a := range applets {
			if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := ocispec.Generate(e.ctx, imagespec.ImageConfig{Env: []string{"PATH=/bin"}}, ocispec.RunOptions{Cmd: args, NetworkMode: ocispec.NetworkHost}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.db.Containers().Create(e.ctx, containers.Container{
		ID: id, Name: "c" + id[52:], Runtime: containers.RuntimeInfo{Name: "runc"},
		Spec:        &anypb.Any{TypeUrl: containers.SpecTypeURL, Value: b},
		Snapshotter: "native", SnapshotKey: key,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.ids = append(e.ids, id)
	return id
}

func (e *env) bundle(id string) string {
	return filepath.Join(e.dir, "state", "tasks", "tasktest", id)
}

func (e *env) shimPid(id string) int {
	pid, _ := shim.ReadPidFile(filepath.Join(e.bundle(id), shim.PidFile))
	return pid
}

// cleanup kills what the test left running, by pid, and unmounts.
func (e *env) cleanup() {
	if e.svc != nil {
		e.svc.Close()
	}
	for _, id := range e.ids {
		b := e.bundle(id)
		if pid, err := shim.ReadPidFile(filepath.Join(b, "init.pid")); err == nil && shim.ProcessAlive(pid) {
			syscallKill(pid)
		}
		if pid := e.shimPid(id); pid > 0 && shim.ProcessAlive(pid) {
			syscallKill(pid)
			waitGone(pid, 5*time.Second)
		}
		exec.Command(runcPath, "--root", filepath.Join(e.dir, "state", "runc", "tasktest"), "delete", "-f", id).Run()
		mount.UnmountAll(filepath.Join(b, "rootfs"))
		if l, _ := os.ReadFile(filepath.Join(b, shim.LogFile)); len(l) > 0 {
			e.t.Logf("shim log of %s:\n%s", id, l)
		}
	}
}

func (e *env) create(id string) uint32 {
	e.t.Helper()
	cr, err := e.svc.Create(e.ctx, &tasksv1.CreateTaskRequest{ContainerId: id})
	if err != nil {
		e.t.Fatalf("Create: %v", err)
	}
	if cr.GetPid() == 0 {
		e.t.Fatal("Create returned no pid")
	}
	return cr.GetPid()
}

func (e *env) start(id string) {
	e.t.Helper()
	if _, err := e.svc.Start(e.ctx, &tasksv1.StartRequest{ContainerId: id}); err != nil {
		e.t.Fatalf("Start: %v", err)
	}
}

func (e *env) wait(id, execID string) uint32 {
	e.t.Helper()
	wr, err := e.svc.Wait(e.ctx, &tasksv1.WaitRequest{ContainerId: id, ExecId: execID})
	if err != nil {
		e.t.Fatalf("Wait %q: %v", execID, err)
	}
	return wr.GetExitStatus()
}

// deleteAndCheck deletes the task and checks nothing of it is left.
func (e *env) deleteAndCheck(id string) {
	t := e.t
	t.Helper()
	shimPid := e.shimPid(id)
	if _, err := e.svc.Delete(e.ctx, &tasksv1.DeleteTaskRequest{ContainerId: id}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := os.Stat(e.bundle(id)); !os.IsNotExist(err) {
		t.Errorf("bundle %s left after Delete (%v)", e.bundle(id), err)
	}
	if shimPid > 0 && shim.ProcessAlive(shimPid) {
		t.Errorf("shim pid %d still runs after Delete", shimPid)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), e.bundle(id)) {
		t.Errorf("a mount under %s is left after Delete", e.bundle(id))
	}
	if _, err := e.svc.Get(e.ctx, &tasksv1.GetRequest{ContainerId: id}); !errdefs.IsNotFound(err) {
		t.Errorf("Get after Delete: %v, want not found", err)
	}
}

func TestEchoRunsLogsAndDeletes(t *testing.T) {
	e := newEnv(t)
	id := e.container("echo", "hello")
	pid := e.create(id)
	if _, err := e.svc.Create(e.ctx, &tasksv1.CreateTaskRequest{ContainerId: id}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second Create: %v, want already exists", err)
	}
	if b, err := os.ReadFile(filepath.Join(e.bundle(id), "config.json")); err != nil {
		t.Fatal(err)
	} else {
		var spec specs.Spec
		if err := json.Unmarshal(b, &spec); err != nil || spec.Root == nil || spec.Root.Path != "rootfs" {
			t.Errorf("config.json root %+v (%v), want rootfs", spec.Root, err)
		}
	}
	e.start(id)
	if st := e.wait(id, ""); st != 0 {
		t.Fatalf("echo exited %d", st)
	}
	g, err := e.svc.Get(e.ctx, &tasksv1.GetRequest{ContainerId: id})
	if err != nil || g.GetProcess().GetStatus() != tasksv1.Status_STATUS_STOPPED {
		t.Fatalf("Get after exit: %v %v, want stopped", g, err)
	}
	l, err := e.svc.List(e.ctx, &tasksv1.ListTasksRequest{})
	if err != nil || len(l.GetTasks()) != 1 || l.GetTasks()[0].GetId() != id {
		t.Fatalf("List: %v %v, want the task", l, err)
	}
	logPath := LogPath(filepath.Join(e.dir, "root"), id)
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if strings.Contains(string(b), `"log":"hello\n"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log %s holds %q, want the hello line", logPath, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.deleteAndCheck(id)
	// The exit watcher publishes asynchronously.
	for deadline := time.Now().Add(5 * time.Second); e.events.exit(id) == nil && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if ex := e.events.exit(id); ex == nil || ex.GetPid() != pid || ex.GetExitStatus() != 0 || ex.GetExitedAt() == nil {
		t.Errorf("exit event %v, want pid %d, status 0 and a time", ex, pid)
	}
	for _, topic := range []string{TopicCreate, TopicStart, TopicExit, TopicDelete} {
		if !e.events.has(topic) {
			t.Errorf("no %s event published (got %v)", topic, e.events.topics)
		}
	}
}

func TestCreateFailureLeavesNothing(t *testing.T) {
	e := newEnv(t)
	id := e.container("true")
	// The runtime refuses a relative working directory, after the shim
	// started and mounted the rootfs.
	c, err := e.db.Containers().Get(e.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	c.Spec.Value = []byte(`{"ociVersion":"1.0.2","process":{"args":["/bin/true"],"cwd":"relative"},"root":{"path":"x"}}`)
	if _, err := e.db.Containers().Update(e.ctx, c, "spec"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Create(e.ctx, &tasksv1.CreateTaskRequest{ContainerId: id}); err == nil {
		t.Fatal("Create of a container the runtime cannot create succeeded")
	}
	if _, err := os.Stat(e.bundle(id)); !os.IsNotExist(err) {
		t.Errorf("bundle left after a failed Create (%v)", err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), e.bundle(id)) {
		t.Errorf("a mount under %s is left after a failed Create", e.bundle(id))
	}
	if _, err := e.svc.Get(e.ctx, &tasksv1.GetRequest{ContainerId: id}); !errdefs.IsNotFound(err) {
		t.Errorf("Get after a failed Create: %v, want not found", err)
	}
}

func TestExecKillAndReconnect(t *testing.T) {
	e := newEnv(t)
	id := e.container("sleep", "30")
	e.create(id)
	e.start(id)

	pspec, err := json.Marshal(specs.Process{Args: []string{"sh", "-c", "exit 3"}, Env: []string{"PATH=/bin"}, Cwd: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Exec(e.ctx, &tasksv1.ExecProcessRequest{ContainerId: id, ExecId: "x1", Spec: pspec}); err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if !e.events.has(TopicExecAdded) {
		t.Errorf("no %s event published for the exec (got %v)", TopicExecAdded, e.events.topics)
	}
	if _, err := e.svc.Start(e.ctx, &tasksv1.StartRequest{ContainerId: id, ExecId: "x1"}); err != nil {
		t.Fatalf("Start exec: %v", err)
	}
	if st := e.wait(id, "x1"); st != 3 {
		t.Errorf("exec exited %d, want 3", st)
	}
	if _, err := e.svc.DeleteProcess(e.ctx, &tasksv1.DeleteProcessRequest{ContainerId: id, ExecId: "x1"}); err != nil {
		t.Errorf("DeleteProcess: %v", err)
	}
	pids, err := e.svc.ListPids(e.ctx, &tasksv1.ListPidsRequest{ContainerId: id})
	if err != nil || len(pids.GetProcesses()) == 0 {
		t.Errorf("ListPids: %v %v, want the sleep", pids, err)
	}

	// A new service on the same state finds the running task again.
	shimPid := e.shimPid(id)
	e.svc.Close()
	e.svc = e.newService()
	if !shim.ProcessAlive(shimPid) {
		t.Fatal("the shim died when the tasks service closed")
	}
	g, err := e.svc.Get(e.ctx, &tasksv1.GetRequest{ContainerId: id})
	if err != nil || g.GetProcess().GetStatus() != tasksv1.Status_STATUS_RUNNING {
		t.Fatalf("Get after reconnecting: %v %v, want running", g, err)
	}
	if _, err := e.svc.Kill(e.ctx, &tasksv1.KillRequest{ContainerId: id, Signal: 9}); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if st := e.wait(id, ""); st != 137 {
		t.Errorf("killed sleep exited %d, want 137", st)
	}
	e.deleteAndCheck(id)
}

func TestDeadShimIsReapedOnRestart(t *testing.T) {
	e := newEnv(t)
	id := e.container("sleep", "30")
	e.create(id)
	e.start(id)
	e.svc.Close()
	e.svc = nil
	// The shim dies while berthd is down; its container goes with it.
	shimPid := e.shimPid(id)
	initPid, _ := shim.ReadPidFile(filepath.Join(e.bundle(id), "init.pid"))
	syscallKill(shimPid)
	if initPid > 0 {
		syscallKill(initPid)
	}
	waitGone(shimPid, 5*time.Second)
	e.svc = e.newService()
	g, err := e.svc.Get(e.ctx, &tasksv1.GetRequest{ContainerId: id})
	if err != nil || g.GetProcess().GetStatus() != tasksv1.Status_STATUS_STOPPED {
		t.Fatalf("Get after the shim died: %v %v, want stopped", g, err)
	}
	if st := e.wait(id, ""); st != 137 {
		t.Errorf("Wait of a task whose shim died: %d, want 137", st)
	}
	if _, err := e.svc.Kill(e.ctx, &tasksv1.KillRequest{ContainerId: id, Signal: 9}); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Kill of a stopped task: %v, want failed precondition", err)
	}
	e.deleteAndCheck(id)
}

func TestShimDyingWhileServedLeavesTaskStopped(t *testing.T) {
	e := newEnv(t)
	id := e.container("sleep", "30")
	e.create(id)
	e.start(id)
	syscallKill(e.shimPid(id))
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, err := e.svc.Get(e.ctx, &tasksv1.GetRequest{ContainerId: id})
		if err == nil && g.GetProcess().GetStatus() == tasksv1.Status_STATUS_STOPPED {
			if g.GetProcess().GetExitStatus() != 137 {
				t.Errorf("exit status %d after the shim died, want 137", g.GetProcess().GetExitStatus())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the task is not stopped after its shim died: %v %v", g, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(e.bundle(id), shim.ExitFile)); err != nil {
		t.Errorf("no exit recorded after the shim died: %v", err)
	}
	if !e.events.has(TopicExit) {
		t.Error("no exit event after the shim died")
	}
	e.deleteAndCheck(id)
}
