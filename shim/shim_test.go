package shim_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
	shimv1 "github.com/berth-engine/berth/proto/shim/v1"
	typesv1 "github.com/berth-engine/berth/proto/types/v1"
	"github.com/berth-engine/berth/shim"
	"github.com/berth-engine/berth/shim/logs"
)

const runcPath = "/usr/sbin/runc"

var applets = []string{"sh", "echo", "sleep", "cat", "true", "tty", "ls", "stty"}

// shimBinary is built once per test binary run, into the first test's
// temporary directory that asks for it.
var shimBinary string

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

func buildShim(t *testing.T) string {
	t.Helper()
	if shimBinary != "" {
		return shimBinary
	}
	dir, err := os.MkdirTemp("", "berth-shim-bin")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "berth-shim")
	out, err := exec.Command("go", "build", "-ldflags", "-s -w", "-o", bin, "./cmd/berth-shim").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("building berth-shim: %v\n%s", err, out)
	}
	shimBinary = bin
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shimBinary != "" {
		os.RemoveAll(filepath.Dir(shimBinary))
	}
	os.Exit(code)
}

// env is one container's bundle, shim and runtime state for a test.
type env struct {
	t       *testing.T
	id      string
	bundle  string
	state   string
	rtRoot  string
	bin     string
	address string
	client  *ttrpc.Client
	task    shimv1.TaskService
	shimPid int
	logPath string
}

// newEnv makes a bundle running args from a busybox rootfs; cleanup kills
// the shim by pid, force-deletes the container and removes everything.
func newEnv(t *testing.T, terminal bool, args ...string) *env {
	needRoot(t)
	bin := buildShim(t)
	dir := t.TempDir()
	e := &env{
		t: t, bin: bin,
		id:      fmt.Sprintf("shimtest-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9),
		bundle:  filepath.Join(dir, "b"),
		state:   filepath.Join(dir, "state"),
		rtRoot:  filepath.Join(dir, "runc"),
		logPath: filepath.Join(dir, "logs", "c.log"),
	}
	rootfs := filepath.Join(e.bundle, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range applets {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	writeSpec(t, e.bundle, terminal, args)
	t.Cleanup(e.cleanup)
	return e
}

func writeSpec(t *testing.T, bundle string, terminal bool, args []string) {
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_NET_BIND_SERVICE"}
	spec := specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Terminal: terminal,
			Args:     args,
			Env:      []string{"PATH=/bin", "TERM=xterm"},
			Cwd:      "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			NoNewPrivileges: true,
		},
		Hostname: "shimtest",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}},
		},
	}
	b, err := json.MarshalIndent(&spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (e *env) shimArgs(cmd string) []string {
	return []string{cmd, "--id", e.id, "--namespace", "shimtest", "--bundle", e.bundle,
		"--runtime", runcPath, "--runtime-root", e.rtRoot, "--state", e.state}
}

// start starts the shim and connects to it.
func (e *env) start() {
	t := e.t
	out, err := exec.Command(e.bin, e.shimArgs("start")...).Output()
	if err != nil {
		t.Fatalf("berth-shim start: %v: %s", err, stderrOf(err))
	}
	e.address = strings.TrimSpace(string(out))
	if !strings.HasPrefix(e.address, "unix://") {
		t.Fatalf("berth-shim start printed %q, want a unix:// address", out)
	}
	b, err := os.ReadFile(filepath.Join(e.bundle, shim.AddressFile))
	if err != nil || string(b) != e.address {
		t.Fatalf("shim.address holds %q (%v), want %q", b, err, e.address)
	}
	b, err = os.ReadFile(filepath.Join(e.bundle, shim.PidFile))
	if err != nil {
		t.Fatal(err)
	}
	if e.shimPid, err = strconv.Atoi(string(b)); err != nil {
		t.Fatalf("shim.pid holds %q", b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if e.client, e.task, err = shim.Connect(ctx, e.address); err != nil {
		t.Fatal(err)
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

func (e *env) cleanup() {
	if e.client != nil {
		e.client.Close()
	}
	if e.shimPid > 0 && alive(e.shimPid) {
		unix.Kill(e.shimPid, unix.SIGKILL)
		waitGone(e.shimPid, 5*time.Second)
	}
	exec.Command(runcPath, "--root", e.rtRoot, "delete", "-f", e.id).Run()
	mount.UnmountAll(filepath.Join(e.bundle, "rootfs"))
	// The shim's own stderr shows what went wrong inside it.
	if b, _ := os.ReadFile(filepath.Join(e.bundle, shim.LogFile)); len(b) > 0 {
		e.t.Logf("shim log:\n%s", b)
		if strings.Contains(string(b), "DATA RACE") {
			e.t.Error("the shim (built with -race) reported a data race")
		}
	}
	os.RemoveAll(e.bundle)
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// run creates and starts the container with the given request fields.
func (e *env) run(ctx context.Context, req *shimv1.CreateTaskRequest) uint32 {
	t := e.t
	req.Id, req.Bundle = e.id, e.bundle
	cr, err := e.task.Create(ctx, req)
	if err != nil {
		t.Fatalf("Create: %v", errdefs.FromGRPC(err))
	}
	if cr.GetPid() == 0 {
		t.Fatal("Create returned no pid")
	}
	sr, err := e.task.Start(ctx, &shimv1.StartRequest{Id: e.id})
	if err != nil {
		t.Fatalf("Start: %v", errdefs.FromGRPC(err))
	}
	if sr.GetPid() != cr.GetPid() {
		t.Fatalf("Start pid %d, Create pid %d", sr.GetPid(), cr.GetPid())
	}
	return cr.GetPid()
}

func (e *env) wait(ctx context.Context, execID string) uint32 {
	e.t.Helper()
	wr, err := e.task.Wait(ctx, &shimv1.WaitRequest{Id: e.id, ExecId: execID})
	if err != nil {
		e.t.Fatalf("Wait %q: %v", execID, errdefs.FromGRPC(err))
	}
	if wr.GetExitedAt() == nil {
		e.t.Errorf("Wait %q: no exit time", execID)
	}
	return wr.GetExitStatus()
}

// deleteAndShutdown deletes the task and shuts the shim down, checking
// that the shim exits and leaves no socket or files behind.
func (e *env) deleteAndShutdown(ctx context.Context) *shimv1.DeleteResponse {
	t := e.t
	dr, err := e.task.Delete(ctx, &shimv1.DeleteRequest{Id: e.id})
	if err != nil {
		t.Fatalf("Delete: %v", errdefs.FromGRPC(err))
	}
	e.shutdown(ctx)
	if !waitGone(e.shimPid, 5*time.Second) {
		t.Fatalf("shim pid %d still runs after Shutdown", e.shimPid)
	}
	for _, f := range []string{shim.AddressFile, shim.PidFile, shim.SocketFile, "init.pid"} {
		if _, err := os.Stat(filepath.Join(e.bundle, f)); !os.IsNotExist(err) {
			t.Errorf("%s left in the bundle after shutdown (%v)", f, err)
		}
	}
	if err := exec.Command(runcPath, "--root", e.rtRoot, "state", e.id).Run(); err == nil {
		t.Errorf("runc still knows container %s after Delete", e.id)
	}
	return dr
}

// shutdown asks the shim to exit. The shim may close the connection before
// its reply goes out, which a client takes as success, as containerd does.
func (e *env) shutdown(ctx context.Context) {
	if _, err := e.task.Shutdown(ctx, &shimv1.ShutdownRequest{Id: e.id}); err != nil && !errors.Is(err, ttrpc.ErrClosed) {
		e.t.Fatalf("Shutdown: %v", errdefs.FromGRPC(err))
	}
}

func readLog(t *testing.T, path string) []logs.Entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []logs.Entry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var en logs.Entry
		if err := json.Unmarshal(sc.Bytes(), &en); err != nil {
			t.Fatalf("log line %q is not json-file: %v", sc.Text(), err)
		}
		out = append(out, en)
	}
	return out
}

func TestEchoIsLoggedAndExitsZero(t *testing.T) {
	e := newEnv(t, false, "echo", "hello")
	e.start()
	ctx := ctxT(t)
	pid := e.run(ctx, &shimv1.CreateTaskRequest{Log: &shimv1.Log{Path: e.logPath}})
	if code := e.wait(ctx, ""); code != 0 {
		t.Fatalf("echo exited %d, want 0", code)
	}
	got := readLog(t, e.logPath)
	if len(got) != 1 || got[0].Log != "hello\n" || got[0].Stream != "stdout" || got[0].Time.IsZero() {
		t.Fatalf("log = %+v, want one stdout entry hello", got)
	}
	ex, err := shim.ReadExit(e.bundle)
	if err != nil {
		t.Fatalf("no exit recorded in the bundle: %v", err)
	}
	if ex.ExitStatus != 0 || ex.Pid != pid || ex.ExitedAt.IsZero() || ex.Dead {
		t.Errorf("recorded exit %+v, want status 0 of pid %d", ex, pid)
	}
	st, err := e.task.State(ctx, &shimv1.StateRequest{Id: e.id})
	if err != nil {
		t.Fatal(errdefs.FromGRPC(err))
	}
	if st.GetStatus() != shimv1.Status_STATUS_STOPPED || st.GetPid() != pid {
		t.Errorf("State = %v pid %d, want stopped pid %d", st.GetStatus(), st.GetPid(), pid)
	}
	dr := e.deleteAndShutdown(ctx)
	if dr.GetExitStatus() != 0 || dr.GetPid() != pid {
		t.Errorf("Delete = %+v", dr)
	}
}

func TestExitCodeAndStderr(t *testing.T) {
	e := newEnv(t, false, "sh", "-c", "echo oops >&2; exit 3")
	// The rootfs comes as a mount, as from a snapshotter: the shim mounts
	// it on <bundle>/rootfs and unmounts it on Delete.
	src := filepath.Join(t.TempDir(), "src")
	rootfs := filepath.Join(e.bundle, "rootfs")
	if err := os.Rename(rootfs, src); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	e.start()
	ctx := ctxT(t)
	e.run(ctx, &shimv1.CreateTaskRequest{
		Log:    &shimv1.Log{Path: e.logPath},
		Rootfs: []*typesv1.Mount{{Type: "bind", Source: src, Options: []string{"rbind", "rw"}}},
	})
	if code := e.wait(ctx, ""); code != 3 {
		t.Fatalf("exit code %d, want 3", code)
	}
	got := readLog(t, e.logPath)
	if len(got) != 1 || got[0].Log != "oops\n" || got[0].Stream != "stderr" {
		t.Fatalf("log = %+v, want one stderr entry oops", got)
	}
	if ex, err := shim.ReadExit(e.bundle); err != nil || ex.ExitStatus != 3 {
		t.Fatalf("recorded exit %+v (%v), want 3", ex, err)
	}
	// A second Create in the same shim is refused while the task exists.
	if _, err := e.task.Create(ctx, &shimv1.CreateTaskRequest{Id: e.id, Bundle: e.bundle}); !errdefs.IsAlreadyExists(errdefs.FromGRPC(err)) {
		t.Errorf("second Create: %v, want already exists", err)
	}
	e.deleteAndShutdown(ctx)
	if entries, err := os.ReadDir(rootfs); err != nil || len(entries) != 0 {
		t.Errorf("the rootfs is still mounted after Delete: %d entries (%v)", len(entries), err)
	}
}

func TestStdinFifoAndCloseIO(t *testing.T) {
	e := newEnv(t, false, "cat")
	stdin := filepath.Join(t.TempDir(), "stdin")
	if err := unix.Mkfifo(stdin, 0o600); err != nil {
		t.Fatal(err)
	}
	e.start()
	ctx := ctxT(t)
	e.run(ctx, &shimv1.CreateTaskRequest{Stdin: stdin, Log: &shimv1.Log{Path: e.logPath}})
	w, err := os.OpenFile(stdin, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, "ping\n"); err != nil {
		t.Fatal(err)
	}
	// CloseIO, not the fifo's writer, ends cat's input.
	deadline := time.Now().Add(5 * time.Second)
	for len(logLines(e.logPath)) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := e.task.CloseIO(ctx, &shimv1.CloseIORequest{Id: e.id, Stdin: true}); err != nil {
		t.Fatal(errdefs.FromGRPC(err))
	}
	if code := e.wait(ctx, ""); code != 0 {
		t.Fatalf("cat exited %d", code)
	}
	w.Close()
	got := readLog(t, e.logPath)
	if len(got) != 1 || got[0].Log != "ping\n" {
		t.Fatalf("log = %+v, want ping", got)
	}
	e.deleteAndShutdown(ctx)
}

func logLines(path string) []string {
	b, _ := os.ReadFile(path)
	return strings.FieldsFunc(string(b), func(r rune) bool { return r == '\n' })
}

func TestExecKillPidsPauseResume(t *testing.T) {
	// busybox sh runs a trap when a trapped signal interrupts wait; as the
	// pid namespace's init it would ignore an untrapped SIGTERM.
	e := newEnv(t, false, "sh", "-c", "trap 'exit 7' TERM; sleep 30 & wait $!")
	e.start()
	ctx := ctxT(t)
	pid := e.run(ctx, &shimv1.CreateTaskRequest{Log: &shimv1.Log{Path: e.logPath}})

	t.Logf("shim memory with a running container: %s", shimMemory(t, e.shimPid))

	stdout := filepath.Join(t.TempDir(), "exec-stdout")
	if err := unix.Mkfifo(stdout, 0o600); err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(specs.Process{Args: []string{"echo", "x"}, Env: []string{"PATH=/bin"}, Cwd: "/"})
	if _, err := e.task.Exec(ctx, &shimv1.ExecProcessRequest{Id: e.id, ExecId: "e1", Stdout: stdout, Spec: spec}); err != nil {
		t.Fatal(errdefs.FromGRPC(err))
	}
	if _, err := e.task.Exec(ctx, &shimv1.ExecProcessRequest{Id: e.id, ExecId: "e1", Spec: spec}); !errdefs.IsAlreadyExists(errdefs.FromGRPC(err)) {
		t.Errorf("second Exec e1: %v, want already exists", err)
	}
	outc := make(chan string, 1)
	go func() {
		f, err := os.Open(stdout)
		if err != nil {
			outc <- err.Error()
			return
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		outc <- string(b)
	}()
	sr, err := e.task.Start(ctx, &shimv1.StartRequest{Id: e.id, ExecId: "e1"})
	if err != nil {
		t.Fatal(errdefs.FromGRPC(err))
	}
	if sr.GetPid() == 0 || sr.GetPid() == pid {
		t.Errorf("exec pid %d", sr.GetPid())
	}
	if code := e.wait(ctx, "e1"); code != 0 {
		t.Errorf("exec exited %d", code)
	}
	select {
	case out := <-outc:
		if out != "x\n" {
			t.Errorf("exec stdout %q, want x", out)
		}
	case <-time.After(5 * time.Second):
		t.Error("exec stdout fifo never closed")
	}
	if _, err := e.task.Delete(ctx, &shimv1.DeleteRequest{Id: e.id, ExecId: "e1"}); err != nil {
		t.Errorf("Delete exec: %v", errdefs.FromGRPC(err))
	}
	// An exec with a terminal gets a pty of its own.
	ttyOut := filepath.Join(t.TempDir(), "exec-tty")
	if err := unix.Mkfifo(ttyOut, 0o600); err != nil {
		t.Fatal(err)
	}
	ttySpec, _ := json.Marshal(specs.Process{Args: []string{"tty"}, Env: []string{"PATH=/bin"}, Cwd: "/"})
	if _, err := e.task.Exec(ctx, &shimv1.ExecProcessRequest{Id: e.id, ExecId: "e2", Terminal: true, Stdout: ttyOut, Spec: ttySpec}); err != nil {
		t.Fatal(errdefs.FromGRPC(err))
	}
	go func() {
		f, err := os.Open(ttyOut)
		if err != nil {
			outc <- err.Error()
			return
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		outc <- string(b)
	}()
	if _, err := e.task.Start(ctx, &shimv1.StartRequest{Id: e.id, ExecId: "e2"}); err != nil {
		t.Fatal(errdefs.FromGRPC(err))
	}
	if code := e.wait(ctx, "e2"); code != 0 {
		t.Errorf("tty exec exited %d", code)
	}
	select {
	case out := <-outc:
		if !strings.HasPrefix(out, "/dev/pts/") || !strings.HasSuffix(out, "\r\n") {
			t.Errorf("tty exec printed %q, want a pty name", out)
		}
	case <-time.After(5 * time.Second):
		t.Error("tty exec stdout fifo never closed")
	}
	if _, err := e.task.Delete(ctx, &shimv1.DeleteRequest{Id: e.id, ExecId: "e2"}); err != nil {
		t.Errorf("Delete exec e2: %v", errdefs.FromGRPC(err))
	}
	if lines := logLines(e.logPath); len(lines) != 0 {
		t.Errorf("exec output went to the container log: %q", lines)
	}

	pr, err := e.task.Pids(ctx, &shimv1.PidsRequest{Id: e.id})
	if err != nil {
		t.Fatal(errdefs.FromGRPC(err))
	}
	var pids []uint32
	for _, p := range pr.GetProcesses() {
		pids = append(pids, p.GetPid())
	}
	if len(pids) != 2 || !containsPid(pids, pid) {
		t.Errorf("Pids = %v, want init %d and its sleep", pids, pid)
	}

	if _, err := e.task.Pause(ctx, &shimv1.PauseRequest{Id: e.id}); err != nil {
		t.Fatal(errdefs.FromGRPC(err))
	}
	if st := e.status(ctx); st != shimv1.Status_STATUS_PAUSED {
		t.Errorf("after Pause: %v", st)
	}
	if runcStatus(t, e) != "paused" {
		t.Errorf("runc does not report the container paused")
	}
	if _, err := e.task.Pause(ctx, &shimv1.PauseRequest{Id: e.id}); !errdefs.IsFailedPrecondition(errdefs.FromGRPC(err)) {
		t.Errorf("Pause of a paused task: %v, want failed precondition", err)
	}
	if _, err := e.task.Resume(ctx, &shimv1.ResumeRequest{Id: e.id}); err != nil {
		t.Fatal(errdefs.FromGRPC(err))
	}
	if st := e.status(ctx); st != shimv1.Status_STATUS_RUNNING {
		t.Errorf("after Resume: %v", st)
	}
	if _, err := e.task.Delete(ctx, &shimv1.DeleteRequest{Id: e.id}); !errdefs.IsFailedPrecondition(errdefs.FromGRPC(err)) {
		t.Errorf("Delete of a running task: %v, want failed precondition", err)
	}

	if _, err := e.task.Kill(ctx, &shimv1.KillRequest{Id: e.id, Signal: uint32(syscall.SIGTERM)}); err != nil {
		t.Fatal(errdefs.FromGRPC(err))
	}
	if code := e.wait(ctx, ""); code != 7 {
		t.Errorf("after SIGTERM the container exited %d, want 7 from its trap", code)
	}
	if _, err := e.task.Kill(ctx, &shimv1.KillRequest{Id: e.id, Signal: uint32(syscall.SIGTERM)}); !errdefs.IsNotFound(errdefs.FromGRPC(err)) {
		t.Errorf("Kill of an exited task: %v, want not found", err)
	}
	e.deleteAndShutdown(ctx)
}

func containsPid(pids []uint32, pid uint32) bool {
	for _, p := range pids {
		if p == pid {
			return true
		}
	}
	return false
}

func (e *env) status(ctx context.Context) shimv1.Status {
	st, err := e.task.State(ctx, &shimv1.StateRequest{Id: e.id})
	if err != nil {
		e.t.Fatal(errdefs.FromGRPC(err))
	}
	return st.GetStatus()
}

func runcStatus(t *testing.T, e *env) string {
	out, err := exec.Command(runcPath, "--root", e.rtRoot, "state", e.id).Output()
	if err != nil {
		t.Fatalf("runc state: %v", err)
	}
	var st struct{ Status string }
	json.Unmarshal(out, &st)
	return st.Status
}

// shimMemory reads the RSS figures of pid from /proc/PID/status and its
// PSS from /proc/PID/smaps_rollup.
func shimMemory(t *testing.T, pid int) string {
	var out []string
	for _, file := range []string{"status", "smaps_rollup"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && (strings.HasPrefix(f[0], "VmRSS") || strings.HasPrefix(f[0], "Rss") && file == "status" || f[0] == "Pss:") {
				out = append(out, f[0]+" "+f[1]+" kB")
			}
		}
	}
	return strings.Join(out, ", ")
}

func TestTerminal(t *testing.T) {
	e := newEnv(t, true, "sh", "-c", "tty; echo done")
	e.start()
	ctx := ctxT(t)
	e.run(ctx, &shimv1.CreateTaskRequest{Terminal: true, Log: &shimv1.Log{Path: e.logPath}})
	if code := e.wait(ctx, ""); code != 0 {
		t.Fatalf("exit %d", code)
	}
	got := readLog(t, e.logPath)
	var all string
	for _, en := range got {
		if en.Stream != "stdout" {
			t.Errorf("terminal output on %s", en.Stream)
		}
		all += en.Log
	}
	// A terminal turns \n into \r\n.
	if !strings.Contains(all, "/dev/pts/0\r\n") || !strings.Contains(all, "done\r\n") {
		t.Errorf("terminal output %q, want a pty name and done", all)
	}
	e.deleteAndShutdown(ctx)
}

func TestKilledShimIsCleanedUpByDelete(t *testing.T) {
	e := newEnv(t, false, "sleep", "30")
	e.start()
	ctx := ctxT(t)
	pid := e.run(ctx, &shimv1.CreateTaskRequest{})
	if err := unix.Kill(e.shimPid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !waitGone(e.shimPid, 5*time.Second) {
		t.Fatal("shim survived SIGKILL")
	}
	e.client.Close()
	e.client = nil
	out, err := exec.Command(e.bin, e.shimArgs("delete")...).Output()
	if err != nil {
		t.Fatalf("berth-shim delete: %v: %s", err, stderrOf(err))
	}
	var ex shim.Exit
	if err := json.Unmarshal(out, &ex); err != nil {
		t.Fatalf("delete printed %q: %v", out, err)
	}
	if !ex.Dead || ex.ExitStatus != 137 || ex.Pid != pid {
		t.Errorf("delete reported %+v, want dead 137 of pid %d", ex, pid)
	}
	if rec, err := shim.ReadExit(e.bundle); err != nil || *rec != ex {
		t.Errorf("recorded exit %+v (%v), want %+v", rec, err, ex)
	}
	if !waitGone(int(pid), 5*time.Second) {
		t.Errorf("container init %d still runs after delete", pid)
	}
	if err := exec.Command(runcPath, "--root", e.rtRoot, "state", e.id).Run(); err == nil {
		t.Errorf("runc still knows %s after delete", e.id)
	}
	for _, f := range []string{shim.AddressFile, shim.PidFile, shim.SocketFile, "init.pid"} {
		if _, err := os.Stat(filepath.Join(e.bundle, f)); !os.IsNotExist(err) {
			t.Errorf("%s left in the bundle after delete (%v)", f, err)
		}
	}
	// A second delete finds nothing left to do and keeps the first exit.
	if out, err := exec.Command(e.bin, e.shimArgs("delete")...).Output(); err != nil {
		t.Errorf("second delete: %v: %s", err, stderrOf(err))
	} else if !strings.Contains(string(out), `"exit_status":137`) {
		t.Errorf("second delete printed %s", out)
	}
}

func TestLogRotation(t *testing.T) {
	e := newEnv(t, false, "sh", "-c", "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done")
	e.start()
	ctx := ctxT(t)
	e.run(ctx, &shimv1.CreateTaskRequest{Log: &shimv1.Log{Path: e.logPath, MaxSize: 2048, MaxFiles: 2}})
	if code := e.wait(ctx, ""); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, p := range []string{e.logPath, e.logPath + ".1"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("log file missing: %v", err)
		}
		if st.Size() > 2048 {
			t.Errorf("%s is %d bytes, over max-size", p, st.Size())
		}
	}
	if _, err := os.Stat(e.logPath + ".2"); !os.IsNotExist(err) {
		t.Errorf("a third file kept with max-file 2: %v", err)
	}
	old, cur := readLog(t, e.logPath+".1"), readLog(t, e.logPath)
	if cur[len(cur)-1].Log != "line 199\n" {
		t.Errorf("last entry %q, want line 199", cur[len(cur)-1].Log)
	}
	// The two files hold consecutive lines, oldest first.
	all := append(old, cur...)
	first := 200 - len(all)
	for i, en := range all {
		if want := fmt.Sprintf("line %d\n", first+i); en.Log != want {
			t.Fatalf("entry %d = %q, want %q", i, en.Log, want)
		}
	}
	e.deleteAndShutdown(ctx)
}

func TestCreateErrors(t *testing.T) {
	e := newEnv(t, false, "/nonexistent")
	e.start()
	ctx := ctxT(t)
	if _, err := e.task.Create(ctx, &shimv1.CreateTaskRequest{Id: "other", Bundle: e.bundle}); !errdefs.IsNotFound(errdefs.FromGRPC(err)) {
		t.Errorf("Create of another id: %v, want not found", err)
	}
	if _, err := e.task.Start(ctx, &shimv1.StartRequest{Id: e.id}); !errdefs.IsNotFound(errdefs.FromGRPC(err)) {
		t.Errorf("Start before Create: %v, want not found", err)
	}
	// runc create fails for a command that does not exist; nothing is left.
	_, err := e.task.Create(ctx, &shimv1.CreateTaskRequest{Id: e.id, Bundle: e.bundle, Log: &shimv1.Log{Path: e.logPath}})
	if err == nil {
		t.Fatal("Create of a missing command succeeded")
	}
	if !strings.Contains(err.Error(), "nonexistent") {
		t.Errorf("Create error %q does not name the command", err)
	}
	if err := exec.Command(runcPath, "--root", e.rtRoot, "state", e.id).Run(); err == nil {
		t.Errorf("runc still knows %s after a failed create", e.id)
	}
	e.shutdown(ctx)
	if !waitGone(e.shimPid, 5*time.Second) {
		t.Fatal("shim still runs after Shutdown")
	}
}

func TestTerminalStdinAndResize(t *testing.T) {
	e := newEnv(t, true, "sh", "-c", "read line; echo got $line; stty size")
	stdin := filepath.Join(t.TempDir(), "stdin")
	if err := unix.Mkfifo(stdin, 0o600); err != nil {
		t.Fatal(err)
	}
	e.start()
	ctx := ctxT(t)
	e.run(ctx, &shimv1.CreateTaskRequest{Terminal: true, Stdin: stdin, Log: &shimv1.Log{Path: e.logPath}})
	if _, err := e.task.ResizePty(ctx, &shimv1.ResizePtyRequest{Id: e.id, Width: 100, Height: 40}); err != nil {
		t.Fatal(errdefs.FromGRPC(err))
	}
	w, err := os.OpenFile(stdin, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := io.WriteString(w, "hi\n"); err != nil {
		t.Fatal(err)
	}
	if code := e.wait(ctx, ""); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var all string
	for _, en := range readLog(t, e.logPath) {
		all += en.Log
	}
	if !strings.Contains(all, "got hi\r\n") || !strings.Contains(all, "40 100\r\n") {
		t.Errorf("terminal output %q, want the input echoed back and size 40 100", all)
	}
	e.deleteAndShutdown(ctx)
}

func TestDeleteOfACreatedTaskKillsIt(t *testing.T) {
	e := newEnv(t, false, "sleep", "30")
	e.start()
	ctx := ctxT(t)
	cr, err := e.task.Create(ctx, &shimv1.CreateTaskRequest{Id: e.id, Bundle: e.bundle})
	if err != nil {
		t.Fatal(errdefs.FromGRPC(err))
	}
	if st := e.status(ctx); st != shimv1.Status_STATUS_CREATED {
		t.Errorf("after Create: %v", st)
	}
	dr := e.deleteAndShutdown(ctx)
	if dr.GetPid() != cr.GetPid() || dr.GetExitStatus() != 137 {
		t.Errorf("Delete = pid %d status %d, want pid %d killed (137)", dr.GetPid(), dr.GetExitStatus(), cr.GetPid())
	}
	if !waitGone(int(cr.GetPid()), 5*time.Second) {
		t.Errorf("created init %d still runs", cr.GetPid())
	}
}
