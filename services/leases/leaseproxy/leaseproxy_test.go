package leaseproxy_test

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/filters"
	"github.com/berth-engine/berth/internal/grpctest"
	"github.com/berth-engine/berth/internal/identifiers"
	"github.com/berth-engine/berth/internal/namespaces"
	leasesv1 "github.com/berth-engine/berth/proto/leases/v1"
	"github.com/berth-engine/berth/services/leases"
	"github.com/berth-engine/berth/services/leases/leaseproxy"
	"github.com/berth-engine/berth/services/leases/leaseserver"
)

type fakeLease struct {
	lease     leases.Lease
	resources []leases.Resource
}

// fakeManager keeps leases in memory per namespace.
type fakeManager struct {
	mu         sync.Mutex
	leases     map[string]map[string]*fakeLease
	syncDelete bool
}

func (f *fakeManager) get(ctx context.Context, id string) (map[string]*fakeLease, *fakeLease, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, nil, err
	}
	if f.leases[ns] == nil {
		f.leases[ns] = map[string]*fakeLease{}
	}
	l, ok := f.leases[ns][id]
	if !ok && id != "" {
		return f.leases[ns], nil, fmt.Errorf("lease %q: %w", id, errdefs.ErrNotFound)
	}
	return f.leases[ns], l, nil
}

func (f *fakeManager) Create(ctx context.Context, opts ...leases.Opt) (leases.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var l leases.Lease
	for _, opt := range opts {
		if err := opt(&l); err != nil {
			return leases.Lease{}, err
		}
	}
	if err := identifiers.Validate(l.ID); err != nil {
		return leases.Lease{}, fmt.Errorf("lease: %w", err)
	}
	m, _, err := f.get(ctx, "")
	if err != nil {
		return leases.Lease{}, err
	}
	if _, ok := m[l.ID]; ok {
		return leases.Lease{}, fmt.Errorf("lease %q: %w", l.ID, errdefs.ErrAlreadyExists)
	}
	l.CreatedAt = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	m[l.ID] = &fakeLease{lease: l}
	return l, nil
}

func (f *fakeManager) Delete(ctx context.Context, l leases.Lease, opts ...leases.DeleteOpt) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, _, err := f.get(ctx, l.ID)
	if err != nil {
		return err
	}
	var o leases.DeleteOptions
	for _, opt := range opts {
		opt(&o)
	}
	f.syncDelete = o.Synchronous
	delete(m, l.ID)
	return nil
}

func (f *fakeManager) List(ctx context.Context, fs ...string) ([]leases.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, _, err := f.get(ctx, "")
	if err != nil {
		return nil, err
	}
	filter, err := filters.Parse(fs...)
	if err != nil {
		return nil, err
	}
	var out []leases.Lease
	for _, l := range m {
		if filter.Match(filters.AdaptorFunc(func(p []string) (string, bool) {
			return l.lease.ID, len(p) == 1 && p[0] == "id"
		})) {
			out = append(out, l.lease)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (f *fakeManager) AddResource(ctx context.Context, l leases.Lease, r leases.Resource) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, fl, err := f.get(ctx, l.ID)
	if err != nil {
		return err
	}
	if r.Type != "content" && r.Type != "ingests" {
		return fmt.Errorf("resource type %q: %w", r.Type, errdefs.ErrNotImplemented)
	}
	fl.resources = append(fl.resources, r)
	return nil
}

func (f *fakeManager) DeleteResource(ctx context.Context, l leases.Lease, r leases.Resource) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, fl, err := f.get(ctx, l.ID)
	if err != nil {
		return err
	}
	for i, have := range fl.resources {
		if have == r {
			fl.resources = append(fl.resources[:i], fl.resources[i+1:]...)
			break
		}
	}
	return nil
}

func (f *fakeManager) ListResources(ctx context.Context, l leases.Lease) ([]leases.Resource, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, fl, err := f.get(ctx, l.ID)
	if err != nil {
		return nil, err
	}
	return append([]leases.Resource(nil), fl.resources...), nil
}

func setup(t *testing.T) (*fakeManager, leases.Manager) {
	fake := &fakeManager{leases: map[string]map[string]*fakeLease{}}
	conn := grpctest.Dial(t, func(s *grpc.Server) { leaseserver.Register(s, fake) })
	return fake, leaseproxy.NewManager(leasesv1.NewLeasesClient(conn))
}

func TestRoundTrip(t *testing.T) {
	fake, m := setup(t)
	ctx := namespaces.WithNamespace(context.Background(), "default")

	l, err := m.Create(ctx, leases.WithID("import-1"), leases.WithLabels(map[string]string{"a": "b"}))
	if err != nil {
		t.Fatal(err)
	}
	want := leases.Lease{ID: "import-1", CreatedAt: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), Labels: map[string]string{"a": "b"}}
	if !reflect.DeepEqual(l, want) {
		t.Fatalf("create returned %+v, want %+v", l, want)
	}
	if got := fake.leases["default"]["import-1"].lease; !reflect.DeepEqual(got, want) {
		t.Fatalf("manager holds %+v, want %+v", got, want)
	}

	generated, err := m.Create(ctx, leases.WithExpiration(time.Hour))
	if err != nil {
		t.Fatalf("create without id: %v", err)
	}
	if generated.ID == "" || generated.Labels[leases.LabelExpire] == "" {
		t.Fatalf("lease without id: got %+v, want a generated id and the expiry label", generated)
	}
	other, err := m.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if other.ID == generated.ID {
		t.Fatalf("two generated ids are equal: %q", other.ID)
	}

	list, err := m.List(ctx, "id==import-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || !reflect.DeepEqual(list[0], want) {
		t.Fatalf("filtered list: %+v", list)
	}
	if list, _ := m.List(namespaces.WithNamespace(ctx, "other")); len(list) != 0 {
		t.Fatalf("namespace not carried: %+v", list)
	}

	rs := []leases.Resource{{ID: "sha256:abc", Type: "content"}, {ID: "ref-1", Type: "ingests"}}
	for _, r := range rs {
		if err := m.AddResource(ctx, l, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := m.ListResources(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rs) {
		t.Fatalf("resources %+v, want %+v", got, rs)
	}
	if err := m.DeleteResource(ctx, l, rs[0]); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.ListResources(ctx, l); !reflect.DeepEqual(got, rs[1:]) {
		t.Fatalf("after delete: resources %+v, want %+v", got, rs[1:])
	}

	if err := m.Delete(ctx, l, leases.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	if !fake.syncDelete {
		t.Fatal("synchronous delete was not passed on")
	}
	if _, ok := fake.leases["default"]["import-1"]; ok {
		t.Fatal("lease still there after delete")
	}
}

func TestErrorKindsSurvive(t *testing.T) {
	_, m := setup(t)
	ctx := namespaces.WithNamespace(context.Background(), "default")
	missing := leases.Lease{ID: "missing"}
	if err := m.Delete(ctx, missing); !errdefs.IsNotFound(err) {
		t.Errorf("delete missing: %v, want not found", err)
	}
	if _, err := m.ListResources(ctx, missing); !errdefs.IsNotFound(err) {
		t.Errorf("list resources of missing: %v, want not found", err)
	}
	l, err := m.Create(ctx, leases.WithID("l"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, leases.WithID("l")); !errdefs.IsAlreadyExists(err) {
		t.Errorf("create twice: %v, want already exists", err)
	}
	if _, err := m.Create(ctx, leases.WithID("bad id")); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad id: %v, want invalid argument", err)
	}
	if err := m.AddResource(ctx, l, leases.Resource{ID: "x", Type: "snapshots/overlay"}); !errdefs.IsNotImplemented(err) {
		t.Errorf("unknown resource type: %v, want not implemented", err)
	}
	if _, err := m.List(context.Background()); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("no namespace: %v, want failed precondition", err)
	}
}

func TestNilResourceIsInvalid(t *testing.T) {
	fake := &fakeManager{leases: map[string]map[string]*fakeLease{}}
	c := leasesv1.NewLeasesClient(grpctest.Dial(t, func(s *grpc.Server) { leaseserver.Register(s, fake) }))
	ctx := namespaces.WithNamespace(context.Background(), "default")
	_, err := c.AddResource(ctx, &leasesv1.AddResourceRequest{Id: "l"})
	if err := errdefs.FromGRPC(err); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("add without resource: %v, want invalid argument", err)
	}
}
