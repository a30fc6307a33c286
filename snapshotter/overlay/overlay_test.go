package overlay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
	"github.com/berth-engine/berth/snapshotter/snapshots"
	"github.com/berth-engine/berth/snapshotter/snapshots/testsuite"
)

func newOverlay(t *testing.T, root string) snapshots.Snapshotter {
	t.Helper()
	o, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestConformance(t *testing.T) {
	testsuite.Run(t, newOverlay)
}

func openOverlay(t *testing.T) (*Snapshotter, string) {
	t.Helper()
	root := t.TempDir()
	o, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o, root
}

func TestCheckOverlay(t *testing.T) {
	dir := t.TempDir()
	with := filepath.Join(dir, "with")
	without := filepath.Join(dir, "without")
	if err := os.WriteFile(with, []byte("nodev\tsysfs\n\text4\nnodev\toverlay\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(without, []byte("nodev\tsysfs\n\text4\nnodev\toverlayx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := checkOverlay(with); err != nil {
		t.Fatalf("overlay listed: %v", err)
	}
	err := checkOverlay(without)
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "--backend native") {
		t.Fatalf("overlay not listed: got %v, want a not-implemented error pointing to the native backend", err)
	}
}

// TestMountShapes checks the mounts of each kind of snapshot.
func TestMountShapes(t *testing.T) {
	o, root := openOverlay(t)
	ctx := context.Background()
	snap := func(id string) string { return filepath.Join(root, "snapshots", id, "fs") }
	id := func(key string) string {
		t.Helper()
		// The id is the folder name in the first mount's source or upperdir.
		m, err := o.Mounts(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		for _, opt := range m[0].Options {
			if v, ok := strings.CutPrefix(opt, "upperdir="); ok {
				return filepath.Base(filepath.Dir(v))
			}
		}
		return filepath.Base(filepath.Dir(m[0].Source))
	}
	check := func(what string, got []mount.Mount, want mount.Mount) {
		t.Helper()
		if want.Type == "overlay" {
			want.Options = append(append([]string(nil), o.options...), want.Options...)
		}
		if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
			t.Errorf("%s: mounts %+v, want %+v", what, got, want)
		}
	}

	m, err := o.Prepare(ctx, "a1", "")
	if err != nil {
		t.Fatal(err)
	}
	a1 := id("a1")
	check("active without parent", m, mount.Mount{Type: "bind", Source: snap(a1), Options: []string{"rw", "rbind"}})
	if err := o.Commit(ctx, "c1", "a1"); err != nil {
		t.Fatal(err)
	}
	m, _ = o.View(ctx, "v1", "c1")
	check("view of one parent", m, mount.Mount{Type: "bind", Source: snap(a1), Options: []string{"ro", "rbind"}})
	m, _ = o.View(ctx, "v0", "")
	check("view without parent", m, mount.Mount{Type: "bind", Source: snap(id("v0")), Options: []string{"ro", "rbind"}})

	m, _ = o.Prepare(ctx, "a2", "c1")
	a2 := id("a2")
	check("active with a parent", m, mount.Mount{Type: "overlay", Source: "overlay", Options: []string{
		"workdir=" + filepath.Join(root, "snapshots", a2, "work"), "upperdir=" + snap(a2), "lowerdir=" + snap(a1)}})
	if err := o.Commit(ctx, "c2", "a2"); err != nil {
		t.Fatal(err)
	}
	m, _ = o.View(ctx, "v2", "c2")
	check("view of two parents", m, mount.Mount{Type: "overlay", Source: "overlay", Options: []string{
		"lowerdir=" + snap(a2) + ":" + snap(a1)}})

	m, _ = o.Prepare(ctx, "r", "", snapshots.WithLabels(map[string]string{snapshots.LabelRebase: "true"}))
	r := id("r")
	check("active to be rebased", m, mount.Mount{Type: "overlay", Source: "overlay", Options: []string{
		"workdir=" + filepath.Join(root, "snapshots", r, "work"), "upperdir=" + snap(r), "lowerdir=" + filepath.Join(root, "empty")}})

	caps, err := o.Capabilities(ctx)
	if err != nil || !reflect.DeepEqual(caps, []string{snapshots.CapabilityRebase}) {
		t.Fatalf("capabilities %v, %v", caps, err)
	}
}

// TestDeepChainMounts prepares a chain of 128 layers under a long root and
// mounts it: the lowerdir list is longer than a page, and the mount must
// still work from any working directory.
func TestDeepChainMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	const depth = 128
	root := filepath.Join(t.TempDir(), strings.Repeat("a-rather-long-root-folder/", 3), "snapshots", "overlay")
	o, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	ctx := context.Background()
	parent := ""
	for i := 0; i < depth; i++ {
		name := fmt.Sprintf("layer-%d", i)
		mounts, err := o.Prepare(ctx, name+"-active", parent)
		if err != nil {
			t.Fatal(err)
		}
		// Write straight into the upper folder, as an applier would.
		upper := mounts[0].Source
		for _, opt := range mounts[0].Options {
			if v, ok := strings.CutPrefix(opt, "upperdir="); ok {
				upper = v
			}
		}
		if err := os.WriteFile(filepath.Join(upper, fmt.Sprintf("f%03d", i)), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := o.Commit(ctx, name, name+"-active"); err != nil {
			t.Fatal(err)
		}
		parent = name
	}
	for _, tc := range []struct {
		what  string
		mount func() ([]mount.Mount, error)
	}{
		{"view", func() ([]mount.Mount, error) { return o.View(ctx, "view", parent) }},
		{"active", func() ([]mount.Mount, error) { return o.Prepare(ctx, "active", parent) }},
	} {
		mounts, err := tc.mount()
		if err != nil {
			t.Fatal(err)
		}
		if n := len(strings.Join(mounts[0].Options, ",")); n < os.Getpagesize() {
			t.Fatalf("test setup: the %s's options are only %d bytes", tc.what, n)
		}
		err = mount.WithTempMountIn(ctx, t.TempDir(), mounts, func(target string) error {
			entries, err := os.ReadDir(target)
			if err != nil {
				return err
			}
			if len(entries) != depth {
				return fmt.Errorf("%d files through the %s of %d layers", len(entries), tc.what, depth)
			}
			for _, i := range []int{0, depth / 2, depth - 1} {
				b, err := os.ReadFile(filepath.Join(target, fmt.Sprintf("f%03d", i)))
				if err != nil || string(b) != fmt.Sprintf("layer-%d", i) {
					return fmt.Errorf("file of layer %d: %q, %v", i, b, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("mounting the %s of %d layers: %v", tc.what, depth, err)
		}
	}
}

// TestCleanupAfterCrash leaves what a crash at each point of a Prepare or a
// Remove would, and checks that Cleanup removes exactly that.
func TestCleanupAfterCrash(t *testing.T) {
	o, root := openOverlay(t)
	ctx := context.Background()
	if _, err := o.Prepare(ctx, "kept", ""); err != nil {
		t.Fatal(err)
	}
	snapshotsDir := filepath.Join(root, "snapshots")
	before := listDir(t, snapshotsDir)
	if len(before) != 1 {
		t.Fatalf("one snapshot made %v", before)
	}
	// A crash before the transaction: a temporary folder; between the
	// rename and the commit: a folder named by an id without record; after
	// a Remove's commit: a folder moved aside.
	for _, leftover := range []string{"new-7-abc/fs", "9999/fs", "9999/work", "rm-12-xyz/fs/deep"} {
		if err := os.MkdirAll(filepath.Join(snapshotsDir, leftover), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if after := listDir(t, snapshotsDir); !reflect.DeepEqual(after, before) {
		t.Fatalf("after Cleanup: %v, want %v", after, before)
	}
	if _, err := o.Mounts(ctx, "kept"); err != nil {
		t.Fatal(err)
	}
}

// TestPrepareReplacesCrashLeftover: a crash between placing a folder and
// committing leaves a folder under the id that the next Prepare gets.
func TestPrepareReplacesCrashLeftover(t *testing.T) {
	o, root := openOverlay(t)
	ctx := context.Background()
	if _, err := o.Prepare(ctx, "first", ""); err != nil {
		t.Fatal(err)
	}
	first := listDir(t, filepath.Join(root, "snapshots"))[0]
	var next int
	fmt.Sscan(first, &next)
	stale := filepath.Join(root, "snapshots", fmt.Sprint(next+1))
	if err := os.MkdirAll(filepath.Join(stale, "fs", "stale-file"), 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := o.Prepare(ctx, "second", "")
	if err != nil {
		t.Fatalf("Prepare over a crash leftover: %v", err)
	}
	if m[0].Source != filepath.Join(stale, "fs") {
		t.Fatalf("test setup: the second snapshot is at %s, not %s", m[0].Source, stale)
	}
	if entries := listDir(t, m[0].Source); len(entries) != 0 {
		t.Fatalf("the new snapshot holds the leftover's files: %v", entries)
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
