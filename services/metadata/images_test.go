package metadata

import (
	"context"
	"sort"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	eventsv1 "github.com/berth-engine/berth/proto/events/v1"
	"github.com/berth-engine/berth/services/images"
)

func target(data string) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(data), Size: int64(len(data))}
}

func TestImagesCRUD(t *testing.T) {
	e := newTestEnv(t)
	is := e.db.Images()
	ctx := nsCtx("default")
	const name = "docker.io/library/busybox:latest"

	created, err := is.Create(ctx, images.Image{Name: name, Target: target("m1"), Labels: map[string]string{"a": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if created.CreatedAt.IsZero() || !created.CreatedAt.Equal(created.UpdatedAt) {
		t.Errorf("timestamps of new image: %v %v", created.CreatedAt, created.UpdatedAt)
	}
	got, err := is.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if got.Target.Digest != target("m1").Digest || got.Target.MediaType != ocispec.MediaTypeImageManifest ||
		got.Target.Size != 2 || got.Labels["a"] != "1" || !got.CreatedAt.Equal(created.CreatedAt) {
		t.Errorf("Get = %+v", got)
	}

	_, err = is.Create(ctx, images.Image{Name: name, Target: target("m2")})
	wantKind(t, err, errdefs.ErrAlreadyExists)
	if !strings.Contains(err.Error(), `image "docker.io/library/busybox:latest" already exists in namespace "default"`) {
		t.Errorf("message: %v", err)
	}
	_, err = is.Get(ctx, "docker.io/library/alpine:latest")
	wantKind(t, err, errdefs.ErrNotFound)
	if !strings.Contains(err.Error(), `image "docker.io/library/alpine:latest" not found in namespace "default"`) {
		t.Errorf("message: %v", err)
	}
	// Another namespace does not see it.
	if _, err := is.Get(nsCtx("other"), name); !errdefs.IsNotFound(err) {
		t.Errorf("Get in other namespace: %v", err)
	}

	for desc, img := range map[string]images.Image{
		"empty name":       {Target: target("x")},
		"no digest":        {Name: "n", Target: ocispec.Descriptor{MediaType: "m"}},
		"bad digest":       {Name: "n", Target: ocispec.Descriptor{MediaType: "m", Digest: "sha256:zz"}},
		"no media type":    {Name: "n", Target: ocispec.Descriptor{Digest: digest.FromString("x")}},
		"empty label key":  {Name: "n", Target: target("x"), Labels: map[string]string{"": "v"}},
		"huge label value": {Name: "n", Target: target("x"), Labels: map[string]string{"k": strings.Repeat("v", 5000)}},
	} {
		if _, err := is.Create(ctx, img); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Create with %s: %v, want invalid argument", desc, err)
		}
	}
	if _, err := is.Create(context.Background(), images.Image{Name: "n", Target: target("x")}); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Create without namespace: %v", err)
	}

	// Update: one label, then all labels, then the target, then annotations.
	up, err := is.Update(ctx, images.Image{Name: name, Labels: map[string]string{"b": "2", "a": "ignored"}}, "labels.b")
	if err != nil {
		t.Fatal(err)
	}
	if len(up.Labels) != 2 || up.Labels["a"] != "1" || up.Labels["b"] != "2" || up.Target.Digest != target("m1").Digest {
		t.Errorf("after labels.b: %+v", up)
	}
	if !up.UpdatedAt.After(created.UpdatedAt) || !up.CreatedAt.Equal(created.CreatedAt) {
		t.Errorf("timestamps after update: created %v updated %v", up.CreatedAt, up.UpdatedAt)
	}
	up, err = is.Update(ctx, images.Image{Name: name, Labels: map[string]string{"c": "3"}}, "labels")
	if err != nil || len(up.Labels) != 1 || up.Labels["c"] != "3" {
		t.Errorf("after labels: %+v, %v", up, err)
	}
	t2 := target("m2")
	t2.Annotations = map[string]string{"org.opencontainers.image.ref.name": "latest"}
	up, err = is.Update(ctx, images.Image{Name: name, Target: t2, Labels: map[string]string{"c": "no"}}, "target")
	if err != nil || up.Target.Digest != t2.Digest || up.Labels["c"] != "3" || up.Target.Annotations["org.opencontainers.image.ref.name"] != "latest" {
		t.Errorf("after target: %+v, %v", up, err)
	}
	up, err = is.Update(ctx, images.Image{Name: name, Target: ocispec.Descriptor{Annotations: map[string]string{"x": "y"}}}, "annotations.x")
	if err != nil || len(up.Target.Annotations) != 2 || up.Target.Annotations["x"] != "y" || up.Target.Digest != t2.Digest {
		t.Errorf("after annotations.x: %+v, %v", up, err)
	}
	up, err = is.Update(ctx, images.Image{Name: name}, "annotations")
	if err != nil || up.Target.Annotations != nil {
		t.Errorf("after clearing annotations: %+v, %v", up, err)
	}
	// No fieldpaths: target and labels replaced.
	up, err = is.Update(ctx, images.Image{Name: name, Target: target("m3")})
	if err != nil || up.Target.Digest != target("m3").Digest || up.Labels != nil {
		t.Errorf("full update: %+v, %v", up, err)
	}
	if got, _ := is.Get(ctx, name); got.Target.Digest != target("m3").Digest || got.Labels != nil {
		t.Errorf("stored after full update: %+v", got)
	}

	_, err = is.Update(ctx, images.Image{Name: name}, "name")
	wantKind(t, err, errdefs.ErrInvalidArgument)
	_, err = is.Update(ctx, images.Image{Name: name, Target: ocispec.Descriptor{Digest: "bad"}}, "target")
	wantKind(t, err, errdefs.ErrInvalidArgument)
	_, err = is.Update(ctx, images.Image{Name: "absent", Target: target("x")})
	wantKind(t, err, errdefs.ErrNotFound)

	if err := is.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	wantKind(t, is.Delete(ctx, name), errdefs.ErrNotFound)
	if _, err := is.Get(ctx, name); !errdefs.IsNotFound(err) {
		t.Errorf("Get after delete: %v", err)
	}
}

func TestImagesListFilters(t *testing.T) {
	e := newTestEnv(t)
	is := e.db.Images()
	ctx := nsCtx("default")
	index := target("idx")
	index.MediaType = ocispec.MediaTypeImageIndex
	for _, img := range []images.Image{
		{Name: "docker.io/library/busybox:latest", Target: target("bb"), Labels: map[string]string{"berth.io/kind": "base"}},
		{Name: "docker.io/library/busybox:1.36", Target: target("bb")},
		{Name: "docker.io/my/app:v1", Target: index, Labels: map[string]string{"team": "web"}},
	} {
		if _, err := is.Create(ctx, img); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := is.Create(nsCtx("other"), images.Image{Name: "docker.io/other/x:1", Target: target("o")}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		filters []string
		want    string
	}{
		{nil, "docker.io/library/busybox:1.36 docker.io/library/busybox:latest docker.io/my/app:v1"},
		{[]string{"name==docker.io/my/app:v1"}, "docker.io/my/app:v1"},
		{[]string{"name~=busybox"}, "docker.io/library/busybox:1.36 docker.io/library/busybox:latest"},
		{[]string{"target.digest==" + target("bb").Digest.String()}, "docker.io/library/busybox:1.36 docker.io/library/busybox:latest"},
		{[]string{"target.mediatype==" + ocispec.MediaTypeImageIndex}, "docker.io/my/app:v1"},
		{[]string{`labels."berth.io/kind"==base`}, "docker.io/library/busybox:latest"},
		{[]string{"labels.team"}, "docker.io/my/app:v1"},
		{[]string{"labels.team", "name~=1.36$"}, "docker.io/library/busybox:1.36 docker.io/my/app:v1"},
		{[]string{"name~=busybox,labels.berth.io/kind!=base"}, "docker.io/library/busybox:1.36"},
		{[]string{"name==docker.io/other/x:1"}, ""},
	} {
		imgs, err := is.List(ctx, tc.filters...)
		if err != nil {
			t.Fatalf("List(%q): %v", tc.filters, err)
		}
		var names []string
		for _, img := range imgs {
			names = append(names, img.Name)
		}
		sort.Strings(names)
		if got := strings.Join(names, " "); got != tc.want {
			t.Errorf("List(%q) = %q, want %q", tc.filters, got, tc.want)
		}
	}
	if _, err := is.List(ctx, "name=="+`"open`); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad filter: %v", err)
	}
}

func TestImageEvents(t *testing.T) {
	e := newTestEnv(t)
	is := e.db.Images()
	ctx := nsCtx("evns")
	if _, err := is.Create(ctx, images.Image{Name: "img", Target: target("t"), Labels: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := is.Update(ctx, images.Image{Name: "img", Labels: map[string]string{"k": "w"}}, "labels"); err != nil {
		t.Fatal(err)
	}
	if err := is.Delete(ctx, "img"); err != nil {
		t.Fatal(err)
	}
	// Failed calls publish nothing.
	is.Delete(ctx, "img")
	is.Create(ctx, images.Image{Name: "bad"})

	evs := e.pub.take()
	if len(evs) != 3 {
		t.Fatalf("events = %+v, want 3", evs)
	}
	for i, topic := range []string{"/images/create", "/images/update", "/images/delete"} {
		if evs[i].topic != topic || evs[i].namespace != "evns" {
			t.Errorf("event %d = %s in %q, want %s in evns", i, evs[i].topic, evs[i].namespace, topic)
		}
	}
	if c, ok := evs[0].msg.(*eventsv1.ImageCreate); !ok || c.GetName() != "img" || c.GetLabels()["k"] != "v" {
		t.Errorf("create event = %v", evs[0].msg)
	}
	if u, ok := evs[1].msg.(*eventsv1.ImageUpdate); !ok || u.GetLabels()["k"] != "w" {
		t.Errorf("update event = %v", evs[1].msg)
	}
	if d, ok := evs[2].msg.(*eventsv1.ImageDelete); !ok || d.GetName() != "img" {
		t.Errorf("delete event = %v", evs[2].msg)
	}
}
