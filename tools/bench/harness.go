package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/berth-engine/berth/internal/namespaces"
	contentv1 "github.com/berth-engine/berth/proto/content/v1"
	diffv1 "github.com/berth-engine/berth/proto/diff/v1"
	imagesv1 "github.com/berth-engine/berth/proto/images/v1"
	introspectionv1 "github.com/berth-engine/berth/proto/introspection/v1"
	leasesv1 "github.com/berth-engine/berth/proto/leases/v1"
	snapshotsv1 "github.com/berth-engine/berth/proto/snapshots/v1"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/content/contentproxy"
	"github.com/berth-engine/berth/services/diff"
	"github.com/berth-engine/berth/services/diff/diffproxy"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/services/images/imageproxy"
	"github.com/berth-engine/berth/services/leases"
	"github.com/berth-engine/berth/services/leases/leaseproxy"
	"github.com/berth-engine/berth/snapshotter/snapshotproxy"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

// benchSnapshotter is the snapshotter the benchmarks unpack into.
const benchSnapshotter = "overlay"

// harness is a berthd started for the benchmarks, with clients for it.
type harness struct {
	bin     string
	runs    int
	dir     string
	address string
	daemon  *exec.Cmd
	conn    *grpc.ClientConn
	content content.Store
	images  images.Store
	leases  leases.Manager
	intro   introspectionv1.IntrospectionClient
	// snapshots is berthd's overlay snapshotter, over berthd's socket.
	snapshots snapshots.Snapshotter
	// cgroupParents are berth's parent cgroups that did not exist when
	// the benchmarks started; close removes them.
	cgroupParents []string
	diff          interface {
		diff.Applier
		diff.Comparer
	}
}

func newHarness(ctx context.Context, bin string, runs int) (*harness, error) {
	dir, err := os.MkdirTemp("", "berth-bench-")
	if err != nil {
		return nil, err
	}
	h := &harness{bin: bin, runs: runs, dir: dir, address: filepath.Join(dir, "berthd.sock"), cgroupParents: absentCgroupParents()}
	h.daemon = exec.Command(filepath.Join(bin, "berthd"), "--root", filepath.Join(dir, "root"),
		"--state", filepath.Join(dir, "state"), "--address", h.address, "--config", "")
	h.daemon.Stderr = os.Stderr
	if err := h.daemon.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting berthd: %w", err)
	}
	for i := 0; ; i++ {
		if _, err := os.Stat(h.address); err == nil {
			break
		}
		if i == 100 {
			h.close()
			return nil, fmt.Errorf("berthd did not create %s", h.address)
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.conn, err = grpc.NewClient("unix://"+h.address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		h.close()
		return nil, err
	}
	h.content = contentproxy.NewStore(contentv1.NewContentClient(h.conn))
	h.images = imageproxy.NewStore(imagesv1.NewImagesClient(h.conn))
	h.leases = leaseproxy.NewManager(leasesv1.NewLeasesClient(h.conn))
	h.intro = introspectionv1.NewIntrospectionClient(h.conn)
	h.snapshots = snapshotproxy.NewSnapshotter(snapshotsv1.NewSnapshotsClient(h.conn), benchSnapshotter)
	h.diff = diffproxy.NewDiffer(diffv1.NewDiffClient(h.conn))
	return h, nil
}

func (h *harness) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, "bench")
}

// berth runs the CLI against the harness's daemon in namespace "bench".
func (h *harness) berth(args ...string) error {
	cmd := exec.Command(filepath.Join(h.bin, "berth"), append([]string{"--address", h.address, "--namespace", "bench"}, args...)...)
	cmd.Stdout, cmd.Stderr = nil, nil
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("berth %v: %v: %s", args, err, out)
	}
	return nil
}

// timeCommand runs a command and returns how long it took.
func timeCommand(name string, args ...string) (time.Duration, error) {
	start := time.Now()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%s %v: %v: %s", name, args, err, out)
	}
	return time.Since(start), nil
}

func (h *harness) close() {
	if h.conn != nil {
		h.conn.Close()
	}
	if h.daemon != nil && h.daemon.Process != nil {
		_ = h.daemon.Process.Signal(syscall.SIGTERM)
		_ = h.daemon.Wait()
	}
	os.RemoveAll(h.dir)
	// runc made berth's parent cgroups for the benchmarks' containers:
	// remove those that were not there before (rmdir of empty ones only).
	for _, p := range h.cgroupParents {
		os.Remove(p)
	}
}

// absentCgroupParents returns berth's parent cgroup folders, in every
// hierarchy, that do not exist yet.
func absentCgroupParents() []string {
	candidates := []string{"/sys/fs/cgroup/berth"}
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		if e.IsDir() {
			candidates = append(candidates, filepath.Join("/sys/fs/cgroup", e.Name(), "berth"))
		}
	}
	var absent []string
	for _, c := range candidates {
		if _, err := os.Stat(c); os.IsNotExist(err) {
			absent = append(absent, c)
		}
	}
	return absent
}
