package metadata

import (
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/identifiers"
	"github.com/berth-engine/berth/services/leases"
)

func TestLeaseManager(t *testing.T) {
	e := newTestEnv(t)
	lm := e.db.Leases()
	ctx := nsCtx("default")

	gen, err := lm.Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := identifiers.Validate(gen.ID); err != nil || gen.CreatedAt.IsZero() {
		t.Errorf("generated lease %+v: %v", gen, err)
	}
	gen2, err := lm.Create(ctx)
	if err != nil || gen2.ID == gen.ID {
		t.Errorf("second generated lease %q, %v; want a new id", gen2.ID, err)
	}
	named, err := lm.Create(ctx, leases.WithID("build-1"), leases.WithLabels(map[string]string{"kind": "build"}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = lm.Create(ctx, leases.WithID("build-1"))
	wantKind(t, err, errdefs.ErrAlreadyExists)
	_, err = lm.Create(ctx, leases.WithID("bad id!"))
	wantKind(t, err, errdefs.ErrInvalidArgument)
	_, err = lm.Create(ctx, leases.WithLabels(map[string]string{LabelGCExpire: "tomorrow"}))
	wantKind(t, err, errdefs.ErrInvalidArgument)
	// The same id in another namespace is another lease.
	if _, err := lm.Create(nsCtx("other"), leases.WithID("build-1")); err != nil {
		t.Errorf("same id in other namespace: %v", err)
	}

	ls, err := lm.List(ctx)
	if err != nil || len(ls) != 3 {
		t.Errorf("List = %+v, %v; want 3", ls, err)
	}
	ls, err = lm.List(ctx, "labels.kind==build")
	if err != nil || len(ls) != 1 || ls[0].ID != "build-1" || ls[0].Labels["kind"] != "build" {
		t.Errorf("List(labels.kind==build) = %+v, %v", ls, err)
	}
	ls, err = lm.List(ctx, "id=="+gen.ID)
	if err != nil || len(ls) != 1 || ls[0].ID != gen.ID {
		t.Errorf("List(id==) = %+v, %v", ls, err)
	}

	d := digest.FromString("blob").String()
	for _, r := range []leases.Resource{{Type: "content", ID: d}, {Type: "ingests", ID: "ref/with/slashes"}} {
		if err := lm.AddResource(ctx, named, r); err != nil {
			t.Fatalf("AddResource %+v: %v", r, err)
		}
	}
	// Adding twice is fine.
	if err := lm.AddResource(ctx, named, leases.Resource{Type: "content", ID: d}); err != nil {
		t.Error(err)
	}
	for name, r := range map[string]leases.Resource{
		"unknown type": {Type: "volumes", ID: "x"},
		"bad digest":   {Type: "content", ID: "nope"},
		"empty ingest": {Type: "ingests"},
	} {
		if err := lm.AddResource(ctx, named, r); !errdefs.IsInvalidArgument(err) {
			t.Errorf("AddResource %s: %v, want invalid argument", name, err)
		}
	}
	err = lm.AddResource(ctx, leases.Lease{ID: "missing"}, leases.Resource{Type: "content", ID: d})
	wantKind(t, err, errdefs.ErrNotFound)
	if !strings.Contains(err.Error(), `lease "missing" not found in namespace "default"`) {
		t.Errorf("message: %v", err)
	}
	res, err := lm.ListResources(ctx, named)
	if err != nil || len(res) != 2 || res[0] != (leases.Resource{Type: "content", ID: d}) || res[1] != (leases.Resource{Type: "ingests", ID: "ref/with/slashes"}) {
		t.Errorf("ListResources = %+v, %v", res, err)
	}
	if err := lm.DeleteResource(ctx, named, leases.Resource{Type: "content", ID: d}); err != nil {
		t.Fatal(err)
	}
	res, _ = lm.ListResources(ctx, named)
	if len(res) != 1 || res[0].Type != "ingests" {
		t.Errorf("after DeleteResource: %+v", res)
	}
	_, err = lm.ListResources(ctx, leases.Lease{ID: "missing"})
	wantKind(t, err, errdefs.ErrNotFound)

	if err := lm.Delete(ctx, named); err != nil {
		t.Fatal(err)
	}
	wantKind(t, lm.Delete(ctx, named), errdefs.ErrNotFound)
	if ls, _ := lm.List(ctx); len(ls) != 2 {
		t.Errorf("leases after delete = %+v", ls)
	}
}
