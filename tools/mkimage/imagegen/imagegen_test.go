package imagegen

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fakeBusybox returns options that need no busybox installed.
func fakeBusybox(t *testing.T) Options {
	t.Helper()
	p := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho not really busybox\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return Options{Busybox: p, Applets: []string{"sh", "ls", "cat", "busybox"}, Architecture: "amd64"}
}

func build(t *testing.T, format Format, imgs ...Named) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteArchive(&buf, format, imgs...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBuildsAreByteIdentical(t *testing.T) {
	opts := fakeBusybox(t)
	kinds := map[string]func() (*Image, error){
		"busybox": func() (*Image, error) { return Busybox(opts) },
		"layers":  func() (*Image, error) { return Layers(opts, 300_000) },
		"random":  func() (*Image, error) { return Random(3, 500_000, "amd64") },
	}
	for kind, mk := range kinds {
		for _, format := range []Format{FormatDocker, FormatOCI} {
			t.Run(kind+"/"+string(format), func(t *testing.T) {
				var sums [2][32]byte
				for i := range sums {
					// A fresh image each time: nothing may depend on state
					// left by the previous build.
					img, err := mk()
					if err != nil {
						t.Fatal(err)
					}
					sums[i] = sha256.Sum256(build(t, format, Named{Image: img, Names: []string{"test/" + kind}}))
				}
				if sums[0] != sums[1] {
					t.Fatalf("two builds differ: %x vs %x", sums[0], sums[1])
				}
			})
		}
	}
}

func TestRandomLayersDiffer(t *testing.T) {
	img, err := Random(4, 4000, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	_, layers, err := Digests(img, FormatDocker)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[digest.Digest]bool{}
	for _, l := range layers {
		if seen[l] {
			t.Fatalf("layer %s appears twice: random layers must differ", l)
		}
		seen[l] = true
	}
	var total int64
	for _, l := range img.Layers {
		for _, e := range l.Entries {
			total += e.Header.Size
		}
	}
	if total != 4000 {
		t.Fatalf("random data totals %d bytes, want 4000", total)
	}
}

// readTar returns the headers and contents of a tar.
func readTar(t *testing.T, r io.Reader) ([]*tar.Header, map[string][]byte) {
	t.Helper()
	tr := tar.NewReader(r)
	var hdrs []*tar.Header
	data := map[string][]byte{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hdrs, data
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		hdrs = append(hdrs, hdr)
		data[hdr.Name] = b
	}
}

func TestLayersImageContent(t *testing.T) {
	const bigSize = 200_000
	img, err := Layers(fakeBusybox(t), bigSize)
	if err != nil {
		t.Fatal(err)
	}
	_, files := readTar(t, bytes.NewReader(build(t, FormatOCI, Named{Image: img, Names: []string{"layers"}})))

	var index ocispec.Index
	mustJSON(t, files["index.json"], &index)
	if len(index.Manifests) != 1 || index.Manifests[0].Annotations[AnnotationImageName] != "docker.io/library/layers:latest" {
		t.Fatalf("index.json does not name the image: %+v", index.Manifests)
	}
	blob := func(d digest.Digest) []byte {
		b, ok := files["blobs/sha256/"+d.Encoded()]
		if !ok {
			t.Fatalf("blob %s missing from the archive", d)
		}
		if digest.FromBytes(b) != d {
			t.Fatalf("blob %s has digest %s", d, digest.FromBytes(b))
		}
		return b
	}
	var m ocispec.Manifest
	mustJSON(t, blob(index.Manifests[0].Digest), &m)
	var cfg ocispec.Image
	mustJSON(t, blob(m.Config.Digest), &cfg)
	if len(m.Layers) != 4 || len(cfg.RootFS.DiffIDs) != 4 {
		t.Fatalf("want 4 layers, manifest has %d, config %d diff IDs", len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	if len(cfg.Config.Cmd) != 1 || cfg.Config.Cmd[0] != "sh" || cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Fatalf("unexpected config: %+v", cfg)
	}

	// layer i: name -> header
	layers := make([]map[string]*tar.Header, len(m.Layers))
	for i, l := range m.Layers {
		if l.MediaType != ocispec.MediaTypeImageLayerGzip {
			t.Fatalf("layer %d has media type %s", i, l.MediaType)
		}
		zr, err := gzip.NewReader(bytes.NewReader(blob(l.Digest)))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if d := digest.FromBytes(raw); d != cfg.RootFS.DiffIDs[i] {
			t.Fatalf("layer %d: uncompressed digest %s, config says %s", i, d, cfg.RootFS.DiffIDs[i])
		}
		hdrs, _ := readTar(t, bytes.NewReader(raw))
		layers[i] = map[string]*tar.Header{}
		prev := ""
		for _, h := range hdrs {
			if h.Name < prev {
				t.Errorf("layer %d: %s comes after %s: entries are not sorted", i, h.Name, prev)
			}
			prev = h.Name
			if h.Uid != 0 || h.Gid != 0 || !h.ModTime.Equal(Epoch()) {
				t.Errorf("layer %d: %s has uid %d gid %d mtime %s", i, h.Name, h.Uid, h.Gid, h.ModTime)
			}
			layers[i][h.Name] = h
		}
	}

	want := func(layer int, name string, check func(h *tar.Header) bool, what string) {
		t.Helper()
		h, ok := layers[layer][name]
		if !ok {
			t.Errorf("layer %d lacks %s (%s)", layer, name, what)
			return
		}
		if !check(h) {
			t.Errorf("layer %d: %s is not %s: %+v", layer, name, what, h)
		}
	}
	isType := func(tf byte) func(*tar.Header) bool { return func(h *tar.Header) bool { return h.Typeflag == tf } }
	want(0, "bin/busybox", isType(tar.TypeReg), "a file")
	want(0, "bin/sh", func(h *tar.Header) bool { return h.Typeflag == tar.TypeSymlink && h.Linkname == "busybox" }, "a symlink to busybox")
	want(0, "tmp/", func(h *tar.Header) bool { return h.Typeflag == tar.TypeDir && h.Mode == 0o1777 }, "a sticky world-writable directory")
	want(0, "etc/passwd", isType(tar.TypeReg), "a file")
	if _, ok := layers[0]["bin/busybox"]; ok && layers[0]["bin/busybox"].Typeflag == tar.TypeSymlink {
		t.Error("bin/busybox must not link to itself")
	}
	want(1, "data/b-hardlink", func(h *tar.Header) bool { return h.Typeflag == tar.TypeLink && h.Linkname == "data/a-original.txt" }, "a hard link within the layer")
	want(1, "data/big", func(h *tar.Header) bool { return h.Typeflag == tar.TypeReg && h.Size == bigSize }, "the large file")
	want(1, "data/fifo", isType(tar.TypeFifo), "a fifo")
	want(1, "data/setuid", func(h *tar.Header) bool { return h.Mode&0o4000 != 0 }, "setuid")
	want(1, "data/link-relative", func(h *tar.Header) bool { return h.Typeflag == tar.TypeSymlink && h.Linkname == "a-original.txt" }, "a relative symlink")
	want(1, "data/link-absolute", func(h *tar.Header) bool { return h.Typeflag == tar.TypeSymlink && h.Linkname == "/bin/busybox" }, "an absolute symlink")
	want(1, "data/xattr.txt", func(h *tar.Header) bool { return h.PAXRecords["SCHILY.xattr."+XattrKey] == XattrValue }, "carrying the xattr")
	want(1, "swap/", isType(tar.TypeDir), "a directory")
	want(1, "opaque/old-1", isType(tar.TypeReg), "a file")
	want(2, "data2/cross-hardlink", func(h *tar.Header) bool { return h.Typeflag == tar.TypeLink && h.Linkname == "data/a-original.txt" }, "a hard link to a lower layer")
	want(2, "etc/.wh.removed-later", isType(tar.TypeReg), "a whiteout")
	want(2, "opaque/.wh..wh..opq", isType(tar.TypeReg), "an opaque marker")
	want(2, "swap", isType(tar.TypeReg), "a file replacing the directory")
	want(3, "swap/", isType(tar.TypeDir), "a directory again")
	if _, ok := layers[1]["etc/removed-later"]; !ok {
		t.Error("layer 1 lacks the file that layer 2 whites out")
	}
}

func TestDockerArchiveLayout(t *testing.T) {
	opts := fakeBusybox(t)
	bb, err := Busybox(opts)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := Layers(opts, 1000)
	if err != nil {
		t.Fatal(err)
	}
	_, files := readTar(t, bytes.NewReader(build(t, FormatDocker,
		Named{Image: bb, Names: []string{"busybox", "my/busybox:v1"}},
		Named{Image: layers},
	)))
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	mustJSON(t, files["manifest.json"], &manifest)
	if len(manifest) != 2 {
		t.Fatalf("manifest.json has %d entries, want 2", len(manifest))
	}
	if got := strings.Join(manifest[0].RepoTags, ","); got != "busybox:latest,my/busybox:v1" {
		t.Errorf("RepoTags = %s", got)
	}
	if len(manifest[1].RepoTags) != 0 {
		t.Errorf("unnamed image has RepoTags %v", manifest[1].RepoTags)
	}
	wantCfg, wantLayers, err := Digests(layers, FormatDocker)
	if err != nil {
		t.Fatal(err)
	}
	if manifest[1].Config != wantCfg.Encoded()+".json" || digest.FromBytes(files[manifest[1].Config]) != wantCfg {
		t.Errorf("config %s does not match its digest %s", manifest[1].Config, wantCfg)
	}
	for i, l := range manifest[1].Layers {
		if got := digest.FromBytes(files[l]); got != wantLayers[i] {
			t.Errorf("layer %d (%s) has digest %s, want %s", i, l, got, wantLayers[i])
		}
	}
	// The busybox layer is shared but sits on no parent in both images, so
	// Docker's chain ID, and the directory, is the same.
	if manifest[0].Layers[0] != manifest[1].Layers[0] {
		t.Errorf("shared bottom layer written twice: %s and %s", manifest[0].Layers[0], manifest[1].Layers[0])
	}
	var repos map[string]map[string]string
	mustJSON(t, files["repositories"], &repos)
	if repos["busybox"]["latest"] == "" || repos["my/busybox"]["v1"] == "" {
		t.Errorf("repositories = %v", repos)
	}
}

func TestRealBusybox(t *testing.T) {
	if _, err := os.Stat(DefaultBusybox); err != nil {
		t.Skip("busybox-static is not installed")
	}
	l, err := BusyboxLayer(Options{})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]tar.Header{}
	for _, e := range l.Entries {
		names[e.Header.Name] = e.Header
	}
	if h := names["bin/sh"]; h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
		t.Errorf("bin/sh is %+v, want a symlink to busybox", h)
	}
	fi, err := os.Stat(DefaultBusybox)
	if err != nil {
		t.Fatal(err)
	}
	if names["bin/busybox"].Size != fi.Size() {
		t.Errorf("bin/busybox has size %d, the binary %d", names["bin/busybox"].Size, fi.Size())
	}
}

func TestHardlinkOrderChecked(t *testing.T) {
	l := &Layer{Entries: []Entry{
		File("z-target", 0o644, []byte("x")),
		Hardlink("a-link", "z-target"),
	}}
	if err := l.sortEntries(); err == nil {
		t.Fatal("a hard link sorting before its target was accepted")
	}
}

func mustJSON(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decoding %q: %v", data, err)
	}
}
