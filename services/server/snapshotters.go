package server

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/berth-engine/berth/internal/errdefs"
	snapshotsv1 "github.com/berth-engine/berth/proto/snapshots/v1"
	"github.com/berth-engine/berth/services/introspection"
	"github.com/berth-engine/berth/services/metadata"
	"github.com/berth-engine/berth/services/server/supervise"
	"github.com/berth-engine/berth/snapshotter/snapshotproxy"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

const (
	// snapshotterBinaryName is the program embedded snapshotters run.
	snapshotterBinaryName = "berth-snapshotter"
	// procFilesystems lists the filesystems the kernel has.
	procFilesystems = "/proc/filesystems"
	// statusTimeout bounds the health check of one snapshotter in Info.
	statusTimeout = 2 * time.Second
)

// snapshotterSet is berthd's snapshotters: the children it runs for the
// embedded ones and the connections to all of them.
type snapshotterSet struct {
	defaultName string
	entries     map[string]*snapshotterEntry
}

type snapshotterEntry struct {
	name    string
	address string
	backend string // of an embedded snapshotter; "" for an external one
	// unavailable says why the snapshotter is not there (its backend is
	// missing on this machine, its program cannot be found); "" when it is.
	unavailable string
	child       *supervise.Process // nil for an external snapshotter
	conn        *grpc.ClientConn
	proxy       snapshots.Snapshotter
}

// startSnapshotters starts a child for each embedded snapshotter that can
// run here and connects to every snapshotter. A snapshotter that cannot be
// had does not stop berthd: it is logged, reported by Info, and requests
// for it fail saying why.
func startSnapshotters(cfg Config) (_ *snapshotterSet, retErr error) {
	ss := &snapshotterSet{defaultName: cfg.DefaultSnapshotter, entries: map[string]*snapshotterEntry{}}
	defer func() {
		if retErr != nil {
			ss.stop()
		}
	}()
	var binary string
	var binaryErr error
	for _, name := range slices.Sorted(maps.Keys(cfg.Snapshotters)) {
		sc := cfg.Snapshotters[name]
		e := &snapshotterEntry{name: name, address: cfg.snapshotterAddress(name, sc)}
		ss.entries[name] = e
		if sc.Address == "" {
			e.backend = sc.Backend
			if e.backend == BackendOverlay {
				e.unavailable = overlayUnavailable(procFilesystems)
			}
			if e.unavailable == "" && binary == "" && binaryErr == nil {
				binary, binaryErr = findSnapshotterBinary(cfg.SnapshotterBinary)
			}
			if e.unavailable == "" && binaryErr != nil {
				e.unavailable = binaryErr.Error()
			}
			if e.unavailable != "" {
				slog.Error("snapshotter not started", "snapshotter", name, "reason", e.unavailable)
				continue
			}
		}
		conn, err := grpc.NewClient("unix://"+e.address,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			// A restarted child is back within a second: find it quickly.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
				MinConnectTimeout: 5 * time.Second,
			}))
		if err != nil {
			return nil, fmt.Errorf("connecting to snapshotter %q at %s: %w", name, e.address, err)
		}
		e.conn = conn
		// The snapshotter field is left empty: every snapshots/v1 server
		// takes that for its own backend, whatever name it gives it.
		e.proxy = snapshotproxy.NewSnapshotter(snapshotsv1.NewSnapshotsClient(conn), "")
		if e.backend == "" {
			continue
		}
		root := filepath.Join(cfg.Root, "snapshots", name)
		if err := makeDir(filepath.Dir(root)); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(root, 0o700); err != nil {
			return nil, fmt.Errorf("creating the root of snapshotter %q: %w", name, err)
		}
		e.child = supervise.Start(supervise.Config{
			Name:    "snapshotter " + name,
			Path:    binary,
			Args:    []string{"--backend", e.backend, "--root", root, "--address", e.address, "--log-level", childLogLevel(cfg.LogLevel)},
			Socket:  e.address,
			Stdout:  os.Stderr,
			Stderr:  os.Stderr,
			OnReady: conn.ResetConnectBackoff,
		})
	}
	return ss, nil
}

// waitReady waits until each child's first start has served its socket or
// failed, or ctx ends; the ones that failed are logged and keep being
// restarted.
func (ss *snapshotterSet) waitReady(ctx context.Context) {
	var wg sync.WaitGroup
	for _, e := range ss.entries {
		if e.child == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.child.WaitFirstStart(ctx); err != nil {
				slog.ErrorContext(ctx, "snapshotter not serving: berthd keeps trying", "snapshotter", e.name, "error", err)
			}
		}()
	}
	wg.Wait()
}

// backends returns the snapshotters that are there, for the metadata store.
func (ss *snapshotterSet) backends() map[string]snapshots.Snapshotter {
	out := map[string]snapshots.Snapshotter{}
	for name, e := range ss.entries {
		if e.proxy != nil {
			out[name] = e.proxy
		}
	}
	return out
}

// lookup resolves the snapshotter field of a request to the namespaced
// snapshotter: empty means the default one.
func (ss *snapshotterSet) lookup(db *metadata.DB) func(name string) (snapshots.Snapshotter, error) {
	return func(name string) (snapshots.Snapshotter, error) {
		asked := name
		if name == "" {
			name = ss.defaultName
		}
		e, ok := ss.entries[name]
		if !ok {
			return nil, fmt.Errorf("snapshotter %q is not configured in berthd: use one of %s: %w",
				name, strings.Join(slices.Sorted(maps.Keys(ss.entries)), ", "), errdefs.ErrNotFound)
		}
		if e.unavailable != "" {
			what := fmt.Sprintf("snapshotter %q", name)
			if asked == "" {
				what = fmt.Sprintf("the default snapshotter %q", name)
			}
			return nil, fmt.Errorf("%s is unavailable: %s: %w", what, e.unavailable, errdefs.ErrUnavailable)
		}
		return db.Snapshotter(name), nil
	}
}

// components reports each snapshotter for Info: "ok" when it answers,
// otherwise why not.
func (ss *snapshotterSet) components(ctx context.Context) []introspection.Component {
	names := slices.Sorted(maps.Keys(ss.entries))
	out := make([]introspection.Component, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := ss.entries[name]
			out[i] = introspection.Component{Name: name, Address: e.address, Status: e.status(ctx)}
		}()
	}
	wg.Wait()
	return out
}

func (e *snapshotterEntry) status(ctx context.Context) string {
	if e.unavailable != "" {
		return "not started: " + e.unavailable
	}
	if e.child != nil {
		if st := e.child.Status(); st.State != supervise.StateRunning {
			s := string(st.State)
			if st.Restarts > 0 {
				s += fmt.Sprintf(" (restarted %d times)", st.Restarts)
			}
			if st.LastError != nil {
				s += ": " + st.LastError.Error()
			}
			return s
		}
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	if _, err := e.proxy.Capabilities(ctx); err != nil {
		return "not answering: " + err.Error()
	}
	return "ok"
}

// stop stops the children and closes the connections.
func (ss *snapshotterSet) stop() {
	var wg sync.WaitGroup
	for _, e := range ss.entries {
		if e.child != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.child.Stop()
			}()
		}
	}
	wg.Wait()
	for _, e := range ss.entries {
		if e.conn != nil {
			e.conn.Close()
		}
	}
}

// childLogLevel is berthd's log level in the form berth-snapshotter takes.
func childLogLevel(level string) string {
	l, err := ParseLogLevel(level)
	if err != nil {
		l = slog.LevelInfo
	}
	return strings.ToLower(l.String())
}

// overlayUnavailable says why overlayfs cannot be used here, from the
// kernel's list of filesystems; "" when it can.
func overlayUnavailable(procFilesystems string) string {
	f, err := os.Open(procFilesystems)
	if err != nil {
		return fmt.Sprintf("cannot tell whether the kernel has overlayfs: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 && fields[len(fields)-1] == "overlay" {
			return ""
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Sprintf("cannot tell whether the kernel has overlayfs: reading %s: %v", procFilesystems, err)
	}
	return fmt.Sprintf("the kernel has no overlayfs (not in %s): run 'modprobe overlay' and restart berthd, or use the native snapshotter (default_snapshotter = \"native\")", procFilesystems)
}

// findSnapshotterBinary returns the berth-snapshotter to run: the one the
// configuration names, else the one next to berthd, else the one on PATH.
func findSnapshotterBinary(configured string) (string, error) {
	if configured != "" {
		if err := checkExecutable(configured); err != nil {
			return "", fmt.Errorf("snapshotter_binary %s: %w", configured, err)
		}
		return configured, nil
	}
	var beside string
	if exe, err := os.Executable(); err == nil {
		beside = filepath.Join(filepath.Dir(exe), snapshotterBinaryName)
		if checkExecutable(beside) == nil {
			return beside, nil
		}
	}
	if path, err := exec.LookPath(snapshotterBinaryName); err == nil {
		return filepath.Abs(path)
	}
	return "", fmt.Errorf("%s not found next to berthd (%s) or on PATH: install it, or set snapshotter_binary in the configuration: %w",
		snapshotterBinaryName, beside, errdefs.ErrNotFound)
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file: %w", path, errdefs.ErrFailedPrecondition)
	}
	return nil
}
