package command

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/internal/errdefs"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
)

// eachContainer runs fn on the container each argument names, printing the
// argument on success, as Docker's stop, kill and rm do.
func (c *CLI) eachContainer(ctx context.Context, cl *client.Client, args []string, fn func(containers.Container) error) error {
	var errs []error
	for _, arg := range args {
		ctr, err := resolveContainer(ctx, cl, arg)
		if err == nil {
			err = fn(ctr)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintln(c.Out, arg)
	}
	return joinErrs(errs)
}

// parseSignal reads a signal as a name ("TERM", "SIGTERM") or a number.
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid signal: %s", s)
}

// stopContainer signals the container with SIGTERM, waits up to timeout,
// then kills it, and waits until berthd's supervisor recorded its exit.
// The stop is recorded first, so that the restart policy leaves it.
func stopContainer(ctx context.Context, cl *client.Client, ctr containers.Container, timeout time.Duration) error {
	if err := setManuallyStopped(ctx, cl, ctr, true); err != nil {
		return err
	}
	p, err := taskOf(ctx, cl, ctr.ID)
	if err != nil {
		return err
	}
	if isRunning(p) {
		stopSignal := syscall.SIGTERM
		if s, err := specOf(ctr); err == nil && s.Annotations != nil {
			if v := s.Annotations["org.opencontainers.image.stopSignal"]; v != "" {
				if sig, err := parseSignal(v); err == nil {
					stopSignal = sig
				}
			}
		}
		if err := killAndWait(ctx, cl, ctr, stopSignal, timeout); err != nil {
			return err
		}
	}
	if p != nil {
		_, _, err = waitRecorded(ctx, cl, ctr.ID)
	}
	return err
}

// resumeIfPaused thaws a paused container, as Docker does before it waits
// for a stop: a frozen process holds the signal pending until it thaws.
func resumeIfPaused(ctx context.Context, cl *client.Client, ctr containers.Container) error {
	p, err := taskOf(ctx, cl, ctr.ID)
	if err != nil || p.GetStatus() != tasksv1.Status_STATUS_PAUSED {
		return err
	}
	if _, err := cl.Tasks.Resume(ctx, &tasksv1.ResumeTaskRequest{ContainerId: ctr.ID}); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
		return fmt.Errorf("unpausing container %s so that it gets the stop signal: %w", ctr.Name, err)
	}
	return nil
}

// killAndWait sends sig and waits up to timeout for the exit; then it
// sends SIGKILL and waits for good.
func killAndWait(ctx context.Context, cl *client.Client, ctr containers.Container, sig syscall.Signal, timeout time.Duration) error {
	if _, err := cl.Tasks.Kill(ctx, &tasksv1.KillRequest{ContainerId: ctr.ID, Signal: uint32(sig), All: sig == syscall.SIGKILL}); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
		return fmt.Errorf("stopping container %s: %w", ctr.Name, err)
	}
	if err := resumeIfPaused(ctx, cl, ctr); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	_, err := cl.Tasks.Wait(wctx, &tasksv1.WaitRequest{ContainerId: ctr.ID})
	cancel()
	if err == nil || errdefs.IsNotFound(err) {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if _, err := cl.Tasks.Kill(ctx, &tasksv1.KillRequest{ContainerId: ctr.ID, Signal: uint32(syscall.SIGKILL), All: true}); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
		return fmt.Errorf("killing container %s: %w", ctr.Name, err)
	}
	if _, err := cl.Tasks.Wait(ctx, &tasksv1.WaitRequest{ContainerId: ctr.ID}); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("waiting for container %s: %w", ctr.Name, err)
	}
	return nil
}

func newStopCommand(c *CLI) *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "stop [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Stop one or more running containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return err
			}
			return c.eachContainer(ctx, cl, args, func(ctr containers.Container) error {
				if err := stopContainer(ctx, cl, ctr, time.Duration(timeout)*time.Second); err != nil {
					return err
				}
				// A container run with -d --rm goes once stopped: berthd's
				// supervisor removes it; make sure it went.
				if containers.IntentOf(ctr).AutoRemove {
					if fresh, ok, err := waitRecorded(ctx, cl, ctr.ID); err == nil && ok {
						return removeContainer(ctx, cl, fresh)
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "timeout", "t", 10, "Seconds to wait before killing the container")
	return cmd
}

func newKillCommand(c *CLI) *cobra.Command {
	var signal string
	cmd := &cobra.Command{
		Use:   "kill [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Kill one or more running containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sig, err := parseSignal(signal)
			if err != nil {
				return err
			}
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return err
			}
			return c.eachContainer(ctx, cl, args, func(ctr containers.Container) error {
				p, err := taskOf(ctx, cl, ctr.ID)
				if err != nil {
					return err
				}
				if !isRunning(p) {
					return errdefs.Errorf(errdefs.ErrFailedPrecondition, "cannot kill container: %s: container %s is not running", ctr.Name, ctr.ID)
				}
				if err := setManuallyStopped(ctx, cl, ctr, true); err != nil {
					return err
				}
				if _, err := cl.Tasks.Kill(ctx, &tasksv1.KillRequest{ContainerId: ctr.ID, Signal: uint32(sig), All: sig == syscall.SIGKILL}); err != nil {
					return fmt.Errorf("cannot kill container: %s: %w", ctr.Name, err)
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&signal, "signal", "s", "KILL", "Signal to send to the container")
	return cmd
}

func newWaitCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "wait CONTAINER [CONTAINER...]",
		Short: "Block until one or more containers stop, then print their exit codes",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return err
			}
			var errs []error
			for _, arg := range args {
				ctr, err := resolveContainer(ctx, cl, arg)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				code := containers.StateOf(ctr).ExitCode
				wr, err := cl.Tasks.Wait(ctx, &tasksv1.WaitRequest{ContainerId: ctr.ID})
				switch {
				case err == nil:
					code = wr.GetExitStatus()
				case errdefs.IsNotFound(err):
					if fresh, ok, werr := waitRecorded(ctx, cl, ctr.ID); werr == nil && ok {
						code = containers.StateOf(fresh).ExitCode
					}
				default:
					errs = append(errs, fmt.Errorf("waiting for container %s: %w", arg, err))
					continue
				}
				fmt.Fprintln(c.Out, code)
			}
			return joinErrs(errs)
		},
	}
}

func newRmCommand(c *CLI) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [OPTIONS] CONTAINER [CONTAINER...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more containers",
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return err
			}
			return c.eachContainer(ctx, cl, args, func(ctr containers.Container) error {
				p, err := taskOf(ctx, cl, ctr.ID)
				if err != nil {
					return err
				}
				if isRunning(p) {
					if !force {
						return errdefs.Errorf(errdefs.ErrFailedPrecondition,
							"cannot remove container \"/%s\": container is running: stop the container before removing or force remove", ctr.Name)
					}
					// So that the restart policy does not start it again.
					if err := setManuallyStopped(ctx, cl, ctr, true); err != nil {
						return err
					}
					if err := killAndWait(ctx, cl, ctr, syscall.SIGKILL, 10*time.Second); err != nil {
						return err
					}
				}
				return removeContainer(ctx, cl, ctr)
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force the removal of a running container (uses SIGKILL)")
	return cmd
}
