package containerproxy_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/grpctest"
	"github.com/berth-engine/berth/internal/namespaces"
	containersv1 "github.com/berth-engine/berth/proto/containers/v1"
	"github.com/berth-engine/berth/services/containers"
	"github.com/berth-engine/berth/services/containers/containerproxy"
	"github.com/berth-engine/berth/services/containers/containerserver"
	"github.com/berth-engine/berth/services/content/local"
	"github.com/berth-engine/berth/services/metadata"
)

// setup serves the containers of a real metadata store over in-memory gRPC
// and returns the proxy to it and the store itself.
func setup(t *testing.T) (proxy, direct containers.Store) {
	t.Helper()
	dir := t.TempDir()
	bdb, err := bolt.Open(filepath.Join(dir, "metadata.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := local.NewStore(filepath.Join(dir, "content"))
	if err != nil {
		t.Fatal(err)
	}
	db := metadata.NewDB(bdb, cs, nil, metadata.WithGCDelay(time.Hour))
	t.Cleanup(func() {
		db.Close()
		bdb.Close()
	})
	if err := db.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn := grpctest.Dial(t, func(s *grpc.Server) { containerserver.Register(s, db.Containers()) })
	return containerproxy.NewStore(containersv1.NewContainersClient(conn)), db.Containers()
}

func id(c byte) string { return strings.Repeat(string(c), containers.IDLength) }

func container(t *testing.T, c byte, name string) containers.Container {
	t.Helper()
	opts, err := anypb.New(wrapperspb.String("systemd"))
	if err != nil {
		t.Fatal(err)
	}
	ext, err := anypb.New(wrapperspb.Bool(true))
	if err != nil {
		t.Fatal(err)
	}
	return containers.Container{
		ID:          id(c),
		Name:        name,
		Labels:      map[string]string{"app": name},
		Image:       "docker.io/library/busybox:latest",
		Runtime:     containers.RuntimeInfo{Name: "runc", Options: opts},
		Spec:        &anypb.Any{TypeUrl: containers.SpecTypeURL, Value: []byte(`{"ociVersion":"1.2.0"}`)},
		Snapshotter: "overlay",
		SnapshotKey: name + "-root",
		Extensions:  map[string]*anypb.Any{"berth.autoremove": ext},
	}
}

func equal(a, b containers.Container) bool {
	if len(a.Labels) != len(b.Labels) || len(a.Extensions) != len(b.Extensions) {
		return false
	}
	for k, v := range a.Labels {
		if b.Labels[k] != v {
			return false
		}
	}
	for k, v := range a.Extensions {
		if !proto.Equal(v, b.Extensions[k]) {
			return false
		}
	}
	return a.ID == b.ID && a.Name == b.Name && a.Image == b.Image && a.Runtime.Name == b.Runtime.Name &&
		proto.Equal(a.Runtime.Options, b.Runtime.Options) && proto.Equal(a.Spec, b.Spec) &&
		a.Snapshotter == b.Snapshotter && a.SnapshotKey == b.SnapshotKey &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

func TestRoundTrip(t *testing.T) {
	proxy, direct := setup(t)
	ctx := namespaces.WithNamespace(context.Background(), "default")

	want := container(t, 'a', "web")
	created, err := proxy.Create(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if created.CreatedAt.IsZero() {
		t.Fatal("created without a creation time")
	}
	want.CreatedAt, want.UpdatedAt = created.CreatedAt, created.UpdatedAt
	if !equal(created, want) {
		t.Fatalf("create returned\n%+v\nwant\n%+v", created, want)
	}
	stored, err := direct.Get(ctx, want.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !equal(stored, want) {
		t.Fatalf("the store holds\n%+v\nwant\n%+v", stored, want)
	}
	if got, err := proxy.Get(ctx, want.ID); err != nil || !equal(got, want) {
		t.Fatalf("get: %v\n%+v", err, got)
	}

	if _, err := proxy.Create(ctx, container(t, 'b', "db")); err != nil {
		t.Fatal(err)
	}
	list, err := proxy.List(ctx, "name==web")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || !equal(list[0], want) {
		t.Fatalf("filtered list: %+v", list)
	}
	if list, _ := proxy.List(ctx); len(list) != 2 || list[0].Name != "db" || list[1].Name != "web" {
		t.Fatalf("list: %+v", list)
	}
	if list, _ := proxy.List(namespaces.WithNamespace(ctx, "other")); len(list) != 0 {
		t.Fatalf("namespace not carried: other namespace lists %+v", list)
	}

	// The field mask crosses the wire: only the label named changes.
	updated, err := proxy.Update(ctx, containers.Container{ID: want.ID, Name: "ignored", Labels: map[string]string{"tier": "front"}}, "labels.tier")
	if err != nil {
		t.Fatal(err)
	}
	if updated.Name != "web" || updated.Labels["tier"] != "front" || updated.Labels["app"] != "web" {
		t.Fatalf("masked update: %+v", updated)
	}
	// Rename.
	if got, err := proxy.Update(ctx, containers.Container{ID: want.ID, Name: "frontend"}, "name"); err != nil || got.Name != "frontend" {
		t.Fatalf("rename: %v, %+v", err, got)
	}
	// Without a mask everything mutable is replaced.
	full := want
	full.Name, full.Image, full.Labels, full.Extensions = "web", "docker.io/library/alpine:3", nil, nil
	if got, err := proxy.Update(ctx, full); err != nil || got.Image != full.Image || got.Labels != nil || got.Extensions != nil || got.Name != "web" {
		t.Fatalf("unmasked update: %v, %+v", err, got)
	}

	if err := proxy.Delete(ctx, want.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Get(ctx, want.ID); !errdefs.IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestErrorsSurvive(t *testing.T) {
	proxy, _ := setup(t)
	ctx := namespaces.WithNamespace(context.Background(), "default")
	if _, err := proxy.Create(ctx, container(t, 'a', "web")); err != nil {
		t.Fatal(err)
	}

	_, err := proxy.Create(ctx, container(t, 'b', "web"))
	want := `the container name "/web" is already in use by container "` + id('a') +
		`". You have to remove (or rename) that container to be able to reuse that name.`
	if !errdefs.IsAlreadyExists(err) || err.Error() != want {
		t.Errorf("taken name: %v\nwant %s", err, want)
	}
	_, err = proxy.Get(ctx, id('c'))
	if want := `container "` + id('c') + `" not found in namespace "default": not found`; !errdefs.IsNotFound(err) || err.Error() != want {
		t.Errorf("get missing: %v\nwant %s", err, want)
	}
	if _, err := proxy.Create(ctx, container(t, 'b', "-web")); !errdefs.IsInvalidArgument(err) {
		t.Errorf("invalid name: %v, want invalid argument", err)
	}
	if _, err := proxy.List(ctx, "name~=("); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad filter: %v, want invalid argument", err)
	}
	if _, err := proxy.Update(ctx, containers.Container{ID: id('a')}, "runtime"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("immutable field: %v, want invalid argument", err)
	}
	if err := proxy.Delete(ctx, id('c')); !errdefs.IsNotFound(err) {
		t.Errorf("delete missing: %v, want not found", err)
	}
	if _, err := proxy.List(context.Background()); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("no namespace: %v, want failed precondition", err)
	}
}

func TestServerRefusesEmptyRequests(t *testing.T) {
	conn := grpctest.Dial(t, func(s *grpc.Server) { containerserver.Register(s, nil) })
	client := containersv1.NewContainersClient(conn)
	ctx := namespaces.WithNamespace(context.Background(), "default")
	if _, err := client.Create(ctx, &containersv1.CreateContainerRequest{}); !errdefs.IsInvalidArgument(errdefs.FromGRPC(err)) {
		t.Errorf("create without a container: %v", err)
	}
	if _, err := client.Update(ctx, &containersv1.UpdateContainerRequest{}); !errdefs.IsInvalidArgument(errdefs.FromGRPC(err)) {
		t.Errorf("update without a container: %v", err)
	}
}
