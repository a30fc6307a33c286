package server

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/namespaces"
	contentv1 "github.com/berth-engine/berth/proto/content/v1"
	diffv1 "github.com/berth-engine/berth/proto/diff/v1"
	introspectionv1 "github.com/berth-engine/berth/proto/introspection/v1"
	leasesv1 "github.com/berth-engine/berth/proto/leases/v1"
	snapshotsv1 "github.com/berth-engine/berth/proto/snapshots/v1"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/content/contentproxy"
	"github.com/berth-engine/berth/services/diff/diffproxy"
	"github.com/berth-engine/berth/services/leases"
	"github.com/berth-engine/berth/services/leases/leaseproxy"
	"github.com/berth-engine/berth/services/server/supervise"
	"github.com/berth-engine/berth/snapshotter/snapshotproxy"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

// buildSnapshotter builds berth-snapshotter into a temporary folder.
func buildSnapshotter(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "berth-snapshotter")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/berth-engine/berth/snapshotter/cmd/berth-snapshotter")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building berth-snapshotter: %v\n%s", err, out)
	}
	return bin
}

// startExternal runs a berth-snapshotter the way an operator would, outside
// berthd, until the test ends.
func startExternal(t *testing.T, bin, backend, socket string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "--backend", backend, "--root", filepath.Join(t.TempDir(), "external"), "--address", socket)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", socket); err == nil {
			c.Close()
			return cmd
		}
		select {
		case <-exited:
			t.Fatalf("external berth-snapshotter exited: %v", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("external berth-snapshotter did not serve within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// TestSnapshotters runs berthd with an embedded native snapshotter (a child
// it supervises) and an external one started by hand, and uses both
// through berthd's Snapshots service. Native needs no root.
func TestSnapshotters(t *testing.T) {
	bin := buildSnapshotter(t)
	cfg := testConfig(t)
	externalSocket := filepath.Join(filepath.Dir(cfg.Address), "extra.sock")
	external := startExternal(t, bin, "native", externalSocket)
	cfg.SnapshotterBinary = bin
	cfg.DefaultSnapshotter = "native"
	cfg.Snapshotters = map[string]SnapshotterConfig{
		"overlay": {Disabled: true},
		"extra":   {Address: externalSocket},
	}
	srv := start(t, cfg)
	conn := dial(t, cfg.Address)
	client := snapshotsv1.NewSnapshotsClient(conn)
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), "default"), time.Minute)
	defer cancel()
	def := snapshotproxy.NewSnapshotter(client, "")
	native := snapshotproxy.NewSnapshotter(client, "native")
	extra := snapshotproxy.NewSnapshotter(client, "extra")

	t.Run("default is native", func(t *testing.T) {
		mounts, err := def.Prepare(ctx, "work", "")
		if err != nil {
			t.Fatal(err)
		}
		if len(mounts) == 0 || !strings.HasPrefix(mounts[0].Source, filepath.Join(cfg.Root, "snapshots", "native")) {
			t.Errorf("mounts %+v: want a folder under the native snapshotter's root", mounts)
		}
		if err := def.Commit(ctx, "base", "work"); err != nil {
			t.Fatal(err)
		}
		if _, err := native.Prepare(ctx, "child", "base", snapshots.WithLabels(map[string]string{"purpose": "test"})); err != nil {
			t.Fatal(err)
		}
		info, err := native.Stat(ctx, "child")
		if err != nil || info.Kind != snapshots.KindActive || info.Parent != "base" || info.Labels["purpose"] != "test" {
			t.Errorf("Stat(child) = %+v, %v", info, err)
		}
		var names []string
		if err := def.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			names = append(names, info.Name)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{"base", "child"}) {
			t.Errorf("List = %v", names)
		}
		if _, err := native.Usage(ctx, "child"); err != nil {
			t.Errorf("Usage: %v", err)
		}
		if err := native.Remove(ctx, "base"); !errdefs.IsFailedPrecondition(err) {
			t.Errorf("removing a parent: %v, want failed precondition", err)
		}
		// Another namespace sees none of it.
		other := namespaces.WithNamespace(ctx, "other")
		if _, err := native.Stat(other, "base"); !errdefs.IsNotFound(err) {
			t.Errorf("Stat in another namespace: %v, want not found", err)
		}
	})

	t.Run("lease header", func(t *testing.T) {
		lm := leaseproxy.NewManager(leasesv1.NewLeasesClient(conn))
		l, err := lm.Create(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := native.Prepare(leases.WithLease(ctx, l.ID), "leased", ""); err != nil {
			t.Fatal(err)
		}
		res, err := lm.ListResources(ctx, l)
		if err != nil || !slices.Equal(res, []leases.Resource{{Type: "snapshots/native", ID: "leased"}}) {
			t.Errorf("lease resources %+v, %v", res, err)
		}
	})

	t.Run("external", func(t *testing.T) {
		if _, err := extra.Prepare(ctx, "outside", ""); err != nil {
			t.Fatal(err)
		}
		// The external process holds it, under berthd's backend key.
		econn := dial(t, externalSocket)
		direct := snapshotproxy.NewSnapshotter(snapshotsv1.NewSnapshotsClient(econn), "")
		var backendNames []string
		if err := direct.Walk(context.Background(), func(_ context.Context, info snapshots.Info) error {
			backendNames = append(backendNames, info.Name)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(backendNames) != 1 || !strings.HasPrefix(backendNames[0], "default/") || !strings.HasSuffix(backendNames[0], "/outside") {
			t.Errorf("external snapshotter holds %v, want one default/<n>/outside", backendNames)
		}
		if _, err := native.Stat(ctx, "outside"); !errdefs.IsNotFound(err) {
			t.Errorf("native sees extra's snapshot: %v", err)
		}
		if _, err := snapshotproxy.NewSnapshotter(client, "zfs").Stat(ctx, "x"); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "extra, native") {
			t.Errorf("unknown snapshotter: %v, want not found listing the configured ones", err)
		}
	})

	t.Run("diff", func(t *testing.T) {
		lm := leaseproxy.NewManager(leasesv1.NewLeasesClient(conn))
		l, err := lm.Create(ctx)
		if err != nil {
			t.Fatal(err)
		}
		lctx := leases.WithLease(ctx, l.ID)
		layer, diffID := gzipLayer(t, "hello", "world")
		cs := contentproxy.NewStore(contentv1.NewContentClient(conn))
		if err := content.WriteBlob(lctx, cs, "layer", bytes.NewReader(layer.data), layer.desc); err != nil {
			t.Fatal(err)
		}
		differ := diffproxy.NewDiffer(diffv1.NewDiffClient(conn))
		mounts, err := native.Prepare(lctx, "unpack", "")
		if err != nil {
			t.Fatal(err)
		}
		applied, err := differ.Apply(lctx, layer.desc, mounts)
		if err != nil {
			t.Fatal(err)
		}
		if applied.Digest != diffID {
			t.Errorf("applied layer has diff ID %s, want %s", applied.Digest, diffID)
		}
		if err := native.Commit(lctx, "layer", "unpack"); err != nil {
			t.Fatal(err)
		}
		lower, err := native.View(lctx, "lower", "")
		if err != nil {
			t.Fatal(err)
		}
		upper, err := native.View(lctx, "upper", "layer")
		if err != nil {
			t.Fatal(err)
		}
		written, err := differ.Compare(lctx, lower, upper)
		if err != nil {
			t.Fatal(err)
		}
		blob, err := content.ReadBlob(lctx, cs, written)
		if err != nil {
			t.Fatal(err)
		}
		if files := layerFiles(t, blob); files["hello"] != "world" || len(files) != 1 {
			t.Errorf("Compare wrote a layer holding %v, want hello=world", files)
		}
	})

	t.Run("info", func(t *testing.T) {
		info, err := introspectionv1.NewIntrospectionClient(conn).Info(ctx, &emptypb.Empty{})
		if err != nil {
			t.Fatal(err)
		}
		if info.GetDefaultSnapshotter() != "native" {
			t.Errorf("default snapshotter %q", info.GetDefaultSnapshotter())
		}
		got := map[string]*introspectionv1.Component{}
		for _, c := range info.GetComponents() {
			if c.GetType() == "snapshotter" {
				got[c.GetName()] = c
			}
		}
		want := map[string]string{
			"native": filepath.Join(cfg.State, "snapshotter-native.sock"),
			"extra":  externalSocket,
		}
		if len(got) != len(want) {
			t.Errorf("snapshotter components %v, want %v", got, want)
		}
		for name, addr := range want {
			if c := got[name]; c.GetAddress() != addr || c.GetStatus() != "ok" {
				t.Errorf("component %s = %v, want address %s and status ok", name, c, addr)
			}
		}
	})

	t.Run("child restarted after kill -9", func(t *testing.T) {
		child := srv.snapshotters.entries["native"].child
		before := child.Status()
		if before.State != supervise.StateRunning || before.Pid == 0 {
			t.Fatalf("child status %+v", before)
		}
		if err := syscall.Kill(before.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, err := native.Stat(ctx, "child")
			st := child.Status()
			if err == nil && st.Pid != before.Pid && st.State == supervise.StateRunning {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not serving again 15s after kill -9: %v, status %+v", err, st)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The restarted child serves the snapshots made before.
		if _, err := native.Mounts(ctx, "child"); err != nil {
			t.Errorf("Mounts after restart: %v", err)
		}
		if err := native.Commit(ctx, "child-c", "child"); err != nil {
			t.Errorf("Commit after restart: %v", err)
		}
		if st := child.Status(); st.Restarts != 1 || st.LastError == nil {
			t.Errorf("status after restart %+v, want one restart and the reason", st)
		}
	})

	t.Run("garbage collection", func(t *testing.T) {
		// Nothing holds base, child-c and extra's outside; leases hold the
		// rest.
		stats, err := srv.db.GarbageCollect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if stats.SnapshotsDeleted != 3 || stats.SnapshotsRemoved != 3 {
			t.Errorf("GC %+v, want 3 records and 3 backend snapshots removed", stats)
		}
		walk := func(sn snapshots.Snapshotter) []string {
			var got []string
			if err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
				got = append(got, info.Name)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			return got
		}
		for _, tc := range []struct {
			name   string
			sn     snapshots.Snapshotter
			socket string
			want   []string
		}{
			{"native", native, filepath.Join(cfg.State, "snapshotter-native.sock"), []string{"layer", "leased", "lower", "upper"}},
			{"extra", extra, externalSocket, nil},
		} {
			if got := walk(tc.sn); !slices.Equal(got, tc.want) {
				t.Errorf("%s lists %v after GC, want %v", tc.name, got, tc.want)
			}
			direct := snapshotproxy.NewSnapshotter(snapshotsv1.NewSnapshotsClient(dial(t, tc.socket)), "")
			if got := walk(direct); len(got) != len(tc.want) {
				t.Errorf("%s's backend holds %v after GC, want one for each of %v", tc.name, got, tc.want)
			}
		}
	})

	t.Run("stop ends own children only", func(t *testing.T) {
		pid := srv.snapshotters.entries["native"].child.Status().Pid
		srv.Stop()
		if alive(pid) {
			t.Errorf("child %d survived berthd's stop", pid)
		}
		if _, err := os.Lstat(filepath.Join(cfg.State, "snapshotter-native.sock")); err == nil {
			t.Errorf("child's socket left behind")
		}
		if !alive(external.Process.Pid) {
			t.Errorf("berthd stopped the external snapshotter it did not start")
		}
	})
}

func TestOverlayUnavailable(t *testing.T) {
	dir := t.TempDir()
	with := filepath.Join(dir, "with")
	without := filepath.Join(dir, "without")
	os.WriteFile(with, []byte("nodev\tsysfs\nnodev\ttmpfs\n\text4\nnodev\toverlay\n"), 0o644)
	os.WriteFile(without, []byte("nodev\tsysfs\n\text4\nnodev\toverlayish\n"), 0o644)
	if r := overlayUnavailable(with); r != "" {
		t.Errorf("with overlay: %q", r)
	}
	if r := overlayUnavailable(without); !strings.Contains(r, "no overlayfs") || !strings.Contains(r, "native") {
		t.Errorf("without overlay: %q, want the reason and the way out", r)
	}
	if r := overlayUnavailable(filepath.Join(dir, "missing")); !strings.Contains(r, "cannot tell") {
		t.Errorf("unreadable list: %q", r)
	}

	// An unavailable snapshotter is reported and refused with its reason.
	ss := &snapshotterSet{defaultName: "overlay", entries: map[string]*snapshotterEntry{
		"overlay": {name: "overlay", address: "/run/x.sock", backend: "overlay", unavailable: overlayUnavailable(without)},
	}}
	comps := ss.components(context.Background())
	if len(comps) != 1 || !strings.HasPrefix(comps[0].Status, "not started: the kernel has no overlayfs") {
		t.Errorf("components %+v", comps)
	}
	_, err := ss.lookup(nil)("")
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), `the default snapshotter "overlay" is unavailable: the kernel has no overlayfs`) {
		t.Errorf("lookup of the default: %v", err)
	}
}

func TestFindSnapshotterBinary(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "berth-snapshotter")
	plain := filepath.Join(dir, "plain")
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(plain, []byte("x"), 0o644)
	if got, err := findSnapshotterBinary(exe); err != nil || got != exe {
		t.Errorf("configured: %q, %v", got, err)
	}
	if _, err := findSnapshotterBinary(plain); err == nil || !strings.Contains(err.Error(), "snapshotter_binary") {
		t.Errorf("configured, not executable: %v", err)
	}
	if _, err := findSnapshotterBinary(filepath.Join(dir, "missing")); err == nil {
		t.Error("configured, missing: no error")
	}
	t.Setenv("PATH", dir)
	if got, err := findSnapshotterBinary(""); err != nil || got != exe {
		t.Errorf("on PATH: %q, %v", got, err)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := findSnapshotterBinary(""); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "snapshotter_binary") {
		t.Errorf("nowhere: %v, want not found saying what to do", err)
	}
}

// A berthd whose snapshotter program is missing, or whose external
// snapshotter is down, still serves, and says what is wrong.
func TestMissingSnapshotterBinary(t *testing.T) {
	cfg := testConfig(t)
	cfg.SnapshotterBinary = filepath.Join(t.TempDir(), "nope")
	cfg.DefaultSnapshotter = "native"
	cfg.Snapshotters = map[string]SnapshotterConfig{
		"overlay": {Disabled: true},
		"gone":    {Address: filepath.Join(filepath.Dir(cfg.Address), "gone.sock")},
	}
	start(t, cfg)
	conn := dial(t, cfg.Address)
	ctx := namespaces.WithNamespace(context.Background(), "default")
	_, err := snapshotproxy.NewSnapshotter(snapshotsv1.NewSnapshotsClient(conn), "").Stat(ctx, "x")
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Stat with no snapshotter program: %v, want unavailable naming the program", err)
	}
	info, err := introspectionv1.NewIntrospectionClient(conn).Info(ctx, &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, c := range info.GetComponents() {
		status[c.GetName()] = c.GetStatus()
	}
	if !strings.HasPrefix(status["native"], "not started: snapshotter_binary") {
		t.Errorf("native status %q", status["native"])
	}
	if !strings.HasPrefix(status["gone"], "not answering: ") {
		t.Errorf("status of an external snapshotter nobody serves: %q", status["gone"])
	}
}

// TestDefaultSnapshotters runs berthd with the embedded defaults: native
// always serves; overlay serves where the kernel has it (used as root) and
// is reported with the reason where it does not.
func TestDefaultSnapshotters(t *testing.T) {
	cfg := testConfig(t)
	cfg.Snapshotters = nil // the defaults
	cfg.DefaultSnapshotter = ""
	cfg.SnapshotterBinary = buildSnapshotter(t)
	start(t, cfg)
	conn := dial(t, cfg.Address)
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), "default"), time.Minute)
	defer cancel()
	info, err := introspectionv1.NewIntrospectionClient(conn).Info(ctx, &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for _, c := range info.GetComponents() {
		if c.GetType() == "snapshotter" {
			status[c.GetName()] = c.GetStatus()
		}
	}
	if info.GetDefaultSnapshotter() != "overlay" || status["native"] != "ok" || len(status) != 2 {
		t.Fatalf("default %q, snapshotters %v", info.GetDefaultSnapshotter(), status)
	}
	client := snapshotsv1.NewSnapshotsClient(conn)
	if reason := overlayUnavailable(procFilesystems); reason != "" {
		if status["overlay"] != "not started: "+reason {
			t.Errorf("overlay status %q, want the reason %q", status["overlay"], reason)
		}
		if _, err := snapshotproxy.NewSnapshotter(client, "").Stat(ctx, "x"); !errdefs.IsUnavailable(err) {
			t.Errorf("the default, unavailable overlay: %v, want unavailable", err)
		}
		return
	}
	if status["overlay"] != "ok" {
		t.Errorf("overlay status %q on a kernel that has overlayfs", status["overlay"])
	}
	if os.Geteuid() != 0 {
		return
	}
	overlay := snapshotproxy.NewSnapshotter(client, "")
	if _, err := overlay.Prepare(ctx, "work", ""); err != nil {
		t.Fatal(err)
	}
	if err := overlay.Commit(ctx, "base", "work"); err != nil {
		t.Fatal(err)
	}
	if mounts, err := overlay.View(ctx, "view", "base"); err != nil || len(mounts) == 0 {
		t.Fatalf("View on overlay: %+v, %v", mounts, err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Root, "snapshots", "overlay")); err != nil {
		t.Errorf("overlay root: %v", err)
	}
}

type testBlob struct {
	data []byte
	desc ocispec.Descriptor
}

// gzipLayer makes a gzip layer holding one file owned by the caller, and
// returns it with its diff ID.
func gzipLayer(t *testing.T, name, body string) (testBlob, digest.Digest) {
	t.Helper()
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Uid: os.Getuid(), Gid: os.Getgid(), Typeflag: tar.TypeReg, ModTime: time.Unix(1e9, 0)}
	if err := tw.WriteHeader(hdr); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(body))
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarBuf.Bytes())
	zw.Close()
	return testBlob{data: gz.Bytes(), desc: ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(gz.Bytes()), Size: int64(gz.Len()),
	}}, digest.FromBytes(tarBuf.Bytes())
}

// layerFiles reads the regular files of a gzip layer.
func layerFiles(t *testing.T, blob []byte) map[string]string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(tr)
			files[hdr.Name] = string(b)
		}
	}
}
