package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/tools/mkimage/imagegen"
)

// importFails imports data, which must fail with an error of kind and whose
// message holds every one of want, leaving no ingest behind.
func importFails(t *testing.T, data []byte, kind error, want ...string) {
	t.Helper()
	cs := newStore(t)
	imgs, err := Import(context.Background(), cs, bytes.NewReader(data))
	if err == nil {
		t.Fatalf("import succeeded with %+v, want an error", imgs)
	}
	t.Logf("error: %v", err)
	if !errors.Is(err, kind) {
		t.Errorf("error %q is not of kind %v", err, kind)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	assertNoIngests(t, cs)
}

func ociFiles(t *testing.T) []tarFile {
	return readTarFiles(t, archiveOf(t, imagegen.FormatOCI, imagegen.Named{Image: layersImage(t), Names: []string{"layers"}}))
}

// ociManifest returns the manifest of an archive made by ociFiles.
func ociManifest(t *testing.T, files []tarFile) (ocispec.Descriptor, ocispec.Manifest) {
	t.Helper()
	fm := fileMap(files)
	var index ocispec.Index
	mustJSON(t, fm["index.json"], &index)
	return index.Manifests[0], readManifestBytes(t, fm["blobs/sha256/"+index.Manifests[0].Digest.Encoded()])
}

// replace returns files with the data of name changed by fn.
func replace(files []tarFile, name string, fn func([]byte) []byte) []tarFile {
	out := make([]tarFile, 0, len(files))
	for _, f := range files {
		if f.hdr.Name == name {
			f.data = fn(bytes.Clone(f.data))
		}
		out = append(out, f)
	}
	return out
}

func TestBadTruncatedTar(t *testing.T) {
	data := archiveOf(t, imagegen.FormatDocker, imagegen.Named{Image: layersImage(t), Names: []string{"layers"}})
	// The big file's layer is most of the archive: cut inside it.
	importFails(t, data[:len(data)*6/10], errdefs.ErrInvalidArgument, "archive is truncated", "layer.tar")

	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	importFails(t, gz.Bytes()[:gz.Len()/2], errdefs.ErrInvalidArgument, "archive is truncated")
}

func TestBadBlobDigestMismatch(t *testing.T) {
	files := ociFiles(t)
	_, m := ociManifest(t, files)
	name := "blobs/sha256/" + m.Layers[1].Digest.Encoded()
	var actual digest.Digest
	files = replace(files, name, func(b []byte) []byte {
		b[len(b)/2] ^= 0xff
		actual = digest.FromBytes(b)
		return b
	})
	importFails(t, writeTarFiles(t, files), errdefs.ErrInvalidArgument, name, m.Layers[1].Digest.String(), actual.String())
}

func TestBadManifestNamesMissingBlob(t *testing.T) {
	files := ociFiles(t)
	_, m := ociManifest(t, files)
	missing := m.Layers[2].Digest
	var kept []tarFile
	for _, f := range files {
		if f.hdr.Name != "blobs/sha256/"+missing.Encoded() {
			kept = append(kept, f)
		}
	}
	importFails(t, writeTarFiles(t, kept), errdefs.ErrNotFound, missing.String(), "neither in the archive nor in the content store")
}

func TestBadIndexJSONNamesMissingManifest(t *testing.T) {
	files := ociFiles(t)
	desc, _ := ociManifest(t, files)
	var kept []tarFile
	for _, f := range files {
		if f.hdr.Name != "blobs/sha256/"+desc.Digest.Encoded() {
			kept = append(kept, f)
		}
	}
	importFails(t, writeTarFiles(t, kept), errdefs.ErrNotFound, desc.Digest.String(), "entry 0 of index.json")
}

// TestBadIncompletePlatformInIndex: a platform manifest that the archive
// holds must be whole, even though platforms it does not hold are allowed.
func TestBadIncompletePlatformInIndex(t *testing.T) {
	cs := newStore(t)
	outer, _, arm64 := multiPlatform(t, cs)
	out := exportBytes(t, cs, []images.Image{{Name: "docker.io/library/multi:1", Target: outer}})
	layer := readManifest(t, cs, arm64).Layers[0].Digest
	var kept []tarFile
	for _, f := range readTarFiles(t, out) {
		if f.hdr.Name != "blobs/sha256/"+layer.Encoded() {
			kept = append(kept, f)
		}
	}
	// The amd64 image has a different busybox layer, so only arm64 lacks one.
	importFails(t, writeTarFiles(t, kept), errdefs.ErrNotFound, layer.String(), arm64.Digest.String())
}

func TestBadUnknownMediaType(t *testing.T) {
	t.Run("index.json entry", func(t *testing.T) {
		files := replace(ociFiles(t), "index.json", func(b []byte) []byte {
			return bytes.ReplaceAll(b, []byte(ocispec.MediaTypeImageManifest), []byte("application/vnd.example.thing+json"))
		})
		importFails(t, writeTarFiles(t, files), errdefs.ErrInvalidArgument, "application/vnd.example.thing+json")
	})
	t.Run("layer", func(t *testing.T) {
		files := ociFiles(t)
		desc, m := ociManifest(t, files)
		m.Layers[1].MediaType = "application/vnd.example.layer"
		data := toJSON(t, m)
		newDesc := ocispec.Descriptor{MediaType: desc.MediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
		files = append(files, file("blobs/sha256/"+newDesc.Digest.Encoded(), data))
		files = replace(files, "index.json", func([]byte) []byte {
			return toJSON(t, ocispec.Index{Versioned: m.Versioned, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{newDesc}})
		})
		importFails(t, writeTarFiles(t, files), errdefs.ErrInvalidArgument, "application/vnd.example.layer", "layer 1")
	})
}

func TestBadDotDotEntry(t *testing.T) {
	files := append([]tarFile{file("blobs/../../evil", []byte("x"))}, ociFiles(t)...)
	importFails(t, writeTarFiles(t, files), errdefs.ErrInvalidArgument, `"blobs/../../evil"`, "..")
}

func TestBadAbsoluteEntry(t *testing.T) {
	files := append([]tarFile{file("/etc/passwd", []byte("x"))}, ociFiles(t)...)
	importFails(t, writeTarFiles(t, files), errdefs.ErrInvalidArgument, "/etc/passwd", "absolute")
}

func TestBadDeclaredSizeFarLargerThanData(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	name := "blobs/sha256/" + digest.FromString("whatever").Encoded()
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("only ten b"))
	// No Close: the archive ends right after these bytes.
	importFails(t, buf.Bytes(), errdefs.ErrInvalidArgument, "archive is truncated", name, "1073741824")
}

func TestBadNotAnImage(t *testing.T) {
	const msg = "not an image archive: expected a docker save tarball or an OCI layout"
	importFails(t, writeTarFiles(t, []tarFile{file("hello.txt", []byte("hello"))}), errdefs.ErrInvalidArgument, msg)
	importFails(t, bytes.Repeat([]byte("not a tar at all "), 100), errdefs.ErrInvalidArgument, "not an image archive")
	importFails(t, nil, errdefs.ErrInvalidArgument, "not an image archive", "empty")
	legacy := writeTarFiles(t, []tarFile{file("repositories", []byte(`{"busybox":{"latest":"abc"}}`)), file("abc/layer.tar", nil)})
	importFails(t, legacy, errdefs.ErrNotImplemented, "before 1.10")
}

func TestBadSymlinkEscapes(t *testing.T) {
	files := readTarFiles(t, archiveOf(t, imagegen.FormatDocker, imagegen.Named{Image: busyboxImage(t), Names: []string{"busybox"}}))
	for _, target := range []string{"../../etc/passwd", "/etc/passwd"} {
		evil := append(files, tarFile{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "x/layer.tar", Linkname: target}})
		importFails(t, writeTarFiles(t, evil), errdefs.ErrInvalidArgument, "x/layer.tar", target, "outside the archive")
	}
	dangling := append(files, tarFile{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "x/layer.tar", Linkname: "../nowhere"}})
	importFails(t, writeTarFiles(t, dangling), errdefs.ErrInvalidArgument, "x/layer.tar", "nowhere")
}

func TestBadHardlinkOutside(t *testing.T) {
	files := append(ociFiles(t), tarFile{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "x", Linkname: "../outside"}})
	importFails(t, writeTarFiles(t, files), errdefs.ErrInvalidArgument, "hard link")
	files = append(ociFiles(t), tarFile{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "x", Linkname: "not/in/archive"}})
	importFails(t, writeTarFiles(t, files), errdefs.ErrInvalidArgument, "hard link", "not/in/archive")
}

func TestBadDeviceFile(t *testing.T) {
	files := append(ociFiles(t), tarFile{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Devmajor: 1, Devminor: 3}})
	importFails(t, writeTarFiles(t, files), errdefs.ErrInvalidArgument, "dev/null", "character device")
}

func TestBadDockerLayerNotMatchingConfig(t *testing.T) {
	files := readTarFiles(t, archiveOf(t, imagegen.FormatDocker, imagegen.Named{Image: layersImage(t), Names: []string{"layers"}}))
	var manifest []dockerManifestEntry
	mustJSON(t, fileMap(files)["manifest.json"], &manifest)
	// Swap two layers: each is a valid tar but not the one the config says.
	manifest[0].Layers[1], manifest[0].Layers[2] = manifest[0].Layers[2], manifest[0].Layers[1]
	files = replace(files, "manifest.json", func([]byte) []byte { return toJSON(t, manifest) })
	importFails(t, writeTarFiles(t, files), errdefs.ErrInvalidArgument, "layer 1 of entry 0 of manifest.json", "diff ID")

	mustJSON(t, fileMap(files)["manifest.json"], &manifest)
	manifest[0].Layers = append(manifest[0].Layers, "missing/layer.tar")
	files = replace(files, "manifest.json", func([]byte) []byte { return toJSON(t, manifest) })
	importFails(t, writeTarFiles(t, files), errdefs.ErrInvalidArgument, "5 layers", "4 diff IDs")
}

func TestBadDockerManifestNamesMissingFile(t *testing.T) {
	files := readTarFiles(t, archiveOf(t, imagegen.FormatDocker, imagegen.Named{Image: busyboxImage(t), Names: []string{"busybox"}}))
	var manifest []dockerManifestEntry
	mustJSON(t, fileMap(files)["manifest.json"], &manifest)
	manifest[0].Layers[0] = "gone/layer.tar"
	files = replace(files, "manifest.json", func([]byte) []byte { return toJSON(t, manifest) })
	importFails(t, writeTarFiles(t, files), errdefs.ErrNotFound, "gone/layer.tar")
}
