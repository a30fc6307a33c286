package command

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-engine/berth/internal/filters"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/internal/errdefs"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
)

// listStore is a containers.Store that only lists and gets.
type listStore struct {
	containers.Store
	all []containers.Container
}

func (s listStore) List(_ context.Context, fs ...string) ([]containers.Container, error) {
	f, err := filters.Parse(fs...)
	if err != nil {
		return nil, err
	}
	var out []containers.Container
	for _, c := range s.all {
		if f.Match(containers.Adaptor(c)) {
			out = append(out, c)
		}
	}
	return out, nil
}
func (s listStore) Get(_ context.Context, id string) (containers.Container, error) {
	for _, c := range s.all {
		if c.ID == id {
			return c, nil
		}
	}
	return containers.Container{}, errdefs.ErrNotFound
}

func TestResolveContainer(t *testing.T) {
	a := containers.Container{ID: strings.Repeat("a", 60) + "0001", Name: "web"}
	b := containers.Container{ID: strings.Repeat("a", 60) + "1002", Name: "db"}
	// A container named like another's ID prefix: the name wins.
	c := containers.Container{ID: strings.Repeat("b", 64), Name: "aaaa"}
	cl := &client.Client{Containers: listStore{all: []containers.Container{a, b, c}}}
	ctx := context.Background()
	for arg, want := range map[string]string{
		a.ID: a.ID, "web": a.ID, "/db": b.ID, "aaaa": c.ID, strings.Repeat("a", 60) + "1": b.ID, "bbb": c.ID,
	} {
		got, err := resolveContainer(ctx, cl, arg)
		if err != nil || got.ID != want {
			t.Errorf("resolveContainer(%q) = %q, %v; want %q", arg, got.ID, err, want)
		}
	}
	if _, err := resolveContainer(ctx, cl, "aaaaa"); err == nil || !strings.Contains(err.Error(), "multiple IDs found with provided prefix: aaaaa") {
		t.Errorf("ambiguous prefix: %v", err)
	}
	for _, arg := range []string{"nope", "c", ""} {
		if _, err := resolveContainer(ctx, cl, arg); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "No such container") {
			t.Errorf("resolveContainer(%q) = %v, want No such container", arg, err)
		}
	}
}

func TestContainerStatus(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ran := containers.Container{}
	if err := containers.SetState(&ran, containers.State{StartedAt: now.Add(-3 * time.Second), FinishedAt: now.Add(-2 * time.Minute), ExitCode: 2}); err != nil {
		t.Fatal(err)
	}
	restarting := containers.Container{}
	if err := containers.SetState(&restarting, containers.State{Restarting: true, FinishedAt: now.Add(-2 * time.Second), ExitCode: 3, RestartCount: 1}); err != nil {
		t.Fatal(err)
	}
	stoppedWhileRestarting := restarting
	if err := containers.SetIntent(&stoppedWhileRestarting, containers.Intent{ManuallyStopped: true}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		c             containers.Container
		p             *tasksv1.Process
		state, status string
	}{
		{"never started", containers.Container{}, nil, "created", "Created"},
		{"exited, task gone", ran, nil, "exited", "Exited (2) 2 minutes ago"},
		{"restarting", restarting, nil, "restarting", "Restarting (3) 2 seconds ago"},
		{"stopped while restarting", stoppedWhileRestarting, nil, "exited", "Exited (3) 2 seconds ago"},
		{"running", ran, &tasksv1.Process{Status: tasksv1.Status_STATUS_RUNNING}, "running", "Up 3 seconds"},
		{"stopped task", ran, &tasksv1.Process{Status: tasksv1.Status_STATUS_STOPPED, ExitStatus: 137, ExitedAt: timestamppb.New(now.Add(-5 * time.Second))}, "exited", "Exited (137) 5 seconds ago"},
	} {
		state, status := containerStatus(tc.c, tc.p, now)
		if state != tc.state || status != tc.status {
			t.Errorf("%s: %q %q, want %q %q", tc.name, state, status, tc.state, tc.status)
		}
	}
}

func TestPsFilter(t *testing.T) {
	c := containers.Container{ID: "abc123", Name: "web-1", Image: "busybox:latest", Labels: map[string]string{"tier": "front"}}
	// The ancestry is the lookup's; here busybox:latest descends from base.
	descends := func(image, ancestor string) bool {
		return image == "busybox:latest" && (ancestor == "busybox" || ancestor == "base")
	}
	for _, tc := range []struct {
		filters []string
		state   string
		want    bool
	}{
		{nil, "exited", true},
		{[]string{"status=exited"}, "exited", true},
		{[]string{"status=running"}, "exited", false},
		{[]string{"status=running", "status=exited"}, "exited", true},
		{[]string{"name=web"}, "running", true},
		{[]string{"name=db"}, "running", false},
		{[]string{"label=tier"}, "running", true},
		{[]string{"label=tier=front"}, "running", true},
		{[]string{"label=tier=back"}, "running", false},
		{[]string{"label=tier=front", "name=db"}, "running", false},
		{[]string{"id=abc"}, "running", true},
		{[]string{"status=dead"}, "dead", true},
		{[]string{"exited=3"}, "exited", true},
		{[]string{"exited=0"}, "exited", false},
		{[]string{"exited=3"}, "running", false},
		{[]string{"exited=0", "exited=3"}, "exited", true},
		{[]string{"ancestor=base"}, "running", true},
		{[]string{"ancestor=alpine"}, "running", false},
	} {
		f, err := parsePsFilter(tc.filters)
		if err != nil {
			t.Fatalf("%v: %v", tc.filters, err)
		}
		if got := f.match(c, tc.state, 3, descends); got != tc.want {
			t.Errorf("filters %v on state %s: %v, want %v", tc.filters, tc.state, got, tc.want)
		}
	}
	for _, bad := range []string{"status=gone", "colour=red", "name", "exited=x"} {
		if _, err := parsePsFilter([]string{bad}); err == nil {
			t.Errorf("filter %q accepted", bad)
		}
	}
}

func TestRunErrorExitStatus(t *testing.T) {
	ctr := containers.Container{Name: "x1"}
	for msg, want := range map[string]int{
		`runc create failed: unable to start container process: exec: "nope": executable file not found in $PATH`: ExitNotFound,
		`exec: "/etc": permission denied`:                     ExitCannotRun,
		`runc create failed: cgroup: something else entirely`: ExitUsage,
	} {
		var se *statusError
		if err := runError(ctr, errors.New(msg)); !errors.As(err, &se) || se.code != want {
			t.Errorf("runError(%q) status %v, want %d", msg, err, want)
		}
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"KILL": syscall.SIGKILL, "sigterm": syscall.SIGTERM, "SIGHUP": syscall.SIGHUP, "9": syscall.SIGKILL} {
		if got, err := parseSignal(in); err != nil || got != want {
			t.Errorf("parseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseSignal("NOPE"); err == nil {
		t.Error("parseSignal(NOPE) succeeded")
	}
}

func TestPrintLogs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x-json.log")
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	line := func(s, stream string, sec int) string {
		return `{"log":"` + s + `\n","stream":"` + stream + `","time":"` + base.Add(time.Duration(sec)*time.Second).Format(time.RFC3339Nano) + `"}` + "\n"
	}
	// Rotated files: path.2 is the oldest.
	os.WriteFile(path+".2", []byte(line("one", "stdout", 1)), 0o644)
	os.WriteFile(path+".1", []byte(line("two", "stderr", 2)+"not json\n"), 0o644)
	os.WriteFile(path, []byte(line("three", "stdout", 3)+line("four", "stdout", 4)+`{"log":"partial`), 0o644)

	run := func(o logsOptions) (string, string) {
		var out, errb strings.Builder
		c := &CLI{Streams: Streams{Out: &out, Err: &errb}}
		if err := c.printLogs(context.Background(), nil, "x", path, o, base.Add(10*time.Second)); err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String()
	}
	if out, errOut := run(logsOptions{tail: "all"}); out != "one\nthree\nfour\n" || errOut != "two\n" {
		t.Errorf("all logs: %q / %q", out, errOut)
	}
	if out, _ := run(logsOptions{tail: "2"}); out != "three\nfour\n" {
		t.Errorf("--tail 2: %q", out)
	}
	if out, errOut := run(logsOptions{tail: "all", since: "7.5s"}); out != "three\nfour\n" || errOut != "" {
		t.Errorf("--since 7.5s: %q / %q", out, errOut)
	}
	if out, _ := run(logsOptions{tail: "1", timestamps: true}); out != "2026-01-01T00:00:04Z four\n" {
		t.Errorf("-t --tail 1: %q", out)
	}
	var c CLI
	if err := c.printLogs(context.Background(), nil, "x", path, logsOptions{tail: "-1"}, base); err == nil {
		t.Error("--tail -1 accepted")
	}
}

func TestCreateRunOptions(t *testing.T) {
	envFile := filepath.Join(t.TempDir(), "env")
	os.WriteFile(envFile, []byte("# comment\nA=from-file\nB=2\n"), 0o644)
	o := createOptions{env: []string{"A=flag"}, envFiles: []string{envFile}, labels: []string{"k=v", "flag"},
		network: "host", entrypoint: "", entrypointSet: true, user: "1000", workdir: "/w", hostname: "h"}
	ro, err := o.runOptions([]string{"echo", "hi"})
	if err != nil {
		t.Fatal(err)
	}
	// -e comes after --env-file so that it wins, as in Docker.
	if strings.Join(ro.Env, ",") != "A=from-file,B=2,A=flag" {
		t.Errorf("Env = %q", ro.Env)
	}
	if ro.Labels["k"] != "v" || ro.Labels["flag"] != "" || len(ro.Labels) != 2 {
		t.Errorf("Labels = %v", ro.Labels)
	}
	if len(ro.Entrypoint) != 1 || ro.Entrypoint[0] != "" {
		t.Errorf("--entrypoint \"\" gave Entrypoint %q, want [\"\"] (no entrypoint)", ro.Entrypoint)
	}
	if ro.NetworkMode != "host" || ro.User != "1000" || ro.WorkingDir != "/w" || ro.Hostname != "h" || strings.Join(ro.Cmd, " ") != "echo hi" {
		t.Errorf("RunOptions = %+v", ro)
	}
	if ro, _ := (createOptions{}).runOptions(nil); ro.Entrypoint != nil || ro.NetworkMode != "none" {
		t.Errorf("defaults: Entrypoint %q, NetworkMode %q; want nil and none", ro.Entrypoint, ro.NetworkMode)
	}
	for _, bad := range []createOptions{{network: "bridge2"}, {labels: []string{"=v"}}, {envFiles: []string{"/nonexistent/env"}}} {
		if _, err := bad.runOptions(nil); !errdefs.IsInvalidArgument(err) {
			t.Errorf("runOptions(%+v) = %v, want an invalid-argument error", bad, err)
		}
	}
}
