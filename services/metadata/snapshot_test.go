package metadata

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/services/leases"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

// newSnapshotEnv is a test DB with one fake backend named "fake".
func newSnapshotEnv(t *testing.T) (*testEnv, *fakeSnapshotter, snapshots.Snapshotter) {
	t.Helper()
	fake := newFakeSnapshotter()
	e := newTestEnv(t, WithSnapshotters(map[string]snapshots.Snapshotter{"fake": fake}))
	sn := e.db.Snapshotter("fake")
	if sn == nil {
		t.Fatal(`Snapshotter("fake") is nil`)
	}
	return e, fake, sn
}

// backendKeyOf returns the backend key the record of key names.
func backendKeyOf(t *testing.T, e *testEnv, ns, key string) string {
	t.Helper()
	rec, err := e.db.snapshotters["fake"].record(ns, key)
	if err != nil {
		t.Fatalf("record of %q in %q: %v", key, ns, err)
	}
	return rec.bkey
}

func walkNames(t *testing.T, ctx context.Context, sn snapshots.Snapshotter, filters ...string) []string {
	t.Helper()
	var names []string
	if err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		names = append(names, info.Name)
		return nil
	}, filters...); err != nil {
		t.Fatalf("Walk(%q): %v", filters, err)
	}
	slices.Sort(names)
	return names
}

func TestSnapshotLifecycle(t *testing.T) {
	e, fake, sn := newSnapshotEnv(t)
	ctx := nsCtx("default")

	if e.db.Snapshotter("missing") != nil {
		t.Error(`Snapshotter("missing") is not nil`)
	}
	mounts, err := sn.Prepare(ctx, "layer-1", "", snapshots.WithLabels(map[string]string{
		"mine": "yes", snapshots.LabelRebase: "true",
	}))
	if err != nil {
		t.Fatal(err)
	}
	bkey := backendKeyOf(t, e, "default", "layer-1")
	if !isBackendKey(bkey) || !strings.HasPrefix(bkey, "default/") || !strings.HasSuffix(bkey, "/layer-1") {
		t.Errorf("backend key %q, want default/<seq>/layer-1", bkey)
	}
	if len(mounts) != 1 || mounts[0].Source != "/fake/"+bkey {
		t.Errorf("mounts %+v are not the backend's", mounts)
	}
	binfo, _ := fake.get(bkey)
	if binfo.Labels[snapshots.LabelRebase] != "true" || binfo.Labels["mine"] != "" {
		t.Errorf("backend labels %v: want only the berth.snapshot. ones", binfo.Labels)
	}
	_, err = sn.Prepare(ctx, "layer-1", "")
	wantKind(t, err, errdefs.ErrAlreadyExists)
	_, err = sn.Prepare(ctx, "x", "layer-1")
	wantKind(t, err, errdefs.ErrInvalidArgument) // parent is active
	_, err = sn.Prepare(ctx, "x", "nope")
	wantKind(t, err, errdefs.ErrNotFound)
	_, err = sn.Prepare(ctx, "", "")
	wantKind(t, err, errdefs.ErrInvalidArgument)

	if err := sn.Commit(ctx, "c1", "layer-1", snapshots.WithLabels(map[string]string{"committed": "1"})); err != nil {
		t.Fatal(err)
	}
	info, err := sn.Stat(ctx, "c1")
	if err != nil || info.Kind != snapshots.KindCommitted || info.Name != "c1" || info.Parent != "" ||
		info.Labels["committed"] != "1" || info.Created.IsZero() {
		t.Errorf("Stat(c1) = %+v, %v", info, err)
	}
	_, err = sn.Stat(ctx, "layer-1")
	wantKind(t, err, errdefs.ErrNotFound)
	if _, ok := fake.get(bkey); ok {
		t.Errorf("backend still has the active %q after Commit", bkey)
	}
	_, err = sn.Mounts(ctx, "c1")
	wantKind(t, err, errdefs.ErrFailedPrecondition)
	wantKind(t, sn.Commit(ctx, "c2", "c1"), errdefs.ErrFailedPrecondition)

	// A chain: c1 <- c2, with a view and an active on c2.
	if _, err := sn.Prepare(ctx, "layer-2", "c1"); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "c2", "layer-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.View(ctx, "view", "c2"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "work", "c2"); err != nil {
		t.Fatal(err)
	}
	if m, err := sn.Mounts(ctx, "view"); err != nil || len(m) != 1 || !slices.Contains(m[0].Options, "ro") {
		t.Errorf("Mounts(view) = %+v, %v", m, err)
	}
	if u, err := sn.Usage(ctx, "work"); err != nil || u.Size != int64(len(backendKeyOf(t, e, "default", "work"))) {
		t.Errorf("Usage(work) = %+v, %v; want the backend's answer for its key", u, err)
	}
	if got := walkNames(t, ctx, sn); !slices.Equal(got, []string{"c1", "c2", "view", "work"}) {
		t.Errorf("Walk = %v", got)
	}
	if got := walkNames(t, ctx, sn, "kind==committed"); !slices.Equal(got, []string{"c1", "c2"}) {
		t.Errorf("Walk(kind==committed) = %v", got)
	}
	if got := walkNames(t, ctx, sn, "parent==c2"); !slices.Equal(got, []string{"view", "work"}) {
		t.Errorf("Walk(parent==c2) = %v", got)
	}
	if got := walkNames(t, ctx, sn, `labels."committed"==1`); !slices.Equal(got, []string{"c1"}) {
		t.Errorf("Walk(labels.committed==1) = %v", got)
	}

	// Labels change in the record only.
	up, err := sn.Update(ctx, snapshots.Info{Name: "c2", Labels: map[string]string{"a": "1"}}, "labels.a")
	if err != nil || up.Labels["a"] != "1" {
		t.Errorf("Update labels.a = %+v, %v", up, err)
	}
	_, err = sn.Update(ctx, snapshots.Info{Name: "c2", Parent: "x"}, "parent")
	wantKind(t, err, errdefs.ErrInvalidArgument)
	_, err = sn.Update(ctx, snapshots.Info{Name: "nope"})
	wantKind(t, err, errdefs.ErrNotFound)

	// Parents with children stay.
	err = sn.Remove(ctx, "c2")
	wantKind(t, err, errdefs.ErrFailedPrecondition)
	if !strings.Contains(err.Error(), "children") {
		t.Errorf("message %q does not say why", err)
	}
	for _, key := range []string{"view", "work", "c2", "c1"} {
		if err := sn.Remove(ctx, key); err != nil {
			t.Fatalf("Remove(%s): %v", key, err)
		}
	}
	wantKind(t, sn.Remove(ctx, "c1"), errdefs.ErrNotFound)
	if names := fake.names(); len(names) != 0 {
		t.Errorf("backend keeps %v after every snapshot was removed", names)
	}
}

func TestSnapshotBackendFailures(t *testing.T) {
	e, fake, sn := newSnapshotEnv(t)
	ctx := nsCtx("default")
	boom := errors.New("backend exploded")

	if _, err := sn.Prepare(ctx, "base", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "parent", "base"); err != nil {
		t.Fatal(err)
	}

	// A failed Prepare leaves no record and no child on the parent.
	fake.failNext("Prepare", boom)
	if _, err := sn.Prepare(ctx, "child", "parent"); !errors.Is(err, boom) {
		t.Fatalf("Prepare with failing backend: %v", err)
	}
	if _, err := sn.Stat(ctx, "child"); !errdefs.IsNotFound(err) {
		t.Errorf("record kept after the backend failed: %v", err)
	}

	// A failed Commit leaves the active snapshot as it was.
	if _, err := sn.Prepare(ctx, "child", "parent"); err != nil {
		t.Fatal(err)
	}
	fake.failNext("Commit", boom)
	if err := sn.Commit(ctx, "done", "child"); !errors.Is(err, boom) {
		t.Fatalf("Commit with failing backend: %v", err)
	}
	if _, err := sn.Stat(ctx, "done"); !errdefs.IsNotFound(err) {
		t.Errorf("committed record kept after the backend failed: %v", err)
	}
	if info, err := sn.Stat(ctx, "child"); err != nil || info.Kind != snapshots.KindActive {
		t.Errorf("active snapshot after failed commit: %+v, %v", info, err)
	}
	if err := sn.Commit(ctx, "done", "child"); err != nil {
		t.Fatalf("Commit after the backend recovered: %v", err)
	}

	// A failed backend Remove still removes the record; GC finishes the
	// job in the backend.
	if err := sn.Remove(ctx, "done"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "gone", "parent", snapshots.WithLabels(map[string]string{LabelGCRoot: "true"})); err != nil {
		t.Fatal(err)
	}
	bkey := backendKeyOf(t, e, "default", "gone")
	fake.failNext("Remove", boom)
	if err := sn.Remove(ctx, "gone"); err != nil {
		t.Fatalf("Remove with failing backend: %v", err)
	}
	if _, err := sn.Stat(ctx, "gone"); !errdefs.IsNotFound(err) {
		t.Errorf("record kept: %v", err)
	}
	if _, ok := fake.get(bkey); !ok {
		t.Fatal("the fake did not fail")
	}
	// "parent" is unreferenced too and goes with it.
	stats := e.gc(t)
	if _, ok := fake.get(bkey); ok || stats.SnapshotsRemoved != 2 {
		t.Errorf("GC %+v left %v in the backend", stats, fake.names())
	}
	// Both were removed child first, or the parent would have failed.
	if err := sn.Remove(ctx, "parent"); !errdefs.IsNotFound(err) {
		t.Errorf("parent record after GC: %v", err)
	}
}

func TestSnapshotNamespaceIsolation(t *testing.T) {
	e, fake, sn := newSnapshotEnv(t)
	a, b := nsCtx("a"), nsCtx("b")
	for _, ctx := range []context.Context{a, b} {
		if _, err := sn.Prepare(ctx, "same", ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sn.Update(a, snapshots.Info{Name: "same", Labels: map[string]string{"ns": "a"}}); err != nil {
		t.Fatal(err)
	}
	ka, kb := backendKeyOf(t, e, "a", "same"), backendKeyOf(t, e, "b", "same")
	if ka == kb {
		t.Fatalf("both namespaces use backend key %q", ka)
	}
	if len(fake.names()) != 2 {
		t.Fatalf("backend has %v, want two snapshots", fake.names())
	}
	if info, _ := sn.Stat(b, "same"); info.Labels["ns"] != "" {
		t.Errorf("namespace b sees a's label: %v", info.Labels)
	}
	if err := sn.Commit(a, "only-in-a", "same"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Stat(b, "only-in-a"); !errdefs.IsNotFound(err) {
		t.Errorf("namespace b sees a's committed snapshot: %v", err)
	}
	_, err := sn.Prepare(b, "child", "only-in-a")
	wantKind(t, err, errdefs.ErrNotFound)
	if got := walkNames(t, b, sn); !slices.Equal(got, []string{"same"}) {
		t.Errorf("Walk in b = %v", got)
	}
	if err := sn.Remove(a, "only-in-a"); err != nil {
		t.Fatal(err)
	}
	if _, ok := fake.get(kb); !ok {
		t.Error("removing a's snapshot removed b's")
	}

	// A namespace with snapshots cannot be deleted.
	err = e.db.Namespaces().Delete(context.Background(), "b")
	wantKind(t, err, errdefs.ErrFailedPrecondition)
	if !strings.Contains(err.Error(), "1 snapshot") {
		t.Errorf("message %q does not name the snapshot", err)
	}
	_, err = sn.Stat(context.Background(), "same")
	wantKind(t, err, errdefs.ErrFailedPrecondition) // no namespace
}

func TestSnapshotRebaseCommit(t *testing.T) {
	e, fake, sn := newSnapshotEnv(t)
	ctx := nsCtx("default")
	if _, err := sn.Prepare(ctx, "lower-work", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "lower", "lower-work"); err != nil {
		t.Fatal(err)
	}
	// Applied without a parent, chained when committed.
	if _, err := sn.Prepare(ctx, "upper-work", "", snapshots.WithLabels(map[string]string{snapshots.LabelRebase: "true"})); err != nil {
		t.Fatal(err)
	}
	wantKind(t, sn.Commit(ctx, "upper", "upper-work", snapshots.WithParent("missing")), errdefs.ErrNotFound)
	if err := sn.Commit(ctx, "upper", "upper-work", snapshots.WithParent("lower")); err != nil {
		t.Fatal(err)
	}
	info, err := sn.Stat(ctx, "upper")
	if err != nil || info.Parent != "lower" {
		t.Fatalf("Stat(upper) = %+v, %v; want parent lower", info, err)
	}
	binfo, _ := fake.get(backendKeyOf(t, e, "default", "upper"))
	if binfo.Parent != backendKeyOf(t, e, "default", "lower") {
		t.Errorf("backend parent %q, want lower's backend key", binfo.Parent)
	}
	wantKind(t, sn.Remove(ctx, "lower"), errdefs.ErrFailedPrecondition)
}

func TestSnapshotLease(t *testing.T) {
	e, fake, sn := newSnapshotEnv(t)
	ctx := nsCtx("default")
	lm := e.db.Leases()
	l, err := lm.Create(ctx, leases.WithID("unpack"))
	if err != nil {
		t.Fatal(err)
	}
	lctx := leases.WithLease(ctx, l.ID)
	if _, err := sn.Prepare(lctx, "extract", ""); err != nil {
		t.Fatal(err)
	}
	res, err := lm.ListResources(ctx, l)
	if err != nil || !slices.Equal(res, []leases.Resource{{Type: "snapshots/fake", ID: "extract"}}) {
		t.Errorf("lease resources after Prepare: %+v, %v", res, err)
	}
	if stats := e.gc(t); stats.SnapshotsDeleted != 0 || len(fake.names()) != 1 {
		t.Fatalf("GC %+v collected a leased active snapshot", stats)
	}
	if err := sn.Commit(lctx, "layer", "extract"); err != nil {
		t.Fatal(err)
	}
	res, _ = lm.ListResources(ctx, l)
	if !slices.Equal(res, []leases.Resource{{Type: "snapshots/fake", ID: "layer"}}) {
		t.Errorf("lease resources after Commit: %+v; want the committed name instead of the key", res)
	}
	if stats := e.gc(t); stats.SnapshotsDeleted != 0 {
		t.Fatalf("GC %+v collected a leased snapshot", stats)
	}
	// A lease on a missing key is refused before anything is made.
	_, err = sn.Prepare(leases.WithLease(ctx, "missing"), "x", "")
	wantKind(t, err, errdefs.ErrNotFound)
	if len(fake.names()) != 1 {
		t.Errorf("backend has %v after a Prepare with a missing lease", fake.names())
	}

	if err := lm.Delete(ctx, l, leases.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Stat(ctx, "layer"); !errdefs.IsNotFound(err) {
		t.Errorf("snapshot kept after its lease went: %v", err)
	}
	if names := fake.names(); len(names) != 0 {
		t.Errorf("backend keeps %v after its lease went", names)
	}

	// Resources can also be added by hand.
	l2, _ := lm.Create(ctx)
	if _, err := sn.Prepare(ctx, "by-hand", ""); err != nil {
		t.Fatal(err)
	}
	if err := lm.AddResource(ctx, l2, leases.Resource{Type: "snapshots/fake", ID: "by-hand"}); err != nil {
		t.Fatal(err)
	}
	e.gc(t)
	if _, err := sn.Stat(ctx, "by-hand"); err != nil {
		t.Errorf("snapshot added to a lease by hand was collected: %v", err)
	}
	for _, r := range []leases.Resource{{Type: "snapshots/", ID: "x"}, {Type: "snapshots/fake"}, {Type: "snapshots/a/b", ID: "x"}} {
		if err := lm.AddResource(ctx, l2, r); !errdefs.IsInvalidArgument(err) {
			t.Errorf("AddResource(%+v) = %v, want invalid argument", r, err)
		}
	}
}

// TestGCSnapshotsOfImage follows index -> manifest -> config ->
// berth.gc.ref.snapshot.fake -> chain of parents, as an unpacked image has.
func TestGCSnapshotsOfImage(t *testing.T) {
	e, fake, sn := newSnapshotEnv(t)
	ctx := nsCtx("default")
	cs := e.db.ContentStore()
	is := e.db.Images()

	l, err := e.db.Leases().Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lctx := leases.WithLease(ctx, l.ID)
	chain := writeImageChain(t, lctx, cs, "v1")
	// Unpack: three committed layers, each on the one before.
	parent := ""
	for _, name := range []string{"chain-1", "chain-2", "chain-3"} {
		if _, err := sn.Prepare(lctx, "extract-"+name, parent); err != nil {
			t.Fatal(err)
		}
		if err := sn.Commit(lctx, name, "extract-"+name); err != nil {
			t.Fatal(err)
		}
		parent = name
	}
	if _, err := cs.Update(ctx, contentInfoWithLabel(chain.config, LabelGCRefSnapshot+"fake", "chain-3"), "labels."+LabelGCRefSnapshot+"fake"); err != nil {
		t.Fatal(err)
	}
	if _, err := is.Create(ctx, images.Image{Name: "app:v1", Target: chain.index.desc}); err != nil {
		t.Fatal(err)
	}

	// Besides the image's: an unreferenced committed snapshot, an active
	// one on the image's top layer held by nothing, one labelled a root, a
	// snapshot kept by another's label, and backend snapshots that are not
	// berthd's or whose record is gone.
	for _, p := range []struct{ key, parent string }{{"stray-work", ""}, {"container", "chain-3"}, {"pinned", "chain-2"}, {"referee", ""}, {"referred-work", ""}} {
		if _, err := sn.Prepare(ctx, p.key, p.parent); err != nil {
			t.Fatal(err)
		}
	}
	if err := sn.Commit(ctx, "stray", "stray-work"); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "referred", "referred-work"); err != nil {
		t.Fatal(err)
	}
	for key, labels := range map[string]map[string]string{
		"pinned":  {LabelGCRoot: "true"},
		"referee": {LabelGCRoot: "true", LabelGCRefSnapshot + "fake/x": "referred"},
	} {
		if _, err := sn.Update(ctx, snapshots.Info{Name: key, Labels: labels}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fake.Prepare(ctx, "not-berths", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.Prepare(ctx, "default/999999/orphan", ""); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Leases().Delete(ctx, l); err != nil {
		t.Fatal(err)
	}

	stats := e.gc(t)
	want := []string{"chain-1", "chain-2", "chain-3", "pinned", "referee", "referred"}
	if got := walkNames(t, ctx, sn); !slices.Equal(got, want) {
		t.Errorf("after GC with the image: %v, want %v", got, want)
	}
	if stats.SnapshotsDeleted != 2 || stats.SnapshotsRemoved != 3 {
		t.Errorf("GC stats %+v, want 2 records (stray, container) and 3 backend snapshots (and the orphan) gone", stats)
	}
	if names := fake.names(); len(names) != 7 || !slices.Contains(names, "not-berths") || slices.Contains(names, "default/999999/orphan") {
		t.Errorf("backend after GC: %v", names)
	}

	// Without the image, its chain goes; the pinned snapshot keeps its
	// parents.
	if err := is.Delete(ctx, "app:v1", images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	want = []string{"chain-1", "chain-2", "pinned", "referee", "referred"}
	if got := walkNames(t, ctx, sn); !slices.Equal(got, want) {
		t.Errorf("after deleting the image: %v, want %v", got, want)
	}
	for _, b := range chain.below(true) {
		if e.backingHas(t, b.desc.Digest) {
			t.Errorf("%s kept after its image went", b.desc.MediaType)
		}
	}
	// Unpinning frees the rest.
	if _, err := sn.Update(ctx, snapshots.Info{Name: "pinned"}, "labels."+LabelGCRoot); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Update(ctx, snapshots.Info{Name: "referee"}); err != nil {
		t.Fatal(err)
	}
	e.gc(t)
	if got := walkNames(t, ctx, sn); len(got) != 0 {
		t.Errorf("after unpinning: %v", got)
	}
	if names := fake.names(); !slices.Equal(names, []string{"not-berths"}) {
		t.Errorf("backend after unpinning: %v", names)
	}
}

func contentInfoWithLabel(b blob, key, value string) content.Info {
	return content.Info{Digest: b.desc.Digest, Labels: map[string]string{key: value}}
}

// TestSnapshotGCConcurrent runs snapshot calls against collections: what
// a lease holds survives, and records and backend agree at the end.
func TestSnapshotGCConcurrent(t *testing.T) {
	e, fake, sn := newSnapshotEnv(t)
	ctx := nsCtx("default")
	l, err := e.db.Leases().Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lctx := leases.WithLease(ctx, l.ID)
	if _, err := sn.Prepare(lctx, "base-work", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(lctx, "base", "base-work"); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	gcDone := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				gcDone <- nil
				return
			default:
			}
			if _, err := e.db.GarbageCollect(context.Background()); err != nil {
				gcDone <- err
				return
			}
		}
	}()
	errc := make(chan error, 4)
	for w := 0; w < 4; w++ {
		go func() {
			for i := 0; i < 25; i++ {
				key := "w" + string(rune('a'+w)) + "-" + strings.Repeat("x", i%3) + string(rune('0'+i%10))
				if _, err := sn.Prepare(lctx, key, "base"); err != nil {
					errc <- err
					return
				}
				// Unleased: the collector may take it at any time, but
				// never half of it.
				_, _ = sn.Prepare(ctx, key+"-free", "")
				if err := sn.Commit(lctx, key+"-c", key); err != nil {
					errc <- err
					return
				}
				if err := sn.Remove(lctx, key+"-c"); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for w := 0; w < 4; w++ {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	close(stop)
	if err := <-gcDone; err != nil {
		t.Fatal(err)
	}
	e.gc(t)
	var recorded []string
	for _, key := range walkNames(t, ctx, sn) {
		recorded = append(recorded, backendKeyOf(t, e, "default", key))
	}
	slices.Sort(recorded)
	if names := fake.names(); !slices.Equal(names, recorded) || len(names) != 1 {
		t.Errorf("backend %v, records %v: want only base in both", names, recorded)
	}
}
