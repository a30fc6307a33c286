package diffproxy_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/grpctest"
	"github.com/berth-engine/berth/internal/mount"
	"github.com/berth-engine/berth/internal/namespaces"
	diffv1 "github.com/berth-engine/berth/proto/diff/v1"
	typesv1 "github.com/berth-engine/berth/proto/types/v1"
	"github.com/berth-engine/berth/services/content"
	contentlocal "github.com/berth-engine/berth/services/content/local"
	"github.com/berth-engine/berth/services/diff"
	"github.com/berth-engine/berth/services/diff/diffproxy"
	"github.com/berth-engine/berth/services/diff/diffserver"
	difflocal "github.com/berth-engine/berth/services/diff/local"
	"github.com/berth-engine/berth/services/leases"
)

// fake records what reaches it from the server and answers with set values.
type fake struct {
	mu        sync.Mutex
	namespace string
	lease     string
	desc      ocispec.Descriptor
	lower     []mount.Mount
	upper     []mount.Mount
	opts      diff.CompareOpts
	err       error
}

func (f *fake) record(ctx context.Context) {
	f.namespace, _ = namespaces.Namespace(ctx)
	f.lease, _ = leases.FromContext(ctx)
}

func (f *fake) Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount) (ocispec.Descriptor, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record(ctx)
	f.desc, f.upper = desc, mounts
	if f.err != nil {
		return ocispec.Descriptor{}, f.err
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromString("applied"), Size: 42}, nil
}

func (f *fake) Compare(ctx context.Context, lower, upper []mount.Mount, opts ...diff.CompareOpt) (ocispec.Descriptor, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record(ctx)
	f.lower, f.upper, f.opts = lower, upper, diff.CompareOpts{}
	for _, o := range opts {
		if err := o(&f.opts); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	if f.err != nil {
		return ocispec.Descriptor{}, f.err
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromString("diff"), Size: 7}, nil
}

func dial(t *testing.T, d diffserver.Differ) diffv1.DiffClient {
	conn := grpctest.Dial(t, func(s *grpc.Server) { diffserver.Register(s, d) })
	return diffv1.NewDiffClient(conn)
}

func testContext() context.Context {
	return leases.WithLease(namespaces.WithNamespace(context.Background(), "ns1"), "lease1")
}

var (
	overlay = []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/l", "upperdir=/u", "workdir=/w"}}}
	bind    = []mount.Mount{{Type: "bind", Source: "/l", Options: []string{"ro", "rbind"}}}
)

func TestApply(t *testing.T) {
	f := &fake{}
	d := diffproxy.NewDiffer(dial(t, f))
	layer := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromString("layer"), Size: 10}
	applied, err := d.Apply(testContext(), layer, overlay)
	if err != nil {
		t.Fatal(err)
	}
	if applied.Digest != digest.FromString("applied") || applied.Size != 42 || applied.MediaType != ocispec.MediaTypeImageLayer {
		t.Errorf("applied %+v", applied)
	}
	if !reflect.DeepEqual(f.desc, layer) || !reflect.DeepEqual(f.upper, overlay) {
		t.Errorf("server got %+v on %+v", f.desc, f.upper)
	}
	if f.namespace != "ns1" || f.lease != "lease1" {
		t.Errorf("namespace %q and lease %q did not travel", f.namespace, f.lease)
	}
}

func TestCompare(t *testing.T) {
	f := &fake{}
	d := diffproxy.NewDiffer(dial(t, f))
	labels := map[string]string{"a": "b"}
	desc, err := d.Compare(testContext(), bind, overlay,
		diff.WithMediaType(ocispec.MediaTypeImageLayer), diff.WithReference("ref1"), diff.WithLabels(labels))
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != digest.FromString("diff") || desc.Size != 7 {
		t.Errorf("diff %+v", desc)
	}
	want := diff.CompareOpts{MediaType: ocispec.MediaTypeImageLayer, Ref: "ref1", Labels: labels}
	if !reflect.DeepEqual(f.opts, want) || !reflect.DeepEqual(f.lower, bind) || !reflect.DeepEqual(f.upper, overlay) {
		t.Errorf("server got %+v, %+v, %+v", f.opts, f.lower, f.upper)
	}
	if f.namespace != "ns1" || f.lease != "lease1" {
		t.Errorf("namespace %q and lease %q did not travel", f.namespace, f.lease)
	}
	// No options: none reach the server.
	if _, err := d.Compare(testContext(), nil, overlay); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.opts, diff.CompareOpts{}) || f.lower != nil {
		t.Errorf("server got %+v and lower %+v", f.opts, f.lower)
	}
}

func TestErrorsKeepTheirKind(t *testing.T) {
	f := &fake{err: fmt.Errorf("layer sha256:x is corrupt: %w", errdefs.ErrInvalidArgument)}
	d := diffproxy.NewDiffer(dial(t, f))
	_, err := d.Apply(testContext(), ocispec.Descriptor{Digest: digest.FromString("x")}, overlay)
	if !errdefs.IsInvalidArgument(err) || err.Error() != f.err.Error() {
		t.Errorf("Apply: got %v", err)
	}
	f.err = fmt.Errorf("no such blob: %w", errdefs.ErrNotFound)
	if _, err := d.Compare(testContext(), bind, overlay); !errdefs.IsNotFound(err) {
		t.Errorf("Compare: got %v", err)
	}
}

func TestServerRefusesIncompleteRequests(t *testing.T) {
	c := dial(t, &fake{})
	ctx := testContext()
	for name, call := range map[string]func() error{
		"apply without descriptor": func() error {
			_, err := c.Apply(ctx, &diffv1.ApplyRequest{})
			return err
		},
		"apply with a bad digest": func() error {
			_, err := c.Apply(ctx, &diffv1.ApplyRequest{Diff: &typesv1.Descriptor{Digest: "sha256:nothex"}})
			return err
		},
		"apply without mounts": func() error {
			_, err := diffproxy.NewDiffer(c).Apply(ctx, ocispec.Descriptor{Digest: digest.FromString("x")}, nil)
			return err
		},
		"diff without upper": func() error {
			_, err := diffproxy.NewDiffer(c).Compare(ctx, bind, nil)
			return err
		},
	} {
		if err := errdefs.FromGRPC(call()); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: got %v, want invalid argument", name, err)
		}
	}
}

// TestThroughLocalDiffer applies and computes a layer over gRPC with the
// real Differ, on plain directories.
func TestThroughLocalDiffer(t *testing.T) {
	cs, err := contentlocal.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := diffproxy.NewDiffer(dial(t, difflocal.New(cs, t.TempDir())))
	ctx := testContext()

	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "hello", Mode: 0o644, Size: 5})
	tw.Write([]byte("hello"))
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarBuf.Bytes())
	zw.Close()
	blob := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(gz.Bytes()), Size: int64(gz.Len())}
	if err := content.WriteBlob(ctx, cs, "layer", bytes.NewReader(gz.Bytes()), blob); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	applied, err := d.Apply(ctx, blob, []mount.Mount{{Type: "bind", Source: root, Options: []string{"rw", "rbind"}}})
	if err != nil {
		t.Fatal(err)
	}
	if applied.Digest != digest.FromBytes(tarBuf.Bytes()) {
		t.Errorf("diff ID %s, want %s", applied.Digest, digest.FromBytes(tarBuf.Bytes()))
	}
	if data, err := os.ReadFile(filepath.Join(root, "hello")); err != nil || string(data) != "hello" {
		t.Fatalf("hello: %q %v", data, err)
	}

	empty := t.TempDir()
	desc, err := d.Compare(ctx, []mount.Mount{{Type: "bind", Source: empty, Options: []string{"ro", "rbind"}}},
		[]mount.Mount{{Type: "bind", Source: root, Options: []string{"rw", "rbind"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.Info(ctx, desc.Digest); err != nil {
		t.Fatalf("the diff blob %s is not in the store: %v", desc.Digest, err)
	}
	if _, err := d.Apply(ctx, desc, []mount.Mount{{Type: "bind", Source: empty, Options: []string{"rw", "rbind"}}}); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(empty, "hello")); err != nil || string(data) != "hello" {
		t.Fatalf("round trip over gRPC: hello %q %v", data, err)
	}
}
