package supervise

import (
	"context"
	"errors"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the child: with childEnv set it runs the
// behaviour named there instead of the tests.
const childEnv = "SUPERVISE_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		runChild(mode, os.Args[len(os.Args)-1])
		return
	}
	os.Exit(m.Run())
}

// runChild is the child: "serve" serves the socket until SIGTERM,
// "stubborn" serves and ignores SIGTERM, "exit" fails at once, "silent"
// never serves.
func runChild(mode, socket string) {
	if mode == "stubborn" {
		signal.Ignore(syscall.SIGTERM)
	}
	switch mode {
	case "exit":
		os.Exit(3)
	case "silent":
		select {}
	}
	lis, err := net.Listen("unix", socket)
	if err != nil {
		os.Exit(4)
	}
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if mode == "stubborn" {
		select {}
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	<-term
	lis.Close()
	os.Exit(0)
}

func childConfig(t *testing.T, mode string) Config {
	t.Helper()
	dir, err := os.MkdirTemp("", "sup")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "child.sock")
	t.Setenv(childEnv, mode) // inherited by the child
	return Config{
		Name:       "test child",
		Path:       exe,
		Args:       []string{"-test.run=^$", socket},
		Socket:     socket,
		Stderr:     os.Stderr,
		MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 80 * time.Millisecond,
	}
}

// alive reports whether pid exists (a zombie counts as gone here only once
// reaped, which Stop guarantees).
func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRestartAfterKill(t *testing.T) {
	cfg := childConfig(t, "serve")
	var readies atomic.Int32
	cfg.OnReady = func() { readies.Add(1) }
	p := Start(cfg)
	t.Cleanup(p.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitFirstStart(ctx); err != nil {
		t.Fatal(err)
	}
	first := p.Status()
	if first.State != StateRunning || first.Pid == 0 || first.Restarts != 0 || readies.Load() != 1 {
		t.Fatalf("after start: %+v, %d readies", first, readies.Load())
	}

	if err := syscall.Kill(first.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restarted child to serve", func() bool {
		st := p.Status()
		return st.State == StateRunning && st.Pid != first.Pid
	})
	st := p.Status()
	if st.Restarts != 1 || st.LastError == nil || !strings.Contains(st.LastError.Error(), "killed by signal killed") {
		t.Errorf("after kill: %+v; want one restart and the reason", st)
	}
	if readies.Load() != 2 {
		t.Errorf("OnReady called %d times, want 2", readies.Load())
	}
	if err := p.WaitReady(ctx); err != nil {
		t.Errorf("WaitReady after restart: %v", err)
	}

	p.Stop()
	if alive(st.Pid) {
		t.Errorf("child %d still alive after Stop", st.Pid)
	}
	if got := p.Status(); got.State != StateStopped || got.Pid != 0 {
		t.Errorf("after Stop: %+v", got)
	}
	if err := p.WaitReady(ctx); err == nil {
		t.Error("WaitReady after Stop succeeded")
	}
	p.Stop() // twice is fine
}

func TestStopKillsChildThatIgnoresSIGTERM(t *testing.T) {
	cfg := childConfig(t, "stubborn")
	cfg.StopTimeout = 300 * time.Millisecond
	p := Start(cfg)
	t.Cleanup(p.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	pid := p.Status().Pid
	start := time.Now()
	p.Stop()
	if took := time.Since(start); took < cfg.StopTimeout {
		t.Errorf("Stop took %s; the child ignores SIGTERM, so it should have waited %s before SIGKILL", took, cfg.StopTimeout)
	}
	if alive(pid) {
		t.Errorf("child %d survived Stop", pid)
	}
}

func TestFailingChildBacksOff(t *testing.T) {
	cfg := childConfig(t, "exit")
	p := Start(cfg)
	t.Cleanup(p.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := p.WaitFirstStart(ctx); err == nil || !strings.Contains(err.Error(), "exit status 3") || ctx.Err() != nil {
		t.Fatalf("WaitFirstStart = %v, want the exit status at once", err)
	}
	err := p.WaitReady(ctx)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("WaitReady = %v, want the exit status", err)
	}
	st := p.Status()
	if st.Restarts < 2 || st.LastError == nil {
		t.Errorf("status %+v: want several restarts", st)
	}
	// Back-off: at most 80ms apart after the first few, so no more than
	// about 500ms/20ms starts.
	if st.Restarts > 25 {
		t.Errorf("%d restarts in 500ms: no back-off", st.Restarts)
	}
	start := time.Now()
	p.Stop()
	if time.Since(start) > time.Second {
		t.Errorf("Stop of a restarting child took %s", time.Since(start))
	}
}

func TestMissingProgram(t *testing.T) {
	cfg := childConfig(t, "serve")
	cfg.Path = filepath.Join(t.TempDir(), "no-such-program")
	p := Start(cfg)
	t.Cleanup(p.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := p.WaitReady(ctx)
	if err == nil || !strings.Contains(err.Error(), "no-such-program") {
		t.Fatalf("WaitReady = %v, want an error naming the program", err)
	}
	if !errors.Is(p.Status().LastError, os.ErrNotExist) {
		t.Errorf("last error %v, want not-exist", p.Status().LastError)
	}
}

func TestReadyTimeoutAndStopWhileStarting(t *testing.T) {
	cfg := childConfig(t, "silent")
	cfg.ReadyTimeout = 100 * time.Millisecond
	p := Start(cfg)
	t.Cleanup(p.Stop)
	waitFor(t, "a failed start", func() bool { return p.Status().LastError != nil })
	if err := p.Status().LastError; !strings.Contains(err.Error(), "did not serve") {
		t.Errorf("last error %v, want a ready timeout", err)
	}
	waitFor(t, "the next start", func() bool { st := p.Status(); return st.State == StateStarting && st.Pid != 0 })
	pid := p.Status().Pid
	p.Stop()
	if alive(pid) {
		t.Errorf("child %d, stopped while starting, is alive", pid)
	}
}

func TestSocketServedBySomeoneElse(t *testing.T) {
	cfg := childConfig(t, "serve")
	lis, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	p := Start(cfg)
	t.Cleanup(p.Stop)
	waitFor(t, "a refused start", func() bool { return p.Status().LastError != nil })
	st := p.Status()
	if !strings.Contains(st.LastError.Error(), "another process serves") || st.State == StateRunning {
		t.Errorf("status %+v: want a refusal to start onto a served socket", st)
	}
	if _, err := os.Lstat(cfg.Socket); err != nil {
		t.Errorf("the other process's socket was removed: %v", err)
	}
}
