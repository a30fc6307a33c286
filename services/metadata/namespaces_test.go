package metadata

import (
	"context"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/errdefs"
	eventsv1 "github.com/berth-engine/berth/proto/events/v1"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/services/leases"
)

func TestNamespaceStore(t *testing.T) {
	e := newTestEnv(t)
	ns := e.db.Namespaces()
	bg := context.Background()

	if err := ns.Create(bg, "team-a", map[string]string{"owner": "alice"}); err != nil {
		t.Fatal(err)
	}
	wantKind(t, ns.Create(bg, "team-a", nil), errdefs.ErrAlreadyExists)
	wantKind(t, ns.Create(bg, "bad name", nil), errdefs.ErrInvalidArgument)
	wantKind(t, ns.Create(bg, "", nil), errdefs.ErrInvalidArgument)
	wantKind(t, ns.Create(bg, "ok", map[string]string{"": "x"}), errdefs.ErrInvalidArgument)
	wantKind(t, ns.Create(bg, "version", nil), errdefs.ErrInvalidArgument)

	labels, err := ns.Labels(bg, "team-a")
	if err != nil || len(labels) != 1 || labels["owner"] != "alice" {
		t.Errorf("Labels = %v, %v", labels, err)
	}
	if err := ns.SetLabel(bg, "team-a", "tier", "gold"); err != nil {
		t.Fatal(err)
	}
	if err := ns.SetLabel(bg, "team-a", "owner", ""); err != nil {
		t.Fatal(err)
	}
	if labels, _ := ns.Labels(bg, "team-a"); len(labels) != 1 || labels["tier"] != "gold" {
		t.Errorf("Labels after SetLabel = %v", labels)
	}
	wantKind(t, ns.SetLabel(bg, "absent", "k", "v"), errdefs.ErrNotFound)
	_, err = ns.Labels(bg, "absent")
	wantKind(t, err, errdefs.ErrNotFound)

	// Writing into a namespace creates it.
	if _, err := e.db.Images().Create(nsCtx("implicit"), images.Image{Name: "i", Target: target("t")}); err != nil {
		t.Fatal(err)
	}
	names, err := ns.List(bg)
	if err != nil || strings.Join(names, ",") != "implicit,team-a" {
		t.Errorf("List = %v, %v", names, err)
	}

	evs := e.pub.take()
	var topics []string
	for _, ev := range evs {
		topics = append(topics, ev.topic+"@"+ev.namespace)
	}
	if strings.Join(topics, " ") != "/namespaces/create@team-a /namespaces/update@team-a /namespaces/update@team-a /images/create@implicit" {
		t.Errorf("events = %v", topics)
	}
	if c := evs[0].msg.(*eventsv1.NamespaceCreate); c.GetName() != "team-a" || c.GetLabels()["owner"] != "alice" {
		t.Errorf("create event = %v", c)
	}

	if err := ns.Delete(bg, "team-a"); err != nil {
		t.Fatal(err)
	}
	wantKind(t, ns.Delete(bg, "team-a"), errdefs.ErrNotFound)
	if evs := e.pub.take(); len(evs) != 1 || evs[0].topic != "/namespaces/delete" || evs[0].msg.(*eventsv1.NamespaceDelete).GetName() != "team-a" {
		t.Errorf("delete events = %+v", evs)
	}
}

func TestNamespaceDeleteRefusedWhenNotEmpty(t *testing.T) {
	e := newTestEnv(t)
	ns := e.db.Namespaces()
	cs := e.db.ContentStore()
	bg := context.Background()
	ctx := nsCtx("busy")

	if _, err := e.db.Images().Create(ctx, images.Image{Name: "img", Target: target("t")}); err != nil {
		t.Fatal(err)
	}
	lease, err := e.db.Leases().Create(ctx, leases.WithID("l"))
	if err != nil {
		t.Fatal(err)
	}
	b1, b2 := newBlob("x", "one"), newBlob("x", "two")
	b1.write(t, ctx, cs, nil)
	b2.write(t, ctx, cs, nil)
	w, err := cs.Writer(ctx, content.WithRef("partial"))
	if err != nil {
		t.Fatal(err)
	}
	w.Close()

	err = ns.Delete(bg, "busy")
	wantKind(t, err, errdefs.ErrFailedPrecondition)
	for _, want := range []string{`namespace "busy"`, "1 image", "2 blobs", "1 ingest", "1 lease"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not say %q", err, want)
		}
	}

	// Empty it step by step; the message follows what is left.
	if err := e.db.Images().Delete(ctx, "img"); err != nil {
		t.Fatal(err)
	}
	if err := cs.Abort(ctx, "partial"); err != nil {
		t.Fatal(err)
	}
	err = ns.Delete(bg, "busy")
	if !errdefs.IsFailedPrecondition(err) || strings.Contains(err.Error(), "image") || strings.Contains(err.Error(), "ingest") {
		t.Errorf("after removing image and ingest: %v", err)
	}
	for _, b := range []blob{b1, b2} {
		if err := cs.Delete(ctx, b.desc.Digest); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.db.Leases().Delete(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if err := ns.Delete(bg, "busy"); err != nil {
		t.Errorf("delete of emptied namespace: %v", err)
	}
	if names, _ := ns.List(bg); len(names) != 0 {
		t.Errorf("namespaces left: %v", names)
	}
}
