package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/tools/mkimage/imagegen"
)

// checkImported checks that an imported image has the config and layers
// that imagegen built, all in the store, and that its manifest carries the
// garbage collection labels.
func checkImported(t *testing.T, cs *labelStore, img images.Image, want *imagegen.Image, format imagegen.Format) {
	t.Helper()
	wantCfg, wantLayers, err := imagegen.Digests(want, format)
	if err != nil {
		t.Fatal(err)
	}
	m := readManifest(t, cs, img.Target)
	if m.Config.Digest != wantCfg {
		t.Errorf("%s: config %s, want %s", img.Name, m.Config.Digest, wantCfg)
	}
	if len(m.Layers) != len(wantLayers) {
		t.Fatalf("%s: %d layers, want %d", img.Name, len(m.Layers), len(wantLayers))
	}
	labels := cs.labels[img.Target.Digest]
	if labels[LabelGCRefConfig] != wantCfg.String() {
		t.Errorf("%s: manifest label %s = %q, want %s", img.Name, LabelGCRefConfig, labels[LabelGCRefConfig], wantCfg)
	}
	ctx := context.Background()
	for i, l := range m.Layers {
		if l.Digest != wantLayers[i] {
			t.Errorf("%s: layer %d is %s, want %s", img.Name, i, l.Digest, wantLayers[i])
		}
		if labels[LabelGCRefLayer(i)] != l.Digest.String() {
			t.Errorf("%s: manifest label %s = %q, want %s", img.Name, LabelGCRefLayer(i), labels[LabelGCRefLayer(i)], l.Digest)
		}
		info, err := cs.Info(ctx, l.Digest)
		if err != nil {
			t.Errorf("%s: layer %d: %v", img.Name, i, err)
		} else if info.Size != l.Size {
			t.Errorf("%s: layer %d has %d bytes, manifest says %d", img.Name, i, info.Size, l.Size)
		}
	}
	if _, err := cs.Info(ctx, m.Config.Digest); err != nil {
		t.Errorf("%s: config: %v", img.Name, err)
	}
}

func TestImportDockerArchive(t *testing.T) {
	cs := newStore(t)
	bb, layers := busyboxImage(t), layersImage(t)
	data := archiveOf(t, imagegen.FormatDocker,
		imagegen.Named{Image: bb, Names: []string{"busybox", "my/busybox:v1"}},
		imagegen.Named{Image: layers, Names: []string{"registry.local:5000/layers:2"}},
	)
	imgs := importBytes(t, cs, data)
	wantNames := []string{"docker.io/library/busybox:latest", "docker.io/my/busybox:v1", "registry.local:5000/layers:2"}
	if len(imgs) != len(wantNames) {
		t.Fatalf("imported %d images, want %d: %+v", len(imgs), len(wantNames), imgs)
	}
	for i, n := range wantNames {
		if imgs[i].Name != n {
			t.Errorf("image %d is named %q, want %q", i, imgs[i].Name, n)
		}
		if imgs[i].Target.MediaType != images.MediaTypeDockerManifest {
			t.Errorf("%s: target media type %s", n, imgs[i].Target.MediaType)
		}
	}
	if imgs[0].Target.Digest != imgs[1].Target.Digest {
		t.Errorf("two names of one image got two targets: %s and %s", imgs[0].Target.Digest, imgs[1].Target.Digest)
	}
	checkImported(t, cs, imgs[0], bb, imagegen.FormatDocker)
	checkImported(t, cs, imgs[2], layers, imagegen.FormatDocker)
	m := readManifest(t, cs, imgs[0].Target)
	if m.Layers[0].MediaType != images.MediaTypeDockerLayer {
		t.Errorf("uncompressed layer got media type %s", m.Layers[0].MediaType)
	}

	// The same archive again gives the same manifest, digest for digest.
	again := importBytes(t, newStore(t), data)
	if again[0].Target.Digest != imgs[0].Target.Digest {
		t.Errorf("manifest is not deterministic: %s then %s", imgs[0].Target.Digest, again[0].Target.Digest)
	}
	// And into a store that holds it all already.
	if again := importBytes(t, cs, data); again[2].Target.Digest != imgs[2].Target.Digest {
		t.Errorf("re-import gave %s, first import %s", again[2].Target.Digest, imgs[2].Target.Digest)
	}
}

func TestImportOCILayout(t *testing.T) {
	cs := newStore(t)
	bb, layers := busyboxImage(t), layersImage(t)
	data := archiveOf(t, imagegen.FormatOCI,
		imagegen.Named{Image: layers, Names: []string{"layers:1"}},
		imagegen.Named{Image: bb},
	)
	imgs := importBytes(t, cs, data)
	if len(imgs) != 2 {
		t.Fatalf("imported %d images, want 2: %+v", len(imgs), imgs)
	}
	if imgs[0].Name != "docker.io/library/layers:1" {
		t.Errorf("name %q, want docker.io/library/layers:1", imgs[0].Name)
	}
	if imgs[1].Name != imgs[1].Target.Digest.String() {
		t.Errorf("unnamed image got name %q, want its digest %s", imgs[1].Name, imgs[1].Target.Digest)
	}
	for _, img := range imgs {
		if img.Target.MediaType != ocispec.MediaTypeImageManifest {
			t.Errorf("%s: target media type %s", img.Name, img.Target.MediaType)
		}
		if img.Target.Annotations != nil {
			t.Errorf("%s: target keeps naming annotations %v", img.Name, img.Target.Annotations)
		}
	}
	checkImported(t, cs, imgs[0], layers, imagegen.FormatOCI)
	checkImported(t, cs, imgs[1], bb, imagegen.FormatOCI)
}

func TestImportGzipCompressedArchive(t *testing.T) {
	data := archiveOf(t, imagegen.FormatDocker, imagegen.Named{Image: busyboxImage(t), Names: []string{"busybox"}})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	plain := importBytes(t, newStore(t), data)
	zipped := importBytes(t, newStore(t), gz.Bytes())
	if len(zipped) != 1 || zipped[0].Name != plain[0].Name || zipped[0].Target.Digest != plain[0].Target.Digest {
		t.Fatalf("gzip input gave %+v, plain %+v", zipped, plain)
	}
}

// TestImportDocker25Archive reads a tar laid out as Docker 25 writes it: an
// OCI layout whose index.json has no names, plus a manifest.json naming the
// image, whose legacy <id>/layer.tar entries are symlinks into blobs/.
func TestImportDocker25Archive(t *testing.T) {
	layers := layersImage(t)
	files := readTarFiles(t, archiveOf(t, imagegen.FormatOCI, imagegen.Named{Image: layers}))
	fm := fileMap(files)
	var index ocispec.Index
	mustJSON(t, fm["index.json"], &index)
	m := readManifestBytes(t, fm["blobs/sha256/"+index.Manifests[0].Digest.Encoded()])
	entry := dockerManifestEntry{Config: "blobs/sha256/" + m.Config.Digest.Encoded(), RepoTags: []string{"layers:25"}}
	for i, l := range m.Layers {
		dir := digest.FromString(string(rune('a' + i))).Encoded()
		files = append(files, tarFile{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: dir + "/layer.tar", Linkname: "../blobs/sha256/" + l.Digest.Encoded()}})
		files = append(files, file(dir+"/VERSION", []byte("1.0")))
		entry.Layers = append(entry.Layers, dir+"/layer.tar")
	}
	files = append(files, file("manifest.json", toJSON(t, []dockerManifestEntry{entry})))

	cs := newStore(t)
	imgs := importBytes(t, cs, writeTarFiles(t, files))
	if len(imgs) != 1 {
		t.Fatalf("imported %d images, want 1: %+v", len(imgs), imgs)
	}
	if imgs[0].Name != "docker.io/library/layers:25" {
		t.Errorf("name %q: the name from manifest.json was not given to the OCI image", imgs[0].Name)
	}
	if imgs[0].Target.Digest != index.Manifests[0].Digest {
		t.Errorf("target %s, want the OCI manifest %s", imgs[0].Target.Digest, index.Manifests[0].Digest)
	}
	checkImported(t, cs, imgs[0], layers, imagegen.FormatOCI)

	// Without index.json the symlinked layers are read through the links.
	var noIndex []tarFile
	for _, f := range files {
		if f.hdr.Name != "index.json" && f.hdr.Name != "oci-layout" {
			noIndex = append(noIndex, f)
		}
	}
	imgs = importBytes(t, newStore(t), writeTarFiles(t, noIndex))
	if len(imgs) != 1 || imgs[0].Target.MediaType != images.MediaTypeDockerManifest || imgs[0].Name != "docker.io/library/layers:25" {
		t.Fatalf("docker-only import gave %+v", imgs)
	}
}

func TestImportRetagLeavesEarlierImageUnnamed(t *testing.T) {
	bb, layers := busyboxImage(t), layersImage(t)
	data := archiveOf(t, imagegen.FormatDocker,
		imagegen.Named{Image: bb, Names: []string{"x:1"}},
		imagegen.Named{Image: layers, Names: []string{"x:1"}},
	)
	imgs := importBytes(t, newStore(t), data)
	if len(imgs) != 2 {
		t.Fatalf("imported %+v", imgs)
	}
	if imgs[0].Name != "docker.io/library/x:1" || imgs[1].Name != imgs[1].Target.Digest.String() {
		t.Fatalf("want x:1 on the later image and the earlier one unnamed, got %+v", imgs)
	}
	if m := readManifest(t, newStoreWith(t, data), imgs[0].Target); len(m.Layers) != 4 {
		t.Errorf("x:1 points to a %d-layer image, want the later (4-layer) one", len(m.Layers))
	}
}

func TestImportOCIRefNameAnnotation(t *testing.T) {
	files := readTarFiles(t, archiveOf(t, imagegen.FormatOCI, imagegen.Named{Image: busyboxImage(t)}))
	for _, tc := range []struct{ refName, want string }{
		{"quay.io/x/y:2", "quay.io/x/y:2"},
		{"busybox:1.36", "docker.io/library/busybox:1.36"},
		{"latest", ""}, // a bare tag names no repository
	} {
		var out []tarFile
		for _, f := range files {
			if f.hdr.Name == "index.json" {
				var idx ocispec.Index
				mustJSON(t, f.data, &idx)
				idx.Manifests[0].Annotations = map[string]string{ocispec.AnnotationRefName: tc.refName}
				f.data = toJSON(t, idx)
			}
			out = append(out, f)
		}
		imgs := importBytes(t, newStore(t), writeTarFiles(t, out))
		want := tc.want
		if want == "" {
			want = imgs[0].Target.Digest.String()
		}
		if imgs[0].Name != want {
			t.Errorf("ref.name %q gave name %q, want %q", tc.refName, imgs[0].Name, want)
		}
	}
}

func newStoreWith(t *testing.T, data []byte) *labelStore {
	cs := newStore(t)
	importBytes(t, cs, data)
	return cs
}

func readManifestBytes(t *testing.T, data []byte) ocispec.Manifest {
	t.Helper()
	var m ocispec.Manifest
	mustJSON(t, data, &m)
	return m
}
