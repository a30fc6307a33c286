package namespaceproxy_test

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/grpctest"
	"github.com/berth-engine/berth/internal/identifiers"
	namespacesv1 "github.com/berth-engine/berth/proto/namespaces/v1"
	"github.com/berth-engine/berth/services/namespaces"
	"github.com/berth-engine/berth/services/namespaces/namespaceproxy"
	"github.com/berth-engine/berth/services/namespaces/namespaceserver"
)

// fakeStore keeps namespaces in memory; "busy" holds objects and cannot be
// deleted.
type fakeStore struct {
	mu     sync.Mutex
	labels map[string]map[string]string
}

func (f *fakeStore) Create(_ context.Context, name string, labels map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := identifiers.Validate(name); err != nil {
		return fmt.Errorf("namespace: %w", err)
	}
	if _, ok := f.labels[name]; ok {
		return fmt.Errorf("namespace %q: %w", name, errdefs.ErrAlreadyExists)
	}
	f.labels[name] = maps.Clone(labels)
	if f.labels[name] == nil {
		f.labels[name] = map[string]string{}
	}
	return nil
}

func (f *fakeStore) Labels(_ context.Context, name string) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.labels[name]
	if !ok {
		return nil, fmt.Errorf("namespace %q: %w", name, errdefs.ErrNotFound)
	}
	return maps.Clone(l), nil
}

func (f *fakeStore) SetLabel(_ context.Context, name, key, value string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.labels[name]
	if !ok {
		return fmt.Errorf("namespace %q: %w", name, errdefs.ErrNotFound)
	}
	if value == "" {
		delete(l, key)
	} else {
		l[key] = value
	}
	return nil
}

func (f *fakeStore) List(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.labels)), nil
}

func (f *fakeStore) Delete(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.labels[name]; !ok {
		return fmt.Errorf("namespace %q: %w", name, errdefs.ErrNotFound)
	}
	if name == "busy" {
		return fmt.Errorf("namespace %q still holds images: %w", name, errdefs.ErrFailedPrecondition)
	}
	delete(f.labels, name)
	return nil
}

func setup(t *testing.T) (*fakeStore, namespaces.Store, namespacesv1.NamespacesClient) {
	fake := &fakeStore{labels: map[string]map[string]string{}}
	conn := grpctest.Dial(t, func(s *grpc.Server) { namespaceserver.Register(s, fake) })
	return fake, namespaceproxy.NewStore(namespacesv1.NewNamespacesClient(conn)), namespacesv1.NewNamespacesClient(conn)
}

func TestRoundTrip(t *testing.T) {
	fake, store, _ := setup(t)
	ctx := context.Background()
	if err := store.Create(ctx, "default", nil); err != nil {
		t.Fatal(err)
	}
	if err := store.Create(ctx, "k8s.io", map[string]string{"owner": "kubelet"}); err != nil {
		t.Fatal(err)
	}
	names, err := store.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(names, []string{"default", "k8s.io"}) {
		t.Fatalf("list: %v", names)
	}
	labels, err := store.Labels(ctx, "k8s.io")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(labels, map[string]string{"owner": "kubelet"}) {
		t.Fatalf("labels: %v", labels)
	}
	if err := store.SetLabel(ctx, "k8s.io", "berth.io/gc", "off"); err != nil {
		t.Fatal(err)
	}
	if err := store.SetLabel(ctx, "k8s.io", "owner", ""); err != nil {
		t.Fatal(err)
	}
	if got := fake.labels["k8s.io"]; !reflect.DeepEqual(got, map[string]string{"berth.io/gc": "off"}) {
		t.Fatalf("after SetLabel the store holds %v", got)
	}
	if err := store.Delete(ctx, "k8s.io"); err != nil {
		t.Fatal(err)
	}
	if names, _ := store.List(ctx); !reflect.DeepEqual(names, []string{"default"}) {
		t.Fatalf("after delete: %v", names)
	}
}

func TestUpdateAndFilter(t *testing.T) {
	fake, store, client := setup(t)
	ctx := context.Background()
	for name, labels := range map[string]map[string]string{
		"a": {"tier": "prod", "keep": "1"},
		"b": {"tier": "dev"},
	} {
		if err := store.Create(ctx, name, labels); err != nil {
			t.Fatal(err)
		}
	}

	// No mask replaces every label.
	resp, err := client.Update(ctx, &namespacesv1.UpdateNamespaceRequest{
		Namespace: &namespacesv1.Namespace{Name: "a", Labels: map[string]string{"tier": "staging", "new": "x"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"tier": "staging", "new": "x"}
	if !reflect.DeepEqual(resp.GetNamespace().GetLabels(), want) || !reflect.DeepEqual(fake.labels["a"], want) {
		t.Fatalf("replace: got %v, store holds %v, want %v", resp.GetNamespace().GetLabels(), fake.labels["a"], want)
	}

	_, err = client.Update(ctx, &namespacesv1.UpdateNamespaceRequest{
		Namespace:  &namespacesv1.Namespace{Name: "a"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels.new", "name"}},
	})
	if err := errdefs.FromGRPC(err); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("update of name: %v, want invalid argument", err)
	}
	if !reflect.DeepEqual(fake.labels["a"], want) {
		t.Fatalf("a refused update changed labels to %v", fake.labels["a"])
	}

	list, err := client.List(ctx, &namespacesv1.ListNamespacesRequest{Filter: "labels.tier==dev"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetNamespaces()) != 1 || list.GetNamespaces()[0].GetName() != "b" {
		t.Fatalf("filtered list: %v", list.GetNamespaces())
	}
	_, err = client.List(ctx, &namespacesv1.ListNamespacesRequest{Filter: "name~=("})
	if err := errdefs.FromGRPC(err); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("bad filter: %v, want invalid argument", err)
	}
}

func TestErrorKindsSurvive(t *testing.T) {
	_, store, _ := setup(t)
	ctx := context.Background()
	if _, err := store.Labels(ctx, "missing"); !errdefs.IsNotFound(err) {
		t.Errorf("labels of missing: %v, want not found", err)
	}
	if err := store.SetLabel(ctx, "missing", "k", "v"); !errdefs.IsNotFound(err) {
		t.Errorf("set label of missing: %v, want not found", err)
	}
	if err := store.Create(ctx, "busy", nil); err != nil {
		t.Fatal(err)
	}
	if err := store.Create(ctx, "busy", nil); !errdefs.IsAlreadyExists(err) {
		t.Errorf("create twice: %v, want already exists", err)
	}
	if err := store.Create(ctx, "bad name", nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad name: %v, want invalid argument", err)
	}
	if err := store.Delete(ctx, "busy"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("delete of a namespace in use: %v, want failed precondition", err)
	} else if err.Error() != `namespace "busy" still holds images: failed precondition` {
		t.Errorf("message changed on the way: %q", err)
	}
}
