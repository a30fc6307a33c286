package command

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"

	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
)

func testContainer(t *testing.T, s *specs.Spec, st containers.State) containers.Container {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	c := containers.Container{
		ID: strings.Repeat("c", 64), Name: "web", Image: "docker.io/library/busybox:latest",
		Spec:      &anypb.Any{TypeUrl: containers.SpecTypeURL, Value: b},
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	if err := containers.SetState(&c, st); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestExecProcessSpec(t *testing.T) {
	s := &specs.Spec{Process: &specs.Process{
		Args: []string{"sleep", "60"}, Env: []string{"PATH=/bin", "KEEP=1", "DROP=1"}, Cwd: "/",
		User: specs.User{UID: 7, GID: 8},
	}}
	ctr := testContainer(t, s, containers.State{})
	envFile := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(envFile, []byte("# comment\nFROMFILE=yes\nKEEP=2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A bare name takes berth's own value, or unsets the variable when
	// berth has none.
	t.Setenv("DROP", "")
	os.Unsetenv("DROP")
	b, err := execProcessSpec(ctr, 1, execOptions{workdir: "/tmp", env: []string{"A=1", "DROP"}, envFiles: []string{envFile}}, []string{"env"})
	if err != nil {
		t.Fatal(err)
	}
	var p specs.Process
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Args, []string{"env"}) || p.Cwd != "/tmp" || p.User.UID != 7 || p.Terminal {
		t.Errorf("exec process: args %v, cwd %q, user %+v, terminal %v", p.Args, p.Cwd, p.User, p.Terminal)
	}
	// The image's variables stay unless overridden.
	if want := []string{"PATH=/bin", "KEEP=2", "FROMFILE=yes", "A=1"}; !slices.Equal(p.Env, want) {
		t.Errorf("exec env = %v, want %v", p.Env, want)
	}
	if _, err := execProcessSpec(ctr, 1, execOptions{workdir: "tmp"}, []string{"true"}); err == nil || !strings.Contains(err.Error(), "needs to be an absolute path") {
		t.Errorf("relative workdir: %v", err)
	}
}

func TestNewInspectContainer(t *testing.T) {
	s := &specs.Spec{
		Hostname: "h",
		Process:  &specs.Process{Args: []string{"sleep", "60"}, Env: []string{"PATH=/bin"}, Cwd: "/w", User: specs.User{UID: 65534, GID: 65534}},
		Mounts: []specs.Mount{
			{Destination: "/etc/hosts", Type: "bind", Source: "/x/hosts", Options: []string{"rbind", "ro"}},
			{Destination: "/data", Type: "bind", Source: "/src", Options: []string{"rbind", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs"},
		},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}}},
	}
	started := time.Date(2026, 1, 2, 4, 0, 0, 0, time.UTC)
	ctr := testContainer(t, s, containers.State{StartedAt: started, RestartCount: 2, OOMKilled: true})
	if err := containers.SetIntent(&ctr, containers.Intent{AutoRemove: true}); err != nil {
		t.Fatal(err)
	}
	now := started.Add(time.Minute)
	ic := newInspectContainer(ctr, &tasksv1.Process{Pid: 42, Status: tasksv1.Status_STATUS_PAUSED}, "sha256:abc", now)
	if ic.State.Status != "paused" || !ic.State.Running || !ic.State.Paused || ic.State.Pid != 42 || ic.State.FinishedAt != zeroTime {
		t.Errorf("state of a paused container: %+v", ic.State)
	}
	if ic.Name != "/web" || ic.Path != "sleep" || !slices.Equal(ic.Args, []string{"60"}) || ic.Config.User != "65534:65534" ||
		ic.Config.Image != "busybox:latest" || ic.Config.WorkingDir != "/w" || ic.Config.Hostname != "h" || ic.Image != "sha256:abc" {
		t.Errorf("inspect: %+v", ic)
	}
	if ic.RestartCount != 2 || !ic.State.OOMKilled || ic.HostConfig.RestartPolicy.Name != "no" {
		t.Errorf("restart count %d, OOMKilled %v, policy %+v", ic.RestartCount, ic.State.OOMKilled, ic.HostConfig.RestartPolicy)
	}
	if ic.HostConfig.NetworkMode != "host" || !ic.HostConfig.AutoRemove {
		t.Errorf("host config: %+v", ic.HostConfig)
	}
	if len(ic.Mounts) != 1 || ic.Mounts[0].Destination != "/data" || ic.Mounts[0].RW || ic.Mounts[0].Mode != "ro" {
		t.Errorf("mounts: %+v", ic.Mounts)
	}
	if ic.Created != "2026-01-02T03:04:05Z" || ic.State.StartedAt != "2026-01-02T04:00:00Z" {
		t.Errorf("times: created %s, started %s", ic.Created, ic.State.StartedAt)
	}

	exited := newInspectContainer(ctr, nil, "", now)
	if exited.State.Status != "created" || exited.State.Running || exited.State.Pid != 0 {
		t.Errorf("state of a container without a task: %+v", exited.State)
	}
}

func TestReadTopRow(t *testing.T) {
	procfs := t.TempDir()
	dir := filepath.Join(procfs, "1234")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Fields 3..22 of proc(5): utime 250, stime 50 ticks; start 1000 ticks
	// after boot; tty pts/3 (major 136).
	stat := "1234 (my (odd) cmd) S 77 1234 1234 34819 0 0 0 0 0 0 250 50 0 0 20 0 1 0 1000 0 0\n"
	files := map[string]string{
		"stat":    stat,
		"status":  "Name:\tx\nUid:\t0\t0\t0\t0\n",
		"cmdline": "sleep\x0060\x00",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	boot := time.Date(2026, 1, 2, 3, 0, 0, 0, time.Local)
	now := boot.Add(10*time.Second + 30*time.Second) // started at boot+10s, ran 30s
	r, err := readTopRow(procfs, 1234, boot, now)
	if err != nil {
		t.Fatal(err)
	}
	want := topRow{PID: "1234", PPID: "77", C: "10", STIME: "03:00", TTY: "pts/3", TIME: "00:00:03", CMD: "sleep 60", UID: userName("0")}
	if r != want {
		t.Errorf("readTopRow = %+v, want %+v", r, want)
	}
	if err := os.WriteFile(filepath.Join(dir, "cmdline"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if r, _ := readTopRow(procfs, 1234, boot, now.Add(48*time.Hour)); r.CMD != "[my (odd) cmd]" || r.STIME != "Jan02" {
		t.Errorf("kernel thread: CMD %q, STIME %q", r.CMD, r.STIME)
	}
	if _, err := readTopRow(procfs, 999, boot, now); err == nil {
		t.Error("readTopRow of a missing process succeeded")
	}
}
