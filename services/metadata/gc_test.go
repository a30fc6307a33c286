package metadata

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/services/leases"
)

// imageChain is an index -> manifest -> config + layers, written the way an
// importer writes them: children first, parents labelled with references
// to their children.
type imageChain struct {
	index, manifest, config blob
	layers                  []blob
}

func writeImageChain(t *testing.T, ctx context.Context, cs content.Store, tag string) imageChain {
	t.Helper()
	c := imageChain{
		config: newBlob(ocispec.MediaTypeImageConfig, `{"tag":"`+tag+`"}`),
		layers: []blob{
			newBlob(ocispec.MediaTypeImageLayer, "layer 0 of "+tag),
			newBlob(ocispec.MediaTypeImageLayer, "layer 1 of "+tag),
		},
	}
	c.config.write(t, ctx, cs, nil)
	for _, l := range c.layers {
		l.write(t, ctx, cs, nil)
	}
	c.manifest = newBlob(ocispec.MediaTypeImageManifest, `{"manifest":"`+tag+`"}`)
	c.manifest.write(t, ctx, cs, map[string]string{
		LabelGCRefContent + ".config": c.config.desc.Digest.String(),
		LabelGCRefContent + ".l.0":    c.layers[0].desc.Digest.String(),
		LabelGCRefContent + ".l.1":    c.layers[1].desc.Digest.String(),
	})
	c.index = newBlob(ocispec.MediaTypeImageIndex, `{"index":"`+tag+`"}`)
	c.index.write(t, ctx, cs, map[string]string{LabelGCRefContent + ".m.0": c.manifest.desc.Digest.String()})
	return c
}

func (c imageChain) below(index bool) []blob {
	all := append([]blob{c.manifest, c.config}, c.layers...)
	if index {
		all = append(all, c.index)
	}
	return all
}

func TestGCFollowsLabelChainFromImages(t *testing.T) {
	e := newTestEnv(t)
	cs := e.db.ContentStore()
	is := e.db.Images()
	ctx := nsCtx("default")

	// Written under a lease, as an import is, so that nothing goes before
	// the images exist.
	lease, err := e.db.Leases().Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lctx := leases.WithLease(ctx, lease.ID)
	chain := writeImageChain(t, lctx, cs, "v1")
	orphan := newBlob("x", "nobody refers to me")
	orphan.write(t, ctx, cs, nil)

	if _, err := is.Create(ctx, images.Image{Name: "app:index", Target: chain.index.desc}); err != nil {
		t.Fatal(err)
	}
	// A second image shares the manifest (and so config and layers).
	if _, err := is.Create(ctx, images.Image{Name: "app:manifest", Target: chain.manifest.desc}); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Leases().Delete(ctx, lease); err != nil {
		t.Fatal(err)
	}

	stats := e.gc(t)
	if stats.ContentDeleted != 1 || stats.BlobsDeleted != 1 || e.backingHas(t, orphan.desc.Digest) {
		t.Errorf("first GC: %+v; want only the orphan removed", stats)
	}
	for _, b := range chain.below(true) {
		if _, err := cs.Info(ctx, b.desc.Digest); err != nil {
			t.Errorf("%s (%s) collected while images refer to it: %v", b.desc.MediaType, b.desc.Digest, err)
		}
	}

	// Deleting the index image frees the index only: the manifest image
	// still holds the rest.
	if err := is.Delete(ctx, "app:index", images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	if e.backingHas(t, chain.index.desc.Digest) {
		t.Error("index kept after its only image was deleted synchronously")
	}
	for _, b := range chain.below(false) {
		if !e.backingHas(t, b.desc.Digest) {
			t.Errorf("%s collected while app:manifest refers to it", b.desc.MediaType)
		}
	}

	// A lease on one layer keeps that layer when the last image goes.
	keep, err := e.db.Leases().Create(ctx, leases.WithID("keep-layer"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.db.Leases().AddResource(ctx, keep, leases.Resource{Type: "content", ID: chain.layers[1].desc.Digest.String()}); err != nil {
		t.Fatal(err)
	}
	if err := is.Delete(ctx, "app:manifest", images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	for _, b := range []blob{chain.manifest, chain.config, chain.layers[0]} {
		if e.backingHas(t, b.desc.Digest) {
			t.Errorf("%s %s kept after the last image was deleted", b.desc.MediaType, b.desc.Digest)
		}
		if _, err := cs.Info(ctx, b.desc.Digest); !errdefs.IsNotFound(err) {
			t.Errorf("record of %s kept: %v", b.desc.Digest, err)
		}
	}
	if !e.backingHas(t, chain.layers[1].desc.Digest) {
		t.Fatal("leased layer collected")
	}
	if err := e.db.Leases().Delete(ctx, keep, leases.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	if e.backingHas(t, chain.layers[1].desc.Digest) {
		t.Error("layer kept after its lease was deleted")
	}
}

func TestGCReferenceLabelsStayInTheirNamespace(t *testing.T) {
	e := newTestEnv(t)
	cs := e.db.ContentStore()
	a, b := nsCtx("a"), nsCtx("b")
	chainA := writeImageChain(t, a, cs, "a")
	// b records the same layer, unreferenced there.
	if _, err := cs.Writer(b, content.WithRef("l"), content.WithDescriptor(chainA.layers[0].desc)); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("shared write: %v", err)
	}
	if _, err := e.db.Images().Create(a, images.Image{Name: "img", Target: chainA.index.desc}); err != nil {
		t.Fatal(err)
	}
	e.gc(t)
	if _, err := cs.Info(b, chainA.layers[0].desc.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("a's image kept b's unreferenced record: %v", err)
	}
	if _, err := cs.Info(a, chainA.layers[0].desc.Digest); err != nil {
		t.Errorf("a's layer collected: %v", err)
	}
	if !e.backingHas(t, chainA.layers[0].desc.Digest) {
		t.Error("blob deleted while a records it")
	}
}

func TestLeasedContentSurvivesUntilLeaseDeleted(t *testing.T) {
	e := newTestEnv(t)
	cs := e.db.ContentStore()
	lm := e.db.Leases()
	ctx := nsCtx("default")
	lease, err := lm.Create(ctx, leases.WithLabels(map[string]string{"purpose": "pull"}))
	if err != nil {
		t.Fatal(err)
	}
	lctx := leases.WithLease(ctx, lease.ID)
	blb := newBlob("x", "leased data")

	w, err := cs.Writer(lctx, content.WithRef("leased"), content.WithDescriptor(blb.desc))
	if err != nil {
		t.Fatal(err)
	}
	res, err := lm.ListResources(ctx, lease)
	if err != nil || len(res) != 1 || res[0] != (leases.Resource{Type: "ingests", ID: "leased"}) {
		t.Errorf("resources while writing = %+v, %v; want the ingest", res, err)
	}
	if _, err := w.Write(blb.data); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(lctx, blb.desc.Size, blb.desc.Digest); err != nil {
		t.Fatal(err)
	}
	w.Close()
	res, err = lm.ListResources(ctx, lease)
	if err != nil || len(res) != 1 || res[0] != (leases.Resource{Type: "content", ID: blb.desc.Digest.String()}) {
		t.Errorf("resources after commit = %+v, %v; want the blob only", res, err)
	}

	for range 2 {
		if stats := e.gc(t); stats.ContentDeleted != 0 || stats.BlobsDeleted != 0 {
			t.Fatalf("GC removed leased content: %+v", stats)
		}
	}
	if err := lm.Delete(ctx, lease, leases.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	if e.backingHas(t, blb.desc.Digest) {
		t.Error("blob kept after its lease was deleted")
	}
	if _, err := cs.Info(ctx, blb.desc.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("record kept after its lease was deleted: %v", err)
	}
}

func TestWriterUnderMissingLease(t *testing.T) {
	e := newTestEnv(t)
	ctx := leases.WithLease(nsCtx("default"), "no-such-lease")
	_, err := e.db.ContentStore().Writer(ctx, content.WithRef("r"))
	wantKind(t, err, errdefs.ErrNotFound)
	if sts, _ := e.backing.ListStatuses(context.Background()); len(sts) != 0 {
		t.Errorf("refused writer left backing ingests: %+v", sts)
	}
}

func TestExpiredLeaseCollected(t *testing.T) {
	e := newTestEnv(t)
	lm := e.db.Leases()
	ctx := nsCtx("default")
	expired, err := lm.Create(ctx, leases.WithID("expired"), leases.WithExpiration(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	live, err := lm.Create(ctx, leases.WithID("live"), leases.WithExpiration(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	gone := newBlob("x", "held by the expired lease")
	kept := newBlob("x", "held by the live lease")
	gone.write(t, leases.WithLease(ctx, expired.ID), e.db.ContentStore(), nil)
	kept.write(t, leases.WithLease(ctx, live.ID), e.db.ContentStore(), nil)

	stats := e.gc(t)
	if stats.LeasesDeleted != 1 || stats.BlobsDeleted != 1 {
		t.Errorf("stats = %+v; want one lease and one blob removed", stats)
	}
	ls, err := lm.List(ctx)
	if err != nil || len(ls) != 1 || ls[0].ID != "live" {
		t.Errorf("leases after GC = %+v, %v", ls, err)
	}
	if e.backingHas(t, gone.desc.Digest) || !e.backingHas(t, kept.desc.Digest) {
		t.Error("wrong blob collected")
	}
	if stats.Duration <= 0 || stats.MetaDuration <= 0 || stats.MetaDuration > stats.Duration {
		t.Errorf("durations = %v / %v", stats.MetaDuration, stats.Duration)
	}
}

func TestStaleIngestAbortedLeasedIngestKept(t *testing.T) {
	const expiry = 200 * time.Millisecond
	e := newTestEnv(t, WithIngestExpiry(expiry))
	cs := e.db.ContentStore()
	ctx := nsCtx("default")
	lease, err := e.db.Leases().Create(ctx, leases.WithID("pull"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ctx context.Context
		ref string
	}{{ctx, "stale"}, {leases.WithLease(ctx, lease.ID), "leased"}} {
		w, err := cs.Writer(tc.ctx, content.WithRef(tc.ref))
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("partial"))
		w.Close()
	}

	if stats := e.gc(t); stats.IngestsAborted != 0 {
		t.Fatalf("fresh ingests aborted: %+v", stats)
	}
	time.Sleep(expiry + 50*time.Millisecond)
	if stats := e.gc(t); stats.IngestsAborted != 1 {
		t.Errorf("stats = %+v, want one ingest aborted", stats)
	}
	sts, err := cs.ListStatuses(ctx)
	if err != nil || len(sts) != 1 || sts[0].Ref != "leased" {
		t.Errorf("ingests after GC = %+v, %v; want the leased one", sts, err)
	}
	if _, err := cs.Status(ctx, "stale"); !errdefs.IsNotFound(err) {
		t.Errorf("stale ingest: %v", err)
	}
	// Its record went too: the namespace can be emptied and deleted.
	if err := cs.Abort(ctx, "leased"); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Leases().Delete(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Namespaces().Delete(context.Background(), "default"); err != nil {
		t.Errorf("namespace delete after cleanup: %v", err)
	}
}

func TestBackgroundGCAfterDelete(t *testing.T) {
	e := newTestEnv(t, WithGCDelay(10*time.Millisecond))
	cs := e.db.ContentStore()
	ctx := nsCtx("default")
	blb := newBlob("x", "deleted soon")
	blb.write(t, ctx, cs, nil)
	if err := cs.Delete(ctx, blb.desc.Digest); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.backingHas(t, blb.desc.Digest) {
		if time.Now().After(deadline) {
			t.Fatal("background GC did not delete the blob")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Close stops the collector and is idempotent.
	if err := e.db.Close(); err != nil {
		t.Fatal(err)
	}
	e.db.Close()
}

func TestConcurrentWritesAndGC(t *testing.T) {
	e := newTestEnv(t)
	cs := e.db.ContentStore()
	ctx := nsCtx("default")
	lease, err := e.db.Leases().Create(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lctx := leases.WithLease(ctx, lease.ID)
	// GC runs in a loop while blobs are written: a commit must never lose
	// its blob between the backing store and its record.
	stop, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := e.db.GarbageCollect(context.Background()); err != nil {
				t.Errorf("GC: %v", err)
				return
			}
		}
	}()
	stopGC := sync.OnceFunc(func() { close(stop); <-finished })
	defer stopGC()
	var blobs []blob
	for i := range 30 {
		b := newBlob("x", fmt.Sprintf("concurrent %d", i))
		b.write(t, lctx, cs, nil)
		blobs = append(blobs, b)
	}
	stopGC()
	for _, b := range blobs {
		if _, err := content.ReadBlob(ctx, cs, b.desc); err != nil {
			t.Errorf("leased blob written during GC: %v", err)
		}
	}
}
