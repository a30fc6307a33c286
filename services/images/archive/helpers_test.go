package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/content/local"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/tools/mkimage/imagegen"
)

// labelStore is the local store plus the labels that, in berthd, the
// metadata store keeps.
type labelStore struct {
	*local.Store
	root   string
	mu     sync.Mutex
	labels map[digest.Digest]map[string]string
}

func newStore(t *testing.T) *labelStore {
	t.Helper()
	root := t.TempDir()
	s, err := local.NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	return &labelStore{Store: s, root: root, labels: map[digest.Digest]map[string]string{}}
}

func (s *labelStore) setLabels(d digest.Digest, labels map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.labels[d] == nil {
		s.labels[d] = map[string]string{}
	}
	for k, v := range labels {
		s.labels[d][k] = v
	}
}

func (s *labelStore) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	cur, err := s.Store.Info(ctx, info.Digest)
	if err != nil {
		return content.Info{}, err
	}
	set := map[string]string{}
	for _, p := range fieldpaths {
		k, ok := strings.CutPrefix(p, "labels.")
		if !ok {
			return content.Info{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "test store updates labels.KEY only, got %q", p)
		}
		set[k] = info.Labels[k]
	}
	s.setLabels(info.Digest, set)
	return cur, nil
}

func (s *labelStore) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	w, err := s.Store.Writer(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return &labelWriter{Writer: w, s: s}, nil
}

type labelWriter struct {
	content.Writer
	s *labelStore
}

func (w *labelWriter) Commit(ctx context.Context, size int64, expected digest.Digest, opts ...content.Opt) error {
	var info content.Info
	for _, o := range opts {
		if err := o(&info); err != nil {
			return err
		}
	}
	d := w.Writer.Digest()
	if err := w.Writer.Commit(ctx, size, expected, opts...); err != nil {
		return err
	}
	w.s.setLabels(d, info.Labels)
	return nil
}

// assertNoIngests fails when an import left an ingest behind.
func assertNoIngests(t *testing.T, cs content.Store) {
	t.Helper()
	st, err := cs.ListStatuses(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 0 {
		t.Fatalf("ingests left behind: %+v", st)
	}
}

// fakeOpts builds images without needing busybox installed.
func fakeOpts(t *testing.T, arch string) imagegen.Options {
	t.Helper()
	p := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho fake busybox for "+arch+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return imagegen.Options{Busybox: p, Applets: []string{"sh", "ls"}, Architecture: arch}
}

func busyboxImage(t *testing.T) *imagegen.Image {
	t.Helper()
	img, err := imagegen.Busybox(fakeOpts(t, "amd64"))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func layersImage(t *testing.T) *imagegen.Image {
	t.Helper()
	img, err := imagegen.Layers(fakeOpts(t, "amd64"), 100_000)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func archiveOf(t *testing.T, format imagegen.Format, imgs ...imagegen.Named) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := imagegen.WriteArchive(&buf, format, imgs...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func importBytes(t *testing.T, cs content.Store, data []byte) []images.Image {
	t.Helper()
	imgs, err := Import(context.Background(), cs, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	assertNoIngests(t, cs)
	return imgs
}

func exportBytes(t *testing.T, cs content.Provider, imgs []images.Image, opts ...ExportOpt) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Export(context.Background(), cs, &buf, imgs, opts...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tarFile is a member of a tar made by a test.
type tarFile struct {
	hdr  tar.Header
	data []byte
}

func file(name string, data []byte) tarFile {
	return tarFile{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data))}, data: data}
}

func readTarFiles(t *testing.T, data []byte) []tarFile {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var out []tarFile
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarFile{hdr: *hdr, data: b})
	}
}

func writeTarFiles(t *testing.T, files []tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := f.hdr
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func fileMap(files []tarFile) map[string][]byte {
	m := map[string][]byte{}
	for _, f := range files {
		m[f.hdr.Name] = f.data
	}
	return m
}

func mustJSON(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decoding %q: %v", data, err)
	}
}

func toJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readManifest reads the manifest of an image target from the store.
func readManifest(t *testing.T, cs content.Provider, desc ocispec.Descriptor) ocispec.Manifest {
	t.Helper()
	data, err := content.ReadBlob(context.Background(), cs, desc)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	mustJSON(t, data, &m)
	return m
}

// writeJSONBlob stores v as a blob and returns its descriptor.
func writeJSONBlob(t *testing.T, cs content.Store, mediaType string, v any) ocispec.Descriptor {
	t.Helper()
	data := toJSON(t, v)
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if err := content.WriteBlob(context.Background(), cs, "test-"+desc.Digest.Encoded(), bytes.NewReader(data), desc); err != nil {
		t.Fatal(err)
	}
	return desc
}
