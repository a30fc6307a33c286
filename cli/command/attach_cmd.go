package command

import (
	"context"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/containerd/fifo"
	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/internal/errdefs"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
)

func newAttachCommand(c *CLI) *cobra.Command {
	var (
		noStdin    bool
		detachKeys string
		sigProxy   bool
	)
	cmd := &cobra.Command{
		Use:   "attach [OPTIONS] CONTAINER",
		Short: "Attach local standard input, output, and error streams to a running container",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := parseDetachKeys(detachKeys)
			if err != nil {
				return err
			}
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return err
			}
			ctr, err := resolveContainer(ctx, cl, args[0])
			if err != nil {
				return err
			}
			return c.attach(ctx, cl, ctr, !noStdin, keys, sigProxy)
		},
	}
	cmd.Flags().BoolVar(&noStdin, "no-stdin", false, "Do not attach STDIN")
	cmd.Flags().StringVar(&detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	cmd.Flags().BoolVar(&sigProxy, "sig-proxy", true, "Proxy all received signals to the process")
	return cmd
}

// attach connects berth's streams to the fifos of a running container's
// task, which a `run` or `start -a` that was detached from left in the
// container's folder, and ends with the container's exit status. A detach
// ends it with status 1 and "read escape sequence", as Docker's attach.
func (c *CLI) attach(ctx context.Context, cl *client.Client, ctr containers.Container, stdin bool, keys []byte, sigProxy bool) error {
	p, err := taskOf(ctx, cl, ctr.ID)
	if err != nil {
		return err
	}
	switch {
	case !isRunning(p):
		return errdefs.Errorf(errdefs.ErrFailedPrecondition, "You cannot attach to a stopped container, start it first")
	case p.GetStatus() == tasksv1.Status_STATUS_PAUSED:
		return errdefs.Errorf(errdefs.ErrFailedPrecondition, "You cannot attach to a paused container, unpause it first")
	case p.GetStdout() == "" && p.GetStdin() == "":
		return errdefs.Errorf(errdefs.ErrFailedPrecondition,
			"container %s was started detached, without fifos to attach to: follow its output with 'berth logs -f %s' or enter it with 'berth exec -it %s sh'", ctr.Name, ctr.Name, ctr.Name)
	}
	o := attachOptions{
		stdin:  stdin && p.GetStdin() != "",
		stdout: p.GetStdout() != "", stderr: p.GetStderr() != "",
		tty: p.GetTerminal(), detachKeys: keys, sigProxy: sigProxy && !p.GetTerminal(),
	}
	if err := c.checkTTY(o); err != nil {
		return err
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cio, err := c.openClientIO(fctx, o, taskIO{stdin: p.GetStdin(), stdout: p.GetStdout(), stderr: p.GetStderr(), terminal: p.GetTerminal()})
	if err != nil {
		return err
	}
	defer cio.close()
	ctx = context.WithoutCancel(ctx)
	if o.sigProxy {
		started := make(chan struct{})
		close(started)
		stopProxy := proxySignals(ctx, cl, ctr.ID, "", started)
		defer stopProxy()
	}
	if err := cio.setRaw(); err != nil {
		return err
	}
	if o.tty {
		// A size change makes the shell draw its prompt again, as
		// Docker's attach does; watchSize then sets the real size.
		if w, h, ok := c.terminalSize(); ok {
			cl.Tasks.ResizePty(ctx, &tasksv1.ResizePtyRequest{ContainerId: ctr.ID, Width: uint32(w + 1), Height: uint32(h + 1)})
		}
	}
	cio.start(ctx, cl, ctr.ID, "")
	wr, detached, err := cio.wait(ctx, cl, ctr.ID, "")
	if detached {
		if sig := cio.interrupted; sig != 0 {
			return &statusError{code: 128 + int(sig)}
		}
		cio.restore()
		fmt.Fprintln(c.Err, "read escape sequence")
		return &statusError{code: ExitFailure}
	}
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("waiting for container %s: %w", ctr.Name, err)
	}
	cio.waitOutput(5 * time.Second)
	if code := wr.GetExitStatus(); code != 0 {
		return &statusError{code: int(code)}
	}
	return nil
}

// openClientIO opens the fifos of a running process, made by the client
// that started it, and starts copying their output. Output the fifos hold
// from while nobody was attached is dropped: an attach shows what comes
// next, as Docker's. The fifos stay.
func (c *CLI) openClientIO(ctx context.Context, o attachOptions, tio taskIO) (_ *clientIO, retErr error) {
	cio := &clientIO{c: c, o: o, tio: tio, detached: make(chan struct{}), restore: func() {}, stopWinch: func() {}, stopInterrupt: func() {}}
	defer func() {
		if retErr != nil {
			cio.close()
		}
	}()
	cio.watchInterrupt()
	for _, s := range []struct {
		path string
		on   bool
		w    io.Writer
	}{{tio.stdout, o.stdout, c.Out}, {tio.stderr, o.stderr && !o.tty, c.Err}} {
		if !s.on || s.path == "" {
			continue
		}
		// The shim holds the fifo open for writing: this open does not wait.
		f, err := os.OpenFile(s.path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("opening the output of the container: %w", err)
		}
		cio.outs = append(cio.outs, f)
		drain(f)
		cio.copies.Add(1)
		go func(r io.Reader, w io.Writer) {
			defer cio.copies.Done()
			io.Copy(w, r)
		}(f, s.w)
	}
	if o.stdin {
		f, err := fifo.OpenFifo(ctx, tio.stdin, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("opening the input of the container: %w", err)
		}
		cio.in = f
	}
	return cio, nil
}

// drain discards what f holds now.
func drain(f *os.File) {
	buf := make([]byte, 64*1024)
	for {
		f.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		n, err := f.Read(buf)
		if n == 0 || err != nil {
			break
		}
	}
	f.SetReadDeadline(time.Time{})
}
