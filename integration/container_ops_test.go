package integration

import (
	"strings"
	"testing"
	"time"
)

// sleeper runs `busybox sleep 60` detached as name and removes it, with
// whatever else the test made, before the leftover check.
func sleeper(t *testing.T, d *daemon, name string) string {
	t.Helper()
	t.Cleanup(func() {
		if out, _, _ := d.berth("ps", "-aq", "--no-trunc"); strings.TrimSpace(out) != "" {
			d.berth(append([]string{"rm", "-f"}, strings.Fields(out)...)...)
		}
	})
	return strings.TrimSpace(d.must("run", "-d", "--name", name, "busybox", "sleep", "60"))
}

func TestExec(t *testing.T) {
	d := containerDaemon(t)
	id := sleeper(t, d, "ex")
	if out, errOut, code := d.berth("exec", "ex", "echo", "hello", "exec"); code != 0 || out != "hello exec\n" {
		t.Errorf("exec echo: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, errOut, code := d.berth("exec", "ex", "sh", "-c", "echo oops >&2; exit 5"); code != 5 || errOut != "oops\n" {
		t.Errorf("exec sh -c 'exit 5': exit %d (want 5), stderr %q", code, errOut)
	}
	out, errOut, code := d.berth("exec", "-u", "nobody", "-w", "/tmp", "-e", "A=1", "ex", "sh", "-c", "id -u; pwd; env")
	if code != 0 {
		t.Fatalf("exec -u -w -e: exit %d, stderr %q", code, errOut)
	}
	lines := strings.Split(out, "\n")
	if len(lines) < 2 || lines[0] != "65534" || lines[1] != "/tmp" || !strings.Contains(out, "\nA=1\n") || !strings.Contains(out, "\nPATH=") {
		t.Errorf("exec -u nobody -w /tmp -e A=1 printed:\n%s", out)
	}
	if _, errOut, code := d.berth("exec", "ex", "no-such-command"); code != 127 || !strings.HasPrefix(errOut, "Error: OCI runtime exec failed: exec failed: ") || !strings.Contains(errOut, `"no-such-command": executable file not found`) {
		t.Errorf("exec of an unknown command: exit %d, want 127; stderr %q", code, errOut)
	}
	if _, errOut, code := d.berth("exec", "ex", "/etc"); code != 126 {
		t.Errorf("exec of a directory: exit %d, want 126; stderr %q", code, errOut)
	}
	// -d returns once the command started; its effect shows.
	if out, errOut, code := d.berth("exec", "-d", "ex", "touch", "/tmp/detached"); code != 0 || out != "" {
		t.Errorf("exec -d: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	var found bool
	for deadline := time.Now().Add(5 * time.Second); !found && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		_, _, code := d.berth("exec", "ex", "test", "-f", "/tmp/detached")
		found = code == 0
	}
	if !found {
		t.Error("exec -d touch /tmp/detached: the file never appeared")
	}
	if _, errOut, code := d.berth("exec", "nope", "true"); code != 1 || errOut != "Error response from daemon: No such container: nope\n" {
		t.Errorf("exec into an unknown container: exit %d, stderr %q", code, errOut)
	}
	// The exec processes are gone once they exit.
	if out := d.must("top", "ex"); strings.Count(out, "\n") != 2 {
		t.Errorf("top after the execs lists more than the sleep:\n%s", out)
	}

	d.must("stop", "-t", "1", "ex")
	_, errOut, code = d.berth("exec", "ex", "echo", "hi")
	if want := "Error response from daemon: container " + id + " is not running\n"; code != 1 || errOut != want {
		t.Errorf("exec into a stopped container: exit %d, stderr %q; want 1 and %q", code, errOut, want)
	}
	d.must("rm", "ex")
}

func TestInspectContainer(t *testing.T) {
	d := containerDaemon(t)
	id := sleeper(t, d, "insp")
	if out := d.must("inspect", "-f", "{{.State.Status}} {{.State.Running}} {{.Name}} {{.Id}}", "insp"); out != "running true /insp "+id+"\n" {
		t.Errorf("inspect -f of a running container: %q", out)
	}
	if out := d.must("container", "inspect", "-f", "{{.Path}} {{json .Args}} {{.Config.Image}} {{.HostConfig.NetworkMode}} {{len .Mounts}}", id[:8]); out != "sleep [\"60\"] busybox:latest none 0\n" {
		t.Errorf("container inspect -f: %q", out)
	}
	if out := d.must("inspect", "insp"); !strings.HasPrefix(out, "[\n") || !strings.Contains(out, `"Id": "`+id+`"`) || !strings.Contains(out, `"Pid": `) {
		t.Errorf("inspect of a container:\n%s", out)
	}
	d.must("stop", "-t", "1", "insp")
	if out := d.must("inspect", "-f", "{{.State.Status}} {{.State.Running}} {{.State.ExitCode}} {{.State.Pid}}", "insp"); out != "exited false 137 0\n" && out != "exited false 143 0\n" {
		t.Errorf("inspect -f of a stopped container: %q", out)
	}
	// A name no container has is looked up as an image.
	if out := d.must("inspect", "-f", "{{.Os}}", "busybox"); out != "linux\n" {
		t.Errorf("inspect of an image: %q", out)
	}
	if _, errOut, code := d.berth("inspect", "nothing-by-this-name"); code != 1 || !strings.Contains(errOut, "No such object: nothing-by-this-name") {
		t.Errorf("inspect of an unknown name: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code := d.berth("container", "inspect", "busybox"); code != 1 || !strings.Contains(errOut, "No such container: busybox") {
		t.Errorf("container inspect of an image: exit %d, stderr %q", code, errOut)
	}
	d.must("rm", "insp")
}

func TestPauseUnpause(t *testing.T) {
	d := containerDaemon(t)
	sleeper(t, d, "pz")
	if out := d.must("pause", "pz"); out != "pz\n" {
		t.Errorf("pause printed %q", out)
	}
	if out := d.must("ps", "--format", "{{.Status}}"); !strings.HasPrefix(out, "Up ") || !strings.HasSuffix(out, " (Paused)\n") {
		t.Errorf("ps of a paused container: %q", out)
	}
	if out := d.must("inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "pz"); out != "paused true\n" {
		t.Errorf("inspect of a paused container: %q", out)
	}
	if _, errOut, code := d.berth("pause", "pz"); code != 1 || !strings.Contains(errOut, "is already paused") {
		t.Errorf("pause of a paused container: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code := d.berth("exec", "pz", "true"); code != 1 || !strings.Contains(errOut, "is paused, unpause the container before exec") {
		t.Errorf("exec into a paused container: exit %d, stderr %q", code, errOut)
	}
	d.must("unpause", "pz")
	if out := d.must("ps", "--format", "{{.Status}}"); !strings.HasPrefix(out, "Up ") || strings.Contains(out, "Paused") {
		t.Errorf("ps after unpause: %q", out)
	}
	if _, errOut, code := d.berth("unpause", "pz"); code != 1 || !strings.Contains(errOut, "is not paused") {
		t.Errorf("unpause of a running container: exit %d, stderr %q", code, errOut)
	}
	// A paused container is stopped too.
	d.must("pause", "pz")
	d.must("stop", "-t", "1", "pz")
	if out := d.must("inspect", "-f", "{{.State.Status}}", "pz"); out != "exited\n" {
		t.Errorf("stop of a paused container: %q", out)
	}
	d.must("rm", "pz")
}

func TestTop(t *testing.T) {
	d := containerDaemon(t)
	sleeper(t, d, "topper")
	out := d.must("top", "topper")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "UID PID PPID C STIME TTY TIME CMD" {
		t.Fatalf("top:\n%s", out)
	}
	f := strings.Fields(lines[1])
	if len(f) != 9 || f[0] != "root" || f[5] != "?" || f[7] != "sleep" || f[8] != "60" {
		t.Errorf("top's process line: %q", lines[1])
	}
	pid := strings.TrimSpace(d.must("inspect", "-f", "{{.State.Pid}}", "topper"))
	if f[1] != pid {
		t.Errorf("top shows pid %s, inspect says %s", f[1], pid)
	}
	d.must("rm", "-f", "topper")
	if _, errOut, code := d.berth("top", "topper"); code != 1 || !strings.Contains(errOut, "No such container: topper") {
		t.Errorf("top of a removed container: exit %d, stderr %q", code, errOut)
	}
}

func TestRename(t *testing.T) {
	d := containerDaemon(t)
	id := sleeper(t, d, "before")
	sleeper(t, d, "other")
	d.must("rename", "before", "after")
	if out := d.must("ps", "--no-trunc", "--filter", "id="+id, "--format", "{{.Names}}"); out != "after\n" {
		t.Errorf("ps after rename: %q", out)
	}
	if _, errOut, code := d.berth("rename", "after", "other"); code != 1 || !strings.Contains(errOut, `The container name "/other" is already in use`) {
		t.Errorf("rename to a taken name: exit %d, stderr %q", code, errOut)
	}
	// The old name is free again.
	d.must("create", "--name", "before", "busybox", "true")
	d.must("rm", "-f", "after", "other", "before")
}

func TestRestart(t *testing.T) {
	d := containerDaemon(t)
	id := sleeper(t, d, "again")
	pid := d.must("inspect", "-f", "{{.State.Pid}}", "again")
	time.Sleep(1100 * time.Millisecond) // so that the new start time differs
	started := d.must("inspect", "-f", "{{.State.StartedAt}}", "again")
	if out := d.must("restart", "-t", "1", "again"); out != "again\n" {
		t.Errorf("restart printed %q", out)
	}
	out := d.must("ps", "--no-trunc", "--format", "{{.ID}} {{.Status}}")
	if !strings.HasPrefix(out, id+" Up ") || strings.Count(out, "\n") != 1 {
		t.Errorf("ps after restart: %q", out)
	}
	if again := d.must("inspect", "-f", "{{.State.Pid}}", "again"); again == pid {
		t.Errorf("restart kept pid %s", pid)
	}
	if again := d.must("inspect", "-f", "{{.State.StartedAt}}", "again"); again == started {
		t.Errorf("restart kept the start time %s", started)
	}
	// A stopped container is started by restart.
	d.must("stop", "-t", "1", "again")
	d.must("restart", "again")
	if out := d.must("inspect", "-f", "{{.State.Status}}", "again"); out != "running\n" {
		t.Errorf("restart of a stopped container: %q", out)
	}
	d.must("rm", "-f", "again")
}
