package metadata

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/berth-engine/berth/internal/errdefs"
	eventsv1 "github.com/berth-engine/berth/proto/events/v1"
	"github.com/berth-engine/berth/services/containers"
)

// testID makes a container ID from one hex digit.
func testID(c byte) string { return strings.Repeat(string(c), containers.IDLength) }

func testSpec(t *testing.T, args ...string) *anypb.Any {
	t.Helper()
	b, err := json.Marshal(map[string]any{"ociVersion": "1.2.0", "process": map[string]any{"args": args}})
	if err != nil {
		t.Fatal(err)
	}
	return &anypb.Any{TypeUrl: containers.SpecTypeURL, Value: b}
}

func testContainer(t *testing.T, id byte, name string) containers.Container {
	opts, err := anypb.New(wrapperspb.String("systemd-cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	return containers.Container{
		ID:      testID(id),
		Name:    name,
		Image:   "docker.io/library/busybox:latest",
		Runtime: containers.RuntimeInfo{Name: "runc", Options: opts},
		Spec:    testSpec(t, "sh"),
		Labels:  map[string]string{"app": name},
	}
}

func TestContainerCRUD(t *testing.T) {
	e := newTestEnv(t)
	ctx := nsCtx("default")
	cs := e.db.Containers()

	want := testContainer(t, 'a', "web")
	ext, _ := anypb.New(wrapperspb.Int64(7))
	want.Extensions = map[string]*anypb.Any{"berth.restart": ext}
	created, err := cs.Create(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if created.CreatedAt.IsZero() || !created.CreatedAt.Equal(created.UpdatedAt) {
		t.Fatalf("timestamps %v %v", created.CreatedAt, created.UpdatedAt)
	}
	got, err := cs.Get(ctx, want.ID)
	if err != nil {
		t.Fatal(err)
	}
	assertContainer(t, got, created)
	if got.Name != "web" || got.Runtime.Name != "runc" || got.Image != want.Image {
		t.Fatalf("get: %+v", got)
	}
	if !proto.Equal(got.Spec, want.Spec) || !proto.Equal(got.Runtime.Options, want.Runtime.Options) || !proto.Equal(got.Extensions["berth.restart"], ext) {
		t.Fatalf("Any fields did not round-trip: %+v", got)
	}
	if evs := e.pub.take(); len(evs) != 1 || evs[0].topic != "/containers/create" || evs[0].namespace != "default" ||
		!proto.Equal(evs[0].msg, &eventsv1.ContainerCreate{Id: want.ID, Name: "web", Image: want.Image, Runtime: "runc"}) {
		t.Fatalf("create events %+v", evs)
	}

	// The store keeps its own copies.
	want.Labels["app"] = "changed"
	want.Spec.Value = []byte("{}")
	if got, _ := cs.Get(ctx, want.ID); got.Labels["app"] != "web" || string(got.Spec.Value) == "{}" {
		t.Fatalf("the store shares the caller's maps or messages: %+v", got)
	}

	// Update by field paths.
	newSpec := testSpec(t, "httpd", "-f")
	updated, err := cs.Update(ctx, containers.Container{
		ID: want.ID, Spec: newSpec, SnapshotKey: "ignored",
		Labels: map[string]string{"tier": "front"},
	}, "spec", "labels.tier", "labels.app")
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(updated.Spec, newSpec) || updated.SnapshotKey != "" || !mapsEqual(updated.Labels, map[string]string{"tier": "front"}) ||
		updated.UpdatedAt.Before(updated.CreatedAt) || !updated.CreatedAt.Equal(created.CreatedAt) || updated.Image != want.Image {
		t.Fatalf("update: %+v", updated)
	}
	if got, _ := cs.Get(ctx, want.ID); !proto.Equal(got.Spec, newSpec) || !mapsEqual(got.Labels, updated.Labels) {
		t.Fatalf("update not stored: %+v", got)
	}
	if evs := e.pub.take(); len(evs) != 1 || evs[0].topic != "/containers/update" ||
		!proto.Equal(evs[0].msg, &eventsv1.ContainerUpdate{Id: want.ID, Name: "web", Image: want.Image, Labels: map[string]string{"tier": "front"}}) {
		t.Fatalf("update events %+v", evs)
	}
	if got, err := cs.Update(ctx, containers.Container{ID: want.ID}, "extensions.berth.restart"); err != nil || got.Extensions != nil {
		t.Fatalf("removing the extension: %v, %+v", err, got.Extensions)
	}

	// Update without field paths replaces all mutable fields, and refuses
	// to change the runtime or the snapshotter.
	full := got
	full.Image = "docker.io/library/alpine:3"
	full.Labels = nil
	if got, err := cs.Update(ctx, full); err != nil || got.Image != full.Image || got.Labels != nil || got.Name != "web" {
		t.Fatalf("full update: %v, %+v", err, got)
	}
	full.Runtime.Name = "crun"
	_, err = cs.Update(ctx, full)
	wantKind(t, err, errdefs.ErrInvalidArgument)
	if !strings.Contains(err.Error(), `the runtime cannot change (from "runc" to "crun")`) {
		t.Errorf("message %q", err)
	}

	if err := cs.Delete(ctx, want.ID); err != nil {
		t.Fatal(err)
	}
	e.pub.take()
	_, err = cs.Get(ctx, want.ID)
	wantKind(t, err, errdefs.ErrNotFound)
	if want := `container "` + testID('a') + `" not found in namespace "default"`; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("get deleted: %q, want it to start with %q", err, want)
	}
	wantKind(t, cs.Delete(ctx, want.ID), errdefs.ErrNotFound)
	// The name is free again.
	if _, err := cs.Create(ctx, testContainer(t, 'b', "web")); err != nil {
		t.Fatalf("reusing the name of a deleted container: %v", err)
	}
}

func assertContainer(t *testing.T, got, want containers.Container) {
	t.Helper()
	if got.ID != want.ID || got.Name != want.Name || got.Image != want.Image || got.Runtime.Name != want.Runtime.Name ||
		got.Snapshotter != want.Snapshotter || got.SnapshotKey != want.SnapshotKey || !mapsEqual(got.Labels, want.Labels) ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) ||
		!proto.Equal(got.Spec, want.Spec) || !proto.Equal(got.Runtime.Options, want.Runtime.Options) || len(got.Extensions) != len(want.Extensions) {
		t.Fatalf("got\n%+v\nwant\n%+v", got, want)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestContainerNames(t *testing.T) {
	e := newTestEnv(t)
	ctx := nsCtx("default")
	cs := e.db.Containers()
	for _, c := range []containers.Container{testContainer(t, 'a', "web"), testContainer(t, 'b', "db")} {
		if _, err := cs.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	}

	_, err := cs.Create(ctx, testContainer(t, 'c', "web"))
	wantKind(t, err, errdefs.ErrAlreadyExists)
	want := `the container name "/web" is already in use by container "` + testID('a') +
		`". You have to remove (or rename) that container to be able to reuse that name.`
	if err.Error() != want {
		t.Errorf("taken name: %q, want %q", err, want)
	}
	if _, err := cs.Get(ctx, testID('c')); !errdefs.IsNotFound(err) {
		t.Errorf("a refused create left a record: %v", err)
	}
	// Another namespace has its own names.
	if _, err := cs.Create(nsCtx("other"), testContainer(t, 'c', "web")); err != nil {
		t.Fatalf("same name in another namespace: %v", err)
	}

	// The same ID twice.
	_, err = cs.Create(ctx, testContainer(t, 'a', "web2"))
	wantKind(t, err, errdefs.ErrAlreadyExists)
	if !strings.Contains(err.Error(), `container "`+testID('a')+`" already exists in namespace "default"`) {
		t.Errorf("same ID: %q", err)
	}
	if _, err := cs.Create(ctx, testContainer(t, 'd', "web2")); err != nil {
		t.Fatalf("web2 was reserved by a refused create: %v", err)
	}

	// Rename onto a taken name fails and changes nothing.
	_, err = cs.Update(ctx, containers.Container{ID: testID('b'), Name: "web"}, "name")
	wantKind(t, err, errdefs.ErrAlreadyExists)
	if err.Error() != want {
		t.Errorf("rename onto a taken name: %q", err)
	}
	if got, _ := cs.Get(ctx, testID('b')); got.Name != "db" {
		t.Fatalf("refused rename changed the name to %q", got.Name)
	}
	// Rename frees the old name and takes the new one.
	if got, err := cs.Update(ctx, containers.Container{ID: testID('b'), Name: "database"}, "name"); err != nil || got.Name != "database" {
		t.Fatalf("rename: %v, %+v", err, got)
	}
	if _, err := cs.Create(ctx, testContainer(t, 'e', "db")); err != nil {
		t.Fatalf("old name not freed by the rename: %v", err)
	}
	_, err = cs.Create(ctx, testContainer(t, 'f', "database"))
	wantKind(t, err, errdefs.ErrAlreadyExists)
	if !strings.Contains(err.Error(), `"/database" is already in use by container "`+testID('b')+`"`) {
		t.Errorf("new name not taken by the rename: %q", err)
	}
	// Renaming to its own name is no change.
	if _, err := cs.Update(ctx, containers.Container{ID: testID('b'), Name: "database"}, "name"); err != nil {
		t.Fatalf("renaming to the same name: %v", err)
	}
	// An invalid new name.
	_, err = cs.Update(ctx, containers.Container{ID: testID('b'), Name: "-bad"}, "name")
	wantKind(t, err, errdefs.ErrInvalidArgument)
	// After deleting, the name can be taken by a rename.
	if err := cs.Delete(ctx, testID('b')); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Update(ctx, containers.Container{ID: testID('e'), Name: "database"}, "name"); err != nil {
		t.Fatalf("renaming onto a deleted container's name: %v", err)
	}
}

func TestContainerValidation(t *testing.T) {
	e := newTestEnv(t)
	ctx := nsCtx("default")
	cs := e.db.Containers()
	for _, tc := range []struct {
		what   string
		change func(*containers.Container)
		msg    string
	}{
		{"short ID", func(c *containers.Container) { c.ID = "abc" }, `container ID "abc" must be 64 hexadecimal digits`},
		{"non-hex ID", func(c *containers.Container) { c.ID = strings.Repeat("g", 64) }, `must be 64 lowercase hexadecimal digits`},
		{"upper-case ID", func(c *containers.Container) { c.ID = strings.Repeat("A", 64) }, `must be 64 lowercase hexadecimal digits`},
		{"no name", func(c *containers.Container) { c.Name = "" }, `container name must not be empty`},
		{"one-character name", func(c *containers.Container) { c.Name = "a" }, `invalid container name "a"`},
		{"leading dash", func(c *containers.Container) { c.Name = "-web" }, `invalid container name "-web": only [a-zA-Z0-9][a-zA-Z0-9_.-]+ are allowed`},
		{"slash", func(c *containers.Container) { c.Name = "a/b" }, `invalid container name "a/b"`},
		{"no runtime", func(c *containers.Container) { c.Runtime.Name = "" }, `runtime name must not be empty`},
		{"no spec", func(c *containers.Container) { c.Spec = nil }, `spec must be set`},
		{"spec type", func(c *containers.Container) { c.Spec.TypeUrl = "x/y" }, `spec has type "x/y"`},
		{"spec not JSON", func(c *containers.Container) { c.Spec.Value = []byte("{") }, `spec is not valid JSON`},
		{"snapshot key alone", func(c *containers.Container) { c.SnapshotKey = "k" }, `must be given together`},
		{"empty label key", func(c *containers.Container) { c.Labels = map[string]string{"": "x"} }, `label key must not be empty`},
		{"nil extension", func(c *containers.Container) { c.Extensions = map[string]*anypb.Any{"x": nil} }, `extension "x" has no value`},
	} {
		c := testContainer(t, 'a', "web")
		tc.change(&c)
		_, err := cs.Create(ctx, c)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), `namespace "default"`) {
			t.Errorf("%s: %v, want invalid argument saying %q and the namespace", tc.what, err, tc.msg)
		}
	}
	for _, ok := range []string{"web", "a1", "My_app.v2-x", "0abc"} {
		if err := containers.ValidateName(ok); err != nil {
			t.Errorf("name %q: %v", ok, err)
		}
	}
	if list, _ := cs.List(ctx); len(list) != 0 {
		t.Fatalf("invalid containers were stored: %+v", list)
	}

	if _, err := cs.Create(ctx, testContainer(t, 'a', "web")); err != nil {
		t.Fatal(err)
	}
	_, err := cs.Update(ctx, containers.Container{ID: testID('a')}, "runtime")
	wantKind(t, err, errdefs.ErrInvalidArgument)
	if !strings.Contains(err.Error(), `updating container "`+testID('a')+`" in namespace "default": cannot update field "runtime"`) {
		t.Errorf("update of runtime: %q", err)
	}
	_, err = cs.Update(ctx, containers.Container{ID: testID('b')}, "labels")
	wantKind(t, err, errdefs.ErrNotFound)
	_, err = cs.Update(ctx, containers.Container{ID: testID('a')}, "spec")
	wantKind(t, err, errdefs.ErrInvalidArgument)
	_, err = cs.Get(nsCtx("default"), "")
	wantKind(t, err, errdefs.ErrNotFound)
}

func TestContainerFilters(t *testing.T) {
	e := newTestEnv(t)
	ctx := nsCtx("default")
	cs := e.db.Containers()
	web := testContainer(t, 'a', "web")
	web.Labels = map[string]string{"com.example.tier": "front"}
	db := testContainer(t, 'b', "db")
	db.Image = "docker.io/library/postgres:16"
	db.Runtime = containers.RuntimeInfo{Name: "crun"}
	db.Snapshotter, db.SnapshotKey = "overlay", "db-root"
	cache := testContainer(t, 'c', "cache")
	cache.Labels = map[string]string{"com.example.tier": "back"}
	for _, c := range []containers.Container{web, db, cache} {
		if _, err := cs.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		filters []string
		want    []string
	}{
		{nil, []string{"cache", "db", "web"}},
		{[]string{"id==" + testID('b')}, []string{"db"}},
		{[]string{"name==web"}, []string{"web"}},
		{[]string{`name~="^(web|cache)$"`}, []string{"cache", "web"}},
		{[]string{`image~="busybox"`}, []string{"cache", "web"}},
		{[]string{`labels."com.example.tier"==front`}, []string{"web"}},
		{[]string{`labels.com.example.tier`}, []string{"cache", "web"}},
		{[]string{"runtime.name==crun"}, []string{"db"}},
		{[]string{"snapshotter==overlay,snapshot_key==db-root"}, []string{"db"}},
		{[]string{"snapshotter"}, []string{"db"}},
		{[]string{"name==web", "name==db"}, []string{"db", "web"}},
		{[]string{"name==nothing"}, nil},
	} {
		list, err := cs.List(ctx, tc.filters...)
		if err != nil {
			t.Fatalf("%q: %v", tc.filters, err)
		}
		var names []string
		for _, c := range list {
			names = append(names, c.Name)
		}
		if !slices.Equal(names, tc.want) {
			t.Errorf("List(%q) = %v, want %v", tc.filters, names, tc.want)
		}
	}
	_, err := cs.List(ctx, "name~=(")
	wantKind(t, err, errdefs.ErrInvalidArgument)
	if list, _ := cs.List(nsCtx("other")); len(list) != 0 {
		t.Errorf("another namespace lists %d containers", len(list))
	}
	_, err = cs.List(t.Context())
	wantKind(t, err, errdefs.ErrFailedPrecondition)
}

func TestContainerKeepsNamespace(t *testing.T) {
	e := newTestEnv(t)
	ctx := nsCtx("team")
	if _, err := e.db.Containers().Create(ctx, testContainer(t, 'a', "web")); err != nil {
		t.Fatal(err)
	}
	err := e.db.Namespaces().Delete(ctx, "team")
	wantKind(t, err, errdefs.ErrFailedPrecondition)
	if !strings.Contains(err.Error(), `namespace "team" is not empty: it still has 1 container`) {
		t.Errorf("message %q", err)
	}
	if err := e.db.Containers().Delete(ctx, testID('a')); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Namespaces().Delete(ctx, "team"); err != nil {
		t.Fatalf("deleting the namespace once its container is gone: %v", err)
	}
	if evs := e.pub.take(); len(evs) != 3 || evs[1].topic != "/containers/delete" ||
		!proto.Equal(evs[1].msg, &eventsv1.ContainerDelete{Id: testID('a'), Name: "web"}) {
		t.Fatalf("events %+v", evs)
	}
}

func TestGCContainerKeepsSnapshot(t *testing.T) {
	e, fake, sn := newSnapshotEnv(t)
	ctx := nsCtx("default")
	cs := e.db.ContentStore()

	// An image layer, the container's active snapshot on it, and a blob
	// only the container's label refers to.
	if _, err := sn.Prepare(ctx, "extract", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "layer", "extract"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "web-root", "layer"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "stray", ""); err != nil {
		t.Fatal(err)
	}
	extra := newBlob("application/octet-stream", "held by the container's label")
	extra.write(t, ctx, cs, nil)
	// A second snapshot named by a label.
	if _, err := sn.Prepare(ctx, "web-volume", ""); err != nil {
		t.Fatal(err)
	}

	c := testContainer(t, 'a', "web")
	c.Snapshotter, c.SnapshotKey = "fake", "web-root"
	c.Labels = map[string]string{
		LabelGCRefContent + ".extra":      extra.desc.Digest.String(),
		LabelGCRefSnapshot + "fake/vol":   "web-volume",
		LabelGCRefSnapshot + "missing/xx": "nothing",
	}
	if _, err := e.db.Containers().Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	stats := e.gc(t)
	if got, want := walkNames(t, ctx, sn), []string{"layer", "web-root", "web-volume"}; !slices.Equal(got, want) {
		t.Fatalf("after GC with the container: %v, want %v", got, want)
	}
	if stats.SnapshotsDeleted != 1 || !e.backingHas(t, extra.desc.Digest) {
		t.Fatalf("GC %+v; extra blob kept: %v", stats, e.backingHas(t, extra.desc.Digest))
	}
	if len(fake.names()) != 3 {
		t.Fatalf("backend %v", fake.names())
	}

	// Pointing the container at another snapshot frees the first.
	if _, err := sn.Prepare(ctx, "web-root-2", "layer"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Containers().Update(ctx, containers.Container{ID: c.ID, SnapshotKey: "web-root-2"}, "snapshot_key"); err != nil {
		t.Fatal(err)
	}
	e.gc(t)
	if got, want := walkNames(t, ctx, sn), []string{"layer", "web-root-2", "web-volume"}; !slices.Equal(got, want) {
		t.Fatalf("after moving the container's snapshot: %v, want %v", got, want)
	}

	// The same snapshot key in another namespace is not kept by it.
	if _, err := sn.Prepare(nsCtx("other"), "web-root-2", ""); err != nil {
		t.Fatal(err)
	}
	e.gc(t)
	if got := walkNames(t, nsCtx("other"), sn); len(got) != 0 {
		t.Fatalf("a container kept another namespace's snapshot: %v", got)
	}

	if err := e.db.Containers().Delete(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	e.gc(t)
	if got := walkNames(t, ctx, sn); len(got) != 0 {
		t.Fatalf("after deleting the container: %v", got)
	}
	if names := fake.names(); len(names) != 0 {
		t.Fatalf("backend after deleting the container: %v", names)
	}
	if e.backingHas(t, extra.desc.Digest) {
		t.Fatal("the blob the container's label named outlived it")
	}
}

// TestContainerNameRace creates and renames concurrently onto one name:
// exactly one container ends up with it, and the index agrees.
func TestContainerNameRace(t *testing.T) {
	e := newTestEnv(t)
	ctx := nsCtx("default")
	cs := e.db.Containers()
	if _, err := cs.Create(ctx, testContainer(t, 'f', "spare")); err != nil {
		t.Fatal(err)
	}
	ids := []byte("01234567")
	errs := make(chan error, len(ids)+1)
	var wg sync.WaitGroup
	for _, c := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := cs.Create(ctx, testContainer(t, c, "web"))
			errs <- err
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := cs.Update(ctx, containers.Container{ID: testID('f'), Name: "web"}, "name")
		errs <- err
	}()
	wg.Wait()
	close(errs)
	won := 0
	for err := range errs {
		switch {
		case err == nil:
			won++
		case !errdefs.IsAlreadyExists(err):
			t.Errorf("unexpected error: %v", err)
		}
	}
	list, err := cs.List(ctx, "name==web")
	if err != nil {
		t.Fatal(err)
	}
	if won != 1 || len(list) != 1 {
		t.Fatalf("%d calls took the name, %d containers have it", won, len(list))
	}
	// The index names the winner: another create is refused for it.
	_, err = cs.Create(ctx, testContainer(t, '9', "web"))
	if !errdefs.IsAlreadyExists(err) || !strings.Contains(err.Error(), list[0].ID) {
		t.Fatalf("create after the race: %v, want the winner %s named", err, list[0].ID)
	}
}
