package command

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/internal/errdefs"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
	"github.com/berth-engine/berth/services/tasks/ocispec"
)

// execOptions are the flags of `berth exec`.
type execOptions struct {
	detach   bool
	user     string
	workdir  string
	env      []string
	envFiles []string

	interactive bool
	tty         bool
	detachKeys  string
	// consoleSize is berth's terminal's, the exec's terminal's first size.
	consoleSize *specs.Box
}

func newExecCommand(c *CLI) *cobra.Command {
	var o execOptions
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Execute a command in a running container",
		Args:  minArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cl, err := c.Client(cmd.Context())
			if err != nil {
				return err
			}
			return c.runExec(ctx, cl, o, args[0], args[1:])
		},
	}
	flags := cmd.Flags()
	flags.SetInterspersed(false) // flags after the container belong to the command
	flags.BoolVarP(&o.detach, "detach", "d", false, "Detached mode: run command in the background")
	flags.StringVarP(&o.user, "user", "u", "", "Username or UID (format: \"<name|uid>[:<group|gid>]\")")
	flags.StringVarP(&o.workdir, "workdir", "w", "", "Working directory inside the container")
	flags.StringArrayVarP(&o.env, "env", "e", nil, "Set environment variables")
	flags.StringArrayVar(&o.envFiles, "env-file", nil, "Read in a file of environment variables")
	flags.BoolVarP(&o.interactive, "interactive", "i", false, "Keep STDIN open even if not attached")
	flags.BoolVarP(&o.tty, "tty", "t", false, "Allocate a pseudo-TTY")
	flags.StringVar(&o.detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	return cmd
}

// newExecID returns a random id for an exec process.
func newExecID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// daemonError prints msg as Docker prints an error of its daemon and ends
// the command with status 1.
func (c *CLI) daemonError(format string, a ...any) error {
	fmt.Fprintf(c.Err, "Error response from daemon: "+format+"\n", a...)
	return &statusError{code: ExitFailure}
}

func (c *CLI) runExec(ctx context.Context, cl *client.Client, o execOptions, arg string, cmdArgs []string) error {
	var ao attachOptions
	if !o.detach {
		keys, err := parseDetachKeys(o.detachKeys)
		if err != nil {
			return err
		}
		ao = attachOptions{stdin: o.interactive, stdout: true, stderr: true, tty: o.tty, detachKeys: keys, sigProxy: !o.tty}
		if err := c.checkTTY(ao); err != nil {
			return err
		}
	}
	if o.tty {
		if w, h, ok := c.terminalSize(); ok {
			o.consoleSize = &specs.Box{Width: uint(w), Height: uint(h)}
		}
	}
	ctr, err := resolveContainer(ctx, cl, arg)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return c.daemonError("%v", err)
		}
		return err
	}
	p, err := taskOf(ctx, cl, ctr.ID)
	if err != nil {
		return err
	}
	if !isRunning(p) {
		return c.daemonError("container %s is not running", ctr.ID)
	}
	if p.GetStatus() == tasksv1.Status_STATUS_PAUSED {
		return c.daemonError("Container %s is paused, unpause the container before exec", ctr.ID)
	}
	spec, err := execProcessSpec(ctr, p.GetPid(), o, cmdArgs)
	if err != nil {
		return err
	}
	execID, err := newExecID()
	if err != nil {
		return err
	}
	req := &tasksv1.ExecProcessRequest{ContainerId: ctr.ID, ExecId: execID, Spec: spec, Terminal: o.tty}
	if o.detach {
		if _, err := cl.Tasks.Exec(ctx, req); err != nil {
			return execError(ctr, err)
		}
		if _, err := cl.Tasks.Start(ctx, &tasksv1.StartRequest{ContainerId: ctr.ID, ExecId: execID}); err != nil {
			cl.Tasks.DeleteProcess(context.WithoutCancel(ctx), &tasksv1.DeleteProcessRequest{ContainerId: ctr.ID, ExecId: execID})
			return execError(ctr, err)
		}
		return nil
	}
	return c.execAttached(ctx, cl, ctr, req, ao)
}

// execProcessSpec is the container's process with the exec's command,
// environment, user and working directory.
func execProcessSpec(ctr containers.Container, initPid uint32, o execOptions, cmdArgs []string) ([]byte, error) {
	s, err := specOf(ctr)
	if err != nil {
		return nil, err
	}
	if s.Process == nil {
		return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "container %s has no process in its OCI spec", ctr.Name)
	}
	proc := *s.Process
	proc.Args = cmdArgs
	proc.Terminal = o.tty
	proc.ConsoleSize = o.consoleSize
	var env []string
	for _, name := range o.envFiles {
		f, err := os.Open(name)
		if err != nil {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "reading env file: %v", err)
		}
		lines, err := ocispec.ParseEnvFile(name, f)
		f.Close()
		if err != nil {
			return nil, err
		}
		env = append(env, lines...)
	}
	env, err = ocispec.ResolveEnv(append(env, o.env...), os.LookupEnv)
	if err != nil {
		return nil, err
	}
	if o.user != "" {
		// The running container's root is reachable through its init
		// process; berth runs on berthd's machine.
		u, err := ocispec.ResolveUser(filepath.Join("/proc", strconv.FormatUint(uint64(initPid), 10), "root"), o.user, nil)
		if err != nil {
			return nil, err
		}
		proc.User = u.User
		env = append([]string{"HOME=" + u.Home}, env...)
	}
	proc.Env = ocispec.MergeEnv(proc.Env, env)
	// A terminal gets TERM=xterm unless the process has a TERM, as Docker.
	if o.tty && !hasEnv(proc.Env, "TERM") {
		proc.Env = append(proc.Env, "TERM=xterm")
	}
	if o.workdir != "" {
		if !filepath.IsAbs(o.workdir) {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "the working directory '%s' is invalid, it needs to be an absolute path", o.workdir)
		}
		proc.Cwd = o.workdir
	}
	return json.Marshal(proc)
}

// execError gives an exec that cannot start Docker's exit status: 127 for
// a command not found, else 126, as Docker's exec does. runc's own words
// are kept, without the command line that ran it.
func execError(ctr containers.Container, err error) error {
	se := runError(ctr, err).(*statusError)
	if se.code == ExitUsage {
		se.code = ExitCannotRun
	}
	msg := err.Error()
	if i := strings.Index(msg, "exec failed: "); i >= 0 {
		se.err = errors.New("OCI runtime exec failed: " + msg[i:])
	} else {
		se.err = fmt.Errorf("exec in container %s: %w", ctr.Name, err)
	}
	return se
}

// execAttached runs the exec with the streams o names connected to
// berth's, waits for it and ends with its exit status. On a detach berth
// returns at once with status 1, as Docker's; the exec goes on.
func (c *CLI) execAttached(ctx context.Context, cl *client.Client, ctr containers.Container, req *tasksv1.ExecProcessRequest, o attachOptions) error {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cio, err := c.newClientIO(fctx, o, "")
	if err != nil {
		return err
	}
	defer cio.close()
	tio := cio.taskIO()
	req.Terminal, req.Stdin, req.Stdout, req.Stderr = tio.terminal, tio.stdin, tio.stdout, tio.stderr
	ctx = context.WithoutCancel(ctx)
	if _, err := cl.Tasks.Exec(ctx, req); err != nil {
		return execError(ctr, err)
	}
	deleteProcess := func() {
		cl.Tasks.DeleteProcess(ctx, &tasksv1.DeleteProcessRequest{ContainerId: ctr.ID, ExecId: req.ExecId})
	}
	started := make(chan struct{})
	if o.sigProxy && !o.tty {
		stopProxy := proxySignals(ctx, cl, ctr.ID, req.ExecId, started)
		defer stopProxy()
	}
	if err := cio.setRaw(); err != nil {
		deleteProcess()
		return err
	}
	if _, err := cl.Tasks.Start(ctx, &tasksv1.StartRequest{ContainerId: ctr.ID, ExecId: req.ExecId}); err != nil {
		deleteProcess()
		return execError(ctr, err)
	}
	close(started)
	cio.start(ctx, cl, ctr.ID, req.ExecId)
	wr, detached, err := cio.wait(ctx, cl, ctr.ID, req.ExecId)
	if detached {
		if sig := cio.interrupted; sig != 0 {
			return &statusError{code: 128 + int(sig)}
		}
		// As Docker's exec: the exec goes on, berth says why it returned.
		cio.restore()
		fmt.Fprintln(c.Err, "read escape sequence")
		return &statusError{code: ExitFailure}
	}
	if err != nil {
		deleteProcess()
		return fmt.Errorf("waiting for the exec in container %s: %w", ctr.Name, err)
	}
	// The shim closes the fifos once the output is copied; do not wait for
	// ever if it does not.
	cio.waitOutput(5 * time.Second)
	deleteProcess()
	if code := wr.GetExitStatus(); code != 0 {
		return &statusError{code: int(code)}
	}
	return nil
}

// hasEnv reports whether env sets name.
func hasEnv(env []string, name string) bool {
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == name {
			return true
		}
	}
	return false
}
