package integration

import (
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
