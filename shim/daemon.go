package shim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
	shimv1 "github.com/berth-engine/berth/proto/shim/v1"
	"github.com/berth-engine/berth/shim/reaper"
)

// Files the shim keeps in the bundle.
const (
	// AddressFile holds the shim's ttrpc address ("unix:///...").
	AddressFile = "shim.address"
	// PidFile holds the shim daemon's pid.
	PidFile = "shim.pid"
	// SocketFile is the shim's socket, when the bundle path is short enough.
	SocketFile = "shim.sock"
	// LogFile receives the shim daemon's own stderr.
	LogFile = "shim.log"
)

// maxSocketPath is the longest unix socket path (sun_path, with its NUL).
const maxSocketPath = 107

// SocketPath returns where the shim of bundle listens: in the bundle, or,
// when that path is too long for a unix socket, under stateDir/s/ named by
// a hash of the bundle path.
func SocketPath(bundle, stateDir string) string {
	p := filepath.Join(bundle, SocketFile)
	if len(p) <= maxSocketPath {
		return p
	}
	sum := sha256.Sum256([]byte(bundle))
	return filepath.Join(stateDir, "s", hex.EncodeToString(sum[:12]))
}

// StartOpts are the options of `berth-shim start`.
type StartOpts struct {
	Config
	// StateDir holds sockets that do not fit in the bundle (/run/berth).
	StateDir string
	// Binary is the shim program to run; empty means the running binary.
	Binary string
	// Args are the arguments that make Binary serve (the daemon's command
	// line, after the binary).
	Args []string
}

// ServeArgs returns the command line, after the binary, of a shim daemon
// serving cfg.
func ServeArgs(cfg Config, stateDir string) []string {
	args := []string{"serve", "--id", cfg.ID, "--namespace", cfg.Namespace, "--bundle", cfg.Bundle, "--state", stateDir}
	if cfg.Runtime != nil {
		if cfg.Runtime.Binary != "" {
			args = append(args, "--runtime", cfg.Runtime.Binary)
		}
		if cfg.Runtime.Root != "" {
			args = append(args, "--runtime-root", cfg.Runtime.Root)
		}
	}
	return args
}

// StartDaemon starts the shim daemon for the bundle: it listens on the
// shim's socket, re-executes the running binary detached (new session,
// stdio to /dev/null and <bundle>/shim.log) with the listener as fd 3,
// records its address and pid in the bundle and returns the address and
// the daemon's process. The caller either releases the process (the daemon
// is then inherited by init) or waits for it, so that no zombie stays.
func StartDaemon(opts StartOpts) (string, *os.Process, error) {
	bundle := opts.Bundle
	if st, err := os.Stat(filepath.Join(bundle, "config.json")); err != nil || st.IsDir() {
		return "", nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "starting a shim for %q: %s is not an OCI bundle (no config.json): create the bundle first", opts.ID, bundle)
	}
	sock := SocketPath(bundle, opts.StateDir)
	if err := os.MkdirAll(filepath.Dir(sock), 0o711); err != nil {
		return "", nil, fmt.Errorf("starting a shim for %q: %w", opts.ID, err)
	}
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		return "", nil, errdefs.Errorf(errdefs.ErrAlreadyExists, "starting a shim for %q: a shim already serves %s: use it, or delete it with 'berth-shim delete'", opts.ID, sock)
	}
	os.Remove(sock)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return "", nil, fmt.Errorf("starting a shim for %q: %w", opts.ID, err)
	}
	l.SetUnlinkOnClose(false)
	defer l.Close()
	lf, err := l.File()
	if err != nil {
		os.Remove(sock)
		return "", nil, fmt.Errorf("starting a shim for %q: %w", opts.ID, err)
	}
	defer lf.Close()

	bin := opts.Binary
	if bin == "" {
		self, err := os.Executable()
		if err != nil {
			os.Remove(sock)
			return "", nil, fmt.Errorf("starting a shim for %q: finding the shim binary: %w", opts.ID, err)
		}
		bin = self
	}
	logf, err := os.OpenFile(filepath.Join(bundle, LogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		os.Remove(sock)
		return "", nil, fmt.Errorf("starting a shim for %q: %w", opts.ID, err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, opts.Args...)
	cmd.Dir = bundle
	cmd.Stderr = logf
	cmd.ExtraFiles = []*os.File{lf}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		os.Remove(sock)
		return "", nil, fmt.Errorf("starting a shim for %q: %w", opts.ID, err)
	}
	pid := cmd.Process.Pid
	address := "unix://" + sock
	if err := writeFileSync(filepath.Join(bundle, PidFile), strconv.Itoa(pid)); err != nil {
		cmd.Process.Kill()
		cmd.Process.Wait()
		os.Remove(sock)
		return "", nil, fmt.Errorf("starting a shim for %q: %w", opts.ID, err)
	}
	if err := writeFileSync(filepath.Join(bundle, AddressFile), address); err != nil {
		cmd.Process.Kill()
		cmd.Process.Wait()
		os.Remove(sock)
		return "", nil, fmt.Errorf("starting a shim for %q: %w", opts.ID, err)
	}
	return address, cmd.Process, nil
}

// Serve is the shim daemon: it serves the task API on the listener passed
// as fd 3 until a Shutdown request or the end of ctx, then removes its
// socket and address files.
func Serve(ctx context.Context, cfg Config, stateDir string) error {
	if err := reaper.SetSubreaper(); err != nil {
		return err
	}
	l, err := net.FileListener(os.NewFile(3, "shim.sock"))
	if err != nil {
		return fmt.Errorf("serving the shim of %q: the listener on fd 3: %w", cfg.ID, err)
	}
	r := reaper.New()
	stopReaper := make(chan struct{})
	go r.Run(stopReaper)
	defer close(stopReaper)

	done := make(chan struct{})
	var once sync.Once
	shutdown := func() { once.Do(func() { close(done) }) }
	svc := NewService(cfg, r, shutdown)
	srv, err := ttrpc.NewServer()
	if err != nil {
		return fmt.Errorf("serving the shim of %q: %w", cfg.ID, err)
	}
	shimv1.RegisterTaskService(srv, svc)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, l) }()

	// The shim outlives berthd and ignores the signals of its old terminal.
	signal.Ignore(unix.SIGHUP, unix.SIGINT, unix.SIGPIPE)
	select {
	case <-done:
	case err = <-errc:
	case <-ctx.Done():
	}
	// Let the Shutdown reply go out before the connection closes.
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	srv.Shutdown(sctx)
	cancel()
	srv.Close()
	os.Remove(SocketPath(cfg.Bundle, stateDir))
	os.Remove(filepath.Join(cfg.Bundle, AddressFile))
	os.Remove(filepath.Join(cfg.Bundle, PidFile))
	if errors.Is(err, ttrpc.ErrServerClosed) {
		err = nil
	}
	return err
}

// Cleanup cleans up after a shim that died: it force-deletes the container
// from the runtime, unmounts the rootfs, records the exit as dead unless an
// exit was recorded, and removes the shim's socket and files. It returns
// the container's exit.
func Cleanup(ctx context.Context, cfg Config, stateDir string) (*Exit, error) {
	bundle := cfg.Bundle
	if pid, err := ReadPidFile(filepath.Join(bundle, PidFile)); err == nil && ProcessAlive(pid) {
		return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "cleaning up the shim of %q: it still runs as pid %d: shut it down through its API, or kill it first", cfg.ID, pid)
	}
	if err := cfg.Runtime.Delete(ctx, cfg.ID, true); err != nil && !errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("cleaning up the shim of %q: %w", cfg.ID, err)
	}
	if err := mount.UnmountAll(filepath.Join(bundle, "rootfs")); err != nil {
		return nil, fmt.Errorf("cleaning up the shim of %q: %w", cfg.ID, err)
	}
	e, err := ReadExit(bundle)
	if err != nil {
		if !os.IsNotExist(err) {
			return nil, err
		}
		e = &Exit{ExitStatus: 128 + uint32(unix.SIGKILL), ExitedAt: time.Now().UTC(), Dead: true}
		if pid, err := ReadPidFile(filepath.Join(bundle, initPidFile)); err == nil {
			e.Pid = uint32(pid)
		}
		if err := WriteExit(bundle, *e); err != nil {
			return nil, fmt.Errorf("cleaning up the shim of %q: %w", cfg.ID, err)
		}
	}
	os.Remove(SocketPath(bundle, stateDir))
	for _, name := range []string{AddressFile, PidFile, initPidFile} {
		os.Remove(filepath.Join(bundle, name))
	}
	return e, nil
}

// ProcessAlive says whether pid runs; a zombie counts as gone.
func ProcessAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// Connect dials the shim at address ("unix:///path" or a path) and returns
// its task client; close the ttrpc client when done.
func Connect(ctx context.Context, address string) (*ttrpc.Client, shimv1.TaskService, error) {
	path := strings.TrimPrefix(address, "unix://")
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to the shim at %s: %w: %w", address, err, errdefs.ErrUnavailable)
	}
	c := ttrpc.NewClient(conn)
	return c, shimv1.NewTaskClient(c), nil
}

func writeFileSync(path, data string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
