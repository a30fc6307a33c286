package local

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-engine/berth/internal/errdefs"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
)

func TestMetricsAndUpdate(t *testing.T) {
	e := newEnv(t)
	id := e.container("sleep", "30")
	pid := e.create(id)

	// Created, not started: no sample, an error in its entry.
	resp, err := e.svc.Metrics(e.ctx, &tasksv1.MetricsRequest{ContainerIds: []string{id, "nosuch"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetMetrics(); len(got) != 2 || got[0].GetMetrics() != nil || !strings.Contains(got[0].GetError(), "not running") ||
		!strings.Contains(got[1].GetError(), "not found") {
		t.Fatalf("Metrics of a created task and an unknown one = %v", got)
	}

	e.start(id)
	resp, err = e.svc.Metrics(e.ctx, &tasksv1.MetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetMetrics(); len(got) != 1 || got[0].GetContainerId() != id || got[0].GetMetrics().GetPidsCurrent() != 1 ||
		got[0].GetMetrics().GetCpuUsageNs() == 0 || got[0].GetMetrics().GetMemoryLimit() == 0 {
		t.Fatalf("Metrics of the running namespace = %v, want one sample of the sleep", got)
	}

	limit := int64(7)
	res, _ := json.Marshal(specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}})
	if _, err := e.svc.Update(e.ctx, &tasksv1.UpdateTaskRequest{ContainerId: id, Resources: res}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got := pidsMax(t, pid); got != "7" {
		t.Errorf("pids.max = %s after Update, want 7", got)
	}
	if _, err := e.svc.Update(e.ctx, &tasksv1.UpdateTaskRequest{ContainerId: id, Resources: []byte("{")}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Update with bad JSON: %v, want invalid argument", err)
	}

	if _, err := e.svc.Kill(e.ctx, &tasksv1.KillRequest{ContainerId: id, Signal: 9}); err != nil {
		t.Fatal(err)
	}
	e.wait(id, "")
	if _, err := e.svc.Update(e.ctx, &tasksv1.UpdateTaskRequest{ContainerId: id, Resources: res}); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Update of a stopped task: %v, want failed precondition", err)
	}
	e.deleteAndCheck(id)
}

// pidsMax reads pids.max of pid's cgroup, v1 or v2.
func pidsMax(t *testing.T, pid uint32) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		dir := ""
		switch {
		case parts[1] == "pids":
			dir = filepath.Join("/sys/fs/cgroup/pids", parts[2])
		case parts[0] == "0" && parts[1] == "":
			dir = filepath.Join("/sys/fs/cgroup", parts[2])
		default:
			continue
		}
		if v, err := os.ReadFile(filepath.Join(dir, "pids.max")); err == nil {
			return strings.TrimSpace(string(v))
		}
	}
	t.Fatalf("no pids.max for pid %d", pid)
	return ""
}
