package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	snapshotsv1 "github.com/berth-engine/berth/proto/snapshots/v1"
	"github.com/berth-engine/berth/snapshotter/snapshotproxy"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

// build compiles berth-snapshotter into a temporary folder.
func build(t testing.TB) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build berth-snapshotter with")
	}
	bin := filepath.Join(t.TempDir(), "berth-snapshotter")
	out, err := exec.Command(gobin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("building berth-snapshotter: %v\n%s", err, out)
	}
	return bin
}

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type daemon struct {
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
	conn           *grpc.ClientConn
	exited         chan error
}

// start runs bin with args and connects to socket once it accepts
// connections.
func start(t testing.TB, bin, socket string, args ...string) *daemon {
	t.Helper()
	d := &daemon{cmd: exec.Command(bin, args...), stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	d.cmd.Stdout, d.cmd.Stderr = d.stdout, d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.Dial("unix", socket); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-d.exited:
			t.Fatalf("berth-snapshotter exited before serving: %v\n%s", err, d.stderr)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("berth-snapshotter did not serve on %s\n%s", socket, d.stderr)
		}
	}
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	d.conn = conn
	return d
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop(t testing.TB) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		if err != nil {
			t.Fatalf("berth-snapshotter exited with %v after SIGTERM\n%s", err, d.stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("berth-snapshotter still running 15s after SIGTERM\n%s", d.stderr)
	}
}

func TestServeListAndStop(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	root, socket := filepath.Join(dir, "root"), filepath.Join(dir, "run", "snapshotter-overlay.sock")
	// What a crash mid-Prepare leaves: the start-up Cleanup removes it.
	leftover := filepath.Join(root, "snapshots", "new-1-crash", "fs")
	if err := os.MkdirAll(leftover, 0o755); err != nil {
		t.Fatal(err)
	}
	// A stale socket file from a process that died.
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		t.Fatal(err)
	}
	stale, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	d := start(t, bin, socket, "--backend", "overlay", "--root", root, "--address", socket, "--log-level", "debug")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	health, err := healthpb.NewHealthClient(d.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: snapshotsv1.Snapshots_ServiceDesc.ServiceName})
	if err != nil || health.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health of the Snapshots service: %v, %v", health, err)
	}
	if services := listServices(t, ctx, d.conn); !slices.Contains(services, snapshotsv1.Snapshots_ServiceDesc.ServiceName) {
		t.Fatalf("reflection lists %v, without the Snapshots service", services)
	}
	sn := snapshotproxy.NewSnapshotter(snapshotsv1.NewSnapshotsClient(d.conn), "overlay")
	if _, err := sn.Prepare(ctx, "active", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "base", "active"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.View(ctx, "view", "base"); err != nil {
		t.Fatal(err)
	}
	var listed []string
	err = sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		listed = append(listed, info.Kind.String()+" "+info.Name)
		return nil
	})
	sort.Strings(listed)
	if err != nil || !slices.Equal(listed, []string{"committed base", "view view"}) {
		t.Fatalf("List through the socket: %v, %v", listed, err)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the crash leftover survived the start-up Cleanup: %v", err)
	}
	if fi, err := os.Stat(socket); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode: %v, %v; want 0660", fi.Mode(), err)
	}

	d.stop(t)
	if out := d.stdout.String(); out != "" {
		t.Errorf("berth-snapshotter wrote to stdout: %q", out)
	}
	if _, err := os.Stat(socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after stopping: %v", err)
	}
	if logs := d.stderr.String(); !strings.Contains(logs, "berth-snapshotter serving") || !strings.Contains(logs, "berth-snapshotter stopped") ||
		!strings.Contains(logs, "method=/berth.snapshots.v1.Snapshots/Prepare") {
		t.Errorf("log on stderr:\n%s", logs)
	}

	// A second start finds the snapshots again.
	d = start(t, bin, socket, "--root", root, "--address", socket)
	sn = snapshotproxy.NewSnapshotter(snapshotsv1.NewSnapshotsClient(d.conn), "")
	if info, err := sn.Stat(ctx, "view"); err != nil || info.Parent != "base" {
		t.Fatalf("after a restart: %+v, %v", info, err)
	}
	d.stop(t)
}

// listServices asks server reflection, as grpcurl does, for the services.
func listServices(t *testing.T, ctx context.Context, conn *grpc.ClientConn) []string {
	t.Helper()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.CloseSend()
	req := &reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	return names
}

func TestBadCommandLines(t *testing.T) {
	for _, args := range [][]string{
		{"--backend", "zfs", "--root", "r", "--address", "a"},
		{"--root", "r"},
		{"--address", "a"},
		{"--root", "r", "--address", "a", "--log-level", "chatty"},
		{"--root", "r", "--address", "a", "extra"},
		{"--no-such-flag"},
	} {
		var stderr bytes.Buffer
		if code := run(args, &stderr); code != 2 || stderr.Len() == 0 {
			t.Errorf("run(%q) = %d with message %q; want 2 and a message", args, code, stderr.String())
		}
	}
}

// BenchmarkSocket measures Prepare, Commit and Remove over the unix socket
// of a real berth-snapshotter, on a committed parent, and reports the
// median of each.
func BenchmarkSocket(b *testing.B) {
	for _, backend := range []string{"overlay", "native"} {
		b.Run(backend, func(b *testing.B) {
			bin := build(b)
			dir := b.TempDir()
			socket := filepath.Join(dir, "s.sock")
			d := start(b, bin, socket, "--backend", backend, "--root", filepath.Join(dir, "root"), "--address", socket, "--log-level", "warn")
			defer d.stop(b)
			sn := snapshotproxy.NewSnapshotter(snapshotsv1.NewSnapshotsClient(d.conn), backend)
			ctx := context.Background()
			if _, err := sn.Prepare(ctx, "base-active", ""); err != nil {
				b.Fatal(err)
			}
			if err := sn.Commit(ctx, "base", "base-active"); err != nil {
				b.Fatal(err)
			}
			var prepare, commit, remove []time.Duration
			timed := func(into *[]time.Duration, fn func() error) {
				start := time.Now()
				if err := fn(); err != nil {
					b.Fatal(err)
				}
				*into = append(*into, time.Since(start))
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				key, name := fmt.Sprintf("active-%d", i), fmt.Sprintf("layer-%d", i)
				timed(&prepare, func() error { _, err := sn.Prepare(ctx, key, "base"); return err })
				timed(&commit, func() error { return sn.Commit(ctx, name, key) })
				timed(&remove, func() error { return sn.Remove(ctx, name) })
			}
			b.StopTimer()
			b.ReportMetric(float64(median(prepare).Microseconds())/1000, "prepare-median-ms")
			b.ReportMetric(float64(median(commit).Microseconds())/1000, "commit-median-ms")
			b.ReportMetric(float64(median(remove).Microseconds())/1000, "remove-median-ms")
		})
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
