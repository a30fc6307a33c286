// Package supervise runs a child process that serves on a unix socket, as
// berthd runs its berth-snapshotters: it starts the child, waits until the
// socket answers, restarts the child with back-off when it dies, and stops
// it with SIGTERM, then SIGKILL after a timeout. It only ever signals the
// process it started, and only while that process has not been reaped.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/berth-engine/berth/internal/errdefs"
)

// Defaults for the zero values of Config.
const (
	DefaultReadyTimeout = 10 * time.Second
	DefaultStopTimeout  = 10 * time.Second
	DefaultMinBackoff   = 100 * time.Millisecond
	DefaultMaxBackoff   = 30 * time.Second

	// stableAfter is how long a child must have run for its death to
	// count as new trouble rather than one more failure in a row.
	stableAfter = 10 * time.Second
)

// Config describes the child and how to supervise it.
type Config struct {
	// Name is how logs and errors call the child.
	Name string
	// Path and Args are the program and its arguments (without argv[0]).
	Path string
	Args []string
	// Socket is the unix socket the child serves: it is up once a
	// connection to it succeeds.
	Socket string
	// Stdout and Stderr receive the child's output; nil discards it.
	Stdout, Stderr io.Writer
	// ReadyTimeout bounds how long a start may take to serve the socket.
	ReadyTimeout time.Duration
	// StopTimeout is the wait between SIGTERM and SIGKILL.
	StopTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait before a restart; it
	// doubles with each failure in a row and starts again from MinBackoff
	// once the child has served for a while.
	MinBackoff, MaxBackoff time.Duration
	// OnReady, when set, is called each time a start serves the socket
	// (for instance to make a client reconnect at once).
	OnReady func()
	// Logger receives the supervisor's own messages; nil means slog.Default.
	Logger *slog.Logger
}

// State is where the child is in its life.
type State string

// The states of a child.
const (
	StateStarting   State = "starting"   // started, socket not answering yet
	StateRunning    State = "running"    // serving its socket
	StateRestarting State = "restarting" // died or failed to start; waiting to start again
	StateStopped    State = "stopped"    // Stop was called
)

// Status is a snapshot of the child's state.
type Status struct {
	State State
	// Pid of the current child; 0 when none is running.
	Pid int
	// Restarts counts the starts after the first.
	Restarts int
	// LastError says why the last run ended or the last start failed;
	// nil when no run has failed yet.
	LastError error
	// NextStart is when a restarting child starts again.
	NextStart time.Time
}

// Process supervises one child.
type Process struct {
	cfg  Config
	log  *slog.Logger
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu     sync.Mutex
	status Status
	ready  chan struct{} // closed while the child serves its socket
	// first is closed when the first start has served or failed, and
	// firstErr then says how it failed.
	first     chan struct{}
	firstOnce sync.Once
	firstErr  error
}

// Start begins supervising: the child is started at once, and again
// whenever it dies, until Stop.
func Start(cfg Config) *Process {
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	p := &Process{
		cfg:    cfg,
		log:    log.With("child", cfg.Name),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		status: Status{State: StateStarting},
		ready:  make(chan struct{}),
		first:  make(chan struct{}),
	}
	go p.supervise()
	return p
}

// Status tells how the child is doing.
func (p *Process) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// WaitReady returns once the child serves its socket, or with an error
// saying why not when ctx ends first or the supervisor is stopped.
func (p *Process) WaitReady(ctx context.Context) error {
	p.mu.Lock()
	ready := p.ready
	p.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-p.done:
		return fmt.Errorf("%s was stopped: %w", p.cfg.Name, errdefs.ErrUnavailable)
	case <-ctx.Done():
		st := p.Status()
		if st.LastError != nil {
			return fmt.Errorf("%s is not serving %s (%s): %v: %w", p.cfg.Name, p.cfg.Socket, st.State, st.LastError, errdefs.ErrUnavailable)
		}
		return fmt.Errorf("%s is not serving %s yet (%s): %w", p.cfg.Name, p.cfg.Socket, st.State, errdefs.ErrUnavailable)
	}
}

// WaitFirstStart returns once the first start has served its socket (nil)
// or failed (why); the supervisor goes on restarting a child that failed.
// It returns early when ctx ends.
func (p *Process) WaitFirstStart(ctx context.Context) error {
	select {
	case <-p.first:
		return p.firstErr
	case <-ctx.Done():
		return fmt.Errorf("%s is not serving %s yet: %w", p.cfg.Name, p.cfg.Socket, errdefs.ErrUnavailable)
	}
}

// firstDone records the outcome of the first start.
func (p *Process) firstDone(err error) {
	p.firstOnce.Do(func() {
		p.firstErr = err
		close(p.first)
	})
}

// Stop stops supervising and terminates the child: SIGTERM, then SIGKILL
// after the stop timeout. It returns when the child has been reaped, and
// is safe to call more than once.
func (p *Process) Stop() {
	p.once.Do(func() { close(p.stop) })
	<-p.done
}

func (p *Process) setStatus(fn func(*Status)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fn(&p.status)
}

// supervise starts the child until Stop, waiting between failed runs.
func (p *Process) supervise() {
	defer close(p.done)
	defer p.setStatus(func(s *Status) { s.State, s.Pid = StateStopped, 0 })
	defer p.firstDone(fmt.Errorf("%s was stopped: %w", p.cfg.Name, errdefs.ErrUnavailable))
	backoff := p.cfg.MinBackoff
	for {
		started := time.Now()
		err := p.runOnce()
		if err == nil { // stopped
			return
		}
		p.firstDone(fmt.Errorf("%s: %w", p.cfg.Name, err))
		// A child that served for a while before dying is not failing in a
		// loop: restart it soon.
		if time.Since(started) > stableAfter {
			backoff = p.cfg.MinBackoff
		}
		next := time.Now().Add(backoff)
		p.setStatus(func(s *Status) {
			s.State, s.Pid, s.LastError, s.NextStart = StateRestarting, 0, err, next
		})
		p.log.Warn("child process failed: restarting it", "error", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-p.stop:
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, p.cfg.MaxBackoff)
		p.setStatus(func(s *Status) { s.State, s.Restarts, s.NextStart = StateStarting, s.Restarts+1, time.Time{} })
	}
}

// runOnce runs one child until it dies (returning why) or Stop (returning
// nil once the child is gone).
func (p *Process) runOnce() error {
	select {
	case <-p.stop:
		return nil
	default:
	}
	if err := p.clearSocket(); err != nil {
		return err
	}
	cmd := exec.Command(p.cfg.Path, p.cfg.Args...)
	cmd.Stdout, cmd.Stderr = p.cfg.Stdout, p.cfg.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group: a ^C on berthd's terminal reaches berthd
		// only, which then stops its children in order.
		Setpgid: true,
		// If berthd dies without stopping it, the child goes too, rather
		// than holding its socket against the next berthd's child.
		Pdeathsig: syscall.SIGTERM,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", p.cfg.Path, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	pid := cmd.Process.Pid
	p.setStatus(func(s *Status) { s.State, s.Pid = StateStarting, pid })
	p.log.Debug("child process started", "pid", pid, "path", p.cfg.Path, "args", p.cfg.Args)

	// Wait for the socket.
	deadline := time.NewTimer(p.cfg.ReadyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !p.answers() {
		select {
		case err := <-exited:
			return fmt.Errorf("exited before serving %s: %s", p.cfg.Socket, exitReason(err))
		case <-p.stop:
			p.terminate(cmd, exited)
			return nil
		case <-deadline.C:
			p.terminate(cmd, exited)
			return fmt.Errorf("did not serve %s within %s, so it was stopped", p.cfg.Socket, p.cfg.ReadyTimeout)
		case <-tick.C:
		}
	}

	if p.cfg.OnReady != nil {
		p.cfg.OnReady()
	}
	p.mu.Lock()
	p.status.State = StateRunning
	close(p.ready)
	p.mu.Unlock()
	p.firstDone(nil)
	p.log.Info("child process serving", "pid", pid, "socket", p.cfg.Socket)
	defer func() {
		p.mu.Lock()
		p.ready = make(chan struct{})
		p.mu.Unlock()
	}()

	select {
	case err := <-exited:
		return fmt.Errorf("exited while serving: %s", exitReason(err))
	case <-p.stop:
		p.terminate(cmd, exited)
		return nil
	}
}

// clearSocket removes a socket file that nobody serves (one left by a
// child that was killed), and refuses to start a child onto a socket that
// another process serves: that process would be mistaken for the child.
func (p *Process) clearSocket() error {
	fi, err := os.Lstat(p.cfg.Socket)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking socket %s: %w", p.cfg.Socket, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket: remove it: %w", p.cfg.Socket, errdefs.ErrFailedPrecondition)
	}
	if p.answers() {
		return fmt.Errorf("another process serves %s: stop it, berthd starts its own: %w", p.cfg.Socket, errdefs.ErrUnavailable)
	}
	if err := os.Remove(p.cfg.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale socket %s: %w", p.cfg.Socket, err)
	}
	return nil
}

// answers reports whether the socket accepts a connection.
func (p *Process) answers() bool {
	conn, err := net.DialTimeout("unix", p.cfg.Socket, time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// terminate sends SIGTERM to the child it was given, then SIGKILL after
// the stop timeout, and waits until it is reaped. exited delivers the
// result of cmd.Wait, so that the child is never signalled once reaped
// (its pid may belong to someone else by then).
func (p *Process) terminate(cmd *exec.Cmd, exited <-chan error) {
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			<-exited
			return
		}
		p.log.Warn("sending SIGTERM to child process", "pid", cmd.Process.Pid, "error", err)
	}
	t := time.NewTimer(p.cfg.StopTimeout)
	defer t.Stop()
	select {
	case err := <-exited:
		p.log.Debug("child process stopped", "pid", cmd.Process.Pid, "status", exitReason(err))
		return
	case <-t.C:
	}
	p.log.Warn("child process ignored SIGTERM: killing it", "pid", cmd.Process.Pid, "timeout", p.cfg.StopTimeout)
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.log.Warn("sending SIGKILL to child process", "pid", cmd.Process.Pid, "error", err)
	}
	<-exited
}

// exitReason says how a child ended, from cmd.Wait's error.
func exitReason(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
