package metadata

import (
	"bytes"
	"context"
	"io"
	"sort"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	eventsv1 "github.com/berth-engine/berth/proto/events/v1"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/images"
)

func walkDigests(t *testing.T, ctx context.Context, cs content.Store, filters ...string) []string {
	t.Helper()
	var out []string
	if err := cs.Walk(ctx, func(info content.Info) error {
		out = append(out, info.Digest.String())
		return nil
	}, filters...); err != nil {
		t.Fatalf("Walk(%q): %v", filters, err)
	}
	sort.Strings(out)
	return out
}

func TestContentNamespaceIsolation(t *testing.T) {
	e := newTestEnv(t)
	cs := e.db.ContentStore()
	a, b := nsCtx("a"), nsCtx("b")
	blb := newBlob(ocispec.MediaTypeImageLayer, "layer data in a")
	blb.write(t, a, cs, map[string]string{"owner": "a"})

	info, err := cs.Info(a, blb.desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != blb.desc.Size || info.Labels["owner"] != "a" || info.CreatedAt.IsZero() {
		t.Errorf("Info in a = %+v", info)
	}
	got, err := content.ReadBlob(a, cs, blb.desc)
	if err != nil || !bytes.Equal(got, blb.data) {
		t.Fatalf("ReadBlob in a = %q, %v", got, err)
	}

	// The blob is in the backing store, but b has no record of it.
	if _, err := cs.Info(b, blb.desc.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("Info in b: %v, want not found", err)
	} else if !strings.Contains(err.Error(), `namespace "b"`) {
		t.Errorf("error does not name the namespace: %v", err)
	}
	if _, err := cs.ReaderAt(b, blb.desc); !errdefs.IsNotFound(err) {
		t.Errorf("ReaderAt in b: %v, want not found", err)
	}
	if _, err := cs.Update(b, content.Info{Digest: blb.desc.Digest, Labels: map[string]string{"x": "y"}}); !errdefs.IsNotFound(err) {
		t.Errorf("Update in b: %v, want not found", err)
	}
	wantKind(t, cs.Delete(b, blb.desc.Digest), errdefs.ErrNotFound)
	if got := walkDigests(t, b, cs); len(got) != 0 {
		t.Errorf("Walk in b = %v, want nothing", got)
	}
	if got := walkDigests(t, a, cs); len(got) != 1 || got[0] != blb.desc.Digest.String() {
		t.Errorf("Walk in a = %v", got)
	}

	// Ingests: a partial write in a is invisible in b, and its ref is a's.
	w, err := cs.Writer(a, content.WithRef("partial"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("half")); err != nil {
		t.Fatal(err)
	}
	if st, err := w.Status(); err != nil || st.Ref != "partial" {
		t.Errorf("writer Status = %+v, %v; want ref %q", st, err, "partial")
	}
	w.Close()
	sts, err := cs.ListStatuses(a)
	if err != nil || len(sts) != 1 || sts[0].Ref != "partial" || sts[0].Offset != 4 {
		t.Errorf("ListStatuses in a = %+v, %v", sts, err)
	}
	if sts, err := cs.ListStatuses(b); err != nil || len(sts) != 0 {
		t.Errorf("ListStatuses in b = %+v, %v; want none", sts, err)
	}
	if _, err := cs.Status(b, "partial"); !errdefs.IsNotFound(err) {
		t.Errorf("Status in b: %v, want not found", err)
	}
	if st, err := cs.Status(a, "partial"); err != nil || st.Ref != "partial" {
		t.Errorf("Status in a = %+v, %v", st, err)
	}
	// b may use the same ref without touching a's ingest.
	wb, err := cs.Writer(b, content.WithRef("partial"))
	if err != nil {
		t.Fatalf("Writer in b with a's ref: %v", err)
	}
	wb.Close()
	raw, err := e.backing.ListStatuses(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, st := range raw {
		refs = append(refs, st.Ref)
	}
	sort.Strings(refs)
	if strings.Join(refs, " ") != "a/partial b/partial" {
		t.Errorf("backing refs = %v, want namespaced refs", refs)
	}
	if err := cs.Abort(a, "partial"); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Status(b, "partial"); err != nil {
		t.Errorf("aborting in a removed b's ingest: %v", err)
	}
	wantKind(t, cs.Abort(a, "partial"), errdefs.ErrNotFound)

	if _, err := cs.Info(context.Background(), blb.desc.Digest); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Info without namespace: %v, want failed precondition", err)
	}
}

func TestSharedBlobSurvivesDeleteInOneNamespace(t *testing.T) {
	e := newTestEnv(t)
	cs := e.db.ContentStore()
	a, b := nsCtx("a"), nsCtx("b")
	blb := newBlob(ocispec.MediaTypeImageLayer, "shared layer")
	blb.write(t, a, cs, map[string]string{"in": "a"})

	// b "writes" the blob: it only gets a record, no data is copied.
	_, err := cs.Writer(b, content.WithRef("b-ref"), content.WithDescriptor(blb.desc))
	wantKind(t, err, errdefs.ErrAlreadyExists)
	info, err := cs.Info(b, blb.desc.Digest)
	if err != nil {
		t.Fatalf("Info in b after shared write: %v", err)
	}
	if info.Size != blb.desc.Size || info.Labels != nil {
		t.Errorf("b's record = %+v; want size %d and no labels (labels are per namespace)", info, blb.desc.Size)
	}
	if sts, _ := cs.ListStatuses(b); len(sts) != 0 {
		t.Errorf("shared write left ingests in b: %+v", sts)
	}
	// A descriptor with the wrong size records nothing.
	wrong := blb.desc
	wrong.Size++
	_, err = cs.Writer(nsCtx("c"), content.WithRef("c-ref"), content.WithDescriptor(wrong))
	wantKind(t, err, errdefs.ErrInvalidArgument)
	if _, err := cs.Info(nsCtx("c"), blb.desc.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("wrong-size write recorded the blob: %v", err)
	}
	// Writing it again in a is AlreadyExists too.
	_, err = cs.Writer(a, content.WithRef("a-again"), content.WithDescriptor(blb.desc))
	wantKind(t, err, errdefs.ErrAlreadyExists)

	// Each namespace keeps the blob alive with an image of its own.
	for _, ctx := range []context.Context{a, b} {
		if _, err := e.db.Images().Create(ctx, images.Image{Name: "shared", Target: blb.desc}); err != nil {
			t.Fatal(err)
		}
	}
	if stats := e.gc(t); stats.ContentDeleted != 0 || stats.BlobsDeleted != 0 {
		t.Fatalf("GC removed referenced content: %+v", stats)
	}

	if err := e.db.Images().Delete(a, "shared"); err != nil {
		t.Fatal(err)
	}
	if err := cs.Delete(a, blb.desc.Digest); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Info(a, blb.desc.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("Info in a after Delete: %v", err)
	}
	stats := e.gc(t)
	if !e.backingHas(t, blb.desc.Digest) || stats.BlobsDeleted != 0 {
		t.Fatalf("blob deleted from backing store while b records it (stats %+v)", stats)
	}
	got, err := content.ReadBlob(b, cs, blb.desc)
	if err != nil || !bytes.Equal(got, blb.data) {
		t.Fatalf("ReadBlob in b = %q, %v", got, err)
	}

	if err := e.db.Images().Delete(b, "shared"); err != nil {
		t.Fatal(err)
	}
	stats = e.gc(t)
	if e.backingHas(t, blb.desc.Digest) || stats.BlobsDeleted != 1 {
		t.Errorf("blob kept after the last namespace deleted it (stats %+v)", stats)
	}
}

func TestCommitInNamespaceThatHasTheBlob(t *testing.T) {
	e := newTestEnv(t)
	cs := e.db.ContentStore()
	ctx := nsCtx("default")
	blb := newBlob("application/octet-stream", "twice")
	blb.write(t, ctx, cs, map[string]string{"first": "1"})

	// A writer that does not announce the digest writes the data again.
	w, err := cs.Writer(ctx, content.WithRef("second"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(blb.data); err != nil {
		t.Fatal(err)
	}
	err = w.Commit(ctx, blb.desc.Size, "", content.WithLabels(map[string]string{"second": "2"}))
	wantKind(t, err, errdefs.ErrAlreadyExists)
	info, err := cs.Info(ctx, blb.desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if info.Labels["first"] != "1" || info.Labels["second"] != "" {
		t.Errorf("labels after second commit = %v, want the first commit's", info.Labels)
	}
	if sts, _ := cs.ListStatuses(ctx); len(sts) != 0 {
		t.Errorf("ingests left after commit: %+v", sts)
	}

	// A commit whose digest does not match leaves nothing recorded.
	w, err = cs.Writer(ctx, content.WithRef("bad"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write([]byte("other data"))
	if err := w.Commit(ctx, 10, blb.desc.Digest); err == nil {
		t.Fatal("commit with the wrong digest succeeded")
	}
	if got := walkDigests(t, ctx, cs); len(got) != 1 {
		t.Errorf("records after failed commit = %v", got)
	}
}

func TestContentUpdateAndValidation(t *testing.T) {
	e := newTestEnv(t)
	cs := e.db.ContentStore()
	ctx := nsCtx("default")
	blb := newBlob("application/octet-stream", "labelled")
	blb.write(t, ctx, cs, map[string]string{"a": "1", "b": "2"})

	info, err := cs.Update(ctx, content.Info{Digest: blb.desc.Digest, Labels: map[string]string{"a": "10", "c": "3"}}, "labels.a")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Labels) != 2 || info.Labels["a"] != "10" || info.Labels["b"] != "2" {
		t.Errorf("after labels.a: %v", info.Labels)
	}
	info, err = cs.Update(ctx, content.Info{Digest: blb.desc.Digest}, "labels.b")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := info.Labels["b"]; ok || info.Labels["a"] != "10" {
		t.Errorf("labels.b with no value should remove b: %v", info.Labels)
	}
	info, err = cs.Update(ctx, content.Info{Digest: blb.desc.Digest, Labels: map[string]string{"z": "26"}}, "labels")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Labels) != 1 || info.Labels["z"] != "26" {
		t.Errorf("labels replaced = %v", info.Labels)
	}
	if stored, _ := cs.Info(ctx, blb.desc.Digest); len(stored.Labels) != 1 || stored.Labels["z"] != "26" || !stored.UpdatedAt.After(stored.CreatedAt) {
		t.Errorf("stored after update = %+v", stored)
	}

	for name, tc := range map[string]struct {
		info  content.Info
		paths []string
	}{
		"unknown field": {content.Info{Digest: blb.desc.Digest}, []string{"size"}},
		"empty key":     {content.Info{Digest: blb.desc.Digest, Labels: map[string]string{"": "v"}}, []string{"labels"}},
		"too large":     {content.Info{Digest: blb.desc.Digest, Labels: map[string]string{"big": strings.Repeat("x", 4094)}}, []string{"labels.big"}},
		"bad digest":    {content.Info{Digest: "sha256:nothex"}, nil},
	} {
		if _, err := cs.Update(ctx, tc.info, tc.paths...); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v, want invalid argument", name, err)
		}
	}
	// Exactly at the limit is fine.
	if _, err := cs.Update(ctx, content.Info{Digest: blb.desc.Digest, Labels: map[string]string{"big": strings.Repeat("x", 4093)}}, "labels.big"); err != nil {
		t.Errorf("label of 4096 bytes: %v", err)
	}

	// A commit with a bad label fails before anything is committed.
	other := newBlob("application/octet-stream", "bad label")
	err = content.WriteBlob(ctx, cs, "bad-label", bytes.NewReader(other.data), other.desc, content.WithLabels(map[string]string{"": "x"}))
	wantKind(t, err, errdefs.ErrInvalidArgument)
	if e.backingHas(t, other.desc.Digest) {
		t.Error("blob committed despite its invalid label")
	}
}

func TestContentWalkFilters(t *testing.T) {
	e := newTestEnv(t)
	cs := e.db.ContentStore()
	ctx := nsCtx("default")
	small := newBlob("x", "s")
	big := newBlob("x", "bigger blob")
	small.write(t, ctx, cs, map[string]string{"kind": "small", "berth.io/tier": "gold"})
	big.write(t, ctx, cs, map[string]string{"kind": "big"})

	for _, tc := range []struct {
		filter string
		want   []blob
	}{
		{"", []blob{small, big}},
		{"labels.kind==small", []blob{small}},
		{`labels."berth.io/tier"==gold`, []blob{small}},
		{"labels.berth.io/tier", []blob{small}},
		{"size==11", []blob{big}},
		{"digest==" + big.desc.Digest.String(), []blob{big}},
		{"labels.kind~=^b", []blob{big}},
		{"labels.kind==none", nil},
	} {
		var want []string
		for _, b := range tc.want {
			want = append(want, b.desc.Digest.String())
		}
		sort.Strings(want)
		var filters []string
		if tc.filter != "" {
			filters = []string{tc.filter}
		}
		got := walkDigests(t, ctx, cs, filters...)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("Walk(%q) = %v, want %v", tc.filter, got, want)
		}
	}
	if err := cs.Walk(ctx, func(content.Info) error { return nil }, "labels.kind=="+`"unterminated`); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad filter: %v, want invalid argument", err)
	}
}

func TestContentDeleteEvent(t *testing.T) {
	e := newTestEnv(t)
	cs := e.db.ContentStore()
	ctx := nsCtx("events")
	blb := newBlob("x", "evented")
	blb.write(t, ctx, cs, nil)
	evs := e.pub.take()
	if len(evs) != 1 || evs[0].topic != "/content/create" || evs[0].namespace != "events" ||
		evs[0].msg.(*eventsv1.ContentCreate).GetDigest() != blb.desc.Digest.String() {
		t.Errorf("events on write = %+v", evs)
	}
	if err := cs.Delete(ctx, blb.desc.Digest); err != nil {
		t.Fatal(err)
	}
	evs = e.pub.take()
	if len(evs) != 1 || evs[0].topic != "/content/delete" || evs[0].namespace != "events" ||
		evs[0].msg.(*eventsv1.ContentDelete).GetDigest() != blb.desc.Digest.String() {
		t.Errorf("events on delete = %+v", evs)
	}
}

func TestReaderAtReadsBackingData(t *testing.T) {
	e := newTestEnv(t)
	cs := e.db.ContentStore()
	ctx := nsCtx("default")
	blb := newBlob("x", "0123456789")
	blb.write(t, ctx, cs, nil)
	ra, err := cs.ReaderAt(ctx, blb.desc)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	buf := make([]byte, 4)
	if n, err := ra.ReadAt(buf, 3); (err != nil && err != io.EOF) || string(buf[:n]) != "3456" {
		t.Errorf("ReadAt(3) = %q, %v", buf[:n], err)
	}
	if _, err := cs.ReaderAt(ctx, ocispec.Descriptor{Digest: digest.FromString("absent")}); !errdefs.IsNotFound(err) {
		t.Errorf("ReaderAt of absent blob: %v", err)
	}
}
