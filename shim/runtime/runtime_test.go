package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/shim/reaper"
)

// fakeRuntime is a shell script with runc's command line: it appends its
// arguments to calls, answers state and ps, and fails `kill` of "gone"
// the way runc does, with a json error in its --log.
const fakeRuntime = `#!/bin/sh
dir=$(dirname "$0")
echo "$@" >> "$dir/calls"
log=""
while [ $# -gt 0 ]; do
	case "$1" in
	--log) log=$2; shift 2 ;;
	--log-format|--root) shift 2 ;;
	*) break ;;
	esac
done
cmd=$1; shift
for last; do :; done
case "$cmd" in
state) echo '{"id":"'$last'","pid":42,"status":"running","bundle":"/b"}' ;;
ps) echo '[42,43]' ;;
exec) for a; do case "$prev" in --process) cp "$a" "$dir/process.json" ;; esac; prev=$a; done ;;
update) for a; do case "$prev" in --resources) cp "$a" "$dir/resources.json" ;; esac; prev=$a; done ;;
kill)
	if [ "$1" = gone ] || [ "$2" = gone ]; then
		echo '{"level":"error","msg":"container does not exist","time":"x"}' >> "$log"
		exit 1
	fi ;;
esac
exit 0
`

func newFake(t *testing.T, r *reaper.Reaper) (*Runtime, string) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "fakerunc")
	if err := os.WriteFile(bin, []byte(fakeRuntime), 0o755); err != nil {
		t.Fatal(err)
	}
	return &Runtime{Binary: bin, Root: filepath.Join(dir, "root"), Reaper: r}, dir
}

func calls(t *testing.T, dir string) []string {
	b, err := os.ReadFile(filepath.Join(dir, "calls"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func TestCommandLines(t *testing.T) {
	rt, dir := newFake(t, nil)
	ctx := context.Background()
	if err := rt.Create(ctx, "c1", "/bundle", CreateOpts{PidFile: "/b/init.pid", ConsoleSocket: "/b/pty"}); err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := rt.Exec(ctx, "c1", &specs.Process{Args: []string{"echo", "x"}}, ExecOpts{PidFile: "/b/e.pid"}); err != nil {
		t.Fatal(err)
	}
	if err := rt.Kill(ctx, "c1", 15, true); err != nil {
		t.Fatal(err)
	}
	if err := rt.Pause(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := rt.Resume(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := rt.Delete(ctx, "c1", true); err != nil {
		t.Fatal(err)
	}
	got := calls(t, dir)
	root := rt.Root
	want := []string{
		"create --bundle /bundle --pid-file /b/init.pid --console-socket /b/pty c1",
		"start c1",
		"exec --detach --process * --pid-file /b/e.pid c1",
		"kill --all c1 15",
		"pause c1",
		"resume c1",
		"delete --force c1",
	}
	if len(got) != len(want) {
		t.Fatalf("calls:\n%s", strings.Join(got, "\n"))
	}
	for i, w := range want {
		prefix := "--log "
		if !strings.HasPrefix(got[i], prefix) || !strings.Contains(got[i], " --log-format json --root "+root+" ") {
			t.Errorf("call %d %q lacks the global options", i, got[i])
			continue
		}
		cmd := got[i][strings.Index(got[i], root+" ")+len(root)+1:]
		if before, after, ok := strings.Cut(w, "*"); ok {
			if !strings.HasPrefix(cmd, before) || !strings.HasSuffix(cmd, after) {
				t.Errorf("call %d = %q, want %q", i, cmd, w)
			}
		} else if cmd != w {
			t.Errorf("call %d = %q, want %q", i, cmd, w)
		}
	}
	proc, err := os.ReadFile(filepath.Join(dir, "process.json"))
	if err != nil || !strings.Contains(string(proc), `"args":["echo","x"]`) {
		t.Errorf("exec process spec = %s (%v)", proc, err)
	}
}

func TestStatePsAndErrors(t *testing.T) {
	// Through a reaper, as in the shim: its loop must not steal the exits.
	r := reaper.New()
	stop := make(chan struct{})
	defer close(stop)
	go r.Run(stop)
	rt, _ := newFake(t, r)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		st, err := rt.State(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		if st.ID != "c1" || st.Pid != 42 || st.Status != "running" {
			t.Errorf("State = %+v", st)
		}
		pids, err := rt.Ps(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) != 2 || pids[0] != 42 || pids[1] != 43 {
			t.Errorf("Ps = %v", pids)
		}
	}
	err := rt.Kill(ctx, "gone", 9, false)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "container does not exist") {
		t.Errorf("Kill of a missing container: %v, want not found with the runtime's message", err)
	}
}

func TestMissingBinary(t *testing.T) {
	rt := &Runtime{Binary: filepath.Join(t.TempDir(), "no-such-runtime")}
	err := rt.Start(context.Background(), "c1")
	if !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Start with a missing runtime: %v, want failed precondition", err)
	}
}
