// Package testsuite is the conformance suite that every Snapshotter passes:
// containerd's semantics of active snapshots, views and committed
// snapshots, their parents, keys, labels, filters and usage, and, as root,
// the files seen through their mounts. Backends and the gRPC proxy run it
// from their tests:
//
//	testsuite.Run(t, func(t *testing.T, root string) snapshots.Snapshotter { ... })
package testsuite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

// NewFunc opens the snapshotter kept in root, which may hold one opened
// (and closed) before. The suite closes what it returns.
type NewFunc func(t *testing.T, root string) snapshots.Snapshotter

// Run runs the suite, each test on a snapshotter of its own.
func Run(t *testing.T, newSnapshotter NewFunc) {
	tests := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, sn snapshots.Snapshotter)
	}{
		{"Lifecycle", testLifecycle},
		{"Errors", testErrors},
		{"RemoveRefusesParents", testRemoveRefusesParents},
		{"Labels", testLabels},
		{"Walk", testWalk},
		{"Rebase", testRebase},
		{"Concurrent", testConcurrent},
		{"Cleanup", testCleanup},
		{"FilesThroughMounts", testFilesThroughMounts},
		{"DeepChain", testDeepChain},
		{"Usage", testUsage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sn := open(t, newSnapshotter, t.TempDir())
			tc.fn(t, context.Background(), sn)
		})
	}
	t.Run("Reopen", func(t *testing.T) { testReopen(t, newSnapshotter) })
}

func open(t *testing.T, newSnapshotter NewFunc, root string) snapshots.Snapshotter {
	t.Helper()
	sn := newSnapshotter(t, root)
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { sn.Close() }) })
	return closeOnce{sn, &once}
}

// closeOnce lets a test close its snapshotter early without the cleanup
// closing it again.
type closeOnce struct {
	snapshots.Snapshotter
	once *sync.Once
}

func (c closeOnce) Close() (err error) {
	c.once.Do(func() { err = c.Snapshotter.Close() })
	return err
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting snapshots needs root")
	}
}

// withMounted mounts mounts on a fresh folder for the length of fn.
func withMounted(t *testing.T, ctx context.Context, mounts []mount.Mount, fn func(root string)) {
	t.Helper()
	err := mount.WithTempMountIn(ctx, t.TempDir(), mounts, func(root string) error {
		fn(root)
		return nil
	})
	if err != nil {
		t.Fatalf("mounting %+v: %v", mounts, err)
	}
}

func prepare(t *testing.T, ctx context.Context, sn snapshots.Snapshotter, key, parent string, opts ...snapshots.Opt) []mount.Mount {
	t.Helper()
	m, err := sn.Prepare(ctx, key, parent, opts...)
	if err != nil {
		t.Fatalf("Prepare(%q, %q): %v", key, parent, err)
	}
	if len(m) == 0 {
		t.Fatalf("Prepare(%q, %q) returned no mounts", key, parent)
	}
	return m
}

func view(t *testing.T, ctx context.Context, sn snapshots.Snapshotter, key, parent string) []mount.Mount {
	t.Helper()
	m, err := sn.View(ctx, key, parent)
	if err != nil {
		t.Fatalf("View(%q, %q): %v", key, parent, err)
	}
	if len(m) == 0 {
		t.Fatalf("View(%q, %q) returned no mounts", key, parent)
	}
	return m
}

func commit(t *testing.T, ctx context.Context, sn snapshots.Snapshotter, name, key string, opts ...snapshots.Opt) {
	t.Helper()
	if err := sn.Commit(ctx, name, key, opts...); err != nil {
		t.Fatalf("Commit(%q, %q): %v", name, key, err)
	}
}

func stat(t *testing.T, ctx context.Context, sn snapshots.Snapshotter, key string) snapshots.Info {
	t.Helper()
	info, err := sn.Stat(ctx, key)
	if err != nil {
		t.Fatalf("Stat(%q): %v", key, err)
	}
	return info
}

// committedEmpty makes a committed snapshot without files.
func committedEmpty(t *testing.T, ctx context.Context, sn snapshots.Snapshotter, name, parent string) {
	t.Helper()
	prepare(t, ctx, sn, name+"-active", parent)
	commit(t, ctx, sn, name, name+"-active")
}

func names(t *testing.T, ctx context.Context, sn snapshots.Snapshotter, filters ...string) []string {
	t.Helper()
	var got []string
	err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		got = append(got, info.Name)
		return nil
	}, filters...)
	if err != nil {
		t.Fatalf("Walk(%q): %v", filters, err)
	}
	sort.Strings(got)
	return got
}

func expectErr(t *testing.T, what string, err error, is func(error) bool, kind string) {
	t.Helper()
	if err == nil || !is(err) {
		t.Errorf("%s: got error %v, want %s", what, err, kind)
	}
}

func testLifecycle(t *testing.T, ctx context.Context, sn snapshots.Snapshotter) {
	before := time.Now().Add(-time.Second)
	mounts := prepare(t, ctx, sn, "active-1", "", snapshots.WithLabels(map[string]string{"l": "1"}))
	info := stat(t, ctx, sn, "active-1")
	if info.Kind != snapshots.KindActive || info.Name != "active-1" || info.Parent != "" || info.Labels["l"] != "1" {
		t.Fatalf("Stat of a new active snapshot: %+v", info)
	}
	if info.Created.Before(before) || info.Updated.Before(info.Created) {
		t.Fatalf("times of a new snapshot: created %v, updated %v", info.Created, info.Updated)
	}
	again, err := sn.Mounts(ctx, "active-1")
	if err != nil || !reflect.DeepEqual(again, mounts) {
		t.Fatalf("Mounts = %+v, %v; Prepare returned %+v", again, err, mounts)
	}

	commit(t, ctx, sn, "base", "active-1", snapshots.WithLabels(map[string]string{"c": "2"}))
	if _, err := sn.Stat(ctx, "active-1"); !errdefs.IsNotFound(err) {
		t.Fatalf("the active key is still there after Commit: %v", err)
	}
	info = stat(t, ctx, sn, "base")
	if info.Kind != snapshots.KindCommitted || info.Parent != "" || !reflect.DeepEqual(info.Labels, map[string]string{"c": "2"}) {
		t.Fatalf("Stat of a committed snapshot: %+v", info)
	}
	_, err = sn.Mounts(ctx, "base")
	expectErr(t, "Mounts of a committed snapshot", err, errdefs.IsFailedPrecondition, "failed precondition")

	prepare(t, ctx, sn, "active-2", "base")
	if info := stat(t, ctx, sn, "active-2"); info.Parent != "base" || info.Kind != snapshots.KindActive {
		t.Fatalf("Stat of a child: %+v", info)
	}
	view(t, ctx, sn, "view-1", "base")
	if info := stat(t, ctx, sn, "view-1"); info.Parent != "base" || info.Kind != snapshots.KindView {
		t.Fatalf("Stat of a view: %+v", info)
	}
	view(t, ctx, sn, "view-empty", "")
	if info := stat(t, ctx, sn, "view-empty"); info.Parent != "" || info.Kind != snapshots.KindView {
		t.Fatalf("Stat of a view without parent: %+v", info)
	}
	err = sn.Commit(ctx, "from-view", "view-1")
	expectErr(t, "Commit of a view", err, errdefs.IsFailedPrecondition, "failed precondition")
	err = sn.Commit(ctx, "from-committed", "base")
	expectErr(t, "Commit of a committed snapshot", err, errdefs.IsFailedPrecondition, "failed precondition")

	commit(t, ctx, sn, "second", "active-2")
	if info := stat(t, ctx, sn, "second"); info.Parent != "base" {
		t.Fatalf("a committed child lost its parent: %+v", info)
	}
	for _, key := range []string{"view-1", "view-empty", "second", "base"} {
		if err := sn.Remove(ctx, key); err != nil {
			t.Fatalf("Remove(%q): %v", key, err)
		}
		if _, err := sn.Stat(ctx, key); !errdefs.IsNotFound(err) {
			t.Fatalf("Stat(%q) after Remove: %v", key, err)
		}
	}
	if got := names(t, ctx, sn); len(got) != 0 {
		t.Fatalf("left after removing everything: %v", got)
	}
	// A removed key can be used again.
	prepare(t, ctx, sn, "base", "")
}

func testErrors(t *testing.T, ctx context.Context, sn snapshots.Snapshotter) {
	committedEmpty(t, ctx, sn, "committed", "")
	prepare(t, ctx, sn, "active", "")
	view(t, ctx, sn, "view", "committed")

	_, err := sn.Prepare(ctx, "", "")
	expectErr(t, "Prepare with an empty key", err, errdefs.IsInvalidArgument, "invalid argument")
	for _, key := range []string{"active", "view", "committed"} {
		_, err := sn.Prepare(ctx, key, "")
		expectErr(t, fmt.Sprintf("Prepare of the taken key %q", key), err, errdefs.IsAlreadyExists, "already exists")
		_, err = sn.View(ctx, key, "committed")
		expectErr(t, fmt.Sprintf("View of the taken key %q", key), err, errdefs.IsAlreadyExists, "already exists")
	}
	_, err = sn.Prepare(ctx, "new", "missing")
	expectErr(t, "Prepare on a missing parent", err, errdefs.IsNotFound, "not found")
	_, err = sn.Prepare(ctx, "new", "active")
	expectErr(t, "Prepare on an active parent", err, errdefs.IsInvalidArgument, "invalid argument")
	_, err = sn.View(ctx, "new", "view")
	expectErr(t, "View of a view", err, errdefs.IsInvalidArgument, "invalid argument")
	if _, err := sn.Stat(ctx, "new"); !errdefs.IsNotFound(err) {
		t.Errorf("a failed Prepare left a snapshot: %v", err)
	}

	prepare(t, ctx, sn, "to-commit", "committed")
	for _, name := range []string{"committed", "active", "view"} {
		err := sn.Commit(ctx, name, "to-commit")
		expectErr(t, fmt.Sprintf("Commit to the taken name %q", name), err, errdefs.IsAlreadyExists, "already exists")
	}
	if info := stat(t, ctx, sn, "to-commit"); info.Kind != snapshots.KindActive {
		t.Errorf("a failed Commit changed the snapshot: %+v", info)
	}
	expectErr(t, "Commit of a missing key", sn.Commit(ctx, "n", "missing"), errdefs.IsNotFound, "not found")
	expectErr(t, "Commit to an empty name", sn.Commit(ctx, "", "to-commit"), errdefs.IsInvalidArgument, "invalid argument")

	expectErr(t, "Remove of a missing key", sn.Remove(ctx, "missing"), errdefs.IsNotFound, "not found")
	_, err = sn.Stat(ctx, "missing")
	expectErr(t, "Stat of a missing key", err, errdefs.IsNotFound, "not found")
	_, err = sn.Mounts(ctx, "missing")
	expectErr(t, "Mounts of a missing key", err, errdefs.IsNotFound, "not found")
	_, err = sn.Usage(ctx, "missing")
	expectErr(t, "Usage of a missing key", err, errdefs.IsNotFound, "not found")
	_, err = sn.Update(ctx, snapshots.Info{Name: "missing", Labels: map[string]string{"a": "b"}})
	expectErr(t, "Update of a missing key", err, errdefs.IsNotFound, "not found")
	err = sn.Walk(ctx, func(context.Context, snapshots.Info) error { return nil }, "name~=(")
	expectErr(t, "Walk with a bad filter", err, errdefs.IsInvalidArgument, "invalid argument")
}

func testRemoveRefusesParents(t *testing.T, ctx context.Context, sn snapshots.Snapshotter) {
	committedEmpty(t, ctx, sn, "base", "")
	prepare(t, ctx, sn, "child-active", "base")
	view(t, ctx, sn, "child-view", "base")
	committedEmpty(t, ctx, sn, "child-committed", "base")

	err := sn.Remove(ctx, "base")
	expectErr(t, "Remove of a parent", err, errdefs.IsFailedPrecondition, "failed precondition")
	if err != nil && !strings.Contains(err.Error(), "3") {
		t.Errorf("the refusal does not say how many children there are: %v", err)
	}
	stat(t, ctx, sn, "base")
	for _, key := range []string{"child-active", "child-view", "child-committed"} {
		if err := sn.Remove(ctx, key); err != nil {
			t.Fatalf("Remove(%q): %v", key, err)
		}
	}
	if err := sn.Remove(ctx, "base"); err != nil {
		t.Fatalf("Remove of a parent whose children are gone: %v", err)
	}
}

func testLabels(t *testing.T, ctx context.Context, sn snapshots.Snapshotter) {
	prepare(t, ctx, sn, "a", "", snapshots.WithLabels(map[string]string{"keep": "1", "drop": "2", "change": "3"}))
	created := stat(t, ctx, sn, "a")
	time.Sleep(time.Millisecond) // so that Updated must move
	info, err := sn.Update(ctx, snapshots.Info{Name: "a", Labels: map[string]string{"change": "new", "add": "x", "keep": "ignored"}},
		"labels.change", "labels.drop", "labels.add")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"keep": "1", "change": "new", "add": "x"}
	if !reflect.DeepEqual(info.Labels, want) {
		t.Fatalf("labels after Update of labels.KEY: %v, want %v", info.Labels, want)
	}
	if !info.Created.Equal(created.Created) || !info.Updated.After(created.Updated) {
		t.Fatalf("Update: created %v -> %v, updated %v -> %v", created.Created, info.Created, created.Updated, info.Updated)
	}
	if got := stat(t, ctx, sn, "a"); !reflect.DeepEqual(got.Labels, want) {
		t.Fatalf("Stat after Update: %v, want %v", got.Labels, want)
	}
	info, err = sn.Update(ctx, snapshots.Info{Name: "a", Labels: map[string]string{"only": "this"}})
	if err != nil || !reflect.DeepEqual(info.Labels, map[string]string{"only": "this"}) {
		t.Fatalf("Update without fieldpaths replaces the labels: got %v, %v", info.Labels, err)
	}
	info, err = sn.Update(ctx, snapshots.Info{Name: "a", Labels: map[string]string{"x": "y"}}, "labels")
	if err != nil || !reflect.DeepEqual(info.Labels, map[string]string{"x": "y"}) {
		t.Fatalf(`Update of "labels" replaces them: got %v, %v`, info.Labels, err)
	}
	_, err = sn.Update(ctx, snapshots.Info{Name: "a", Parent: "other"}, "parent")
	expectErr(t, "Update of the parent", err, errdefs.IsInvalidArgument, "invalid argument")

	commit(t, ctx, sn, "c", "a")
	info, err = sn.Update(ctx, snapshots.Info{Name: "c", Labels: map[string]string{"gc": "root"}}, "labels.gc")
	if err != nil || info.Labels["gc"] != "root" || info.Kind != snapshots.KindCommitted {
		t.Fatalf("Update of a committed snapshot: %+v, %v", info, err)
	}
}

func testWalk(t *testing.T, ctx context.Context, sn snapshots.Snapshotter) {
	committedEmpty(t, ctx, sn, "c1", "")
	committedEmpty(t, ctx, sn, "c2", "c1")
	if _, err := sn.View(ctx, "v", "c2", snapshots.WithLabels(map[string]string{"berth.io/x.y": "1"})); err != nil {
		t.Fatal(err)
	}
	prepare(t, ctx, sn, "a", "c1", snapshots.WithLabels(map[string]string{"app": "web"}))
	for _, tc := range []struct {
		filters []string
		want    []string
	}{
		{nil, []string{"a", "c1", "c2", "v"}},
		{[]string{"kind==committed"}, []string{"c1", "c2"}},
		{[]string{"kind==view"}, []string{"v"}},
		{[]string{"parent==c1"}, []string{"a", "c2"}},
		{[]string{"name==v", "labels.app==web"}, []string{"a", "v"}},
		{[]string{`labels."berth.io/x.y"==1`}, []string{"v"}},
		{[]string{"kind==active,parent==c2"}, nil},
		{[]string{"name~=^c"}, []string{"c1", "c2"}},
	} {
		if got := names(t, ctx, sn, tc.filters...); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Walk(%q) = %v, want %v", tc.filters, got, tc.want)
		}
	}
	// fn may call the snapshotter, and its error ends the walk.
	stop := errors.New("stop")
	n := 0
	err := sn.Walk(ctx, func(ctx context.Context, info snapshots.Info) error {
		n++
		if _, err := sn.Update(ctx, snapshots.Info{Name: info.Name, Labels: map[string]string{"seen": "1"}}, "labels.seen"); err != nil {
			return err
		}
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("Walk whose fn fails: %v after %d calls", err, n)
	}
	if got := names(t, ctx, sn, "labels.seen"); len(got) != 1 {
		t.Fatalf("the Update made inside Walk: %v", got)
	}
}

func testRebase(t *testing.T, ctx context.Context, sn snapshots.Snapshotter) {
	caps, err := sn.Capabilities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	committedEmpty(t, ctx, sn, "base", "")
	committedEmpty(t, ctx, sn, "other", "")
	if !slices.Contains(caps, snapshots.CapabilityRebase) {
		prepare(t, ctx, sn, "layer", "base")
		err := sn.Commit(ctx, "top", "layer", snapshots.WithParent("other"))
		expectErr(t, "Commit onto another parent without the rebase capability", err, errdefs.IsNotImplemented, "not implemented")
		commit(t, ctx, sn, "top", "layer", snapshots.WithParent("base"))
		return
	}

	mounts := prepare(t, ctx, sn, "layer", "", snapshots.WithLabels(map[string]string{snapshots.LabelRebase: "true"}))
	prepare(t, ctx, sn, "active", "")
	err = sn.Commit(ctx, "top", "layer", snapshots.WithParent("active"))
	expectErr(t, "Commit onto an active parent", err, errdefs.IsInvalidArgument, "invalid argument")
	err = sn.Commit(ctx, "top", "layer", snapshots.WithParent("missing"))
	expectErr(t, "Commit onto a missing parent", err, errdefs.IsNotFound, "not found")

	rooted := os.Geteuid() == 0
	if rooted {
		committedFiles(t, ctx, sn, "with-a", "", map[string]string{"a": "from base"})
		withMounted(t, ctx, mounts, func(root string) {
			writeFiles(t, root, map[string]string{"b": "from layer"})
		})
	}
	parent := "base"
	if rooted {
		parent = "with-a"
	}
	commit(t, ctx, sn, "top", "layer", snapshots.WithParent(parent))
	if info := stat(t, ctx, sn, "top"); info.Parent != parent || info.Kind != snapshots.KindCommitted {
		t.Fatalf("rebased snapshot: %+v", info)
	}
	expectErr(t, "Remove of the new parent", sn.Remove(ctx, parent), errdefs.IsFailedPrecondition, "failed precondition")
	if rooted {
		withMounted(t, ctx, view(t, ctx, sn, "view", "top"), func(root string) {
			checkFiles(t, root, map[string]string{"a": "from base", "b": "from layer"})
		})
	}
}

func testConcurrent(t *testing.T, ctx context.Context, sn snapshots.Snapshotter) {
	committedEmpty(t, ctx, sn, "base", "")
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sources := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("active-%d", i)
			m, err := sn.Prepare(ctx, key, "base")
			if err != nil {
				errs <- err
				return
			}
			sources <- fmt.Sprint(m)
			if err := sn.Commit(ctx, fmt.Sprintf("layer-%d", i), key); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	close(sources)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]bool{}
	for s := range sources {
		if seen[s] {
			t.Errorf("two snapshots got the same mounts: %s", s)
		}
		seen[s] = true
	}
	if got := names(t, ctx, sn, "kind==committed,parent==base"); len(got) != n {
		t.Fatalf("%d committed children, want %d: %v", len(got), n, got)
	}
}

func testCleanup(t *testing.T, ctx context.Context, sn snapshots.Snapshotter) {
	files := map[string]string{"f": "kept"}
	if os.Geteuid() == 0 {
		committedFiles(t, ctx, sn, "base", "", files)
	} else {
		committedEmpty(t, ctx, sn, "base", "")
	}
	prepare(t, ctx, sn, "active", "base")
	view(t, ctx, sn, "view", "base")
	prepare(t, ctx, sn, "removed", "")
	if err := sn.Remove(ctx, "removed"); err != nil {
		t.Fatal(err)
	}
	if err := sn.Cleanup(ctx); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if got := names(t, ctx, sn); !reflect.DeepEqual(got, []string{"active", "base", "view"}) {
		t.Fatalf("after Cleanup: %v", got)
	}
	if os.Geteuid() == 0 {
		for _, key := range []string{"active", "view"} {
			m, err := sn.Mounts(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			withMounted(t, ctx, m, func(root string) { checkFiles(t, root, files) })
		}
	}
}

func testReopen(t *testing.T, newSnapshotter NewFunc) {
	ctx := context.Background()
	root := t.TempDir()
	sn := open(t, newSnapshotter, root)
	committedEmpty(t, ctx, sn, "base", "")
	first := prepare(t, ctx, sn, "active", "base", snapshots.WithLabels(map[string]string{"l": "v"}))
	if err := sn.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	sn = open(t, newSnapshotter, root)
	if info := stat(t, ctx, sn, "active"); info.Parent != "base" || info.Labels["l"] != "v" {
		t.Fatalf("after reopening: %+v", info)
	}
	if m, err := sn.Mounts(ctx, "active"); err != nil || !reflect.DeepEqual(m, first) {
		t.Fatalf("mounts after reopening: %+v, %v; before: %+v", m, err, first)
	}
	second := prepare(t, ctx, sn, "active-2", "base")
	if reflect.DeepEqual(first, second) {
		t.Fatalf("a snapshot made after reopening got the mounts of an old one: %+v", second)
	}
}

// Files through mounts, as root.

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checkFiles checks the content of files; "" means the file must not exist.
func checkFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, want := range files {
		b, err := os.ReadFile(filepath.Join(root, name))
		switch {
		case want == "" && !errors.Is(err, os.ErrNotExist):
			t.Errorf("%s: should not exist (read %q, %v)", name, b, err)
		case want != "" && (err != nil || string(b) != want):
			t.Errorf("%s: read %q, %v; want %q", name, b, err, want)
		}
	}
}

// committedFiles makes a committed snapshot name on parent with files
// written through its mounts.
func committedFiles(t *testing.T, ctx context.Context, sn snapshots.Snapshotter, name, parent string, files map[string]string) {
	t.Helper()
	withMounted(t, ctx, prepare(t, ctx, sn, name+"-active", parent), func(root string) {
		writeFiles(t, root, files)
	})
	commit(t, ctx, sn, name, name+"-active")
}

func lstat(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

func testFilesThroughMounts(t *testing.T, ctx context.Context, sn snapshots.Snapshotter) {
	needRoot(t)
	past := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	withMounted(t, ctx, prepare(t, ctx, sn, "base-active", ""), func(root string) {
		writeFiles(t, root, map[string]string{"file": "content", "dir/sub": "sub", "gone": "x", "dir/also-gone": "y"})
		must(t, os.Chmod(root, 0o750))
		must(t, os.Link(filepath.Join(root, "file"), filepath.Join(root, "hard")))
		must(t, os.Symlink("file", filepath.Join(root, "sym")))
		must(t, os.WriteFile(filepath.Join(root, "setuid"), []byte("#!/bin/sh\n"), 0o755))
		must(t, os.Chown(filepath.Join(root, "setuid"), 1000, 1001))
		must(t, os.Chmod(filepath.Join(root, "setuid"), 0o4755|os.ModeSetuid))
		must(t, unix.Mkfifo(filepath.Join(root, "fifo"), 0o600))
		must(t, unix.Mknod(filepath.Join(root, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(t, unix.Setxattr(filepath.Join(root, "file"), "user.berth", []byte("xattr"), 0))
		must(t, os.Chtimes(filepath.Join(root, "file"), past, past))
		must(t, os.Chtimes(filepath.Join(root, "dir"), past, past))
	})
	commit(t, ctx, sn, "base", "base-active")

	withMounted(t, ctx, prepare(t, ctx, sn, "child-active", "base"), func(root string) {
		checkFiles(t, root, map[string]string{"file": "content", "hard": "content", "dir/sub": "sub", "sym": "content"})
		if fi, err := os.Stat(root); err != nil || fi.Mode().Perm() != 0o750 {
			t.Errorf("root folder of a child: %v, %v; want mode 0750 as in its parent", fi.Mode(), err)
		}
		if st, hard := lstat(t, filepath.Join(root, "file")), lstat(t, filepath.Join(root, "hard")); st.Ino != hard.Ino || st.Nlink != 2 {
			t.Errorf("hard link lost: inodes %d and %d, %d links", st.Ino, hard.Ino, st.Nlink)
		}
		if target, err := os.Readlink(filepath.Join(root, "sym")); err != nil || target != "file" {
			t.Errorf("symlink: %q, %v", target, err)
		}
		if st := lstat(t, filepath.Join(root, "setuid")); st.Mode&0o7777 != 0o4755 || st.Uid != 1000 || st.Gid != 1001 {
			t.Errorf("setuid file: mode %#o, owner %d:%d", st.Mode&0o7777, st.Uid, st.Gid)
		}
		if st := lstat(t, filepath.Join(root, "fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO {
			t.Errorf("fifo: mode %#o", st.Mode)
		}
		if st := lstat(t, filepath.Join(root, "null")); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
			t.Errorf("device: mode %#o rdev %#x", st.Mode, st.Rdev)
		}
		buf := make([]byte, 64)
		if n, err := unix.Getxattr(filepath.Join(root, "file"), "user.berth", buf); err != nil || string(buf[:n]) != "xattr" {
			t.Errorf("xattr: %q, %v", buf[:max(n, 0)], err)
		}
		for _, name := range []string{"file", "dir"} {
			if fi, err := os.Lstat(filepath.Join(root, name)); err != nil || !fi.ModTime().Equal(past) {
				t.Errorf("%s: modified %v, want %v (%v)", name, fi.ModTime(), past, err)
			}
		}
		// Change the child: delete, replace, add.
		must(t, os.Remove(filepath.Join(root, "gone")))
		must(t, os.Remove(filepath.Join(root, "dir", "also-gone")))
		writeFiles(t, root, map[string]string{"dir/sub": "changed", "new": "new"})
	})
	commit(t, ctx, sn, "child", "child-active")

	// A view of the child: the changes over the parent, read-only.
	withMounted(t, ctx, view(t, ctx, sn, "view-child", "child"), func(root string) {
		checkFiles(t, root, map[string]string{"file": "content", "hard": "content", "gone": "", "dir/also-gone": "",
			"dir/sub": "changed", "new": "new"})
		err := os.WriteFile(filepath.Join(root, "w"), nil, 0o644)
		if !errors.Is(err, unix.EROFS) {
			t.Errorf("writing into a view of two layers: %v, want EROFS", err)
		}
	})
	// A view of the parent is untouched by the child's changes.
	withMounted(t, ctx, view(t, ctx, sn, "view-base", "base"), func(root string) {
		checkFiles(t, root, map[string]string{"gone": "x", "dir/also-gone": "y", "dir/sub": "sub", "new": ""})
		err := os.WriteFile(filepath.Join(root, "w"), nil, 0o644)
		if !errors.Is(err, unix.EROFS) {
			t.Errorf("writing into a view of one layer: %v, want EROFS", err)
		}
	})
	// A view without parent is empty and read-only.
	withMounted(t, ctx, view(t, ctx, sn, "view-empty", ""), func(root string) {
		if entries, err := os.ReadDir(root); err != nil || len(entries) != 0 {
			t.Errorf("view without parent: %v, %v", entries, err)
		}
		if err := os.WriteFile(filepath.Join(root, "w"), nil, 0o644); !errors.Is(err, unix.EROFS) {
			t.Errorf("writing into a view without parent: %v, want EROFS", err)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// testDeepChain stacks layers that each add a file and delete the one
// before, then checks the top.
func testDeepChain(t *testing.T, ctx context.Context, sn snapshots.Snapshotter) {
	needRoot(t)
	const depth = 8
	parent := ""
	for i := 0; i < depth; i++ {
		name := fmt.Sprintf("layer-%d", i)
		withMounted(t, ctx, prepare(t, ctx, sn, name+"-active", parent), func(root string) {
			writeFiles(t, root, map[string]string{fmt.Sprintf("f%d", i): name, "last": name})
			if i > 0 {
				must(t, os.Remove(filepath.Join(root, fmt.Sprintf("f%d", i-1))))
			}
		})
		commit(t, ctx, sn, name, name+"-active")
		parent = name
	}
	withMounted(t, ctx, view(t, ctx, sn, "top", parent), func(root string) {
		entries, err := os.ReadDir(root)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Name())
		}
		want := []string{fmt.Sprintf("f%d", depth-1), "last"}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("top of %d layers: %v, want %v", depth, got, want)
		}
		checkFiles(t, root, map[string]string{"last": parent})
	})
}

func testUsage(t *testing.T, ctx context.Context, sn snapshots.Snapshotter) {
	mounts := prepare(t, ctx, sn, "active", "")
	empty, err := sn.Usage(ctx, "active")
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		return
	}
	const size = 1 << 20
	withMounted(t, ctx, mounts, func(root string) {
		must(t, os.WriteFile(filepath.Join(root, "big"), make([]byte, size), 0o644))
		must(t, os.Link(filepath.Join(root, "big"), filepath.Join(root, "link")))
		must(t, os.Mkdir(filepath.Join(root, "dir"), 0o755))
	})
	u, err := sn.Usage(ctx, "active")
	if err != nil {
		t.Fatal(err)
	}
	// One data file however many links, and a folder.
	if grown := u.Size - empty.Size; grown < size || grown >= 2*size {
		t.Errorf("usage grew by %d bytes for one %d-byte file with two links", grown, size)
	}
	if u.Inodes-empty.Inodes != 2 {
		t.Errorf("usage grew by %d inodes for a file with two links and a folder, want 2", u.Inodes-empty.Inodes)
	}
	commit(t, ctx, sn, "committed", "active")
	if c, err := sn.Usage(ctx, "committed"); err != nil || c != u {
		t.Errorf("usage after Commit: %+v, %v; before %+v", c, err, u)
	}
}
