// Package runtime drives an OCI runtime binary (runc, or crun with the same
// command line) for one shim: create, start, exec, kill, delete, state, ps,
// pause and resume. Each call runs the binary once and waits for it through
// the shim's reaper, so that the shim's wait4(-1) loop and this package never
// race for the same exit status.
package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/shim/reaper"
)

// DefaultBinary is the runtime run when none is configured.
const DefaultBinary = "runc"

// Runtime is one OCI runtime binary with its state directory.
type Runtime struct {
	// Binary is the runtime's path or name looked up in PATH ("runc", "crun").
	Binary string
	// Root is the runtime's state directory (--root); empty uses its default.
	Root string
	// Reaper reaps the runtime's processes; nil waits for them directly.
	Reaper *reaper.Reaper
}

// IO is the stdio a created or executed process inherits from the runtime;
// nil entries become /dev/null.
type IO struct {
	Stdin, Stdout, Stderr *os.File
}

// CreateOpts are the options of Create.
type CreateOpts struct {
	// PidFile receives the container's init pid.
	PidFile string
	// ConsoleSocket is the unix socket the runtime sends the pty master to
	// when the process has a terminal.
	ConsoleSocket string
	IO            IO
}

// ExecOpts are the options of Exec.
type ExecOpts struct {
	PidFile       string
	ConsoleSocket string
	IO            IO
}

// State is what `runc state` reports.
type State struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
	Bundle string `json:"bundle"`
}

func (r *Runtime) binary() string {
	if r.Binary == "" {
		return DefaultBinary
	}
	return r.Binary
}

func (r *Runtime) name() string { return filepath.Base(r.binary()) }

// Create runs `runtime create` for the bundle; the container's init process
// is then waiting for Start.
func (r *Runtime) Create(ctx context.Context, id, bundle string, opts CreateOpts) error {
	args := []string{"create", "--bundle", bundle}
	if opts.PidFile != "" {
		args = append(args, "--pid-file", opts.PidFile)
	}
	if opts.ConsoleSocket != "" {
		args = append(args, "--console-socket", opts.ConsoleSocket)
	}
	_, err := r.run(ctx, opts.IO, append(args, id)...)
	return err
}

// Start runs `runtime start`: the init process runs the user's command.
func (r *Runtime) Start(ctx context.Context, id string) error {
	_, err := r.run(ctx, IO{}, "start", id)
	return err
}

// Exec runs `runtime exec --detach` with the process spec; the pid is
// written to opts.PidFile.
func (r *Runtime) Exec(ctx context.Context, id string, process *specs.Process, opts ExecOpts) error {
	f, err := os.CreateTemp("", "berth-exec-*.json")
	if err != nil {
		return fmt.Errorf("writing the process spec of an exec in container %q: %w", id, err)
	}
	defer os.Remove(f.Name())
	if err := json.NewEncoder(f).Encode(process); err != nil {
		f.Close()
		return fmt.Errorf("writing the process spec of an exec in container %q: %w", id, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the process spec of an exec in container %q: %w", id, err)
	}
	args := []string{"exec", "--detach", "--process", f.Name()}
	if opts.PidFile != "" {
		args = append(args, "--pid-file", opts.PidFile)
	}
	if opts.ConsoleSocket != "" {
		args = append(args, "--console-socket", opts.ConsoleSocket)
	}
	_, err = r.run(ctx, opts.IO, append(args, id)...)
	return err
}

// Kill sends sig to the container's init process, or to all of its
// processes with all set.
func (r *Runtime) Kill(ctx context.Context, id string, sig int, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	_, err := r.run(ctx, IO{}, append(args, id, strconv.Itoa(sig))...)
	return err
}

// Delete runs `runtime delete`; force kills a container that still runs.
func (r *Runtime) Delete(ctx context.Context, id string, force bool) error {
	args := []string{"delete"}
	if force {
		args = append(args, "--force")
	}
	_, err := r.run(ctx, IO{}, append(args, id)...)
	return err
}

// State returns `runtime state`.
func (r *Runtime) State(ctx context.Context, id string) (*State, error) {
	out, err := r.run(ctx, IO{}, "state", id)
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("reading `%s state %s`: %w", r.name(), id, err)
	}
	return &st, nil
}

// Ps lists the pids of the container's processes.
func (r *Runtime) Ps(ctx context.Context, id string) ([]int, error) {
	out, err := r.run(ctx, IO{}, "ps", "--format", "json", id)
	if err != nil {
		return nil, err
	}
	var pids []int
	if err := json.Unmarshal(out, &pids); err != nil {
		return nil, fmt.Errorf("reading `%s ps %s`: %w", r.name(), id, err)
	}
	return pids, nil
}

// Pause freezes the container.
func (r *Runtime) Pause(ctx context.Context, id string) error {
	_, err := r.run(ctx, IO{}, "pause", id)
	return err
}

// Resume thaws the container.
func (r *Runtime) Resume(ctx context.Context, id string) error {
	_, err := r.run(ctx, IO{}, "resume", id)
	return err
}

// run runs the runtime with args and returns its stdout. The runtime's
// stderr (and its --log, where it writes errors) make up the error message.
func (r *Runtime) run(ctx context.Context, pio IO, args ...string) ([]byte, error) {
	// Create and exec hand their stdio to the container: nothing to read.
	capture := args[0] != "create" && args[0] != "exec"
	logf, err := os.CreateTemp("", "berth-runtime-*.log")
	if err != nil {
		return nil, fmt.Errorf("running %s %s: %w", r.name(), args[0], err)
	}
	defer os.Remove(logf.Name())
	defer logf.Close()

	global := []string{"--log", logf.Name(), "--log-format", "json"}
	if r.Root != "" {
		global = append(global, "--root", r.Root)
	}
	// Not CommandContext: its watcher goroutine ends only in Cmd.Wait, which
	// the reaper replaces; wait kills the runtime itself when ctx ends.
	cmd := exec.Command(r.binary(), append(global, args...)...)
	// Only non-nil files: a nil *os.File in the io.Reader/io.Writer
	// fields is not /dev/null but an invalid descriptor.
	if pio.Stdin != nil {
		cmd.Stdin = pio.Stdin
	}
	if pio.Stdout != nil {
		cmd.Stdout = pio.Stdout
	}
	if pio.Stderr != nil {
		cmd.Stderr = pio.Stderr
	}
	// Output the shim reads goes through files, not pipes that exec.Cmd
	// would copy in goroutines ended only by Wait (see reaper.Start).
	var outf, errf *os.File
	if capture {
		if outf, err = os.CreateTemp("", "berth-runtime-*.out"); err != nil {
			return nil, fmt.Errorf("running %s %s: %w", r.name(), args[0], err)
		}
		defer os.Remove(outf.Name())
		defer outf.Close()
		cmd.Stdout = outf
		if errf, err = os.CreateTemp("", "berth-runtime-*.err"); err != nil {
			return nil, fmt.Errorf("running %s %s: %w", r.name(), args[0], err)
		}
		defer os.Remove(errf.Name())
		defer errf.Close()
		cmd.Stderr = errf
	}

	status, err := r.wait(ctx, cmd)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("running the OCI runtime %q: %w: install it or set the runtime path: %w", r.binary(), err, errdefs.ErrFailedPrecondition)
		}
		return nil, fmt.Errorf("running %s %s: %w", r.name(), args[0], err)
	}
	var out []byte
	if outf != nil {
		if out, err = readAll(outf); err != nil {
			return nil, fmt.Errorf("reading the output of %s %s: %w", r.name(), args[0], err)
		}
	}
	if status != 0 {
		msg := runtimeError(logf)
		if msg == "" && errf != nil {
			b, _ := readAll(errf)
			msg = strings.TrimSpace(string(b))
		}
		return nil, classify(fmt.Errorf("%s %s failed (exit status %d): %s", r.name(), strings.Join(args, " "), status, msg), msg)
	}
	return out, nil
}

// wait runs cmd to completion through the reaper when there is one, and
// kills it if ctx ends first.
func (r *Runtime) wait(ctx context.Context, cmd *exec.Cmd) (int, error) {
	var c chan reaper.Exit
	var err error
	if r.Reaper == nil {
		err = cmd.Start()
	} else {
		c, err = r.Reaper.Start(cmd)
	}
	if err != nil {
		return -1, err
	}
	done := make(chan struct{})
	defer close(done)
	proc := cmd.Process
	go func() {
		select {
		case <-ctx.Done():
			proc.Kill()
		case <-done:
		}
	}()
	if r.Reaper != nil {
		return r.Reaper.Wait(cmd, c), nil
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, err
	}
	return 0, nil
}

func readAll(f *os.File) ([]byte, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

// runtimeError returns the last error message in a json runtime log.
func runtimeError(f *os.File) string {
	b, err := readAll(f)
	if err != nil {
		return ""
	}
	var msg string
	for _, line := range bytes.Split(b, []byte("\n")) {
		var entry struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(line, &entry) == nil && (entry.Level == "error" || entry.Level == "fatal") {
			msg = entry.Msg
		}
	}
	return msg
}

// classify gives an error of the runtime an errdefs kind from its message.
func classify(err error, msg string) error {
	switch m := strings.ToLower(msg); {
	case strings.Contains(m, "does not exist"), strings.Contains(m, "not found"), strings.Contains(m, "no such"):
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	case strings.Contains(m, "already exists"):
		return fmt.Errorf("%w: %w", err, errdefs.ErrAlreadyExists)
	case strings.Contains(m, "not running"), strings.Contains(m, "not paused"), strings.Contains(m, "is stopped"),
		strings.Contains(m, "cannot"), strings.Contains(m, "container is"):
		return fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
	}
	return fmt.Errorf("%w: %w", err, errdefs.ErrUnknown)
}
