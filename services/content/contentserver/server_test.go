package contentserver_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/berth-engine/berth/internal/namespaces"
	contentv1 "github.com/berth-engine/berth/proto/content/v1"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/content/contentserver"
	"github.com/berth-engine/berth/services/content/local"
	"github.com/berth-engine/berth/services/leases"
)

func ocispecDescriptor(dgst digest.Digest, size int) ocispec.Descriptor {
	return ocispec.Descriptor{Digest: dgst, Size: int64(size)}
}

// recorder wraps a store and records what reaches it from the server.
type recorder struct {
	content.Store

	mu         sync.Mutex
	namespaces []string
	leases     []string
	committed  map[string]string // labels given to Commit
	updated    map[string]string // labels given to Update
	paths      []string
}

func (r *recorder) record(ctx context.Context) {
	ns, _ := namespaces.Namespace(ctx)
	lease, _ := leases.FromContext(ctx)
	r.mu.Lock()
	r.namespaces = append(r.namespaces, ns)
	r.leases = append(r.leases, lease)
	r.mu.Unlock()
}

func (r *recorder) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	r.record(ctx)
	w, err := r.Store.Writer(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return &recordingWriter{Writer: w, r: r}, nil
}

func (r *recorder) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	r.record(ctx)
	r.mu.Lock()
	r.updated, r.paths = info.Labels, fieldpaths
	r.mu.Unlock()
	return info, nil
}

type recordingWriter struct {
	content.Writer
	r *recorder
}

func (w *recordingWriter) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.Opt) error {
	var info content.Info
	for _, opt := range opts {
		opt(&info)
	}
	w.r.mu.Lock()
	w.r.committed = info.Labels
	w.r.mu.Unlock()
	return w.Writer.Commit(ctx, size, expected, opts...)
}

func newClient(t *testing.T, cs content.Store) contentv1.ContentClient {
	t.Helper()
	lis := bufconn.Listen(4 << 20)
	srv := grpc.NewServer()
	contentserver.Register(srv, cs)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return contentv1.NewContentClient(conn)
}

func newLocal(t *testing.T) *local.Store {
	t.Helper()
	s, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: want %v, got %v", what, code, err)
	}
}

// exchange sends req and returns the response.
func exchange(t *testing.T, stream grpc.BidiStreamingClient[contentv1.WriteContentRequest, contentv1.WriteContentResponse], req *contentv1.WriteContentRequest) (*contentv1.WriteContentResponse, error) {
	t.Helper()
	if err := stream.Send(req); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return stream.Recv()
}

const (
	stat   = contentv1.WriteAction_WRITE_ACTION_STAT
	write  = contentv1.WriteAction_WRITE_ACTION_WRITE
	commit = contentv1.WriteAction_WRITE_ACTION_COMMIT
)

func TestWriteNeedsRefFirst(t *testing.T) {
	client := newClient(t, newLocal(t))
	stream, err := client.Write(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, err = exchange(t, stream, &contentv1.WriteContentRequest{Action: write, Data: []byte("x")})
	wantCode(t, "write without a ref", err, codes.InvalidArgument)

	stream, _ = client.Write(context.Background())
	_, err = exchange(t, stream, &contentv1.WriteContentRequest{Ref: "r", Action: contentv1.WriteAction(42)})
	wantCode(t, "unknown action", err, codes.InvalidArgument)

	stream, _ = client.Write(context.Background())
	_, err = exchange(t, stream, &contentv1.WriteContentRequest{Ref: "r", Action: stat, Expected: "sha256:nothex"})
	wantCode(t, "bad expected digest", err, codes.InvalidArgument)
}

func TestWriteOffsetsAndCommit(t *testing.T) {
	ctx := context.Background()
	store := newLocal(t)
	client := newClient(t, store)

	stream, _ := client.Write(ctx)
	resp, err := exchange(t, stream, &contentv1.WriteContentRequest{Ref: "r", Action: write, Data: []byte("abc")})
	if err != nil || resp.GetOffset() != 3 || resp.GetDigest() != digest.FromString("abc").String() {
		t.Fatalf("first write: %v, %v", resp, err)
	}
	_, err = exchange(t, stream, &contentv1.WriteContentRequest{Action: write, Offset: 5, Data: []byte("x")})
	wantCode(t, "write at the wrong offset", err, codes.InvalidArgument)

	// The failed stream closed its writer: a new one resumes at 3.
	stream, _ = client.Write(ctx)
	resp, err = exchange(t, stream, &contentv1.WriteContentRequest{Ref: "r", Action: stat})
	if err != nil || resp.GetOffset() != 3 || resp.GetStartedAt() == nil {
		t.Fatalf("stat of the resumed ingest: %v, %v", resp, err)
	}
	// Offset 0 on an ingest with data starts it over.
	resp, err = exchange(t, stream, &contentv1.WriteContentRequest{Action: write, Offset: 0, Data: []byte("hello")})
	if err != nil || resp.GetOffset() != 5 || resp.GetDigest() != digest.FromString("hello").String() {
		t.Fatalf("write at 0: %v, %v", resp, err)
	}
	resp, err = exchange(t, stream, &contentv1.WriteContentRequest{Action: write, Offset: 5, Data: []byte(", world")})
	if err != nil || resp.GetOffset() != 12 {
		t.Fatalf("write at 5: %v, %v", resp, err)
	}
	// A COMMIT without data and without an offset does not truncate.
	want := digest.FromString("hello, world")
	resp, err = exchange(t, stream, &contentv1.WriteContentRequest{Action: commit, Total: 12, Expected: want.String()})
	if err != nil || resp.GetDigest() != want.String() || resp.GetOffset() != 12 {
		t.Fatalf("commit: %v, %v", resp, err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream after commit: want EOF, got %v", err)
	}
	if info, err := store.Info(ctx, want); err != nil || info.Size != 12 {
		t.Fatalf("committed blob: %+v, %v", info, err)
	}

	// A stream announcing an existing blob is refused at its first message.
	stream, _ = client.Write(ctx)
	_, err = exchange(t, stream, &contentv1.WriteContentRequest{Ref: "again", Action: stat, Expected: want.String()})
	wantCode(t, "writer of an existing blob", err, codes.AlreadyExists)
}

func TestReadRanges(t *testing.T) {
	ctx := context.Background()
	store := newLocal(t)
	client := newClient(t, store)
	data := make([]byte, 5<<19+11)
	for i := range data {
		data[i] = byte(i * 31 >> 3)
	}
	dgst := digest.FromBytes(data)
	if err := content.WriteBlob(ctx, store, "r", bytes.NewReader(data), ocispecDescriptor(dgst, len(data))); err != nil {
		t.Fatal(err)
	}

	read := func(offset, size int64) ([]byte, int, error) {
		stream, err := client.Read(ctx, &contentv1.ReadContentRequest{Digest: dgst.String(), Offset: offset, Size: size})
		if err != nil {
			return nil, 0, err
		}
		var out []byte
		messages := 0
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return out, messages, nil
			}
			if err != nil {
				return nil, 0, err
			}
			if resp.GetOffset() != offset+int64(len(out)) || len(resp.GetData()) > 1<<20 {
				t.Fatalf("message at offset %d with %d bytes after %d bytes from %d", resp.GetOffset(), len(resp.GetData()), len(out), offset)
			}
			out = append(out, resp.GetData()...)
			messages++
		}
	}
	for _, r := range []struct {
		offset, size int64
		want         []byte
		messages     int
	}{
		{0, 0, data, 3},
		{100, 10, data[100:110], 1},
		{1 << 20, 1 << 20, data[1<<20 : 2<<20], 1},
		{int64(len(data)) - 5, 100, data[len(data)-5:], 1},
		{int64(len(data)), 0, nil, 0},
	} {
		got, messages, err := read(r.offset, r.size)
		if err != nil {
			t.Fatalf("read(%d, %d): %v", r.offset, r.size, err)
		}
		if !bytes.Equal(got, r.want) || messages != r.messages {
			t.Fatalf("read(%d, %d): %d bytes in %d messages, want %d in %d", r.offset, r.size, len(got), messages, len(r.want), r.messages)
		}
	}
	_, _, err := read(int64(len(data))+1, 0)
	wantCode(t, "read past the end", err, codes.InvalidArgument)
	_, _, err = read(-1, 0)
	wantCode(t, "negative offset", err, codes.InvalidArgument)
	stream, _ := client.Read(ctx, &contentv1.ReadContentRequest{Digest: digest.FromString("missing").String()})
	_, err = stream.Recv()
	wantCode(t, "read of a missing blob", err, codes.NotFound)
}

func TestListBatches(t *testing.T) {
	ctx := context.Background()
	store := newLocal(t)
	client := newClient(t, store)
	for i := range 250 {
		data := []byte{byte(i), byte(i >> 8)}
		if err := content.WriteBlob(ctx, store, "b", bytes.NewReader(data), ocispecDescriptor(digest.FromBytes(data), 2)); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := client.List(ctx, &contentv1.ListContentRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var batches []int
	seen := map[string]bool{}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		batches = append(batches, len(resp.GetInfo()))
		for _, info := range resp.GetInfo() {
			seen[info.GetDigest()] = true
		}
	}
	if len(seen) != 250 || len(batches) != 3 || batches[0] != 100 || batches[2] != 50 {
		t.Fatalf("listed %d blobs in batches %v", len(seen), batches)
	}
	stream, _ = client.List(ctx, &contentv1.ListContentRequest{Filters: []string{"size~=("}})
	_, err = stream.Recv()
	wantCode(t, "bad filter", err, codes.InvalidArgument)
}

func TestContextLabelsAndMaskReachTheStore(t *testing.T) {
	rec := &recorder{Store: newLocal(t)}
	client := newClient(t, rec)
	ctx := leases.WithLease(namespaces.WithNamespace(context.Background(), "k8s.io"), "pull-1")

	stream, err := client.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("labelled")
	resp, err := exchange(t, stream, &contentv1.WriteContentRequest{
		Ref: "l", Action: commit, Data: data, Total: int64(len(data)),
		Labels: map[string]string{"berth.gc.ref.content.0": "sha256:abc"},
	})
	if err != nil || resp.GetDigest() != digest.FromBytes(data).String() {
		t.Fatalf("write+commit in one message: %v, %v", resp, err)
	}
	if _, err := client.Update(ctx, &contentv1.UpdateRequest{
		Info:       &contentv1.Info{Digest: digest.FromBytes(data).String(), Labels: map[string]string{"a": "b"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels.a"}},
	}); err != nil {
		t.Fatal(err)
	}

	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i := range rec.namespaces {
		if rec.namespaces[i] != "k8s.io" || rec.leases[i] != "pull-1" {
			t.Fatalf("call %d reached the store with namespace %q and lease %q", i, rec.namespaces[i], rec.leases[i])
		}
	}
	if len(rec.namespaces) != 2 {
		t.Fatalf("%d calls recorded, want 2", len(rec.namespaces))
	}
	if len(rec.committed) != 1 || rec.committed["berth.gc.ref.content.0"] != "sha256:abc" {
		t.Fatalf("commit reached the store with labels %v", rec.committed)
	}
	if len(rec.paths) != 1 || rec.paths[0] != "labels.a" || len(rec.updated) != 1 || rec.updated["a"] != "b" {
		t.Fatalf("update reached the store with paths %v and labels %v", rec.paths, rec.updated)
	}
}
