package local

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/services/content"
	contentlocal "github.com/berth-engine/berth/services/content/local"
	"github.com/berth-engine/berth/tools/mkimage/imagegen"
)

// newStore returns a local content store that keeps labels in memory (the
// local store alone keeps none; berthd's metadata store does).
func newStore(t testing.TB) content.Store {
	t.Helper()
	cs, err := contentlocal.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &labelStore{Store: cs, labels: map[digest.Digest]map[string]string{}}
}

type labelStore struct {
	content.Store
	mu     sync.Mutex
	labels map[digest.Digest]map[string]string
}

func (s *labelStore) setLabels(dgst digest.Digest, labels map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.labels[dgst] == nil {
		s.labels[dgst] = map[string]string{}
	}
	for k, v := range labels {
		s.labels[dgst][k] = v
	}
}

func (s *labelStore) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	info, err := s.Store.Info(ctx, dgst)
	s.mu.Lock()
	info.Labels = s.labels[dgst]
	s.mu.Unlock()
	return info, err
}

func (s *labelStore) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	s.setLabels(info.Digest, info.Labels)
	return s.Info(ctx, info.Digest)
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
	err := w.Writer.Commit(ctx, size, expected, opts...)
	if err == nil {
		w.s.setLabels(expected, info.Labels)
	}
	return err
}

func putBlob(t testing.TB, cs content.Store, mediaType string, data []byte) ocispec.Descriptor {
	t.Helper()
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
	if err := content.WriteBlob(context.Background(), cs, "test-"+desc.Digest.Encoded(), bytes.NewReader(data), desc); err != nil {
		t.Fatal(err)
	}
	return desc
}

// layersImage is imagegen's layers image, whose layers hold what appliers
// get wrong; it needs busybox-static.
func layersImage(t testing.TB, bigSize int64) *imagegen.Image {
	t.Helper()
	if _, err := os.Stat(imagegen.DefaultBusybox); err != nil {
		t.Skipf("needs %s (busybox-static)", imagegen.DefaultBusybox)
	}
	img, err := imagegen.Layers(imagegen.Options{}, bigSize)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func layerTar(t testing.TB, l *imagegen.Layer) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := l.WriteTar(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func compress(t testing.TB, c compression, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var zw io.WriteCloser
	var err error
	switch c {
	case gzipped:
		zw, err = gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	case zstandard:
		zw, err = zstd.NewWriter(&buf)
	default:
		return data
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// fileState is what tree comparisons look at for one path.
type fileState struct {
	Type       string
	Mode       os.FileMode
	UID, GID   uint32
	Size       int64
	SHA256     string
	Link       string
	Rdev       uint64
	Xattrs     string
	LinkedWith string // the first path, in walk order, of the same inode
}

// treeState records every path under root except root itself. With
// xattrs, it records the extended attributes too.
func treeState(t testing.TB, root string, xattrs bool) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	inodes := map[uint64]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		s := fileState{Mode: fi.Mode(), UID: st.Uid, GID: st.Gid}
		switch {
		case fi.Mode().IsRegular():
			s.Type, s.Size = "file", fi.Size()
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			s.SHA256 = hex.EncodeToString(sum[:])
			if st.Nlink > 1 {
				if first, ok := inodes[st.Ino]; ok {
					s.LinkedWith = first
				} else {
					inodes[st.Ino] = rel
				}
			}
		case fi.IsDir():
			s.Type = "dir"
		case fi.Mode()&os.ModeSymlink != 0:
			s.Type = "symlink"
			if s.Link, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.Mode()&os.ModeNamedPipe != 0:
			s.Type = "fifo"
		case fi.Mode()&os.ModeDevice != 0:
			s.Type, s.Rdev = "device", st.Rdev
		default:
			s.Type = "other"
		}
		if xattrs {
			s.Xattrs = listXattrs(t, p)
		}
		out[rel] = s
		return nil
	})
	if err != nil {
		t.Fatalf("reading tree %s: %v", root, err)
	}
	return out
}

func listXattrs(t testing.TB, p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return ""
	}
	var parts []string
	for _, k := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if strings.HasPrefix(k, "trusted.overlay.") {
			continue
		}
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, k, v)
		if err != nil {
			t.Fatalf("reading attribute %s of %s: %v", k, p, err)
		}
		parts = append(parts, k+"="+string(v[:m]))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func diffStates(want, got map[string]fileState) string {
	var lines []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			lines = append(lines, fmt.Sprintf("missing %s (%+v)", p, w))
		case g != w:
			lines = append(lines, fmt.Sprintf("%s:\n  want %+v\n  got  %+v", p, w, g))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			lines = append(lines, fmt.Sprintf("unexpected %s (%+v)", p, g))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func bufioOf(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
