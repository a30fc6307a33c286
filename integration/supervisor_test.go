package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// waitUntil polls cond every 50 ms until it holds, failing the test after
// timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// inspectf runs inspect -f tmpl on the container; "" when it fails.
func (d *daemon) inspectf(name, tmpl string) string {
	out, _, code := d.berth("inspect", "-f", tmpl, name)
	if code != 0 {
		return ""
	}
	return strings.TrimSpace(out)
}

// removeAllAtEnd removes every container when the test ends (before the
// leftovers are checked), even after a failure. It also fails the test
// when berthd, built with -race, reported a data race.
func removeAllAtEnd(t *testing.T, d *daemon) {
	t.Cleanup(func() {
		if log := d.log.String(); strings.Contains(log, "WARNING: DATA RACE") {
			t.Errorf("berthd reported a data race:\n%s", log)
		}
		if out, _, _ := d.berth("ps", "-aq", "--no-trunc"); strings.TrimSpace(out) != "" {
			d.berth(append([]string{"rm", "-f"}, strings.Fields(out)...)...)
		}
	})
}

func (d *daemon) shimPid(t *testing.T, id string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.state, "tasks", "default", id, "shim.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func processGone(pid int) bool {
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

func TestRestartPolicies(t *testing.T) {
	d := containerDaemon(t)
	removeAllAtEnd(t, d)

	// --rm and --restart do not go together, as in Docker.
	if _, errOut, code := d.berth("run", "--rm", "--restart", "always", "busybox", "true"); code != 125 || !strings.Contains(errOut, "Conflicting options: --restart and --rm") {
		t.Errorf("run --rm --restart always: exit %d, %q", code, errOut)
	}
	if _, errOut, code := d.berth("create", "--restart", "sometimes", "busybox", "true"); code == 0 || !strings.Contains(errOut, "invalid restart policy") {
		t.Errorf("create --restart sometimes: exit %d, %q", code, errOut)
	}

	// on-failure:2 restarts a failing container twice, with the back-off.
	start := time.Now()
	d.must("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 3")
	waitUntil(t, 20*time.Second, "flaky restarted twice and exited", func() bool {
		return d.inspectf("flaky", "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}") == "2 exited 3"
	})
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("two restarts took %v: the back-off (100 ms, 200 ms) was not applied", el)
	}
	if got := d.inspectf("flaky", "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"); got != "on-failure:2" {
		out, errOut, code := d.berth("inspect", "flaky")
		t.Errorf("restart policy in inspect: %q\n%s%s%d", got, out, errOut, code)
	}
	// on-failure does not restart a success.
	d.must("run", "-d", "--name", "fine", "--restart", "on-failure", "busybox", "true")
	waitUntil(t, 10*time.Second, "fine exited", func() bool { return d.inspectf("fine", "{{.State.Status}}") == "exited" })
	time.Sleep(300 * time.Millisecond)
	if got := d.inspectf("fine", "{{.RestartCount}} {{.State.Status}}"); got != "0 exited" {
		t.Errorf("on-failure after exit 0: %q", got)
	}

	// always restarts until stopped by hand; then it stays stopped.
	d.must("run", "-d", "--name", "loop", "--restart", "always", "busybox", "sh", "-c", "sleep 0.2")
	waitUntil(t, 15*time.Second, "loop restarted", func() bool {
		n, _ := strconv.Atoi(d.inspectf("loop", "{{.RestartCount}}"))
		return n >= 2
	})
	d.must("stop", "-t", "1", "loop")
	waitUntil(t, 5*time.Second, "loop stopped", func() bool {
		s := d.inspectf("loop", "{{.State.Status}}")
		return s == "exited"
	})
	count := d.inspectf("loop", "{{.RestartCount}}")
	time.Sleep(time.Second)
	if got := d.inspectf("loop", "{{.RestartCount}} {{.State.Status}}"); got != count+" exited" {
		t.Errorf("always after stop: %q, want %q", got, count+" exited")
	}
	// A start by hand resets the count, as Docker's.
	d.must("start", "loop")
	waitUntil(t, 5*time.Second, "loop started by hand", func() bool { return d.inspectf("loop", "{{.RestartCount}}") == "0" })
	d.must("stop", "-t", "1", "loop")

	// kill -9 of the container's init: the policy applies.
	d.must("run", "-d", "--name", "victim", "--restart", "on-failure", "busybox", "sleep", "600")
	pid, _ := strconv.Atoi(d.inspectf("victim", "{{.State.Pid}}"))
	if pid <= 0 {
		t.Fatalf("victim has no pid")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "victim restarted after kill -9 of its init", func() bool {
		return d.inspectf("victim", "{{.RestartCount}} {{.State.Status}}") == "1 running"
	})
	if again, _ := strconv.Atoi(d.inspectf("victim", "{{.State.Pid}}")); again == pid || again <= 0 {
		t.Errorf("restarted victim has pid %d (was %d)", again, pid)
	}

	// -d --rm: berthd removes the container once it exits.
	id := strings.TrimSpace(d.must("run", "-d", "--rm", "busybox", "sh", "-c", "exit 2"))
	waitUntil(t, 10*time.Second, "the --rm container removed", func() bool {
		out, _, _ := d.berth("ps", "-aq", "--no-trunc")
		return !strings.Contains(out, id)
	})
	if _, err := os.Stat(filepath.Join(d.root, "containers", id)); !os.IsNotExist(err) {
		t.Errorf("the folder of the --rm container is left: %v", err)
	}
	// Attached --rm still prints and returns the exit code.
	out, errOut, code := d.berth("run", "--rm", "busybox", "sh", "-c", "echo out; exit 4")
	if out != "out\n" || code != 4 {
		t.Errorf("run --rm attached: %q, exit %d, stderr %q", out, code, errOut)
	}
	for _, name := range []string{"flaky", "fine", "loop", "victim"} {
		d.must("rm", "-f", name)
	}
	if out := d.must("ps", "-aq"); out != "" {
		t.Errorf("containers left: %q", out)
	}
}

func TestShimKilled(t *testing.T) {
	d := containerDaemon(t)
	removeAllAtEnd(t, d)
	plain := strings.TrimSpace(d.must("run", "-d", "--name", "plain", "busybox", "sleep", "600"))
	phoenix := strings.TrimSpace(d.must("run", "-d", "--name", "phoenix", "--restart", "always", "busybox", "sleep", "600"))
	initPid, _ := strconv.Atoi(d.inspectf("plain", "{{.State.Pid}}"))
	for _, id := range []string{plain, phoenix} {
		if err := syscall.Kill(d.shimPid(t, id), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, 15*time.Second, "plain shown exited", func() bool { return d.inspectf("plain", "{{.State.Status}}") == "exited" })
	if got := d.inspectf("plain", "{{.State.ExitCode}}|{{.State.Error}}"); !strings.HasPrefix(got, "137|") || !strings.Contains(got, "shim died") {
		t.Errorf("plain after its shim was killed: %q", got)
	}
	waitUntil(t, 5*time.Second, "the init of plain killed", func() bool { return processGone(initPid) })
	waitUntil(t, 15*time.Second, "phoenix restarted", func() bool {
		return d.inspectf("phoenix", "{{.RestartCount}} {{.State.Status}}") == "1 running"
	})
	d.must("rm", "plain")
	d.must("rm", "-f", "phoenix")
}

// counterScript prints 0, 1, 2, ... every 100 ms.
const counterScript = `i=0; while :; do echo $i; i=$((i+1)); sleep 0.1; done`

// counterLog reads the numbers a counter logged, failing on a gap.
func counterLog(t *testing.T, d *daemon, name string) int {
	t.Helper()
	out := d.must("logs", name)
	lines := strings.Fields(out)
	for i, l := range lines {
		if n, err := strconv.Atoi(l); err != nil || n != i {
			t.Fatalf("log of %s: line %d is %q, want %d (a gap or damage)", name, i, l, i)
		}
	}
	return len(lines)
}

func TestLiveRestoreAfterKill9(t *testing.T) {
	d := containerDaemon(t)
	removeAllAtEnd(t, d)
	const counters, sleepers = 10, 10
	for i := range counters {
		d.must("run", "-d", "--name", fmt.Sprintf("c%d", i), "busybox", "sh", "-c", counterScript)
	}
	for i := range sleepers {
		d.must("run", "-d", "--name", fmt.Sprintf("s%d", i), "busybox", "sleep", "600")
	}
	// Stopped by hand: unless-stopped stays stopped at berthd's start,
	// always starts again (Docker's rules).
	d.must("run", "-d", "--name", "us", "--restart", "unless-stopped", "busybox", "sleep", "600")
	d.must("run", "-d", "--name", "al", "--restart", "always", "busybox", "sleep", "600")
	d.must("stop", "-t", "1", "us", "al")
	// Five that exit while berthd is down.
	exiters := [][]string{
		{"--name", "e0", "busybox", "sh", "-c", "sleep 2; exit 3"},
		{"--name", "e1", "--restart", "on-failure:1", "busybox", "sh", "-c", "sleep 2; exit 4"},
		{"--name", "e2", "--restart", "always", "busybox", "sh", "-c", "sleep 2; exit 0"},
		{"--name", "e3", "--restart", "unless-stopped", "busybox", "sh", "-c", "sleep 2; exit 5"},
		{"--name", "e4", "--rm", "busybox", "sh", "-c", "sleep 2; exit 6"},
	}
	start := time.Now()
	for _, args := range exiters {
		d.must(append([]string{"run", "-d"}, args...)...)
	}
	e4 := strings.TrimSpace(d.must("ps", "-q", "--no-trunc", "--filter", "name=e4"))
	// An exec that ends after berthd's restart: its exit is still reported.
	d.must("exec", "-d", "s1", "sh", "-c", "sleep 6; exit 7")
	s1 := d.inspectf("s1", "{{.Id}}")
	before := counterLog(t, d, "c0")

	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
	d.cmd = nil
	time.Sleep(time.Until(start.Add(3 * time.Second)))
	d.start()
	var execExit strings.Builder
	var subscribed *exec.Cmd
	if env.grpcurl != "" {
		subscribed = exec.Command(env.grpcurl, "-plaintext", "-unix", "-max-time", "6", "-d", `{"filters":["topic==\"/tasks/exit\""]}`,
			d.address, "berth.events.v1.Events/Subscribe")
		subscribed.Stdout = &execExit
		if err := subscribed.Start(); err != nil {
			t.Fatal(err)
		}
	}

	// All twenty still run.
	for i := range counters {
		if got := d.inspectf(fmt.Sprintf("c%d", i), "{{.State.Status}}"); got != "running" {
			t.Errorf("c%d after berthd was killed: %q", i, got)
		}
	}
	for i := range sleepers {
		if got := d.inspectf(fmt.Sprintf("s%d", i), "{{.State.Status}}"); got != "running" {
			t.Errorf("s%d after berthd was killed: %q", i, got)
		}
	}
	ps := d.must("ps", "--format", "{{.Names}} {{.Status}}")
	for i := range counters {
		if !strings.Contains(ps, fmt.Sprintf("c%d Up", i)) {
			t.Errorf("ps lacks c%d:\n%s", i, ps)
		}
	}
	// The exits while berthd was down, with their real codes and policies.
	if got := d.inspectf("e0", "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}"); got != "exited 3 0" {
		t.Errorf("e0: %q", got)
	}
	waitUntil(t, 15*time.Second, "e1 restarted once, then exited again", func() bool {
		return d.inspectf("e1", "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}") == "exited 4 1"
	})
	for _, name := range []string{"e2", "e3"} {
		n, _ := strconv.Atoi(d.inspectf(name, "{{.RestartCount}}"))
		if n < 1 {
			t.Errorf("%s was not restarted: %s", name, d.inspectf(name, "{{.State.Status}} {{.RestartCount}}"))
		}
	}
	waitUntil(t, 10*time.Second, "e4 (--rm) removed", func() bool {
		out, _, _ := d.berth("ps", "-aq", "--no-trunc")
		return !strings.Contains(out, e4)
	})
	if got := d.inspectf("us", "{{.State.Status}}"); got != "exited" {
		t.Errorf("unless-stopped stopped by hand, after berthd's start: %q", got)
	}
	if got := d.inspectf("al", "{{.State.Status}}"); got != "running" {
		t.Errorf("always stopped by hand, after berthd's start: %q", got)
	}

	// Logs went on without a gap, and logs -f follows.
	time.Sleep(300 * time.Millisecond)
	for i := range 3 {
		if n := counterLog(t, d, fmt.Sprintf("c%d", i)); i == 0 && n <= before+20 {
			t.Errorf("c0 logged %d lines, %d before berthd was killed 3 s earlier", n, before)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	follow := exec.CommandContext(ctx, filepath.Join(env.bin, "berth"), "--address", d.address, "logs", "-f", "c1")
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	now := counterLog(t, d, "c1")
	sc := bufio.NewScanner(stdout)
	seen := -1
	for sc.Scan() {
		if n, err := strconv.Atoi(sc.Text()); err == nil && n >= now+5 {
			seen = n
			break
		}
	}
	follow.Process.Kill()
	follow.Wait()
	if seen < 0 {
		t.Errorf("logs -f did not follow c1 past line %d", now+5)
	}

	if subscribed != nil {
		subscribed.Wait() // ends with -max-time
		out := execExit.String()
		if !strings.Contains(out, s1) || !strings.Contains(out, `"exitStatus": 7`) {
			t.Errorf("the exit of an exec started before berthd's restart was not reported: %s", out)
		}
	}

	// exec and stop work on the containers found again.
	if out := d.must("exec", "s0", "echo", "hello"); out != "hello\n" {
		t.Errorf("exec after berthd's restart: %q", out)
	}
	d.must("stop", "-t", "1", "c0")
	if got := d.inspectf("c0", "{{.State.Status}}"); got != "exited" {
		t.Errorf("c0 after stop: %q", got)
	}
}

func TestLogOnFullDisk(t *testing.T) {
	base, err := os.MkdirTemp("", "berth-it-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	d := &daemon{t: t, root: filepath.Join(base, "root"), state: filepath.Join(base, "state")}
	d.address = filepath.Join(d.state, "berthd.sock")
	if err := os.MkdirAll(d.root, 0o711); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", d.root, "tmpfs", 0, "size=32m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(d.root, 0); err != nil {
			t.Errorf("unmounting the tmpfs: %v", err)
		}
		checkNoMounts(t, base)
	})
	d.start()
	t.Cleanup(d.stop)
	d.must("load", "-i", testImage("busybox-docker.tar"))
	t.Cleanup(func() {
		// As checkNoContainerLeftovers, but the root is a mount itself.
		if out, _, _ := d.berth("ps", "-aq"); strings.TrimSpace(out) != "" {
			t.Errorf("containers left: %s", out)
		}
		if entries, _ := os.ReadDir(filepath.Join(d.state, "tasks", "default")); len(entries) > 0 {
			t.Errorf("task bundles left: %d", len(entries))
		}
		for _, m := range append(mountsUnder(t, d.root), mountsUnder(t, d.state)...) {
			if m != d.root {
				t.Errorf("mount left: %s", m)
			}
		}
		if pids := shimsOf(t, d.state); len(pids) > 0 {
			t.Errorf("shim processes left: %v", pids)
		}
	})
	removeAllAtEnd(t, d)

	id := strings.TrimSpace(d.must("run", "-d", "--name", "spam", "busybox", "yes", "a line that fills the disk, over and over again"))
	var st syscall.Statfs_t
	waitUntil(t, 60*time.Second, "the disk full", func() bool {
		syscall.Statfs(d.root, &st)
		return st.Bavail*uint64(st.Bsize) < 64<<10
	})
	time.Sleep(500 * time.Millisecond)
	// The container keeps running and berth keeps serving.
	if got := d.inspectf("spam", "{{.State.Status}}"); got != "running" {
		t.Errorf("spam on a full disk: %q", got)
	}
	if out := d.must("ps", "-q"); !strings.HasPrefix(id, strings.TrimSpace(out)) {
		t.Errorf("ps on a full disk: %q", out)
	}
	if out := d.must("exec", "spam", "echo", "alive"); out != "alive\n" {
		t.Errorf("exec on a full disk: %q", out)
	}
	// Space comes back: logging resumes and says what was lost.
	logPath := filepath.Join(d.root, "containers", id, id+"-json.log")
	os.Remove(logPath + ".2")
	os.Remove(logPath + ".1")
	waitUntil(t, 30*time.Second, "the log reporting the lost lines", func() bool {
		for _, p := range []string{logPath, logPath + ".1", logPath + ".2"} {
			f, err := os.Open(p)
			if err != nil {
				continue
			}
			found := false
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				var e struct{ Log string }
				if json.Unmarshal(sc.Bytes(), &e) == nil && strings.HasPrefix(e.Log, "berth: ") && strings.Contains(e.Log, "were not logged: ") {
					found = true
					break
				}
			}
			f.Close()
			if found {
				return true
			}
		}
		return false
	})
	d.must("rm", "-f", "spam")
	if out := d.must("run", "--rm", "busybox", "echo", "ok"); out != "ok\n" {
		t.Errorf("run after the disk was freed: %q", out)
	}
}

func TestParallelRunDetached(t *testing.T) {
	d := containerDaemon(t)
	removeAllAtEnd(t, d)
	const total, clients = 100, 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		fail []string
		kept []string
	)
	next := make(chan int)
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				args := []string{"run", "-d", "--name", fmt.Sprintf("p%d", i), "busybox", "sh", "-c", "exit " + strconv.Itoa(i%3)}
				if i%3 == 0 {
					args = []string{"run", "-d", "--rm", "--name", fmt.Sprintf("p%d", i), "busybox", "true"}
				}
				out, errOut, code := d.berth(args...)
				mu.Lock()
				if code != 0 {
					fail = append(fail, fmt.Sprintf("p%d: exit %d: %s", i, code, errOut))
				} else if i%3 != 0 {
					kept = append(kept, strings.TrimSpace(out))
				}
				mu.Unlock()
			}
		}()
	}
	for i := range total {
		next <- i
	}
	close(next)
	wg.Wait()
	t.Logf("%d run -d from %d clients in %v", total, clients, time.Since(start))
	if len(fail) > 0 {
		t.Fatalf("%d runs failed: %s", len(fail), strings.Join(fail, "\n"))
	}
	// Every --rm one goes; every other one shows its exit code.
	waitUntil(t, 60*time.Second, "ps consistent", func() bool {
		out := d.must("ps", "-a", "--format", "{{.Names}} {{.Status}}")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != len(kept) {
			return false
		}
		for _, l := range lines {
			var i int
			if _, err := fmt.Sscanf(l, "p%d Exited (", &i); err != nil || !strings.Contains(l, fmt.Sprintf("Exited (%d)", i%3)) {
				return false
			}
		}
		return true
	})
	d.must(append([]string{"rm"}, kept...)...)
}

func TestOrphansRemovedAtStart(t *testing.T) {
	if env.grpcurl == "" {
		t.Skip("GRPCURL is not set")
	}
	d := containerDaemon(t)
	removeAllAtEnd(t, d)
	// A task whose record was dropped behind berth's back.
	id := strings.TrimSpace(d.must("run", "-d", "busybox", "sleep", "600"))
	shim := d.shimPid(t, id)
	grpcurl(t, "-plaintext", "-unix", "-H", "berth-namespace: default", "-d", `{"id":"`+id+`"}`, d.address, "berth.containers.v1.Containers/Delete")
	// A container whose shim and bundle vanished while berthd was down
	// (as after a crash): runc's state of it is an orphan.
	lostID := strings.TrimSpace(d.must("run", "-d", "--name", "lost", "busybox", "sleep", "600"))
	lostInit, _ := strconv.Atoi(d.inspectf("lost", "{{.State.Pid}}"))
	lostShim := d.shimPid(t, lostID)
	// The same for one with --restart always: berthd starts it again (as
	// after a reboot).
	backID := strings.TrimSpace(d.must("run", "-d", "--name", "back", "--restart", "always", "busybox", "sleep", "600"))
	backInit := d.inspectf("back", "{{.State.Pid}}")
	backShim := d.shimPid(t, backID)
	// An empty cgroup of no container.
	cgroup := filepath.Join("/sys/fs/cgroup/pids/berth", strings.Repeat("0fa1", 16))
	if err := os.MkdirAll(cgroup, 0o755); err != nil {
		t.Logf("no cgroup to test with: %v", err)
		cgroup = ""
	} else {
		t.Cleanup(func() { os.Remove(cgroup) })
	}

	d.stop()
	for _, c := range []struct {
		id   string
		shim int
	}{{lostID, lostShim}, {backID, backShim}} {
		if err := syscall.Kill(c.shim, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 5*time.Second, "a shim killed", func() bool { return processGone(c.shim) })
		bundle := filepath.Join(d.state, "tasks", "default", c.id)
		if err := syscall.Unmount(filepath.Join(bundle, "rootfs"), 0); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(bundle); err != nil {
			t.Fatal(err)
		}
	}
	d.start()
	waitUntil(t, 10*time.Second, "back started again by berthd", func() bool {
		return d.inspectf("back", "{{.State.Status}}") == "running"
	})
	if pid := d.inspectf("back", "{{.State.Pid}}"); pid == backInit {
		t.Errorf("back runs with its old pid %s", pid)
	}

	waitUntil(t, 15*time.Second, "the orphan's shim gone", func() bool { return processGone(shim) })
	waitUntil(t, 5*time.Second, "the orphan's bundle and folder gone", func() bool {
		_, err1 := os.Stat(filepath.Join(d.state, "tasks", "default", id))
		_, err2 := os.Stat(filepath.Join(d.root, "containers", id))
		return os.IsNotExist(err1) && os.IsNotExist(err2)
	})
	waitUntil(t, 10*time.Second, "the init of lost killed with its runtime state", func() bool { return processGone(lostInit) })
	if _, err := os.Stat(filepath.Join(d.state, "runc", "default", lostID)); !os.IsNotExist(err) {
		t.Errorf("the runtime state of lost is left: %v", err)
	}
	if got := d.inspectf("lost", "{{.State.Status}} {{.State.ExitCode}} {{.State.Error}}"); !strings.HasPrefix(got, "exited 255 its task was gone") {
		t.Errorf("lost after berthd's start: %q", got)
	}
	if cgroup != "" {
		if _, err := os.Stat(cgroup); !os.IsNotExist(err) {
			t.Errorf("the orphan cgroup %s is left: %v", cgroup, err)
		}
	}
	d.must("rm", "lost")
	d.must("rm", "-f", "back")
	// The orphan's snapshot has no container either; it is garbage
	// collection's to remove, not the supervisor's: remove it here.
	d.berth("snapshot", "rm", id)
}

func TestRestartKeepsAutoRemove(t *testing.T) {
	d := containerDaemon(t)
	removeAllAtEnd(t, d)
	d.must("run", "-d", "--rm", "--name", "keep", "busybox", "sleep", "600")
	pid := d.inspectf("keep", "{{.State.Pid}}")
	d.must("restart", "-t", "1", "keep")
	if got := d.inspectf("keep", "{{.State.Status}} {{.HostConfig.AutoRemove}}"); got != "running true" {
		t.Fatalf("a --rm container after restart: %q", got)
	}
	if again := d.inspectf("keep", "{{.State.Pid}}"); again == pid {
		t.Errorf("restart kept pid %s", pid)
	}
	d.must("stop", "-t", "1", "keep")
	if out := d.must("ps", "-aq"); out != "" {
		t.Errorf("a --rm container is left after stop: %q", out)
	}
}
