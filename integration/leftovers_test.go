package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// trapper runs a shell that exits 3 on SIGTERM, so that its exit code shows
// whether the stop signal reached it or the SIGKILL after the timeout did.
func trapper(t *testing.T, d *daemon, name string) {
	t.Helper()
	removeAllContainers(t, d)
	d.must("run", "-d", "--name", name, "busybox", "sh", "-c", `trap "exit 3" TERM; while :; do sleep 0.2; done`)
}

// removeAllContainers removes, when the test ends, every container left.
func removeAllContainers(t *testing.T, d *daemon) {
	t.Cleanup(func() {
		if out, _, _ := d.berth("ps", "-aq", "--no-trunc"); strings.TrimSpace(out) != "" {
			d.berth(append([]string{"rm", "-f"}, strings.Fields(out)...)...)
		}
	})
}

func TestStopAndRestartPaused(t *testing.T) {
	d := containerDaemon(t)
	trapper(t, d, "pstop")
	d.must("pause", "pstop")
	start := time.Now()
	d.must("stop", "-t", "30", "pstop")
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("stop of a paused container took %v: the signal waited for the timeout", took)
	}
	if out := d.must("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "pstop"); out != "exited 3\n" {
		t.Errorf("stop of a paused container: %q, want the trap's exit 3", out)
	}

	d.must("start", "pstop")
	d.must("pause", "pstop")
	start = time.Now()
	d.must("restart", "-t", "30", "pstop")
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("restart of a paused container took %v", took)
	}
	if out := d.must("inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "pstop"); out != "running false\n" {
		t.Errorf("restart of a paused container: %q", out)
	}
	d.must("rm", "-f", "pstop")
}

func TestLogOptRotation(t *testing.T) {
	d := containerDaemon(t)
	removeAllContainers(t, d)
	id := strings.TrimSpace(d.must("run", "-d", "--name", "rot", "--log-opt", "max-size=1k", "--log-opt", "max-file=3",
		"busybox", "sh", "-c", "i=1; while [ $i -le 300 ]; do echo line-$i; i=$((i+1)); done"))
	d.must("wait", "rot")
	if out := d.must("inspect", "-f", "{{.HostConfig.LogConfig.Type}} {{json .HostConfig.LogConfig.Config}}", "rot"); out != `json-file {"max-file":"3","max-size":"1k"}`+"\n" {
		t.Errorf("inspect's LogConfig: %q", out)
	}
	logPath := filepath.Join(d.root, "containers", id, id+"-json.log")
	// The kept files, oldest first, hold what logs must print.
	var want []string
	for _, p := range []string{logPath + ".2", logPath + ".1", logPath} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("rotated log file: %v", err)
		}
		if len(b) > 1024+200 {
			t.Errorf("%s holds %d bytes, more than max-size 1k and one line", p, len(b))
		}
		for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
			var e struct{ Log string }
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			want = append(want, strings.TrimSuffix(e.Log, "\n"))
		}
	}
	if _, err := os.Stat(logPath + ".3"); err == nil {
		t.Errorf("max-file=3 kept a fourth file")
	}
	got := strings.Split(strings.TrimSpace(d.must("logs", "rot")), "\n")
	if !slices.Equal(got, want) {
		t.Fatalf("logs printed %d lines, the kept files hold %d:\n got %v\nwant %v", len(got), len(want), got, want)
	}
	// In order, without a gap, up to the last line; the oldest were dropped.
	first, err := strconv.Atoi(strings.TrimPrefix(got[0], "line-"))
	if err != nil || first <= 1 {
		t.Fatalf("first line after rotation %q: want a later line than line-1", got[0])
	}
	for i, l := range got {
		if l != "line-"+strconv.Itoa(first+i) {
			t.Fatalf("line %d is %q, want line-%d", i, l, first+i)
		}
	}
	if got[len(got)-1] != "line-300" {
		t.Errorf("last line %q", got[len(got)-1])
	}

	for _, c := range []struct{ opt, want string }{
		{"max-size=abc", `invalid max-size "abc"`},
		{"max-file=0", `invalid max-file "0"`},
		{"compress=true", "unknown log opt 'compress' for json-file log driver"},
	} {
		for _, cmd := range []string{"create", "run"} {
			if _, errOut, code := d.berth(cmd, "--log-opt", c.opt, "busybox", "true"); code != 125 || !strings.Contains(errOut, c.want) {
				t.Errorf("%s --log-opt %s: exit %d, stderr %q; want 125 and %q", cmd, c.opt, code, errOut, c.want)
			}
		}
	}
	d.must("rm", "rot")
}

func TestInspectEntrypointAndCmd(t *testing.T) {
	d := containerDaemon(t)
	removeAllContainers(t, d)
	d.must("create", "--name", "e1", "busybox", "sleep", "60")
	d.must("create", "--name", "e2", "--entrypoint", "echo", "busybox", "hi", "there")
	d.must("create", "--name", "e3", "busybox")
	d.must("create", "--name", "e4", "--entrypoint", "", "busybox", "echo", "x")
	const f = "{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{.Path}} {{json .Args}}"
	for name, want := range map[string]string{
		"e1": `null ["sleep","60"] sleep ["60"]`,
		"e2": `["echo"] ["hi","there"] echo ["hi","there"]`,
		"e3": `null ["sh"] sh []`,
		"e4": `null ["echo","x"] echo ["x"]`,
	} {
		if out := d.must("inspect", "-f", f, name); out != want+"\n" {
			t.Errorf("inspect %s: %q, want %q", name, out, want)
		}
	}
	d.must("rm", "e1", "e2", "e3", "e4")
}

// parseHumanSize reads Docker's "1.23MB".
func parseHumanSize(t *testing.T, s string) float64 {
	t.Helper()
	for i, unit := range []string{"kB", "MB", "GB", "B"} {
		if num, ok := strings.CutSuffix(s, unit); ok {
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				t.Fatalf("size %q: %v", s, err)
			}
			mult := []float64{1e3, 1e6, 1e9, 1}[i]
			return f * mult
		}
	}
	t.Fatalf("size %q has no unit", s)
	return 0
}

func TestPsLastLatestSize(t *testing.T) {
	d := containerDaemon(t)
	removeAllContainers(t, d)
	d.must("create", "--name", "pa", "busybox", "true")
	d.must("run", "-d", "--name", "pb", "busybox", "sleep", "60")
	cID := strings.TrimSpace(d.must("create", "--name", "pc", "busybox", "true"))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-n", "2"}, "pc\npb\n"},
		{[]string{"--last", "5"}, "pc\npb\npa\n"},
		{[]string{"-l"}, "pc\n"},
		{[]string{"--latest"}, "pc\n"},
		{[]string{"-n", "2", "-f", "status=created"}, "pc\npa\n"},
		{[]string{}, "pb\n"},
		{[]string{"-n", "0"}, "pb\n"},
	} {
		if out := d.must(append(append([]string{"ps"}, c.args...), "--format", "{{.Names}}")...); out != c.want {
			t.Errorf("ps %v: %q, want %q", c.args, out, c.want)
		}
	}
	if out := d.must("ps", "-lq"); out != cID[:12]+"\n" {
		t.Errorf("ps -lq: %q, want %q", out, cID[:12])
	}

	d.must("exec", "pb", "dd", "if=/dev/urandom", "of=/big", "bs=1000", "count=300")
	out := d.must("ps", "-s")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], "SIZE") {
		t.Fatalf("ps -s:\n%s", out)
	}
	sizeRe := regexp.MustCompile(`(\S+) \(virtual (\S+)\)$`)
	m := sizeRe.FindStringSubmatch(lines[1])
	if m == nil {
		t.Fatalf("ps -s row without Docker's size: %q", lines[1])
	}
	rw, virtual := parseHumanSize(t, m[1]), parseHumanSize(t, m[2])
	if rw < 300e3 || rw > 2e6 {
		t.Errorf("ps -s: writable layer %s after writing 300kB", m[1])
	}
	if virtual < rw+100e3 {
		t.Errorf("ps -s: virtual %s is not the writable layer %s plus the image", m[2], m[1])
	}
	if out := d.must("ps", "-a", "--format", "{{.Names}} {{.Size}}", "-f", "name=pa"); !regexp.MustCompile(`^pa \d+(\.\d+)?k?B \(virtual \S+B\)\n$`).MatchString(out) {
		t.Errorf("ps --format {{.Size}} of a created container: %q", out)
	}
	d.must("rm", "-f", "pa", "pb", "pc")
}

// TestLogsFollowAcrossRotation follows a log that rotates every few lines:
// every line shows once, in order, and the follower ends with the
// container.
func TestLogsFollowAcrossRotation(t *testing.T) {
	d := containerDaemon(t)
	removeAllContainers(t, d)
	d.must("create", "--name", "fol", "--log-opt", "max-size=1k", "--log-opt", "max-file=5",
		"busybox", "sh", "-c", "sleep 0.3; i=1; while [ $i -le 300 ]; do echo line-$i; i=$((i+1)); usleep 2000; done")
	d.must("start", "fol")
	start := time.Now()
	out := d.must("logs", "-f", "fol")
	got := strings.Split(strings.TrimSpace(out), "\n")
	if len(got) != 300 {
		t.Fatalf("logs -f printed %d lines, want 300 (every line, across about 20 rotations): first %q, last %q", len(got), got[0], got[len(got)-1])
	}
	for i, l := range got {
		if l != "line-"+strconv.Itoa(i+1) {
			t.Fatalf("line %d of logs -f is %q, want line-%d", i+1, l, i+1)
		}
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("logs -f took %v to end after the container", took)
	}
}
