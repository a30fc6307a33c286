package command

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/containers"
)

// The fields of Docker's Config that the OCI spec cannot hold: the stdio
// a container was created with (OpenStdin, Attach*), so that `start -ai`
// knows whether stdin may be attached, and its Entrypoint and Cmd apart,
// as create merged them into the process's arguments.
const (
	configExtension = "berth-config"
	configTypeURL   = "types.berth.dev/berth/cli/ContainerConfig"
)

// containerConfig is what create keeps of Docker's Config beyond the spec.
type containerConfig struct {
	// OpenStdin: created with -i; its stdin may be attached.
	OpenStdin bool `json:"open_stdin,omitempty"`
	// StdinOnce: stdin closes when the attached client's input ends.
	StdinOnce    bool `json:"stdin_once,omitempty"`
	AttachStdin  bool `json:"attach_stdin,omitempty"`
	AttachStdout bool `json:"attach_stdout,omitempty"`
	AttachStderr bool `json:"attach_stderr,omitempty"`
	// Entrypoint and Cmd are what the container runs, apart; records made
	// before they were kept have neither.
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
}

// set records cfg on c.
func (cfg containerConfig) set(c *containers.Container) error {
	return containers.SetExtension(c, configExtension, configTypeURL, cfg)
}

// configOf reads c's config; a record without it (made before berth kept
// it, or by another client) reads as Docker's default for `run`: stdout
// and stderr attached, no stdin.
func configOf(c containers.Container) containerConfig {
	var cfg containerConfig
	if !containers.ReadExtension(c, configExtension, &cfg) {
		cfg = containerConfig{AttachStdout: true, AttachStderr: true}
	}
	return cfg
}

// config is what -i and -a ask for, with Docker's rules: without -a,
// stdout and stderr are attached; -i attaches stdin too.
func (o createOptions) config() (containerConfig, error) {
	st := containerConfig{OpenStdin: o.interactive, AttachStdin: o.interactive}
	for _, s := range o.attach {
		switch strings.ToLower(s) {
		case "stdin":
			st.AttachStdin = true
		case "stdout":
			st.AttachStdout = true
		case "stderr":
			st.AttachStderr = true
		default:
			return st, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid argument %q for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR", s)
		}
	}
	if len(o.attach) == 0 {
		st.AttachStdout, st.AttachStderr = true, true
	}
	st.StdinOnce = st.OpenStdin && st.AttachStdin
	return st, nil
}

// attachOptions are the streams `run` attaches for o.
func (o createOptions) attachOptions(detachKeys string, sigProxy bool) (attachOptions, error) {
	st, err := o.config()
	if err != nil {
		return attachOptions{}, err
	}
	keys, err := parseDetachKeys(detachKeys)
	if err != nil {
		return attachOptions{}, err
	}
	return attachOptions{
		stdin: st.AttachStdin, stdout: st.AttachStdout, stderr: st.AttachStderr,
		tty: o.tty, detachKeys: keys, sigProxy: sigProxy && !o.tty,
	}, nil
}

// startAttachOptions are the streams `start -a` attaches, as Docker's:
// stdout and stderr, and stdin with -i when the container was created
// with -i.
func startAttachOptions(ctr containers.Container, interactive bool, detachKeys string) (attachOptions, error) {
	keys, err := parseDetachKeys(detachKeys)
	if err != nil {
		return attachOptions{}, err
	}
	tty := false
	if s, err := specOf(ctr); err == nil && s.Process != nil {
		tty = s.Process.Terminal
	}
	return attachOptions{
		stdin: interactive && configOf(ctr).OpenStdin, stdout: true, stderr: true,
		tty: tty, detachKeys: keys, sigProxy: !tty,
	}, nil
}

// detachedIO makes, for a container created with -i or -t that starts
// detached (run -d, start), the fifos `berth attach` opens later, as
// Docker lets one attach to `run -dit`; the shim opens them without
// waiting for a reader. Other containers get none (nil): their output only
// goes to the log. A running container is left alone.
func detachedIO(ctx context.Context, cl *client.Client, ctr containers.Container) (*taskIO, error) {
	tty := false
	if s, err := specOf(ctr); err == nil && s.Process != nil {
		tty = s.Process.Terminal
	}
	st := configOf(ctr)
	if !st.OpenStdin && !tty {
		return nil, nil
	}
	if p, err := taskOf(ctx, cl, ctr.ID); err != nil || isRunning(p) {
		return nil, err
	}
	dir, err := containerDir(ctx, cl, ctr.ID)
	if err != nil {
		return nil, err
	}
	dir = filepath.Join(dir, "attach")
	os.RemoveAll(dir) // fifos of an earlier run
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("making the fifos of container %s: %w", ctr.Name, err)
	}
	tio := &taskIO{dir: dir, terminal: tty, stdout: filepath.Join(dir, "stdout")}
	if !tty {
		tio.stderr = filepath.Join(dir, "stderr")
	}
	if st.OpenStdin {
		tio.stdin = filepath.Join(dir, "stdin")
	}
	for _, p := range []string{tio.stdin, tio.stdout, tio.stderr} {
		if p == "" {
			continue
		}
		if err := unix.Mkfifo(p, 0o700); err != nil {
			return nil, fmt.Errorf("making the fifos of container %s: %w", ctr.Name, err)
		}
	}
	return tio, nil
}
