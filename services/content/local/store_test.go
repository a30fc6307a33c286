package local

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/content"
)

func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	root := t.TempDir()
	s, err := NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func openWriter(t *testing.T, s *Store, ref string, desc ocispec.Descriptor) content.Writer {
	t.Helper()
	w, err := s.Writer(context.Background(), content.WithRef(ref), content.WithDescriptor(desc))
	if err != nil {
		t.Fatalf("Writer(%q): %v", ref, err)
	}
	return w
}

// commitBlob writes data in one ingest and commits it, returning its digest.
func commitBlob(t *testing.T, s *Store, ref string, data []byte) digest.Digest {
	t.Helper()
	dgst := digest.FromBytes(data)
	w := openWriter(t, s, ref, ocispec.Descriptor{Size: int64(len(data)), Digest: dgst})
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(context.Background(), int64(len(data)), dgst); err != nil {
		t.Fatalf("commit %s: %v", ref, err)
	}
	return dgst
}

func readAll(t *testing.T, s *Store, dgst digest.Digest) []byte {
	t.Helper()
	ra, err := s.ReaderAt(context.Background(), ocispec.Descriptor{Digest: dgst})
	if err != nil {
		t.Fatalf("ReaderAt(%s): %v", dgst, err)
	}
	defer ra.Close()
	b, err := io.ReadAll(io.NewSectionReader(ra, 0, ra.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func blobNames(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func ingestNames(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "ingest"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteCommitRead(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	data := randomBytes(3<<20+17, 1)
	dgst := commitBlob(t, s, "layer-1", data)

	if got := readAll(t, s, dgst); !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes that differ from the %d written", len(got), len(data))
	}
	info, err := s.Info(ctx, dgst)
	if err != nil {
		t.Fatal(err)
	}
	if info.Digest != dgst || info.Size != int64(len(data)) || info.Labels != nil || info.CreatedAt.IsZero() {
		t.Fatalf("unexpected info %+v", info)
	}
	fi, err := os.Stat(filepath.Join(root, "blobs", "sha256", dgst.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o444 {
		t.Fatalf("blob mode is %v, want read-only 0444", fi.Mode().Perm())
	}
	if names := ingestNames(t, root); len(names) != 0 {
		t.Fatalf("ingest left after commit: %v", names)
	}
	if _, err := s.Status(ctx, "layer-1"); !errdefs.IsNotFound(err) {
		t.Fatalf("status after commit: want not found, got %v", err)
	}
}

func TestCommitWithoutExpectationsUsesComputedDigest(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	data := []byte("hello, berth")
	w := openWriter(t, s, "plain", ocispec.Descriptor{})
	defer w.Close()
	// io.Copy goes through the writer's ReadFrom.
	if _, err := io.Copy(w, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if w.Digest() != digest.FromBytes(data) {
		t.Fatalf("running digest %s, want %s", w.Digest(), digest.FromBytes(data))
	}
	if err := w.Commit(ctx, 0, ""); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, digest.FromBytes(data)); !bytes.Equal(got, data) {
		t.Fatalf("read back %q", got)
	}
	if err := w.Commit(ctx, 0, ""); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("second commit of one writer: want failed precondition, got %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close after commit: %v", err)
	}
}

func TestResumeAfterClose(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	data := randomBytes(2<<20+5, 2)
	desc := ocispec.Descriptor{Size: int64(len(data)), Digest: digest.FromBytes(data)}
	half := len(data) / 2

	w := openWriter(t, s, "resume", desc)
	if _, err := w.Write(data[:half]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	st, err := s.Status(ctx, "resume")
	if err != nil {
		t.Fatal(err)
	}
	if st.Ref != "resume" || st.Offset != int64(half) || st.Total != desc.Size || st.Expected != desc.Digest || st.StartedAt.IsZero() {
		t.Fatalf("unexpected status %+v", st)
	}

	// A resumed writer learns the expectations from the ingest.
	w = openWriter(t, s, "resume", ocispec.Descriptor{})
	defer w.Close()
	st, err = w.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Offset != int64(half) || st.Total != desc.Size || st.Expected != desc.Digest {
		t.Fatalf("resumed writer status %+v", st)
	}
	if want := digest.FromBytes(data[:half]); w.Digest() != want {
		t.Fatalf("resumed digest %s, want %s", w.Digest(), want)
	}
	if _, err := w.Write(data[half:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, 0, ""); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, desc.Digest); !bytes.Equal(got, data) {
		t.Fatal("resumed blob differs from the data written")
	}
}

func TestResumeWithOtherDescriptorRefused(t *testing.T) {
	s, _ := newStore(t)
	w := openWriter(t, s, "r", ocispec.Descriptor{Size: 10})
	w.Close()
	_, err := s.Writer(context.Background(), content.WithRef("r"), content.WithDescriptor(ocispec.Descriptor{Size: 11}))
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "abort") {
		t.Fatalf("want failed precondition saying to abort, got %v", err)
	}
}

func TestConcurrentWriterRefused(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	w := openWriter(t, s, "busy", ocispec.Descriptor{})
	if _, err := w.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}

	_, err := s.Writer(ctx, content.WithRef("busy"))
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "being written") {
		t.Fatalf("second writer in the same store: want unavailable 'being written', got %v", err)
	}
	// A second store over the same root stands for another process: the
	// flock keeps it out.
	other, err := NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Writer(ctx, content.WithRef("busy")); !errdefs.IsUnavailable(err) {
		t.Fatalf("writer from another store: want unavailable, got %v", err)
	}
	if err := other.Abort(ctx, "busy"); !errdefs.IsUnavailable(err) {
		t.Fatalf("abort of an ingest being written: want unavailable, got %v", err)
	}
	if err := s.Abort(ctx, "busy"); !errdefs.IsUnavailable(err) {
		t.Fatalf("abort of an ingest being written: want unavailable, got %v", err)
	}
	// Other refs are not affected.
	openWriter(t, other, "free", ocispec.Descriptor{}).Close()

	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w2, err := other.Writer(ctx, content.WithRef("busy"))
	if err != nil {
		t.Fatalf("writer after the first closed: %v", err)
	}
	defer w2.Close()
	if st, _ := w2.Status(); st.Offset != 3 {
		t.Fatalf("resumed at %d, want 3", st.Offset)
	}
}

func TestDigestMismatchRemovesIngest(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	data := []byte("the real data")
	wrong := digest.FromString("something else")
	w := openWriter(t, s, "bad", ocispec.Descriptor{Size: int64(len(data)), Digest: wrong})
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	err := w.Commit(ctx, int64(len(data)), wrong)
	if !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("want failed precondition, got %v", err)
	}
	if !strings.Contains(err.Error(), wrong.String()) || !strings.Contains(err.Error(), digest.FromBytes(data).String()) {
		t.Fatalf("error does not name both digests: %v", err)
	}
	if names := blobNames(t, root); len(names) != 0 {
		t.Fatalf("blobs/ holds %v after a digest mismatch", names)
	}
	if names := ingestNames(t, root); len(names) != 0 {
		t.Fatalf("ingest kept after a digest mismatch: %v", names)
	}
	if _, err := s.Status(ctx, "bad"); !errdefs.IsNotFound(err) {
		t.Fatalf("status after mismatch: want not found, got %v", err)
	}
	// The ref is free again.
	openWriter(t, s, "bad", ocispec.Descriptor{}).Close()
}

func TestCommitSizeMismatch(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	data := []byte("0123456789")
	w := openWriter(t, s, "short", ocispec.Descriptor{})
	if _, err := w.Write(data[:4]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, int64(len(data)), digest.FromBytes(data)); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("short commit: want failed precondition, got %v", err)
	}
	if names := blobNames(t, root); len(names) != 0 {
		t.Fatalf("blobs/ holds %v after a short commit", names)
	}
	// The ingest stays usable: finish it with the same writer.
	if _, err := w.Write(data[4:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, 4, ""); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("commit of more than the expected size: want failed precondition, got %v", err)
	}
	if err := w.Commit(ctx, int64(len(data)), digest.FromBytes(data)); err != nil {
		t.Fatalf("commit once complete: %v", err)
	}
}

func TestShortIngestKeptAcrossWriters(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	data := []byte("0123456789")
	w := openWriter(t, s, "short", ocispec.Descriptor{Size: 10})
	w.Write(data[:6])
	if err := w.Commit(ctx, 0, ""); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("commit short of the descriptor's size: want failed precondition, got %v", err)
	}
	w.Close()
	st, err := s.Status(ctx, "short")
	if err != nil || st.Offset != 6 {
		t.Fatalf("ingest after short commit: %+v, %v", st, err)
	}
}

func TestWritePastExpectedSize(t *testing.T) {
	s, _ := newStore(t)
	w := openWriter(t, s, "over", ocispec.Descriptor{Size: 4})
	defer w.Close()
	if _, err := w.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("de")); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("write past the expected size: want invalid argument, got %v", err)
	}
	if st, _ := w.Status(); st.Offset != 3 {
		t.Fatalf("refused write changed the offset to %d", st.Offset)
	}
}

func TestAlreadyExists(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	data := []byte("same bytes")
	dgst := commitBlob(t, s, "first", data)

	_, err := s.Writer(ctx, content.WithRef("again"), content.WithDescriptor(ocispec.Descriptor{Digest: dgst}))
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("writer for an existing digest: want already exists, got %v", err)
	}

	// Written without announcing the digest, the duplicate is found at commit.
	w := openWriter(t, s, "blind", ocispec.Descriptor{})
	defer w.Close()
	w.Write(data)
	if err := w.Commit(ctx, 0, ""); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("commit of an existing blob: want already exists, got %v", err)
	}
	if names := ingestNames(t, root); len(names) != 0 {
		t.Fatalf("ingest kept after already exists: %v", names)
	}
	if got := readAll(t, s, dgst); !bytes.Equal(got, data) {
		t.Fatal("existing blob changed")
	}
}

func TestTwoIngestsOfOneBlob(t *testing.T) {
	// Two writers of the same content under different refs: one commits,
	// the other gets AlreadyExists, and the blob is intact.
	ctx := context.Background()
	s, _ := newStore(t)
	data := randomBytes(1<<16, 3)
	w1 := openWriter(t, s, "a", ocispec.Descriptor{})
	w2 := openWriter(t, s, "b", ocispec.Descriptor{})
	defer w1.Close()
	defer w2.Close()
	w1.Write(data)
	w2.Write(data)
	if err := w1.Commit(ctx, int64(len(data)), digest.FromBytes(data)); err != nil {
		t.Fatal(err)
	}
	if err := w2.Commit(ctx, int64(len(data)), digest.FromBytes(data)); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("want already exists, got %v", err)
	}
	if got := readAll(t, s, digest.FromBytes(data)); !bytes.Equal(got, data) {
		t.Fatal("blob changed")
	}
}

func TestTruncate(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	w := openWriter(t, s, "t", ocispec.Descriptor{})
	defer w.Close()
	w.Write([]byte("garbage"))
	if err := w.Truncate(3); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("truncate to 3: want invalid argument, got %v", err)
	}
	if err := w.Truncate(0); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("good"))
	if err := w.Commit(ctx, 4, digest.FromString("good")); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, s, digest.FromString("good")); string(got) != "good" {
		t.Fatalf("read %q", got)
	}
}

func TestWalkFilters(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	d1 := commitBlob(t, s, "1", []byte("a"))
	d2 := commitBlob(t, s, "2", []byte("bb"))
	d3 := commitBlob(t, s, "3", []byte("ccc"))
	// Stray files in blobs/ are not blobs.
	os.WriteFile(filepath.Join(root, "blobs", "sha256", "not-a-digest"), nil, 0o600)

	walk := func(filters ...string) ([]digest.Digest, error) {
		var got []digest.Digest
		err := s.Walk(ctx, func(info content.Info) error {
			got = append(got, info.Digest)
			return nil
		}, filters...)
		sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
		return got, err
	}
	sorted := func(ds ...digest.Digest) []digest.Digest {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds
	}
	for _, tc := range []struct {
		filters []string
		want    []digest.Digest
	}{
		{nil, sorted(d1, d2, d3)},
		{[]string{"size==2"}, sorted(d2)},
		{[]string{"digest==" + d3.String()}, sorted(d3)},
		{[]string{"size==1", "size==3"}, sorted(d1, d3)},
		{[]string{"size!=1,size!=3"}, sorted(d2)},
		{[]string{"digest~=^sha256:"}, sorted(d1, d2, d3)},
		{[]string{`labels."a.b"==c`}, nil},
	} {
		got, err := walk(tc.filters...)
		if err != nil {
			t.Fatalf("%v: %v", tc.filters, err)
		}
		if strings.Join(digestStrings(got), ",") != strings.Join(digestStrings(tc.want), ",") {
			t.Errorf("filters %v: got %v, want %v", tc.filters, got, tc.want)
		}
	}
	if _, err := walk("size=="); err != nil {
		t.Fatalf("empty value is a valid filter: %v", err)
	}
	if _, err := walk(`digest~=(`); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("bad filter: want invalid argument, got %v", err)
	}
	stop := errors.New("stop")
	if err := s.Walk(ctx, func(content.Info) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("walk did not return the callback's error: %v", err)
	}
}

func digestStrings(ds []digest.Digest) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.String()
	}
	return out
}

func TestDeleteInfoUpdate(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	dgst := commitBlob(t, s, "x", []byte("x"))
	missing := digest.FromString("missing")

	if _, err := s.Info(ctx, missing); !errdefs.IsNotFound(err) {
		t.Fatalf("info of missing blob: %v", err)
	}
	if _, err := s.ReaderAt(ctx, ocispec.Descriptor{Digest: missing}); !errdefs.IsNotFound(err) {
		t.Fatalf("reader of missing blob: %v", err)
	}
	if err := s.Delete(ctx, missing); !errdefs.IsNotFound(err) {
		t.Fatalf("delete of missing blob: %v", err)
	}
	if _, err := s.Info(ctx, "sha256:nothex"); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("info of a bad digest: %v", err)
	}
	if _, err := s.Update(ctx, content.Info{Digest: dgst, Labels: map[string]string{"a": "b"}}); !errdefs.IsNotImplemented(err) {
		t.Fatalf("update: want not implemented, got %v", err)
	}
	if err := s.Delete(ctx, dgst); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Info(ctx, dgst); !errdefs.IsNotFound(err) {
		t.Fatalf("info after delete: %v", err)
	}
}

func TestAbortAndListStatuses(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	for _, ref := range []string{"layer-1", "layer-2", "config"} {
		w := openWriter(t, s, ref, ocispec.Descriptor{})
		w.Write([]byte(ref))
		w.Close()
	}
	all, err := s.ListStatuses(ctx)
	if err != nil || len(all) != 3 {
		t.Fatalf("list: %v, %v", all, err)
	}
	layers, err := s.ListStatuses(ctx, "ref~=^layer-")
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, st := range layers {
		refs = append(refs, st.Ref+"@"+strconv.FormatInt(st.Offset, 10))
	}
	sort.Strings(refs)
	if strings.Join(refs, " ") != "layer-1@7 layer-2@7" {
		t.Fatalf("filtered list: %v", refs)
	}
	if err := s.Abort(ctx, "layer-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Abort(ctx, "layer-1"); !errdefs.IsNotFound(err) {
		t.Fatalf("second abort: want not found, got %v", err)
	}
	if _, err := s.Status(ctx, "layer-1"); !errdefs.IsNotFound(err) {
		t.Fatalf("status after abort: %v", err)
	}
	if names := ingestNames(t, root); len(names) != 2 {
		t.Fatalf("ingests after abort: %v", names)
	}
	if _, err := s.ListStatuses(ctx, "ref~=("); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("bad filter: %v", err)
	}
}

func TestRangedReadAt(t *testing.T) {
	s, _ := newStore(t)
	data := randomBytes(3<<20, 4)
	dgst := commitBlob(t, s, "r", data)
	ra, err := s.ReaderAt(context.Background(), ocispec.Descriptor{Digest: dgst})
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	if ra.Size() != int64(len(data)) {
		t.Fatalf("size %d", ra.Size())
	}
	for _, r := range []struct{ off, n int }{{0, 10}, {1<<20 - 3, 7}, {2 << 20, 1 << 20}, {len(data) - 1, 1}} {
		p := make([]byte, r.n)
		if n, err := ra.ReadAt(p, int64(r.off)); err != nil && !(err == io.EOF && n == r.n) {
			t.Fatalf("ReadAt(%d, %d): %d, %v", r.off, r.n, n, err)
		}
		if !bytes.Equal(p, data[r.off:r.off+r.n]) {
			t.Fatalf("ReadAt(%d, %d) returned other bytes", r.off, r.n)
		}
	}
	p := make([]byte, 10)
	if n, err := ra.ReadAt(p, int64(len(data)-4)); n != 4 || err != io.EOF {
		t.Fatalf("read over the end: %d, %v", n, err)
	}
}

func TestOddRefs(t *testing.T) {
	ctx := context.Background()
	s, root := newStore(t)
	refs := []string{
		"../../../../etc/passwd",
		"a/b/c",
		"/",
		"with space\nand newline",
		"layer-sha256:0123",
		"日本語",
		strings.Repeat("long", 300),
	}
	for i, ref := range refs {
		w := openWriter(t, s, ref, ocispec.Descriptor{})
		w.Write([]byte{byte(i)})
		w.Close()
		st, err := s.Status(ctx, ref)
		if err != nil || st.Ref != ref || st.Offset != 1 {
			t.Fatalf("status of %q: %+v, %v", ref, st, err)
		}
	}
	list, err := s.ListStatuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(refs) {
		t.Fatalf("listed %d ingests, want %d", len(list), len(refs))
	}
	for _, name := range ingestNames(t, root) {
		if len(name) != 64 || strings.Trim(name, "0123456789abcdef") != "" {
			t.Fatalf("ingest directory %q is not a hex key", name)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "..", "etc")); err == nil {
		t.Fatal("a ref escaped the store root")
	}
	for i, ref := range refs {
		w := openWriter(t, s, ref, ocispec.Descriptor{})
		if err := w.Commit(ctx, 1, digest.FromBytes([]byte{byte(i)})); err != nil {
			t.Fatalf("commit %q: %v", ref, err)
		}
	}
	if _, err := s.Writer(ctx); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("writer without a ref: want invalid argument, got %v", err)
	}
}
