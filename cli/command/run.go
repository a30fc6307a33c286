package command

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/internal/errdefs"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
	"github.com/berth-engine/berth/services/removal"
)

// Exit statuses of `run` and `start -a` when the container did not run,
// as Docker's.
const (
	// ExitCannotRun: the command was found but cannot be run.
	ExitCannotRun = 126
	// ExitNotFound: the command was not found.
	ExitNotFound = 127
)

// statusError ends the command with a given exit status; an empty
// message prints nothing (the container's own exit status).
type statusError struct {
	code int
	err  error
}

func (e *statusError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}
func (e *statusError) Unwrap() error { return e.err }

func newRunCommand(c *CLI) *cobra.Command {
	var (
		o          createOptions
		detach     bool
		detachKeys string
		sigProxy   bool
	)
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create and run a new container from an image",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.entrypointSet = cmd.Flags().Changed("entrypoint")
			var ao attachOptions
			if detach {
				if len(o.attach) > 0 {
					return failed(errdefs.Errorf(errdefs.ErrInvalidArgument, "Conflicting options: -a and -d"))
				}
			} else {
				var err error
				if ao, err = o.attachOptions(detachKeys, sigProxy); err != nil {
					return failed(err)
				}
				if err := c.checkTTY(ao); err != nil {
					return err
				}
			}
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return failed(err)
			}
			ctr, err := c.createContainer(ctx, cl, o, args[0], args[1:])
			if err != nil {
				return failed(err)
			}
			if detach {
				tio, err := detachedIO(ctx, cl, ctr)
				if err == nil {
					err = startTask(ctx, cl, ctr, tio)
				}
				if err != nil {
					if o.autoRemove {
						removeContainer(context.WithoutCancel(ctx), cl, ctr)
					}
					return failed(err)
				}
				fmt.Fprintln(c.Out, ctr.ID)
				return nil
			}
			return c.runAttached(ctx, cl, ctr, ao)
		},
	}
	cmd.Flags().BoolP("help", "", false, "help for run")
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "Run container in background and print container ID")
	cmd.Flags().StringVar(&detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	cmd.Flags().BoolVar(&sigProxy, "sig-proxy", true, "Proxy received signals to the process")
	o.addFlags(cmd.Flags())
	return cmd
}

func newStartCommand(c *CLI) *cobra.Command {
	var (
		attach, interactive bool
		detachKeys          string
	)
	cmd := &cobra.Command{
		Use:   "start [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Start one or more stopped containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// -i attaches too, as in Docker.
			attach = attach || interactive
			if attach && len(args) > 1 {
				return &usageError{cmd: cmd, code: ExitFailure, err: errors.New("you cannot start and attach multiple containers at once")}
			}
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return err
			}
			if attach {
				ctr, err := resolveContainer(ctx, cl, args[0])
				if err != nil {
					return err
				}
				ao, err := startAttachOptions(ctr, interactive, detachKeys)
				if err != nil {
					return failed(err)
				}
				if err := c.checkTTY(ao); err != nil {
					return err
				}
				return c.runAttached(ctx, cl, ctr, ao)
			}
			var errs []error
			for _, arg := range args {
				ctr, err := resolveContainer(ctx, cl, arg)
				var tio *taskIO
				if err == nil {
					tio, err = detachedIO(ctx, cl, ctr)
				}
				if err == nil {
					err = startTask(ctx, cl, ctr, tio)
				}
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(c.Out, arg)
			}
			if len(errs) > 0 {
				errs = append(errs, errors.New("failed to start containers: "+strings.Join(args, ", ")))
			}
			return joinErrs(errs)
		},
	}
	cmd.Flags().BoolVarP(&attach, "attach", "a", false, "Attach STDOUT/STDERR and forward signals")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "Attach container's STDIN")
	cmd.Flags().StringVar(&detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	return cmd
}

// failed marks an error of berth itself (not of the container) with
// Docker's status 125.
func failed(err error) error {
	var se *statusError
	if errors.As(err, &se) {
		return err
	}
	return &statusError{code: ExitUsage, err: err}
}

// taskIO are the fifos of a task's stdio; empty means none.
type taskIO struct {
	dir                   string
	stdin, stdout, stderr string
	terminal              bool
}

// startTask creates and starts the container's task. A running task is
// left alone; a stopped one is deleted first. With io nil, the output only
// goes to the log.
func startTask(ctx context.Context, cl *client.Client, ctr containers.Container, io *taskIO) error {
	p, err := taskOf(ctx, cl, ctr.ID)
	if err != nil {
		return failed(err)
	}
	if isRunning(p) {
		return nil
	}
	if p != nil {
		// berthd's supervisor records the exit and deletes the task; wait
		// for it so that the exit is not lost.
		if ctr, _, err = waitRecorded(ctx, cl, ctr.ID); err != nil {
			return failed(err)
		}
		if err := removal.DeleteTask(ctx, cl.Tasks, ctr.ID); err != nil {
			return failed(fmt.Errorf("starting container %s: %w", ctr.Name, err))
		}
	}
	// A start by hand lifts a stop by hand for the restart policy.
	if err := setManuallyStopped(ctx, cl, ctr, false); err != nil {
		return failed(err)
	}
	req := &tasksv1.CreateTaskRequest{ContainerId: ctr.ID}
	// The spec says whether the process has a terminal (-t); the shim
	// must then take the terminal runc makes.
	if s, err := specOf(ctr); err == nil && s.Process != nil {
		req.Terminal = s.Process.Terminal
	}
	if io != nil {
		req.Stdin, req.Stdout, req.Stderr = io.stdin, io.stdout, io.stderr
	}
	if _, err := cl.Tasks.Create(ctx, req); err != nil {
		return runError(ctr, err)
	}
	if _, err := cl.Tasks.Start(ctx, &tasksv1.StartRequest{ContainerId: ctr.ID}); err != nil {
		cl.Tasks.Delete(context.WithoutCancel(ctx), &tasksv1.DeleteTaskRequest{ContainerId: ctr.ID})
		return runError(ctr, err)
	}
	return nil
}

// runError gives a task that cannot be created or started Docker's exit
// status: 127 for a command not found, 126 for one that cannot run, else
// 125.
func runError(ctr containers.Container, err error) error {
	msg := err.Error()
	err = fmt.Errorf("starting container %s: %w", ctr.Name, err)
	switch {
	case strings.Contains(msg, "executable file not found"),
		strings.Contains(msg, "no such file or directory") && strings.Contains(msg, "exec"):
		return &statusError{code: ExitNotFound, err: err}
	case strings.Contains(msg, "permission denied"), strings.Contains(msg, "is a directory"),
		strings.Contains(msg, "exec format error"):
		return &statusError{code: ExitCannotRun, err: err}
	}
	return &statusError{code: ExitUsage, err: err}
}

// runAttached starts the container with the streams o names connected to
// berth's, waits for it, and ends with its exit status. With --rm,
// berthd's supervisor removes the container once it exited; this waits
// for that (and removes it if the supervisor could not). When the user
// detaches (the detach keys on a terminal), berth returns at once with
// status 0 and the container goes on, its output going to the log; berthd
// removes it when it exits if it was run with --rm.
func (c *CLI) runAttached(ctx context.Context, cl *client.Client, ctr containers.Container, o attachOptions) (retErr error) {
	autoRemove := containers.IntentOf(ctr).AutoRemove
	started, detached := false, false
	defer func() {
		if !autoRemove || detached {
			return
		}
		ctx := context.WithoutCancel(ctx)
		fresh, ok := ctr, true
		if started {
			// berthd removes it once it exited.
			var err error
			if fresh, ok, err = waitRecorded(ctx, cl, ctr.ID); err != nil {
				return
			}
		}
		if ok {
			if err := removeContainer(ctx, cl, fresh); err != nil && retErr == nil {
				retErr = failed(err)
			}
		}
	}()
	if p, err := taskOf(ctx, cl, ctr.ID); err != nil {
		return failed(err)
	} else if isRunning(p) {
		return failed(errdefs.Errorf(errdefs.ErrFailedPrecondition, "container %s is already running: use 'berth logs -f %s' to follow it", ctr.Name, ctr.Name))
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The fifos are in the container's folder, so that `berth attach` finds
	// them after a detach; rm removes them with it.
	dir, err := containerDir(ctx, cl, ctr.ID)
	if err != nil {
		return failed(err)
	}
	cio, err := c.newClientIO(fctx, o, filepath.Join(dir, "attach"))
	if err != nil {
		return failed(err)
	}
	defer cio.close()
	// Signals to berth go to the container, as Docker's --sig-proxy; berth
	// ends when the container does, not when it is interrupted. Signals
	// that come while the task starts are queued and sent once it runs.
	ctx = context.WithoutCancel(ctx)
	startedCh := make(chan struct{})
	if o.sigProxy && !o.tty {
		stopProxy := proxySignals(ctx, cl, ctr.ID, "", startedCh)
		defer stopProxy()
	}
	if err := cio.setRaw(); err != nil {
		return failed(err)
	}
	if err := startTask(ctx, cl, ctr, cio.taskIO()); err != nil {
		return err
	}
	started = true
	close(startedCh)
	cio.start(ctx, cl, ctr.ID, "")
	wr, detached, err := cio.wait(ctx, cl, ctr.ID, "")
	if detached {
		// Without --sig-proxy, a signal ends berth, not the container.
		if sig := cio.interrupted; sig != 0 {
			return &statusError{code: 128 + int(sig)}
		}
		return nil
	}
	if err != nil && !errdefs.IsNotFound(err) {
		return failed(fmt.Errorf("waiting for container %s: %w", ctr.Name, err))
	}
	// The shim closes the fifos once the output is copied; do not wait for
	// ever if it does not.
	cio.waitOutput(5 * time.Second)
	cio.restore()
	code := wr.GetExitStatus()
	if wr == nil {
		// Deleted before this waited: the supervisor recorded the exit.
		fresh, ok, err := waitRecorded(ctx, cl, ctr.ID)
		if err != nil {
			return failed(err)
		}
		if ok {
			code = containers.StateOf(fresh).ExitCode
		}
	} else if !autoRemove {
		// So that what follows sees the container exited.
		waitRecorded(ctx, cl, ctr.ID)
	}
	if code != 0 {
		return &statusError{code: int(code)}
	}
	return nil
}

// proxySignals forwards the signals a user sends berth to the container's
// process execID ("" for its init process), from when started is closed
// until the returned function is called.
func proxySignals(ctx context.Context, cl *client.Client, id, execID string, started <-chan struct{}) func() {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
			return
		case <-started:
		}
		for {
			select {
			case <-done:
				return
			case sig := <-sigs:
				s, ok := sig.(syscall.Signal)
				if !ok {
					continue
				}
				cl.Tasks.Kill(context.WithoutCancel(ctx), &tasksv1.KillRequest{ContainerId: id, ExecId: execID, Signal: uint32(s)})
			}
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
	}
}
