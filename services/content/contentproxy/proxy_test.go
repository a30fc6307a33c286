package contentproxy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/berth-engine/berth/internal/errdefs"
	contentv1 "github.com/berth-engine/berth/proto/content/v1"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/content/contentproxy"
	"github.com/berth-engine/berth/services/content/contentserver"
	"github.com/berth-engine/berth/services/content/local"
)

type fixture struct {
	proxy content.Store
	root  string
	// readStreams counts the Read RPCs the proxy started.
	readStreams atomic.Int64
}

// newFixture serves a local store in t.TempDir() over an in-process gRPC
// connection and returns the proxy talking to it.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{root: t.TempDir()}
	store, err := local.NewStore(f.root)
	if err != nil {
		t.Fatal(err)
	}
	lis := bufconn.Listen(4 << 20)
	srv := grpc.NewServer()
	contentserver.Register(srv, store)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	count := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if strings.HasSuffix(method, "/Read") {
			f.readStreams.Add(1)
		}
		return streamer(ctx, desc, cc, method, opts...)
	}
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStreamInterceptor(count))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f.proxy = contentproxy.NewStore(contentv1.NewContentClient(conn))
	return f
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, ^seed))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func (f *fixture) writer(t *testing.T, ref string, desc ocispec.Descriptor) content.Writer {
	t.Helper()
	w, err := f.proxy.Writer(context.Background(), content.WithRef(ref), content.WithDescriptor(desc))
	if err != nil {
		t.Fatalf("Writer(%q): %v", ref, err)
	}
	return w
}

func (f *fixture) commit(t *testing.T, ref string, data []byte) digest.Digest {
	t.Helper()
	dgst := digest.FromBytes(data)
	w := f.writer(t, ref, ocispec.Descriptor{Size: int64(len(data)), Digest: dgst})
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(context.Background(), int64(len(data)), dgst); err != nil {
		t.Fatalf("commit %q: %v", ref, err)
	}
	return dgst
}

func (f *fixture) blobFiles(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(f.root, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestRoundTrip64MiB(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	data := randomBytes(64<<20+123, 1)
	desc := ocispec.Descriptor{Size: int64(len(data)), Digest: digest.FromBytes(data)}

	w := f.writer(t, "big", desc)
	// Odd-sized writes exercise the proxy's gathering into chunks.
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 300<<10+7)
		if _, err := w.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if w.Digest() != desc.Digest {
		t.Fatalf("writer digest %s, want %s", w.Digest(), desc.Digest)
	}
	if err := w.Commit(ctx, desc.Size, desc.Digest); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close after commit: %v", err)
	}

	info, err := f.proxy.Info(ctx, desc.Digest)
	if err != nil || info.Size != desc.Size || info.CreatedAt.IsZero() {
		t.Fatalf("info %+v, %v", info, err)
	}
	for _, d := range []ocispec.Descriptor{desc, {Digest: desc.Digest}} {
		ra, err := f.proxy.ReaderAt(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if ra.Size() != desc.Size {
			t.Fatalf("reader size %d", ra.Size())
		}
		before := f.readStreams.Load()
		h := sha256.New()
		if _, err := io.CopyBuffer(h, content.NewReader(ra), make([]byte, 32<<10)); err != nil {
			t.Fatal(err)
		}
		ra.Close()
		if got := digest.NewDigest(digest.SHA256, h); got != desc.Digest {
			t.Fatalf("read back %s, want %s", got, desc.Digest)
		}
		// desc.Size given: the stream was opened by ReaderAt itself.
		if streams := f.readStreams.Load() - before; streams > 1 {
			t.Fatalf("a sequential read used %d Read streams, want at most 1", streams)
		}
	}
}

func TestResumeAcrossProxyWriters(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	data := randomBytes(3<<20+77, 2)
	desc := ocispec.Descriptor{Size: int64(len(data)), Digest: digest.FromBytes(data)}
	half := 3<<19 + 5

	w := f.writer(t, "layer", desc)
	if _, err := w.Write(data[:half]); err != nil {
		t.Fatal(err)
	}
	// Close sends what is buffered and keeps the ingest.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := f.proxy.Status(ctx, "layer")
	if err != nil {
		t.Fatal(err)
	}
	if st.Offset != int64(half) || st.Total != desc.Size || st.Expected != desc.Digest || st.StartedAt.IsZero() {
		t.Fatalf("status after close %+v", st)
	}

	w = f.writer(t, "layer", desc)
	defer w.Close()
	st, err = w.Status()
	if err != nil || st.Offset != int64(half) || st.Total != desc.Size {
		t.Fatalf("resumed writer status %+v, %v", st, err)
	}
	if want := digest.FromBytes(data[:half]); w.Digest() != want {
		t.Fatalf("resumed digest %s, want %s", w.Digest(), want)
	}
	// content.Copy skips what the ingest holds already.
	if err := content.Copy(ctx, w, bytes.NewReader(data), desc.Size, desc.Digest); err != nil {
		t.Fatal(err)
	}
	got, err := content.ReadBlob(ctx, f.proxy, desc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("resumed blob differs from the data")
	}
}

func TestErrorsKeepTheirKind(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	existing := f.commit(t, "existing", []byte("existing"))
	missing := digest.FromString("missing")

	t.Run("NotFound", func(t *testing.T) {
		if _, err := f.proxy.Info(ctx, missing); !errdefs.IsNotFound(err) {
			t.Errorf("Info: %v", err)
		}
		if err := f.proxy.Delete(ctx, missing); !errdefs.IsNotFound(err) {
			t.Errorf("Delete: %v", err)
		}
		if _, err := f.proxy.ReaderAt(ctx, ocispec.Descriptor{Digest: missing}); !errdefs.IsNotFound(err) {
			t.Errorf("ReaderAt: %v", err)
		}
		if _, err := f.proxy.ReaderAt(ctx, ocispec.Descriptor{Digest: missing, Size: 10}); !errdefs.IsNotFound(err) {
			t.Errorf("ReaderAt with size: %v", err)
		}
		if _, err := f.proxy.Status(ctx, "nope"); !errdefs.IsNotFound(err) {
			t.Errorf("Status: %v", err)
		}
		if err := f.proxy.Abort(ctx, "nope"); !errdefs.IsNotFound(err) {
			t.Errorf("Abort: %v", err)
		}
	})
	t.Run("AlreadyExists", func(t *testing.T) {
		_, err := f.proxy.Writer(ctx, content.WithRef("again"), content.WithDescriptor(ocispec.Descriptor{Digest: existing}))
		if !errdefs.IsAlreadyExists(err) {
			t.Errorf("Writer for an existing digest: %v", err)
		}
		w := f.writer(t, "blind", ocispec.Descriptor{})
		w.Write([]byte("existing"))
		if err := w.Commit(ctx, 0, ""); !errdefs.IsAlreadyExists(err) {
			t.Errorf("Commit of an existing blob: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Errorf("Close after failed commit: %v", err)
		}
	})
	t.Run("FailedPrecondition", func(t *testing.T) {
		data := []byte("the real data")
		wrong := digest.FromString("other")
		w := f.writer(t, "mismatch", ocispec.Descriptor{})
		w.Write(data)
		err := w.Commit(ctx, int64(len(data)), wrong)
		if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), wrong.String()) || !strings.Contains(err.Error(), digest.FromBytes(data).String()) {
			t.Errorf("Commit with the wrong digest: %v", err)
		}
		w.Close()
		if _, err := f.proxy.Status(ctx, "mismatch"); !errdefs.IsNotFound(err) {
			t.Errorf("ingest kept after a digest mismatch: %v", err)
		}
		if blobs := f.blobFiles(t); len(blobs) != 1 {
			t.Errorf("blobs/ holds %v, want only the existing blob", blobs)
		}

		w = f.writer(t, "short", ocispec.Descriptor{})
		w.Write(data[:4])
		if err := w.Commit(ctx, int64(len(data)), digest.FromBytes(data)); !errdefs.IsFailedPrecondition(err) {
			t.Errorf("short Commit: %v", err)
		}
		w.Close()
		if st, err := f.proxy.Status(ctx, "short"); err != nil || st.Offset != 4 {
			t.Errorf("short ingest not kept: %+v, %v", st, err)
		}
		w = f.writer(t, "short", ocispec.Descriptor{})
		defer w.Close()
		if err := content.Copy(ctx, w, bytes.NewReader(data), int64(len(data)), digest.FromBytes(data)); err != nil {
			t.Errorf("finishing the short ingest: %v", err)
		}
	})
	t.Run("Unavailable", func(t *testing.T) {
		w := f.writer(t, "busy", ocispec.Descriptor{})
		w.Write([]byte("abc"))
		_, err := f.proxy.Writer(ctx, content.WithRef("busy"))
		if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "being written") {
			t.Errorf("second writer of a ref: %v", err)
		}
		if err := f.proxy.Abort(ctx, "busy"); !errdefs.IsUnavailable(err) {
			t.Errorf("abort of a busy ingest: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		// Close returns once the server let go of the ref.
		w2 := f.writer(t, "busy", ocispec.Descriptor{})
		if st, err := w2.Status(); err != nil || st.Offset != 3 {
			t.Errorf("writer after close: %+v, %v", st, err)
		}
		w2.Close()
		if err := f.proxy.Abort(ctx, "busy"); err != nil {
			t.Errorf("abort: %v", err)
		}
	})
	t.Run("InvalidArgument", func(t *testing.T) {
		if _, err := f.proxy.Info(ctx, "sha256:zz"); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Info of a bad digest: %v", err)
		}
		if err := f.proxy.Walk(ctx, func(content.Info) error { return nil }, "size~=("); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Walk with a bad filter: %v", err)
		}
		if _, err := f.proxy.ListStatuses(ctx, "ref~=("); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ListStatuses with a bad filter: %v", err)
		}
		w := f.writer(t, "sized", ocispec.Descriptor{Size: 3})
		defer w.Close()
		if _, err := w.Write([]byte("abcd")); !errdefs.IsInvalidArgument(err) {
			t.Errorf("write past the expected size: %v", err)
		}
	})
	t.Run("NotImplemented", func(t *testing.T) {
		_, err := f.proxy.Update(ctx, content.Info{Digest: existing, Labels: map[string]string{"a": "b"}}, "labels.a")
		if !errdefs.IsNotImplemented(err) {
			t.Errorf("Update on the local store: %v", err)
		}
	})
}

func TestRangedReads(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	data := randomBytes(3<<20+1000, 3)
	dgst := f.commit(t, "r", data)
	ra, err := f.proxy.ReaderAt(ctx, ocispec.Descriptor{Digest: dgst})
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()

	before := f.readStreams.Load()
	for i, r := range []struct{ off, n int }{
		{0, 10},
		{5, 100},                // inside the chunk already received
		{1<<20 - 10, 20},        // across a message boundary
		{2<<20 + 1000, 100},     // a short skip forward: drains the same stream
		{100, 50},               // back: a new stream
		{3 << 20, 1000},         // far forward: a new stream
		{len(data) - 1, 1},      // the last byte
		{0, len(data)},          // everything at once
		{2<<20 + 3, 1<<20 + 50}, // a range spanning messages
	} {
		p := make([]byte, r.n)
		n, err := ra.ReadAt(p, int64(r.off))
		if n != r.n || (err != nil && err != io.EOF) {
			t.Fatalf("ReadAt(%d, %d): %d, %v", r.off, r.n, n, err)
		}
		if !bytes.Equal(p, data[r.off:r.off+r.n]) {
			t.Fatalf("ReadAt(%d, %d) returned other bytes", r.off, r.n)
		}
		if streams := f.readStreams.Load() - before; i == 3 && streams != 1 {
			t.Fatalf("the first four reads used %d streams, want 1", streams)
		}
	}
	p := make([]byte, 10)
	if n, err := ra.ReadAt(p, int64(len(data)-4)); n != 4 || err != io.EOF || !bytes.Equal(p[:4], data[len(data)-4:]) {
		t.Fatalf("read over the end: %d, %v", n, err)
	}
	if n, err := ra.ReadAt(p, int64(len(data)+5)); n != 0 || err != io.EOF {
		t.Fatalf("read past the end: %d, %v", n, err)
	}

	// Sequential small reads share one stream.
	before = f.readStreams.Load()
	sr := io.NewSectionReader(ra, 1000, int64(len(data)-1000))
	got, err := io.ReadAll(io.MultiReader(sr))
	if err != nil || !bytes.Equal(got, data[1000:]) {
		t.Fatalf("sequential read: %d bytes, %v", len(got), err)
	}
	if streams := f.readStreams.Load() - before; streams != 1 {
		t.Fatalf("sequential read used %d streams, want 1", streams)
	}
}

func TestListInfoWalkDelete(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	// More than one List message's worth.
	want := map[digest.Digest]int64{}
	for i := range 250 {
		data := []byte(fmt.Sprintf("blob %d%s", i, strings.Repeat("x", i%7)))
		want[f.commit(t, fmt.Sprint("b", i), data)] = int64(len(data))
	}
	got := map[digest.Digest]int64{}
	err := f.proxy.Walk(ctx, func(info content.Info) error {
		got[info.Digest] = info.Size
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("walked %d blobs, want %d", len(got), len(want))
	}
	for d, size := range want {
		if got[d] != size {
			t.Fatalf("blob %s: size %d, want %d", d, got[d], size)
		}
	}

	var sized []digest.Digest
	if err := f.proxy.Walk(ctx, func(info content.Info) error {
		sized = append(sized, info.Digest)
		return nil
	}, "size==8", "size==14"); err != nil {
		t.Fatal(err)
	}
	var wantSized []digest.Digest
	for d, size := range want {
		if size == 8 || size == 14 {
			wantSized = append(wantSized, d)
		}
	}
	sort.Slice(sized, func(i, j int) bool { return sized[i] < sized[j] })
	sort.Slice(wantSized, func(i, j int) bool { return wantSized[i] < wantSized[j] })
	if fmt.Sprint(sized) != fmt.Sprint(wantSized) || len(sized) == 0 {
		t.Fatalf("filtered walk %v, want %v", sized, wantSized)
	}

	stop := errors.New("stop")
	calls := 0
	if err := f.proxy.Walk(ctx, func(content.Info) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("walk stopped by its callback: %v after %d calls", err, calls)
	}

	for d := range want {
		if err := f.proxy.Delete(ctx, d); err != nil {
			t.Fatal(err)
		}
		if _, err := f.proxy.Info(ctx, d); !errdefs.IsNotFound(err) {
			t.Fatalf("info after delete: %v", err)
		}
		break
	}
}

func TestStatusesAbortTruncate(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	for _, ref := range []string{"layer/1", "layer/2", "config odd\tref"} {
		w := f.writer(t, ref, ocispec.Descriptor{Size: 100})
		w.Write([]byte(ref))
		w.Close()
	}
	all, err := f.proxy.ListStatuses(ctx)
	if err != nil || len(all) != 3 {
		t.Fatalf("ListStatuses: %v, %v", all, err)
	}
	layers, err := f.proxy.ListStatuses(ctx, `ref~=^layer/`)
	if err != nil || len(layers) != 2 {
		t.Fatalf("filtered ListStatuses: %v, %v", layers, err)
	}
	for _, st := range layers {
		if st.Offset != int64(len(st.Ref)) || st.Total != 100 {
			t.Fatalf("status %+v", st)
		}
	}
	if err := f.proxy.Abort(ctx, "config odd\tref"); err != nil {
		t.Fatal(err)
	}
	if all, _ := f.proxy.ListStatuses(ctx); len(all) != 2 {
		t.Fatalf("after abort: %v", all)
	}

	w := f.writer(t, "layer/1", ocispec.Descriptor{})
	defer w.Close()
	if err := w.Truncate(0); err != nil {
		t.Fatal(err)
	}
	if st, err := w.Status(); err != nil || st.Offset != 0 {
		t.Fatalf("status after truncate: %+v, %v", st, err)
	}
	if err := w.Commit(ctx, 4, digest.FromString("good")); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("commit of an empty ingest: %v", err)
	}
	w = f.writer(t, "layer/1", ocispec.Descriptor{})
	defer w.Close()
	w.Write([]byte("good"))
	if err := w.Commit(ctx, 4, digest.FromString("good")); err != nil {
		t.Fatal(err)
	}
	if b, err := content.ReadBlob(ctx, f.proxy, ocispec.Descriptor{Digest: digest.FromString("good")}); err != nil || string(b) != "good" {
		t.Fatalf("read %q, %v", b, err)
	}
}
