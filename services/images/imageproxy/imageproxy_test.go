package imageproxy_test

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/filters"
	"github.com/berth-engine/berth/internal/grpctest"
	"github.com/berth-engine/berth/internal/namespaces"
	imagesv1 "github.com/berth-engine/berth/proto/images/v1"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/services/images/imageproxy"
	"github.com/berth-engine/berth/services/images/imageserver"
)

// fakeStore keeps images in memory per namespace and records the options the
// server passed on, so the test can see what crossed the wire.
type fakeStore struct {
	mu         sync.Mutex
	images     map[string]map[string]images.Image
	fieldpaths []string
	syncDelete bool
}

func (f *fakeStore) ns(ctx context.Context) (map[string]images.Image, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	if f.images[ns] == nil {
		f.images[ns] = map[string]images.Image{}
	}
	return f.images[ns], nil
}

func (f *fakeStore) Get(ctx context.Context, name string) (images.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.ns(ctx)
	if err != nil {
		return images.Image{}, err
	}
	img, ok := m[name]
	if !ok {
		return images.Image{}, fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
	}
	return img, nil
}

func (f *fakeStore) List(ctx context.Context, fs ...string) ([]images.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.ns(ctx)
	if err != nil {
		return nil, err
	}
	filter, err := filters.Parse(fs...)
	if err != nil {
		return nil, err
	}
	var out []images.Image
	for _, img := range m {
		if filter.Match(filters.AdaptorFunc(func(p []string) (string, bool) {
			return img.Name, len(p) == 1 && p[0] == "name"
		})) {
			out = append(out, img)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f *fakeStore) Create(ctx context.Context, img images.Image) (images.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.ns(ctx)
	if err != nil {
		return images.Image{}, err
	}
	if img.Name == "" {
		return images.Image{}, fmt.Errorf("image name must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if _, ok := m[img.Name]; ok {
		return images.Image{}, fmt.Errorf("image %q: %w", img.Name, errdefs.ErrAlreadyExists)
	}
	img.CreatedAt = time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)
	img.UpdatedAt = img.CreatedAt
	m[img.Name] = img
	return img, nil
}

func (f *fakeStore) Update(ctx context.Context, img images.Image, fieldpaths ...string) (images.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.ns(ctx)
	if err != nil {
		return images.Image{}, err
	}
	old, ok := m[img.Name]
	if !ok {
		return images.Image{}, fmt.Errorf("image %q: %w", img.Name, errdefs.ErrNotFound)
	}
	f.fieldpaths = fieldpaths
	old.Labels = img.Labels
	m[img.Name] = old
	return old, nil
}

func (f *fakeStore) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, err := f.ns(ctx)
	if err != nil {
		return err
	}
	if _, ok := m[name]; !ok {
		return fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
	}
	var o images.DeleteOptions
	for _, opt := range opts {
		opt(&o)
	}
	f.syncDelete = o.Synchronous
	delete(m, name)
	return nil
}

func setup(t *testing.T) (*fakeStore, images.Store) {
	fake := &fakeStore{images: map[string]map[string]images.Image{}}
	conn := grpctest.Dial(t, func(s *grpc.Server) { imageserver.Register(s, fake) })
	return fake, imageproxy.NewStore(imagesv1.NewImagesClient(conn))
}

func TestRoundTrip(t *testing.T) {
	fake, store := setup(t)
	ctx := namespaces.WithNamespace(context.Background(), "default")
	img := images.Image{
		Name:   "docker.io/library/busybox:latest",
		Labels: map[string]string{"a": "b"},
		Target: ocispec.Descriptor{
			MediaType:   ocispec.MediaTypeImageManifest,
			Digest:      digest.FromString("manifest"),
			Size:        512,
			Annotations: map[string]string{"org.opencontainers.image.ref.name": "latest"},
		},
	}
	created, err := store.Create(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	want := img
	want.CreatedAt = time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC)
	want.UpdatedAt = want.CreatedAt
	if !reflect.DeepEqual(created, want) {
		t.Fatalf("create returned\n%+v\nwant\n%+v", created, want)
	}
	if got := fake.images["default"][img.Name]; !reflect.DeepEqual(got, want) {
		t.Fatalf("the store received\n%+v\nwant\n%+v", got, want)
	}
	got, err := store.Get(ctx, img.Name)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("get returned\n%+v\nwant\n%+v", got, want)
	}

	if _, err := store.Create(ctx, images.Image{Name: "docker.io/library/alpine:3"}); err != nil {
		t.Fatal(err)
	}
	list, err := store.List(ctx, `name~="busybox"`)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != img.Name {
		t.Fatalf("filtered list: %+v", list)
	}
	if list, _ := store.List(ctx); len(list) != 2 {
		t.Fatalf("unfiltered list has %d images, want 2", len(list))
	}
	if list, _ := store.List(namespaces.WithNamespace(ctx, "other")); len(list) != 0 {
		t.Fatalf("namespace not carried: other namespace lists %+v", list)
	}

	updated, err := store.Update(ctx, images.Image{Name: img.Name, Labels: map[string]string{"c": "d"}}, "labels.c")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(updated.Labels, map[string]string{"c": "d"}) || !reflect.DeepEqual(fake.fieldpaths, []string{"labels.c"}) {
		t.Fatalf("update: labels %v, fieldpaths %v", updated.Labels, fake.fieldpaths)
	}
	if _, err := store.Update(ctx, images.Image{Name: img.Name}); err != nil || len(fake.fieldpaths) != 0 {
		t.Fatalf("update without fieldpaths: %v, store got %v", err, fake.fieldpaths)
	}

	if err := store.Delete(ctx, img.Name, images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	if !fake.syncDelete {
		t.Fatal("synchronous delete was not passed on")
	}
	if err := store.Delete(ctx, "docker.io/library/alpine:3"); err != nil || fake.syncDelete {
		t.Fatalf("plain delete: %v, sync %v", err, fake.syncDelete)
	}
}

func TestErrorKindsSurvive(t *testing.T) {
	_, store := setup(t)
	ctx := namespaces.WithNamespace(context.Background(), "default")
	if _, err := store.Get(ctx, "docker.io/library/missing:latest"); !errdefs.IsNotFound(err) {
		t.Errorf("get missing: %v, want not found", err)
	} else if err.Error() != `image "docker.io/library/missing:latest": not found` {
		t.Errorf("message changed on the way: %q", err)
	}
	if _, err := store.Create(ctx, images.Image{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, images.Image{Name: "x"}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("create twice: %v, want already exists", err)
	}
	if _, err := store.Create(ctx, images.Image{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("create without name: %v, want invalid argument", err)
	}
	if _, err := store.List(ctx, `name~=(`); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad filter: %v, want invalid argument", err)
	}
	if _, err := store.Update(ctx, images.Image{Name: "y"}); !errdefs.IsNotFound(err) {
		t.Errorf("update missing: %v, want not found", err)
	}
	if err := store.Delete(ctx, "y"); !errdefs.IsNotFound(err) {
		t.Errorf("delete missing: %v, want not found", err)
	}
	if _, err := store.List(context.Background()); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("no namespace: %v, want failed precondition", err)
	}
}
