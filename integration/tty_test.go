package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pane is a berth command running on the terminal of a tmux pane, on a
// private tmux server that the test kills when it ends.
type pane struct {
	t      *testing.T
	socket string
	status string // file the pane's shell writes berth's exit status to
}

// runInPane runs berth with args in a new tmux session of width x height.
func (d *daemon) runInPane(t *testing.T, width, height int, args ...string) *pane {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed")
	}
	// The server's socket lives in a folder of the test's own (short, for
	// a unix socket's path), removed with it.
	dir, err := os.MkdirTemp("", "berth-tmux-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &pane{
		t:      t,
		socket: filepath.Join(dir, "tmux.sock"),
		status: filepath.Join(dir, "status"),
	}
	line := shellQuote(filepath.Join(env.bin, "berth")) + " --address " + shellQuote(d.address)
	for _, a := range args {
		line += " " + shellQuote(a)
	}
	// The pane stays after berth exits, so that its last output can be read.
	script := line + "; echo $? > " + shellQuote(p.status) + "; sleep 600"
	t.Cleanup(func() { exec.Command("tmux", "-S", p.socket, "kill-server").Run() })
	out, err := exec.Command("tmux", "-S", p.socket, "-f", "/dev/null", "new-session", "-d", "-s", "it",
		"-x", fmt.Sprint(width), "-y", fmt.Sprint(height), "sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("tmux new-session: %v: %s", err, out)
	}
	return p
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (p *pane) tmux(args ...string) string {
	p.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", p.socket}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %v: %v: %s", args, err, out)
	}
	return string(out)
}

// screen is what the pane shows.
func (p *pane) screen() string { return p.tmux("capture-pane", "-p", "-t", "it") }

// waitFor waits until the pane shows a line that is want, trimmed.
func (p *pane) waitFor(want string) {
	p.t.Helper()
	p.waitForLine(want, func(l string) bool { return strings.TrimSpace(l) == want })
}

// waitForLine waits until the pane shows a line for which match is true.
func (p *pane) waitForLine(what string, match func(line string) bool) {
	p.t.Helper()
	want := what
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := p.screen()
		for _, l := range strings.Split(s, "\n") {
			if match(l) {
				return
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("the pane does not show a line %q within 20s; it shows:\n%s", want, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// typeLine types s and Enter.
func (p *pane) typeLine(s string) {
	p.t.Helper()
	p.tmux("send-keys", "-t", "it", "-l", s)
	p.tmux("send-keys", "-t", "it", "Enter")
}

// exitStatus waits for berth to exit and returns its status.
func (p *pane) exitStatus() string {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(p.status); err == nil && strings.HasSuffix(string(b), "\n") {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("berth did not exit within 20s; the pane shows:\n%s", p.screen())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logEntries reads a container's json log.
func (d *daemon) logEntries(t *testing.T, id string) []map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.root, "containers", id, id+"-json.log"))
	if err != nil {
		t.Fatal(err)
	}
	var entries []map[string]string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e map[string]string
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		entries = append(entries, e)
	}
	return entries
}

func TestRunInteractiveTerminal(t *testing.T) {
	d := containerDaemon(t)
	p := d.runInPane(t, 80, 24, "run", "-it", "--name", "it1", "busybox", "sh")
	p.waitFor("/ #")
	p.typeLine("echo $((6*7))")
	p.waitFor("42")
	p.typeLine("stty size")
	p.waitFor("24 80")
	p.tmux("resize-window", "-t", "it", "-x", "100", "-y", "30")
	p.typeLine("stty size")
	p.waitFor("30 100")
	p.typeLine("exit 3")
	if got := p.exitStatus(); got != "3" {
		t.Fatalf("berth run -it ... exit 3: status %s; want 3\n%s", got, p.screen())
	}
	// berth put its terminal back as it found it.
	tty := strings.TrimSpace(p.tmux("display-message", "-p", "-t", "it", "#{pane_tty}"))
	if out, err := exec.Command("stty", "-F", tty, "-a").CombinedOutput(); err != nil {
		t.Fatalf("stty -F %s: %v: %s", tty, err, out)
	} else if f := strings.Fields(string(out)); !slices.Contains(f, "icanon") || !slices.Contains(f, "echo") || !slices.Contains(f, "isig") {
		t.Errorf("the terminal stays raw after berth exits: %s", out)
	}
	// The terminal's output is one stream, logged as stdout.
	id := strings.TrimSpace(d.must("inspect", "-f", "{{.Id}}", "it1"))
	entries := d.logEntries(t, id)
	found := false
	for _, e := range entries {
		if e["stream"] != "stdout" {
			t.Errorf("log entry %v of a -t container is not on stdout", e)
		}
		found = found || strings.TrimSpace(e["log"]) == "42"
	}
	if !found {
		t.Errorf("the log has no line 42: %v", entries)
	}
	if got := strings.TrimSpace(d.must("inspect", "-f", "{{.Config.Tty}} {{.Config.OpenStdin}} {{.State.ExitCode}}", "it1")); got != "true true 3" {
		t.Errorf("inspect Tty OpenStdin ExitCode: %q; want \"true true 3\"", got)
	}
	d.must("rm", "it1")
}

func TestRunInteractiveDetachAndExec(t *testing.T) {
	d := containerDaemon(t)
	p := d.runInPane(t, 80, 24, "run", "-it", "--name", "det", "busybox", "sh")
	p.waitFor("/ #")
	p.tmux("send-keys", "-t", "it", "C-p", "C-q")
	if got := p.exitStatus(); got != "0" {
		t.Fatalf("detach: berth exited with %s; want 0\n%s", got, p.screen())
	}
	if got := strings.TrimSpace(d.must("inspect", "-f", "{{.State.Status}}", "det")); got != "running" {
		t.Fatalf("after a detach the container is %s; want running", got)
	}
	if out := d.must("exec", "det", "echo", "still here"); out != "still here\n" {
		t.Fatalf("exec after detach: %q", out)
	}
	// Output written to the terminal nobody reads goes to the log, and far
	// more than a fifo holds does not stall the container.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	seq := exec.CommandContext(ctx, filepath.Join(env.bin, "berth"), "--address", d.address, "exec", "det", "sh", "-c", "seq 1 30000 > /proc/1/fd/1")
	if out, err := seq.CombinedOutput(); err != nil {
		t.Fatalf("writing 170 kB to the detached terminal: %v after %v: %s", err, time.Since(start), out)
	}
	id := strings.TrimSpace(d.must("inspect", "-f", "{{.Id}}", "det"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries := d.logEntries(t, id)
		if last := entries[len(entries)-1]; strings.TrimSpace(last["log"]) == "30000" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log does not end with 30000 after a detach: last entries %v", entries[max(0, len(entries)-3):])
		}
		time.Sleep(100 * time.Millisecond)
	}

	// exec -it into the running container.
	e := d.runInPane(t, 90, 20, "exec", "-it", "det", "sh")
	e.waitFor("/ #")
	e.typeLine("echo $((7*6)) $TERM")
	e.waitFor("42 xterm")
	e.typeLine("stty size")
	e.waitFor("20 90")
	e.typeLine("exit 4")
	if got := e.exitStatus(); got != "4" {
		t.Fatalf("exec -it ... exit 4: status %s\n%s", got, e.screen())
	}
	// Detaching from an exec is Docker's "read escape sequence", status 1;
	// the exec goes on.
	e = d.runInPane(t, 80, 24, "exec", "-it", "--detach-keys", "ctrl-a,x", "det", "sh", "-c", "echo ready; exec sleep 1000")
	e.waitFor("ready")
	e.tmux("send-keys", "-t", "it", "C-a", "x")
	if got := e.exitStatus(); got != "1" {
		t.Fatalf("detach from exec -it: status %s; want 1\n%s", got, e.screen())
	}
	e.waitForLine("read escape sequence", func(l string) bool { return strings.HasSuffix(strings.TrimSpace(l), "read escape sequence") })
	if top := d.must("top", "det"); !strings.Contains(top, "sleep 1000") {
		t.Fatalf("the exec detached from is gone: top shows\n%s", top)
	}

	// attach finds the fifos run left; detaching from it is Docker's
	// "read escape sequence" with status 1; a second attach ends with the
	// container's status.
	a := d.runInPane(t, 80, 24, "attach", "det")
	time.Sleep(300 * time.Millisecond)
	a.typeLine("echo $((5*5))")
	a.waitFor("25")
	a.tmux("send-keys", "-t", "it", "C-p", "C-q")
	if got := a.exitStatus(); got != "1" {
		t.Fatalf("detach from attach: status %s; want 1\n%s", got, a.screen())
	}
	// Printed where the cursor is, after the prompt, as Docker.
	a.waitForLine("... read escape sequence", func(l string) bool { return strings.HasSuffix(strings.TrimSpace(l), "read escape sequence") })
	a = d.runInPane(t, 80, 24, "attach", "det")
	time.Sleep(300 * time.Millisecond)
	a.typeLine("exit 6")
	if got := a.exitStatus(); got != "6" {
		t.Fatalf("attach ... exit 6: status %s; want 6\n%s", got, a.screen())
	}
	d.must("rm", "-f", "det")

	d.must("run", "-d", "--name", "bg", "busybox", "sleep", "100")
	if _, errOut, code := d.berth("attach", "bg"); code != 1 || !strings.Contains(errOut, "was started detached") {
		t.Errorf("attach to a run -d container: status %d, stderr %q", code, errOut)
	}
	d.must("rm", "-f", "bg")
}

func TestStartAttachInteractive(t *testing.T) {
	d := containerDaemon(t)
	d.must("create", "-it", "--name", "sa", "busybox", "sh")
	p := d.runInPane(t, 80, 24, "start", "-ai", "sa")
	p.waitFor("/ #")
	p.typeLine("echo $((6*7))")
	p.waitFor("42")
	// ctrl-c is a byte for the terminal: it interrupts the shell's
	// command, not berth.
	p.typeLine("sleep 100")
	time.Sleep(300 * time.Millisecond)
	p.tmux("send-keys", "-t", "it", "C-c")
	p.typeLine("echo after $((1+1))")
	p.waitFor("after 2")
	p.typeLine("exit 5")
	if got := p.exitStatus(); got != "5" {
		t.Fatalf("start -ai ... exit 5: status %s\n%s", got, p.screen())
	}
	d.must("rm", "sa")
}

func TestRunStdinWithoutTerminal(t *testing.T) {
	d := containerDaemon(t)
	out, errOut, code := d.berthIn([]byte("hi\n"), "run", "-i", "--rm", "busybox", "cat")
	if code != 0 || out != "hi\n" {
		t.Fatalf("echo hi | berth run -i --rm busybox cat: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// Without -i, stdin is not attached: cat reads end of file at once.
	out, errOut, code = d.berthIn([]byte("hi\n"), "run", "--rm", "busybox", "cat")
	if code != 0 || out != "" {
		t.Fatalf("berth run busybox cat without -i: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// -t without -i needs no terminal; the output comes through one.
	out, errOut, code = d.berth("run", "-t", "--rm", "busybox", "sh", "-c", "tty; echo out; echo err >&2")
	if code != 0 || out != "/dev/pts/0\r\nout\r\nerr\r\n" {
		t.Fatalf("berth run -t: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// -a names the streams attached.
	out, errOut, code = d.berth("run", "-a", "stdout", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
	if code != 0 || out != "out\n" || errOut != "" {
		t.Fatalf("berth run -a stdout: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, errOut, code = d.berth("run", "-d", "-a", "stdout", "busybox", "true"); code != 125 || !strings.Contains(errOut, "Conflicting options: -a and -d") {
		t.Fatalf("berth run -d -a stdout: exit %d, stderr %q", code, errOut)
	}
	// -it needs one.
	out, errOut, code = d.berthIn([]byte("hi\n"), "run", "-it", "--rm", "busybox", "cat")
	if code != 1 || !strings.Contains(errOut, "the input device is not a TTY") {
		t.Fatalf("berth run -it with a pipe: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if out := d.must("ps", "-aq"); out != "" {
		t.Fatalf("a refused run -it left containers: %s", out)
	}

	d.must("run", "-d", "--name", "sl", "busybox", "sleep", "100")
	big := strings.Repeat("0123456789abcdef", 1<<14) // 256 KiB, more than a fifo holds
	out, errOut, code = d.berthIn([]byte(big), "exec", "-i", "sl", "sh", "-c", "cat | wc -c")
	if code != 0 || strings.TrimSpace(out) != fmt.Sprint(len(big)) {
		t.Fatalf("exec -i s wc -c: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	_, errOut, code = d.berth("run", "--detach-keys", "ctrl-1", "--rm", "busybox", "true")
	if code != 125 || !strings.Contains(errOut, "invalid detach keys") {
		t.Fatalf("run --detach-keys ctrl-1: exit %d, stderr %q", code, errOut)
	}
	d.must("rm", "-f", "sl")
}

func TestRunDetachedInteractiveAttach(t *testing.T) {
	d := containerDaemon(t)
	// run -dit: a shell on a terminal nobody reads yet, attached later.
	d.must("run", "-dit", "--name", "bgt", "busybox", "sh")
	a := d.runInPane(t, 80, 24, "attach", "bgt")
	time.Sleep(300 * time.Millisecond)
	a.typeLine("echo $((8*8))")
	a.waitFor("64")
	a.tmux("send-keys", "-t", "it", "C-p", "C-q")
	if got := a.exitStatus(); got != "1" {
		t.Fatalf("detach from attach: status %s; want 1\n%s", got, a.screen())
	}
	d.must("rm", "-f", "bgt")

	// run -di: stdin stays open (cat keeps running) until an attached
	// client's input ends.
	d.must("run", "-di", "--name", "bgc", "busybox", "cat")
	time.Sleep(500 * time.Millisecond)
	if got := strings.TrimSpace(d.must("inspect", "-f", "{{.State.Status}}", "bgc")); got != "running" {
		t.Fatalf("run -di busybox cat is %s; want running", got)
	}
	out, errOut, code := d.berthIn([]byte("hi\n"), "attach", "bgc")
	if code != 0 || out != "hi\n" {
		t.Fatalf("echo hi | berth attach bgc: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	d.must("rm", "bgc")
}

func TestRunWithoutSigProxy(t *testing.T) {
	d := containerDaemon(t)
	cmd := exec.Command(filepath.Join(env.bin, "berth"), "--address", d.address, "run", "--sig-proxy=false", "--name", "nsp", "busybox",
		"sh", "-c", `trap "exit 7" INT; echo ready; while :; do sleep 0.1; done`)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	go func() { done <- cmd.Wait() }()
	if err != nil || line != "ready\n" {
		t.Fatalf("run printed %q, %v before the signal", line, err)
	}
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("berth run --sig-proxy=false did not end within 10s of SIGINT")
	}
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("run --sig-proxy=false after SIGINT: exit %d, want 130", code)
	}
	if got := strings.TrimSpace(d.must("inspect", "-f", "{{.State.Status}}", "nsp")); got != "running" {
		t.Errorf("the container got berth's SIGINT: it is %s", got)
	}
	d.must("rm", "-f", "nsp")
}
