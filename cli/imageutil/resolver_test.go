package imageutil

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/cli/internal/fakestore"
	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/images"
)

var (
	amd64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = ocispec.Platform{OS: "linux", Architecture: "arm64"}
	t0    = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
)

func setup() (*fakestore.Images, *fakestore.Content) {
	return fakestore.NewImages(), fakestore.NewContent()
}

func TestResolveByName(t *testing.T) {
	ctx := context.Background()
	is, cs := setup()
	img := cs.AddImage(t0, amd64, "layer one", "layer two")
	is.Put("docker.io/library/busybox:latest", img.Manifest)
	r := NewResolver(is, cs)

	for _, arg := range []string{"busybox", "busybox:latest", "docker.io/library/busybox:latest", "library/busybox"} {
		m, err := r.Resolve(ctx, arg)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", arg, err)
		}
		if m.By != ByName || len(m.Images) != 1 || m.ID() != img.Config.Digest {
			t.Errorf("Resolve(%q) = %+v, want the busybox record with ID %s", arg, m, img.Config.Digest)
		}
	}
	d := m0(t, r, "busybox").Details
	if want := img.Config.Size + img.Layers[0].Size + img.Layers[1].Size; d.Size != want {
		t.Errorf("Size = %d, want %d", d.Size, want)
	}
	if !d.Created.Equal(t0) || d.Config() == nil || !d.Config().Created.Equal(t0) {
		t.Errorf("Created = %v, want %v and the config read", d.Created, t0)
	}

	_, err := r.Resolve(ctx, "busybox:1.36")
	if !errdefs.IsNotFound(err) || err.Error() != "No such image: busybox:1.36" {
		t.Errorf("unknown tag: err = %v, want \"No such image: busybox:1.36\" (not found)", err)
	}
	if _, err := r.Resolve(ctx, "Not/A/Valid:Name:"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("invalid name: err = %v, want invalid argument", err)
	}
}

func m0(t *testing.T, r *Resolver, arg string) Image {
	t.Helper()
	m, err := r.Resolve(context.Background(), arg)
	if err != nil {
		t.Fatalf("Resolve(%q): %v", arg, err)
	}
	return m.Images[0]
}

func TestResolveByID(t *testing.T) {
	ctx := context.Background()
	is, cs := setup()
	a := cs.AddImage(t0, amd64, "a")
	b := cs.AddImage(t0, amd64, "b")
	is.Put("docker.io/library/busybox:latest", a.Manifest)
	is.Put("docker.io/my/busybox:v1", a.Manifest)
	is.Put("docker.io/library/alpine:latest", b.Manifest)
	r := NewResolver(is, cs)

	id := a.Config.Digest
	for _, arg := range []string{id.String(), id.Encoded(), id.Encoded()[:12], "sha256:" + id.Encoded()[:5], strings.ToUpper(id.Encoded()[:12])} {
		m, err := r.Resolve(ctx, arg)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", arg, err)
		}
		if m.By != ByID || m.ID() != id || len(m.Images) != 2 {
			t.Fatalf("Resolve(%q) = by %v, ID %s, %d records; want by ID, %s, 2 records", arg, m.By, m.ID(), len(m.Images), id)
		}
		if m.Images[0].Name != "docker.io/library/busybox:latest" || m.Images[1].Name != "docker.io/my/busybox:v1" {
			t.Errorf("records = %s, %s", m.Images[0].Name, m.Images[1].Name)
		}
	}
	if _, err := r.Resolve(ctx, "sha256:"+strings.Repeat("0", 64)); !errdefs.IsNotFound(err) {
		t.Errorf("unknown ID: err = %v, want not found", err)
	}
}

func TestResolveAmbiguousPrefix(t *testing.T) {
	ctx := context.Background()
	is, cs := setup()
	// 17 images: two of them share their first hex digit.
	byFirst := map[byte][]string{}
	for i := range 17 {
		img := cs.AddImage(t0, amd64, fmt.Sprint("layer ", i))
		is.Put(fmt.Sprintf("docker.io/library/img%d:latest", i), img.Manifest)
		first := img.Config.Digest.Encoded()[0]
		byFirst[first] = append(byFirst[first], img.Config.Digest.Encoded())
	}
	r := NewResolver(is, cs)
	for first, ids := range byFirst {
		_, err := r.Resolve(ctx, string(first))
		if len(ids) == 1 {
			if err != nil {
				t.Errorf("unique prefix %c: %v", first, err)
			}
			continue
		}
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "ambiguous") {
			t.Fatalf("prefix %c shared by %d IDs: err = %v, want ambiguous", first, len(ids), err)
		}
		for _, id := range ids {
			if !strings.Contains(err.Error(), id[:12]) {
				t.Errorf("error %q does not list candidate %s", err, id[:12])
			}
		}
		return
	}
	t.Fatal("no shared prefix among 17 IDs: impossible")
}

func TestNameWinsOverIDPrefix(t *testing.T) {
	ctx := context.Background()
	is, cs := setup()
	a := cs.AddImage(t0, amd64, "a")
	b := cs.AddImage(t0, amd64, "b")
	// A repository named like b's ID prefix.
	prefix := b.Config.Digest.Encoded()[:6]
	is.Put("docker.io/library/"+prefix+":latest", a.Manifest)
	is.Put("docker.io/library/other:latest", b.Manifest)
	r := NewResolver(is, cs)
	m, err := r.Resolve(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if m.By != ByName || m.ID() != a.Config.Digest {
		t.Errorf("Resolve(%q) = by %v ID %s, want the record named %q", prefix, m.By, m.ID(), prefix)
	}
}

func TestResolveDigestReference(t *testing.T) {
	ctx := context.Background()
	is, cs := setup()
	a := cs.AddImage(t0, amd64, "a")
	is.Put("docker.io/library/busybox:latest", a.Manifest)
	is.Put("docker.io/library/busybox:stable", a.Manifest)
	is.Put("docker.io/library/other:latest", a.Manifest)
	r := NewResolver(is, cs)

	m, err := r.Resolve(ctx, "busybox@"+a.Manifest.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	if m.By != ByDigest || len(m.Images) != 2 {
		t.Fatalf("got by %v with %d records, want the 2 busybox records by digest", m.By, len(m.Images))
	}
	if _, err := r.Resolve(ctx, "alpine@"+a.Manifest.Digest.String()); !errdefs.IsNotFound(err) {
		t.Errorf("digest in another repository: err = %v, want not found", err)
	}

	// A record named by a digest reference is found by name.
	is.Put("docker.io/library/pinned@"+a.Manifest.Digest.String(), a.Manifest)
	if m, err := r.Resolve(ctx, "pinned@"+a.Manifest.Digest.String()); err != nil || m.By != ByName {
		t.Errorf("record named by digest: by %v, err %v; want by name", m.By, err)
	}
}

func TestDanglingRecord(t *testing.T) {
	ctx := context.Background()
	is, cs := setup()
	a := cs.AddImage(t0, amd64, "a")
	is.Put(a.Manifest.Digest.String(), a.Manifest)
	r := NewResolver(is, cs)
	m, err := r.Resolve(ctx, a.Manifest.Digest.String())
	if err != nil || m.By != ByName || !m.Images[0].Dangling() {
		t.Fatalf("by record name: %+v, %v", m, err)
	}
	m, err = r.Resolve(ctx, a.Config.Digest.Encoded()[:12])
	if err != nil || m.By != ByID || !m.Images[0].Dangling() {
		t.Fatalf("by ID: %+v, %v", m, err)
	}
}

func TestIndexPicksPlatform(t *testing.T) {
	is, cs := setup()
	amd := cs.AddImage(t0, amd64, "amd64 layer")
	arm := cs.AddImage(t0, arm64, "arm64 layer, longer")
	amdDesc, armDesc := amd.Manifest, arm.Manifest
	amdDesc.Platform, armDesc.Platform = &amd64, &arm64
	idx := cs.AddIndex(armDesc, amdDesc)
	is.Put("docker.io/library/multi:latest", idx)

	for _, c := range []struct {
		platform ocispec.Platform
		want     fakestore.Image
	}{{amd64, amd}, {arm64, arm}} {
		r := NewResolver(is, cs, WithPlatform(c.platform))
		img := m0(t, r, "multi")
		if img.ID() != c.want.Config.Digest || img.Details.Manifest.Digest != c.want.Manifest.Digest {
			t.Errorf("%s: ID %s, want %s", platforms.Format(c.platform), img.ID(), c.want.Config.Digest)
		}
		if want := c.want.Config.Size + c.want.Layers[0].Size; img.Details.Size != want {
			t.Errorf("%s: size %d, want %d", platforms.Format(c.platform), img.Details.Size, want)
		}
	}
	// No manifest for this platform: the first one still gives an ID.
	r := NewResolver(is, cs, WithPlatform(ocispec.Platform{OS: "linux", Architecture: "s390x"}))
	if img := m0(t, r, "multi"); img.ID() != arm.Config.Digest {
		t.Errorf("no matching platform: ID %s, want the first manifest's %s", img.ID(), arm.Config.Digest)
	}
}

func TestListReadsEachTargetOnce(t *testing.T) {
	ctx := context.Background()
	is, cs := setup()
	targets := []fakestore.Image{cs.AddImage(t0, amd64, "a"), cs.AddImage(t0, amd64, "b"), cs.AddImage(t0, amd64, "c")}
	for i := range 1000 {
		is.Put(fmt.Sprintf("docker.io/library/img:%d", i), targets[i%3].Manifest)
	}
	r := NewResolver(is, cs)
	all, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1000 {
		t.Fatalf("listed %d images, want 1000", len(all))
	}
	for _, img := range all {
		if img.Err != nil || img.ID() == "" {
			t.Fatalf("%s: %v", img.Name, img.Err)
		}
	}
	// A manifest and a config per distinct target.
	if got := cs.Reads(); got != 6 {
		t.Errorf("read %d blobs, want 6", got)
	}
	// An ID lookup after the listing reads nothing more.
	if _, err := r.Resolve(ctx, targets[1].Config.Digest.Encoded()[:12]); err != nil {
		t.Fatal(err)
	}
	if got := cs.Reads(); got != 6 {
		t.Errorf("after ID lookup: read %d blobs, want 6", got)
	}
}

func TestMissingBlobIsReportedPerImage(t *testing.T) {
	ctx := context.Background()
	is, cs := setup()
	good := cs.AddImage(t0, amd64, "good")
	bad := cs.AddImage(t0, amd64, "bad")
	cs.Remove(bad.Config.Digest)
	is.Put("docker.io/library/good:latest", good.Manifest)
	is.Put("docker.io/library/bad:latest", bad.Manifest)
	all, err := NewResolver(is, cs).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range all {
		switch img.Name {
		case "docker.io/library/good:latest":
			if img.Err != nil {
				t.Errorf("good: %v", img.Err)
			}
		case "docker.io/library/bad:latest":
			if !errdefs.IsNotFound(img.Err) || !strings.Contains(img.Err.Error(), bad.Config.Digest.String()) {
				t.Errorf("bad: err = %v, want not found naming the config", img.Err)
			}
		}
	}
}

func TestListCachesSummaries(t *testing.T) {
	ctx := context.Background()
	is, cs := setup()
	const n = 40
	var imgs []fakestore.Image
	for i := range n {
		img := cs.AddImage(t0.Add(time.Duration(i)*time.Hour), amd64, fmt.Sprint("layer ", i), "shared layer")
		is.Put(fmt.Sprintf("docker.io/library/img%02d:latest", i), img.Manifest)
		imgs = append(imgs, img)
	}
	amd, arm := cs.AddImage(t0, amd64, "amd"), cs.AddImage(t0, arm64, "arm")
	amdDesc, armDesc := amd.Manifest, arm.Manifest
	amdDesc.Platform, armDesc.Platform = &amd64, &arm64
	is.Put("docker.io/library/multi:latest", cs.AddIndex(amdDesc, armDesc))

	list := func(round string, r *Resolver) []Image {
		t.Helper()
		all, err := r.List(ctx)
		if err != nil {
			t.Fatalf("%s: %v", round, err)
		}
		return all
	}
	// The first listing reads every target; its summary is stored.
	r := NewResolver(is, cs, WithPlatform(amd64))
	want := list("first listing", r)
	storeSummaries(ctx, r, want)
	if got := cs.Reads(); got != 2*n+3 {
		t.Errorf("first listing: %d reads, want %d", got, 2*n+3)
	}
	if got := is.Updates(); got != n+1 {
		t.Errorf("first listing stored %d summaries, want %d", got, n+1)
	}

	// The next one reads nothing and shows the same.
	check := func(round string, got []Image) {
		t.Helper()
		for i := range want {
			w, g := want[i], got[i]
			if g.Err != nil || g.Name != w.Name || g.ID() != w.ID() || g.Details.Size != w.Details.Size ||
				!g.Details.Created.Equal(w.Details.Created) || g.Details.Manifest.Digest != w.Details.Manifest.Digest {
				t.Errorf("%s: %s: ID %s size %d created %v (err %v); want %s %d %v",
					round, g.Name, g.ID(), g.Details.Size, g.Details.Created, g.Err, w.ID(), w.Details.Size, w.Details.Created)
			}
		}
	}
	reads, updates := cs.Reads(), is.Updates()
	r = NewResolver(is, cs, WithPlatform(amd64))
	second := list("second listing", r)
	storeSummaries(ctx, r, second)
	check("second listing", second)
	if cs.Reads() != reads || is.Updates() != updates {
		t.Errorf("second listing: %d reads, %d updates; want none", cs.Reads()-reads, is.Updates()-updates)
	}
	// The config is read when asked for.
	if cfg, err := r.LoadConfig(ctx, want[0].Details); err != nil || cfg.RootFS.Type != "layers" {
		t.Errorf("LoadConfig: %+v, %v", cfg, err)
	}

	// A summary is not believed for another target, another platform, or
	// when it is not one.
	is.SetTarget("docker.io/library/img00:latest", imgs[1].Manifest)
	is.SetLabel("docker.io/library/img02:latest", LabelSummary, "v1 garbage")
	reads = cs.Reads()
	r = NewResolver(is, cs, WithPlatform(arm64))
	for _, img := range list("third listing", r) {
		switch img.Name {
		case "docker.io/library/img00:latest":
			if img.ID() != imgs[1].Config.Digest {
				t.Errorf("moved record: ID %s, want %s", img.ID(), imgs[1].Config.Digest)
			}
		case "docker.io/library/multi:latest":
			if img.ID() != arm.Config.Digest {
				t.Errorf("index on arm64: ID %s, want %s", img.ID(), arm.Config.Digest)
			}
		}
	}
	// img01's target (now img00's too) is known from img01's summary; img02
	// and the index (for arm64) are read.
	if got := cs.Reads() - reads; got != 2+3 {
		t.Errorf("third listing: %d reads, want 5", got)
	}
}

// storeSummaries sets LabelSummary on the records of imgs that lack a
// current one, as load and tag do.
func storeSummaries(ctx context.Context, r *Resolver, imgs []Image) {
	var stale []images.Image
	for _, img := range imgs {
		if img.Err != nil {
			continue
		}
		labels := r.SummaryLabels(img.Target, img.Details)
		if labels == nil || img.Labels[LabelSummary] == labels[LabelSummary] {
			continue
		}
		stale = append(stale, images.Image{Name: img.Name, Target: img.Target, Labels: labels})
	}
	r.each(len(stale), func(i int) {
		r.images.Update(ctx, stale[i], "labels."+LabelSummary)
	})
}
