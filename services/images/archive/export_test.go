package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/tools/mkimage/imagegen"
)

func TestExportLayout(t *testing.T) {
	cs := newStore(t)
	bb, layers := busyboxImage(t), layersImage(t)
	imgs := importBytes(t, cs, archiveOf(t, imagegen.FormatDocker,
		imagegen.Named{Image: bb, Names: []string{"busybox", "my/busybox:v1"}},
		imagegen.Named{Image: layers},
	))
	out := exportBytes(t, cs, imgs)
	files := readTarFiles(t, out)

	var names []string
	blobs := map[string]bool{}
	for _, f := range files {
		names = append(names, f.hdr.Name)
		if f.hdr.Uid != 0 || f.hdr.Gid != 0 || !f.hdr.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: uid %d gid %d mtime %s", f.hdr.Name, f.hdr.Uid, f.hdr.Gid, f.hdr.ModTime)
		}
		if enc, ok := strings.CutPrefix(f.hdr.Name, "blobs/sha256/"); ok && enc != "" {
			if blobs[enc] {
				t.Errorf("blob %s written twice", enc)
			}
			blobs[enc] = true
			if got := digest.FromBytes(f.data).Encoded(); got != enc {
				t.Errorf("blob %s has digest %s", enc, got)
			}
		}
	}
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Errorf("entries not sorted: %s before %s", names[i-1], names[i])
		}
	}
	fm := fileMap(files)
	if string(fm["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %s", fm["oci-layout"])
	}
	var index ocispec.Index
	mustJSON(t, fm["index.json"], &index)
	if len(index.Manifests) != 3 {
		t.Fatalf("index.json lists %d images, want 3 (two names, one unnamed): %+v", len(index.Manifests), index.Manifests)
	}
	if a := index.Manifests[1].Annotations; a[AnnotationImageName] != "docker.io/my/busybox:v1" || a[AnnotationRefName] != "v1" {
		t.Errorf("annotations of my/busybox:v1: %v", a)
	}
	if index.Manifests[2].Annotations != nil {
		t.Errorf("unnamed image has annotations %v", index.Manifests[2].Annotations)
	}
	var manifest []dockerEntry
	mustJSON(t, fm["manifest.json"], &manifest)
	if len(manifest) != 2 {
		t.Fatalf("manifest.json has %d entries, want 2: %+v", len(manifest), manifest)
	}
	if got := strings.Join(manifest[0].RepoTags, ","); got != "busybox:latest,my/busybox:v1" {
		t.Errorf("RepoTags = %s", got)
	}
	if len(manifest[1].RepoTags) != 0 {
		t.Errorf("unnamed image has RepoTags %v", manifest[1].RepoTags)
	}
	wantCfg, wantLayers, _ := imagegen.Digests(layers, imagegen.FormatDocker)
	if manifest[1].Config != "blobs/sha256/"+wantCfg.Encoded() {
		t.Errorf("Config = %s, want blobs/sha256/%s", manifest[1].Config, wantCfg.Encoded())
	}
	for i, l := range manifest[1].Layers {
		if l != "blobs/sha256/"+wantLayers[i].Encoded() {
			t.Errorf("layer %d = %s, want %s", i, l, wantLayers[i])
		}
		if _, ok := fm[l]; !ok {
			t.Errorf("layer %s is not in the archive", l)
		}
	}
	var repos map[string]map[string]string
	mustJSON(t, fm["repositories"], &repos)
	if repos["busybox"]["latest"] == "" || repos["my/busybox"]["v1"] == "" {
		t.Errorf("repositories = %v", repos)
	}
}

// TestRoundTrip: export, import, export gives the same bytes and targets,
// whether the images came from a docker save tarball or an OCI layout.
func TestRoundTrip(t *testing.T) {
	for _, format := range []imagegen.Format{imagegen.FormatDocker, imagegen.FormatOCI} {
		t.Run(string(format), func(t *testing.T) {
			cs := newStore(t)
			first := importBytes(t, cs, archiveOf(t, format,
				imagegen.Named{Image: busyboxImage(t), Names: []string{"busybox", "my/busybox:v1"}},
				imagegen.Named{Image: layersImage(t), Names: []string{"layers:1"}},
			))
			out1 := exportBytes(t, cs, first)

			cs2 := newStore(t)
			second := importBytes(t, cs2, out1)
			out2 := exportBytes(t, cs2, second)
			if sha256.Sum256(out1) != sha256.Sum256(out2) {
				t.Fatalf("export -> import -> export changed the archive (%d then %d bytes)", len(out1), len(out2))
			}
			if len(first) != len(second) {
				t.Fatalf("images %+v became %+v", first, second)
			}
			for i := range first {
				if first[i].Name != second[i].Name || first[i].Target.Digest != second[i].Target.Digest {
					t.Errorf("image %d: %s %s became %s %s", i, first[i].Name, first[i].Target.Digest, second[i].Name, second[i].Target.Digest)
				}
				if cs2.labels[second[i].Target.Digest][LabelGCRefConfig] == "" {
					t.Errorf("%s: re-imported manifest has no GC labels", second[i].Name)
				}
			}
		})
	}
}

// multiPlatform stores an index of an amd64 and an arm64 image, plus an
// s390x manifest that the store does not hold, nested one level deeper in
// an outer index.
func multiPlatform(t *testing.T, cs *labelStore) (outer ocispec.Descriptor, amd64, arm64 ocispec.Descriptor) {
	t.Helper()
	var targets []ocispec.Descriptor
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := imagegen.Busybox(fakeOpts(t, arch))
		if err != nil {
			t.Fatal(err)
		}
		imgs := importBytes(t, cs, archiveOf(t, imagegen.FormatOCI, imagegen.Named{Image: img}))
		d := imgs[0].Target
		d.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
		targets = append(targets, d)
	}
	absent := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("not here"), Size: 123,
		Platform: &ocispec.Platform{OS: "linux", Architecture: "s390x"},
	}
	inner := writeJSONBlob(t, cs, ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{targets[0], absent, targets[1]},
	})
	outer = writeJSONBlob(t, cs, ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{inner},
	})
	return outer, targets[0], targets[1]
}

func TestExportIndexPicksPlatform(t *testing.T) {
	cs := newStore(t)
	outer, amd64, arm64 := multiPlatform(t, cs)
	imgs := []images.Image{{Name: "docker.io/library/multi:1", Target: outer}}

	for _, tc := range []struct {
		platform ocispec.Platform
		want     ocispec.Descriptor
	}{
		{ocispec.Platform{OS: "linux", Architecture: "amd64"}, amd64},
		{ocispec.Platform{OS: "linux", Architecture: "arm64"}, arm64},
	} {
		out := exportBytes(t, cs, imgs, WithPlatform(tc.platform))
		fm := fileMap(readTarFiles(t, out))
		var manifest []dockerEntry
		mustJSON(t, fm["manifest.json"], &manifest)
		want := readManifest(t, cs, tc.want)
		if len(manifest) != 1 || manifest[0].Config != "blobs/sha256/"+want.Config.Digest.Encoded() {
			t.Errorf("platform %s: manifest.json = %+v, want config %s", tc.platform.Architecture, manifest, want.Config.Digest)
		}
		for _, d := range []ocispec.Descriptor{outer, amd64, arm64} {
			if _, ok := fm["blobs/sha256/"+d.Digest.Encoded()]; !ok {
				t.Errorf("blob %s of a present platform is not exported", d.Digest)
			}
		}

		// The archive imports: the absent s390x manifest is allowed, the
		// whole index is the target, and the indexes are labelled.
		cs2 := newStore(t)
		got := importBytes(t, cs2, out)
		if len(got) != 1 || got[0].Target.Digest != outer.Digest || got[0].Target.MediaType != ocispec.MediaTypeImageIndex {
			t.Fatalf("import of the exported index gave %+v", got)
		}
		if cs2.labels[outer.Digest][LabelGCRefManifest(0)] == "" {
			t.Errorf("outer index has no GC label: %v", cs2.labels[outer.Digest])
		}
		inner := cs2.labels[outer.Digest][LabelGCRefManifest(0)]
		if l := cs2.labels[digest.Digest(inner)]; l[LabelGCRefManifest(2)] != arm64.Digest.String() || l[LabelGCRefManifest(1)] == "" {
			t.Errorf("inner index labels %v", l)
		}
	}

	var buf bytes.Buffer
	if err := Export(context.Background(), cs, &buf, imgs, WithPlatform(ocispec.Platform{OS: "linux", Architecture: "riscv64"})); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "riscv64") {
		t.Errorf("export for a platform the index lacks: %v", err)
	}
}

func TestExportMissingBlob(t *testing.T) {
	cs := newStore(t)
	imgs := importBytes(t, cs, archiveOf(t, imagegen.FormatDocker, imagegen.Named{Image: layersImage(t), Names: []string{"layers"}}))
	m := readManifest(t, cs, imgs[0].Target)
	if err := cs.Delete(context.Background(), m.Layers[2].Digest); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err := Export(context.Background(), cs, &buf, imgs)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), m.Layers[2].Digest.String()) {
		t.Fatalf("export of an image missing a layer: %v", err)
	}
}

func TestExportRefusesCorruptBlob(t *testing.T) {
	cs := newStore(t)
	imgs := importBytes(t, cs, archiveOf(t, imagegen.FormatDocker, imagegen.Named{Image: layersImage(t), Names: []string{"layers"}}))
	layer := readManifest(t, cs, imgs[0].Target).Layers[1].Digest
	// Damage the blob on disk behind the store's back, keeping its size.
	p := filepath.Join(cs.root, "blobs", "sha256", layer.Encoded())
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("garbage"), 600)
	f.Close()
	err = Export(context.Background(), cs, io.Discard, imgs)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), layer.String()) {
		t.Fatalf("export of a corrupt blob: %v", err)
	}
}

func TestExportSharedBlobsOnce(t *testing.T) {
	cs := newStore(t)
	bb := busyboxImage(t)
	imgs := importBytes(t, cs, archiveOf(t, imagegen.FormatOCI,
		imagegen.Named{Image: bb, Names: []string{"a"}},
		imagegen.Named{Image: layersImage(t), Names: []string{"b"}},
	))
	// Both images start with a busybox layer of the same content.
	if a, b := readManifest(t, cs, imgs[0].Target), readManifest(t, cs, imgs[1].Target); a.Layers[0].Digest != b.Layers[0].Digest {
		t.Fatalf("test images share no layer: %s, %s", a.Layers[0].Digest, b.Layers[0].Digest)
	}
	files := readTarFiles(t, exportBytes(t, cs, imgs))
	seen := map[string]int{}
	for _, f := range files {
		if f.hdr.Typeflag == tar.TypeReg {
			seen[f.hdr.Name]++
		}
	}
	for n, c := range seen {
		if c > 1 {
			t.Errorf("%s written %d times", n, c)
		}
	}
}
