// Package reaper reaps every child of the shim and hands exit statuses to
// whoever waits for them. The shim is the subreaper of its container, so
// orphaned container processes become its children; one loop calls wait4(-1)
// for all of them, and commands the shim runs (runc) are started through the
// Reaper so that their exit is not lost to that loop.
package reaper

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Exit is one reaped child.
type Exit struct {
	Pid       int
	Status    int
	Timestamp time.Time
}

// Reaper reaps children on SIGCHLD and fans exits out to subscribers.
type Reaper struct {
	mu   sync.Mutex
	subs map[chan Exit]struct{}
}

// New returns a Reaper; call Run to start reaping.
func New() *Reaper {
	return &Reaper{subs: make(map[chan Exit]struct{})}
}

// SetSubreaper makes the calling process the subreaper of its descendants,
// so that orphaned container processes are reparented to it.
func SetSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("becoming the subreaper of the container (prctl PR_SET_CHILD_SUBREAPER): %w", err)
	}
	return nil
}

// Run reaps children whenever SIGCHLD arrives until stop is closed.
func (r *Reaper) Run(stop <-chan struct{}) {
	sigc := make(chan os.Signal, 32)
	signal.Notify(sigc, unix.SIGCHLD)
	defer signal.Stop(sigc)
	r.reap() // children that exited before Notify
	for {
		select {
		case <-stop:
			return
		case <-sigc:
			r.reap()
		}
	}
}

// reap collects every child that has exited.
func (r *Reaper) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		r.publish(Exit{Pid: pid, Status: exitStatus(ws), Timestamp: time.Now()})
	}
}

// exitStatus maps a wait status to a shell-style exit code: 128+signal for a
// process killed by a signal.
func exitStatus(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func (r *Reaper) publish(e Exit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.subs {
		// A subscriber must not hold up reaping for long; one that does
		// loses the exit rather than stalling every other process.
		select {
		case c <- e:
		case <-time.After(time.Second):
		}
	}
}

// Subscribe returns a channel that receives every exit from now on.
// Unsubscribe it when done.
func (r *Reaper) Subscribe() chan Exit {
	c := make(chan Exit, 128)
	r.mu.Lock()
	r.subs[c] = struct{}{}
	r.mu.Unlock()
	return c
}

// Unsubscribe stops deliveries to c.
func (r *Reaper) Unsubscribe(c chan Exit) {
	r.mu.Lock()
	delete(r.subs, c)
	r.mu.Unlock()
}

// Start starts cmd with a subscription open, so that its exit is seen even
// if the reaping loop collects it first. Pass the returned channel to Wait.
// cmd's stdio must be *os.File or nil: the reaper takes the child's status,
// so exec.Cmd.Wait, which would copy other readers and writers, is never called.
func (r *Reaper) Start(cmd *exec.Cmd) (chan Exit, error) {
	c := r.Subscribe()
	if err := cmd.Start(); err != nil {
		r.Unsubscribe(c)
		return nil, err
	}
	return c, nil
}

// Wait waits for cmd (started by Start) to exit and returns its status.
func (r *Reaper) Wait(cmd *exec.Cmd, c chan Exit) int {
	defer r.Unsubscribe(c)
	pid := cmd.Process.Pid
	for e := range c {
		if e.Pid == pid {
			cmd.Process.Release()
			return e.Status
		}
	}
	return -1
}
