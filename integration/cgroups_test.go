package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/berth-engine/berth/internal/namespaces"
	eventsv1 "github.com/berth-engine/berth/proto/events/v1"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
)

// cgroupDir returns the folder of pid's cgroup in the v1 controller
// hierarchy (memory, pids, ...).
func cgroupDir(t *testing.T, pid, controller string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == controller {
				return filepath.Join("/sys/fs/cgroup", controller, parts[2])
			}
		}
	}
	t.Skipf("no cgroup v1 %s controller for pid %s (cgroup v2 host?)", controller, pid)
	return ""
}

func readCgroupFile(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func (d *daemon) pidOf(t *testing.T, name string) string {
	t.Helper()
	pid := strings.TrimSpace(d.must("inspect", "-f", "{{.State.Pid}}", name))
	if pid == "" || pid == "0" {
		t.Fatalf("container %s has no pid", name)
	}
	return pid
}

func TestUpdateResources(t *testing.T) {
	d := containerDaemon(t)
	d.must("run", "-d", "--name", "web", "busybox", "sleep", "1000")
	mem := cgroupDir(t, d.pidOf(t, "web"), "memory")
	pids := cgroupDir(t, d.pidOf(t, "web"), "pids")

	if out := d.must("update", "--memory", "64m", "--memory-swap", "128m", "--pids-limit", "50", "web"); strings.TrimSpace(out) != "web" {
		t.Errorf("update printed %q, want the container's name", out)
	}
	if got := readCgroupFile(t, mem, "memory.limit_in_bytes"); got != strconv.Itoa(64<<20) {
		t.Errorf("memory.limit_in_bytes = %s after update --memory 64m", got)
	}
	if got := readCgroupFile(t, pids, "pids.max"); got != "50" {
		t.Errorf("pids.max = %s after update --pids-limit 50", got)
	}
	// Docker's rule: a memory limit above the memory+swap limit needs both.
	if _, errOut, code := d.berth("update", "--memory", "256m", "web"); code == 0 || !strings.Contains(errOut, "memoryswap") {
		t.Errorf("update --memory above memory-swap: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code := d.berth("update", "--memory", "abc", "web"); code == 0 || !strings.Contains(errOut, "abc") {
		t.Errorf("update --memory abc: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code := d.berth("update", "web"); code == 0 || !strings.Contains(errOut, "flags") {
		t.Errorf("update without flags: exit %d, stderr %q", code, errOut)
	}

	d.must("update", "--cpus", "0.5", "web")
	if got := strings.TrimSpace(d.must("inspect", "-f", "{{.HostConfig.NanoCpus}} {{.HostConfig.CpuQuota}}", "web")); got != "500000000 0" {
		t.Errorf("inspect after update --cpus 0.5: NanoCpus and CpuQuota %q, want 500000000 0", got)
	}
	d.must("update", "--cpu-quota", "20000", "web")
	if got := strings.TrimSpace(d.must("inspect", "-f", "{{.HostConfig.NanoCpus}} {{.HostConfig.CpuQuota}}", "web")); got != "0 20000" {
		t.Errorf("inspect after update --cpu-quota 20000: NanoCpus and CpuQuota %q, want 0 20000", got)
	}

	d.must("update", "--restart", "on-failure:3", "web")
	if got := strings.TrimSpace(d.must("inspect", "-f", `{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}`, "web")); got != "on-failure:3" {
		t.Errorf("restart policy = %q, want on-failure:3", got)
	}
	if _, errOut, code := d.berth("update", "--restart", "sometimes", "web"); code == 0 || !strings.Contains(errOut, "sometimes") {
		t.Errorf("update --restart sometimes: exit %d, stderr %q", code, errOut)
	}

	// The record keeps the limits: a new start gets them.
	d.must("stop", "-t", "1", "web")
	d.must("update", "--memory", "96m", "web") // stopped: the record only
	d.must("start", "web")
	pid := d.pidOf(t, "web")
	if got := readCgroupFile(t, cgroupDir(t, pid, "memory"), "memory.limit_in_bytes"); got != strconv.Itoa(96<<20) {
		t.Errorf("memory.limit_in_bytes = %s after a restart, want 96m", got)
	}
	if got := readCgroupFile(t, cgroupDir(t, pid, "pids"), "pids.max"); got != "50" {
		t.Errorf("pids.max = %s after a restart, want 50", got)
	}
	mem = cgroupDir(t, pid, "memory")
	d.must("rm", "-f", "web")
	if _, err := os.Stat(mem); !os.IsNotExist(err) {
		t.Errorf("cgroup %s left after rm: %v", mem, err)
	}
}

func TestStats(t *testing.T) {
	d := containerDaemon(t)
	d.must("run", "-d", "--name", "busy", "busybox", "sh", "-c", "while :; do :; done")
	d.must("run", "-d", "--name", "idle", "busybox", "sleep", "1000")
	d.must("create", "--name", "made", "busybox", "true")
	d.must("update", "--memory", "32m", "idle")

	out := d.must("stats", "--no-stream")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("stats --no-stream printed %d lines, want a header and 2 running containers:\n%s", len(lines), out)
	}
	for _, col := range []string{"CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"} {
		if !strings.Contains(lines[0], col) {
			t.Errorf("stats header %q lacks %q", lines[0], col)
		}
	}

	out = d.must("stats", "--no-stream", "--format", "json", "busy", "idle", "made")
	rows := map[string]map[string]string{}
	for line := range strings.Lines(out) {
		var row map[string]string
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("stats --format json line %q: %v", line, err)
		}
		for _, k := range []string{"BlockIO", "CPUPerc", "Container", "ID", "MemPerc", "MemUsage", "Name", "NetIO", "PIDs"} {
			if _, ok := row[k]; !ok {
				t.Errorf("stats json line lacks %s: %s", k, line)
			}
		}
		rows[row["Name"]] = row
	}
	if len(rows) != 3 {
		t.Fatalf("stats json: %d rows, want 3:\n%s", len(rows), out)
	}
	var cpu float64
	fmt.Sscanf(rows["busy"]["CPUPerc"], "%f%%", &cpu)
	// Most of a CPU on an idle host; a loaded one still gives it a share.
	if cpu < 5 {
		t.Errorf("CPU %% of a busy loop = %s, want a good part of a CPU", rows["busy"]["CPUPerc"])
	}
	if got := rows["idle"]["MemUsage"]; !strings.HasSuffix(got, " / 32MiB") {
		t.Errorf("MemUsage of idle = %q, want a 32MiB limit", got)
	}
	if got := rows["idle"]["PIDs"]; got != "1" {
		t.Errorf("PIDs of idle = %q, want 1", got)
	}
	if got := rows["made"]; got["CPUPerc"] != "0.00%" || got["PIDs"] != "0" {
		t.Errorf("a created container shows %v, want zeros", got)
	}
	if out := d.must("stats", "--no-stream", "-a", "--format", "{{.Name}}"); len(strings.Fields(out)) != 3 {
		t.Errorf("stats -a listed %q, want 3 containers", out)
	}
	if _, errOut, code := d.berth("stats", "--no-stream", "nosuch"); code == 0 || !strings.Contains(errOut, "No such container") {
		t.Errorf("stats of an unknown container: exit %d, %q", code, errOut)
	}

	// Streaming: a new table every second until interrupted.
	ctx, cancel := context.WithTimeout(context.Background(), 3500*time.Millisecond)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(env.bin, "berth"), "--address", d.address, "stats", "--format", "table {{.Name}}\t{{.PIDs}}", "idle")
	streamed, _ := cmd.Output()
	if n := strings.Count(string(streamed), "NAME"); n < 2 {
		t.Errorf("stats streamed %d tables in 3.5s, want 2 or more:\n%s", n, streamed)
	}
	d.must("rm", "-f", "busy", "idle", "made")
}

func TestOOMKilled(t *testing.T) {
	d := containerDaemon(t)
	conn, err := grpc.NewClient("unix://"+d.address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), "default"), 60*time.Second)
	defer cancel()
	stream, err := eventsv1.NewEventsClient(conn).Subscribe(ctx, &eventsv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}

	id := strings.TrimSpace(d.must("create", "--name", "bomb", "busybox", "sh", "-c", "x=a; while :; do x=$x$x; done"))
	d.must("update", "--memory", "32m", "--memory-swap", "32m", "bomb")
	d.must("start", "bomb")

	var topics []string
	for {
		env, err := stream.Recv()
		if err != nil {
			t.Fatalf("no /tasks/oom event (saw %v): %v", topics, err)
		}
		topics = append(topics, env.GetTopic())
		if env.GetTopic() != "/tasks/oom" {
			continue
		}
		var ev eventsv1.TaskOOM
		if err := env.GetEvent().UnmarshalTo(&ev); err != nil {
			t.Fatal(err)
		}
		if ev.GetContainerId() != id {
			t.Errorf("oom event for %q, want %q", ev.GetContainerId(), id)
		}
		break
	}
	// The exit follows, after the oom event.
	for {
		env, err := stream.Recv()
		if err != nil {
			t.Fatalf("no /tasks/exit event after the oom: %v", err)
		}
		if env.GetTopic() == "/tasks/oom" {
			t.Error("a second /tasks/oom event for one OOM kill")
		}
		if env.GetTopic() == "/tasks/exit" {
			break
		}
	}
	p, err := tasksv1.NewTasksClient(conn).Get(ctx, &tasksv1.GetRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	if !p.GetProcess().GetOomKilled() || p.GetProcess().GetExitStatus() != 137 {
		t.Errorf("task after OOM: oom_killed %v, exit status %d; want true and 137", p.GetProcess().GetOomKilled(), p.GetProcess().GetExitStatus())
	}
	d.must("rm", "-f", "bomb")

	// An OOM kill of a child: the container goes on running, and the event
	// comes at once, not at the container's exit.
	id = strings.TrimSpace(d.must("create", "--name", "parent", "busybox", "sh", "-c", `sh -c 'x=a; while :; do x=$x$x; done'; sleep 1000`))
	d.must("update", "--memory", "32m", "--memory-swap", "32m", "parent")
	d.must("start", "parent")
	for {
		env, err := stream.Recv()
		if err != nil {
			t.Fatalf("no /tasks/oom event for a child's OOM kill: %v", err)
		}
		if env.GetTopic() == "/tasks/exit" {
			t.Fatal("the container exited: its init was OOM-killed, not the child")
		}
		if env.GetTopic() == "/tasks/oom" {
			break
		}
	}
	p, err = tasksv1.NewTasksClient(conn).Get(ctx, &tasksv1.GetRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	if !p.GetProcess().GetOomKilled() || p.GetProcess().GetStatus() != tasksv1.Status_STATUS_RUNNING {
		t.Errorf("task after a child's OOM kill: oom_killed %v, status %v; want true and running", p.GetProcess().GetOomKilled(), p.GetProcess().GetStatus())
	}
	d.must("rm", "-f", "parent")
}

// TestStatsUpdateAfterBerthdRestart: the shims that outlived berthd serve
// stats and updates to the next one.
func TestStatsUpdateAfterBerthdRestart(t *testing.T) {
	d := containerDaemon(t)
	d.must("run", "-d", "--name", "kept", "busybox", "sleep", "1000")
	d.stop()
	d.start()
	out := d.must("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}")
	if strings.TrimSpace(out) != "kept 1" {
		t.Errorf("stats after a berthd restart = %q, want \"kept 1\"", out)
	}
	d.must("update", "--pids-limit", "20", "kept")
	if got := readCgroupFile(t, cgroupDir(t, d.pidOf(t, "kept"), "pids"), "pids.max"); got != "20" {
		t.Errorf("pids.max = %s after update --pids-limit 20 through a restarted berthd", got)
	}
	d.must("rm", "-f", "kept")
}

// TestPidsLimitContains: a shell forking without end under --pids-limit 20
// stops at 20 processes (its fork fails and it exits; what it started goes
// on), and stats shows the count.
func TestPidsLimitContains(t *testing.T) {
	d := containerDaemon(t)
	d.must("create", "--name", "many", "busybox", "sh", "-c", `sh -c 'while :; do sleep 100 & done' 2>/dev/null; sleep 100`)
	d.must("update", "--pids-limit", "20", "many")
	d.must("start", "many")
	deadline := time.Now().Add(10 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		n, _ = strconv.Atoi(strings.TrimSpace(d.must("stats", "--no-stream", "--format", "{{.PIDs}}", "many")))
		if n >= 15 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n < 15 || n > 20 {
		t.Errorf("PIDs under --pids-limit 20 = %d, want 15 to 20", n)
	}
	if state := strings.TrimSpace(d.must("inspect", "-f", "{{.State.Status}}", "many")); state != "running" {
		t.Errorf("container under its pids limit is %s, want running", state)
	}
	d.must("rm", "-f", "many")
}
