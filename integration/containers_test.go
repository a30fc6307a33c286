package integration

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// containerDaemon starts berthd with busybox:latest loaded and checks, when
// the test ends, that no container, mount, shim, bundle or cgroup is left.
func containerDaemon(t *testing.T) *daemon {
	t.Helper()
	d := startDaemon(t)
	d.must("load", "-i", testImage("busybox-docker.tar"))
	cgroups := berthCgroups()
	t.Cleanup(func() {
		d.checkNoContainerLeftovers(t)
		d.checkNoNewCgroups(t, cgroups)
	})
	return d
}

// berthCgroups lists the container cgroups under berth's parent, in every
// hierarchy.
func berthCgroups() map[string]bool {
	found := map[string]bool{}
	for _, pattern := range []string{"/sys/fs/cgroup/*/berth/*", "/sys/fs/cgroup/berth/*"} {
		dirs, _ := filepath.Glob(pattern)
		for _, dir := range dirs {
			if st, err := os.Stat(dir); err == nil && st.IsDir() {
				found[dir] = true
			}
		}
	}
	return found
}

// checkNoNewCgroups fails the test when a container cgroup that was not
// there when it started remains (integration tests run one at a time),
// and removes it.
func (d *daemon) checkNoNewCgroups(t *testing.T, before map[string]bool) {
	t.Helper()
	for dir := range berthCgroups() {
		if !before[dir] {
			t.Errorf("cgroup left: %s", dir)
			os.Remove(dir)
		}
	}
}

// checkNoContainerLeftovers runs while berthd still runs (cleanups run last
// first): every container must be gone with its task, shim, bundle, files
// and mounts.
func (d *daemon) checkNoContainerLeftovers(t *testing.T) {
	t.Helper()
	if out, _, _ := d.berth("ps", "-aq"); strings.TrimSpace(out) != "" {
		t.Errorf("containers left: %s", out)
	}
	if entries, _ := os.ReadDir(filepath.Join(d.state, "tasks", "default")); len(entries) > 0 {
		t.Errorf("task bundles left in %s: %d", filepath.Join(d.state, "tasks", "default"), len(entries))
	}
	if entries, _ := os.ReadDir(filepath.Join(d.root, "containers")); len(entries) > 0 {
		t.Errorf("container folders left in %s: %d", filepath.Join(d.root, "containers"), len(entries))
	}
	for _, dir := range []string{d.root, d.state} {
		if m := mountsUnder(t, dir); len(m) > 0 {
			t.Errorf("mounts left under %s: %v", dir, m)
		}
	}
	if pids := shimsOf(t, d.state); len(pids) > 0 {
		t.Errorf("shim processes left: %v", pids)
	}
	// After a failure, remove what is left so that nothing outlives the test.
	if out, _, _ := d.berth("ps", "-aq", "--no-trunc"); strings.TrimSpace(out) != "" {
		d.berth(append([]string{"rm", "-f"}, strings.Fields(out)...)...)
	}
}

// shimsOf lists the berth-shim processes whose command line names state.
func shimsOf(t *testing.T, state string) []string {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 0 && filepath.Base(args[0]) == "berth-shim" && strings.Contains(string(b), state) {
			pids = append(pids, filepath.Base(filepath.Dir(p)))
		}
	}
	return pids
}

func TestRunRemoveEcho(t *testing.T) {
	d := containerDaemon(t)
	out, errOut, code := d.berth("run", "--rm", "busybox", "echo", "hello from berth")
	if code != 0 || out != "hello from berth\n" {
		t.Fatalf("run --rm echo: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestRunExitCodes(t *testing.T) {
	d := containerDaemon(t)
	if _, errOut, code := d.berth("run", "--rm", "busybox", "sh", "-c", "exit 3"); code != 3 {
		t.Errorf("run sh -c 'exit 3': exit %d, want 3 (stderr %q)", code, errOut)
	}
	_, errOut, code := d.berth("run", "--rm", "busybox", "no-such-command")
	if code != 127 || !strings.Contains(errOut, "executable file not found") {
		t.Errorf("run of an unknown command: exit %d, want 127; stderr %q", code, errOut)
	}
	if _, errOut, code := d.berth("run", "--rm", "busybox", "/etc"); code != 126 {
		t.Errorf("run of a directory: exit %d, want 126; stderr %q", code, errOut)
	}
	// Without --rm the container stays, exited, until removed.
	if _, _, code := d.berth("run", "--name", "three", "busybox", "sh", "-c", "exit 3"); code != 3 {
		t.Fatalf("run --name three: exit %d, want 3", code)
	}
	if out := d.must("ps", "-a", "--format", "{{.Names}} {{.Status}}"); !strings.HasPrefix(out, "three Exited (3) ") {
		t.Errorf("ps -a after an exit: %q", out)
	}
	if out := d.must("wait", "three"); out != "3\n" {
		t.Errorf("wait on an exited container: %q, want 3", out)
	}
	d.must("rm", "three")
}

func TestRunDetachedLifecycle(t *testing.T) {
	d := containerDaemon(t)
	id := strings.TrimSpace(d.must("run", "-d", "--name", "sleeper", "busybox", "sh", "-c", `echo out; echo err >&2; trap "exit 143" TERM; while :; do sleep 0.1; done`))
	if len(id) != 64 {
		t.Fatalf("run -d printed %q, want a 64-digit id", id)
	}
	out := d.must("ps")
	if !strings.Contains(out, id[:12]) || !strings.Contains(out, "Up ") || !strings.Contains(out, "sleeper") {
		t.Fatalf("ps of a running container:\n%s", out)
	}
	if pids := shimsOf(t, d.state); len(pids) != 1 {
		t.Errorf("shims of a running container: %v, want one", pids)
	}
	if q := d.must("ps", "-q", "--no-trunc"); q != id+"\n" {
		t.Errorf("ps -q --no-trunc = %q, want %q", q, id)
	}
	// info counts the containers by state, as Docker's, and names the
	// runtime, the cgroup driver and the seccomp profile.
	if got := d.must("info", "-f", "{{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}} {{.Images}} {{.DefaultRuntime}} {{.CgroupDriver}} {{.SecurityOptions}}"); got != "1 1 0 1 runc cgroupfs [name=seccomp,profile=builtin]\n" {
		t.Errorf("info counts and runtime: %q", got)
	}
	// The output reaches the log shortly after the start.
	var logs, logErr string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		logs, logErr, _ = d.berth("logs", "sleeper")
		if logs == "out\n" && logErr == "err\n" {
			break
		}
	}
	if logs != "out\n" || logErr != "err\n" {
		t.Errorf("logs: stdout %q, stderr %q; want \"out\\n\" and \"err\\n\"", logs, logErr)
	}

	// A running container is not removed without -f, with Docker's message.
	_, errOut, code := d.berth("rm", "sleeper")
	if code == 0 || !strings.Contains(errOut, "container is running: stop the container before removing or force remove") {
		t.Errorf("rm of a running container: exit %d, stderr %q", code, errOut)
	}
	// The name is taken while the container exists.
	_, errOut, code = d.berth("create", "--name", "sleeper", "busybox")
	if code == 0 || !strings.Contains(errOut, `The container name "/sleeper" is already in use`) {
		t.Errorf("create with a taken name: exit %d, stderr %q", code, errOut)
	}

	start := time.Now()
	if out := d.must("stop", "-t", "5", id[:8]); out != id[:8]+"\n" {
		t.Errorf("stop printed %q", out)
	}
	if time.Since(start) > 4*time.Second {
		t.Errorf("stop of a sleep that exits on SIGTERM took %s", time.Since(start))
	}
	if out := d.must("ps", "-q"); out != "" {
		t.Errorf("ps after stop lists %q", out)
	}
	if out := d.must("ps", "-a", "--format", "{{.Names}} {{.Status}}"); !strings.HasPrefix(out, "sleeper Exited (143) ") {
		t.Errorf("ps -a after stop: %q, want sleeper Exited (143)", out)
	}
	if out := d.must("ps", "-a", "-f", "status=running", "-q"); out != "" {
		t.Errorf("ps -f status=running after stop: %q", out)
	}
	if out := d.must("logs", "--tail", "2", "sleeper"); out != "out\n" {
		t.Errorf("logs after stop: %q", out)
	}
	d.must("rm", "sleeper")
	if _, errOut, code := d.berth("logs", "sleeper"); code == 0 || !strings.Contains(errOut, "No such container: sleeper") {
		t.Errorf("logs of a removed container: exit %d, stderr %q", code, errOut)
	}
}

func TestRemoveForceAndKill(t *testing.T) {
	d := containerDaemon(t)
	d.must("run", "-d", "--name", "first", "busybox", "sleep", "100")
	d.must("run", "-d", "--name", "second", "busybox", "sleep", "100")
	d.must("kill", "second")
	if out := d.must("wait", "second"); out != "137\n" {
		t.Errorf("wait after kill: %q, want 137", out)
	}
	if out := d.must("rm", "-f", "first", "second"); out != "first\nsecond\n" {
		t.Errorf("rm -f printed %q", out)
	}
}

func TestUnknownImageAndContainer(t *testing.T) {
	d := containerDaemon(t)
	if _, errOut, code := d.berth("run", "--rm", "no-such-image"); code != 125 || !strings.Contains(errOut, "No such image: no-such-image") {
		t.Errorf("run of an unknown image: exit %d, stderr %q", code, errOut)
	}
	for _, cmd := range [][]string{{"start", "nope"}, {"stop", "nope"}, {"rm", "nope"}, {"logs", "nope"}, {"kill", "nope"}, {"wait", "nope"}} {
		if _, errOut, code := d.berth(cmd...); code == 0 || !strings.Contains(errOut, "No such container: nope") {
			t.Errorf("berth %v: exit %d, stderr %q", cmd, code, errOut)
		}
	}
}

func TestCreateStartAttach(t *testing.T) {
	d := containerDaemon(t)
	d.must("create", "--name", "made", "-e", "FOO=bar", "-w", "/made", "-u", "1000:1000", "--hostname", "box",
		"busybox", "sh", "-c", `echo "$FOO $(pwd) $(id -u):$(id -g) $(hostname) $(cat /etc/hostname)"`)
	if out := d.must("ps", "-a", "--format", "{{.Names}} {{.Status}}"); out != "made Created\n" {
		t.Errorf("ps -a of a created container: %q", out)
	}
	if out := d.must("start", "-a", "made"); out != "bar /made 1000:1000 box box\n" {
		t.Errorf("start -a: %q", out)
	}
	d.must("rm", "made")
}

func TestRunUnpacksAndCleansUp(t *testing.T) {
	d := startDaemon(t)
	d.must("load", "--no-unpack", "-i", testImage("busybox-docker.tar"))
	t.Cleanup(func() { d.checkNoContainerLeftovers(t) })
	if out := d.must("run", "--rm", "--network", "none", "-l", "k=v", "busybox", "cat", "/etc/hostname"); len(strings.TrimSpace(out)) != 12 {
		t.Errorf("hostname of a container: %q, want its short id", out)
	}
	// The run unpacked the image; only its committed snapshot stays.
	rows := d.snapshotList("overlay")
	if len(rows) == 0 {
		t.Error("run did not unpack the image")
	}
	for key, row := range rows {
		if row.Kind != "committed" {
			t.Errorf("snapshot %s (%s) left after run --rm", key, row.Kind)
		}
	}
	// A failed create leaves nothing either.
	if _, errOut, code := d.berth("create", "-u", "nosuchuser", "busybox"); code == 0 || !strings.Contains(errOut, "nosuchuser") {
		t.Errorf("create with an unknown user: exit %d, stderr %q", code, errOut)
	}
	for key, row := range d.snapshotList("overlay") {
		if row.Kind != "committed" {
			t.Errorf("snapshot %s (%s) left after a failed create", key, row.Kind)
		}
	}
	// run -d --rm: removed when stopped.
	d.must("run", "-d", "--rm", "--name", "gone", "busybox", "sleep", "100")
	d.must("stop", "-t", "1", "gone")
	if out := d.must("ps", "-aq"); out != "" {
		t.Errorf("run -d --rm container left after stop: %q", out)
	}
}

func TestRunForwardsSignals(t *testing.T) {
	d := containerDaemon(t)
	cmd := exec.Command(filepath.Join(env.bin, "berth"), "--address", d.address, "run", "--rm", "busybox",
		"sh", "-c", `trap "exit 7" INT; echo ready; while :; do sleep 0.1; done`)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("run printed %q, %v before the signal", line, err)
	}
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("berth run did not end within 10s of SIGINT")
	}
	if code := cmd.ProcessState.ExitCode(); code != 7 {
		t.Errorf("run after SIGINT: exit %d (%v), want the container's 7", code, err)
	}
}

func TestLogsFollow(t *testing.T) {
	d := containerDaemon(t)
	d.must("run", "-d", "--name", "talker", "busybox", "sh", "-c", "echo one; sleep 1; echo two")
	// -f returns once the container has exited, with everything it wrote.
	if out := d.must("logs", "-f", "talker"); out != "one\ntwo\n" {
		t.Errorf("logs -f: %q, want one and two", out)
	}
	if out := d.must("ps", "-a", "--format", "{{.Status}}"); !strings.HasPrefix(out, "Exited (0) ") {
		t.Errorf("ps -a of a detached container that exited: %q", out)
	}
	d.must("rm", "talker")
}

// TestPsAncestorAndExited filters by image (including images built on it)
// and by exit code, as Docker's ps.
func TestPsAncestorAndExited(t *testing.T) {
	d := containerDaemon(t)
	d.must("load", "-i", testImage("layers-docker.tar"))
	d.must("run", "--name", "from-busybox", "busybox", "true")
	if _, _, code := d.berth("run", "--name", "from-layers", "layers", "sh", "-c", "exit 3"); code != 3 {
		t.Fatalf("run from layers: exit %d, want 3", code)
	}
	t.Cleanup(func() { d.berth("rm", "-f", "from-busybox", "from-layers") })
	names := func(filters ...string) string {
		args := []string{"ps", "-a", "--format", "{{.Names}}"}
		for _, f := range filters {
			args = append(args, "-f", f)
		}
		out := strings.Fields(d.must(args...))
		slices.Sort(out)
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		filters []string
		want    string
	}{
		// layers is busybox with three more layers: built on it.
		{[]string{"ancestor=busybox"}, "from-busybox from-layers"},
		{[]string{"ancestor=busybox:latest"}, "from-busybox from-layers"},
		{[]string{"ancestor=layers"}, "from-layers"},
		{[]string{"ancestor=nosuchimage"}, ""},
		{[]string{"exited=3"}, "from-layers"},
		{[]string{"exited=0"}, "from-busybox"},
		{[]string{"exited=0", "ancestor=layers"}, ""},
		{[]string{"status=exited", "ancestor=layers"}, "from-layers"},
	} {
		if got := names(tc.filters...); got != tc.want {
			t.Errorf("ps -a %v: %q, want %q", tc.filters, got, tc.want)
		}
	}
	// By image ID prefix too.
	id := strings.TrimPrefix(strings.TrimSpace(d.must("image", "inspect", "-f", "{{.Id}}", "busybox")), "sha256:")
	if got := names("ancestor=" + id[:12]); got != "from-busybox from-layers" {
		t.Errorf("ps -a -f ancestor=<busybox ID prefix>: %q", got)
	}
}
