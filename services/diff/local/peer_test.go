package local

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/mount"
	"github.com/berth-engine/berth/tools/mkimage/imagegen"
)

// ociLayout writes img as an OCI image layout directory, its one tag
// "latest".
func ociLayout(t *testing.T, img *imagegen.Image) string {
	t.Helper()
	var buf bytes.Buffer
	if err := imagegen.WriteArchive(&buf, imagegen.FormatOCI, imagegen.Named{Image: img, Names: []string{"berth-test/layers:latest"}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return dir
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.Clean("/"+hdr.Name))
		if hdr.Typeflag == tar.TypeDir {
			err = os.MkdirAll(p, 0o755)
		} else {
			var data []byte
			if data, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(p, data, 0o644)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func readJSON(t *testing.T, p string, v any) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
}

// layoutLayers returns the layer descriptors and diff IDs of the one image
// of an OCI layout, and reads a blob.
func layoutLayers(t *testing.T, dir string) ([]ocispec.Descriptor, []string, func(ocispec.Descriptor) []byte) {
	blob := func(d ocispec.Descriptor) []byte {
		data, err := os.ReadFile(filepath.Join(dir, "blobs", d.Digest.Algorithm().String(), d.Digest.Encoded()))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	var index ocispec.Index
	readJSON(t, filepath.Join(dir, "index.json"), &index)
	var manifest ocispec.Manifest
	if err := json.Unmarshal(blob(index.Manifests[0]), &manifest); err != nil {
		t.Fatal(err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(blob(manifest.Config), &cfg); err != nil {
		t.Fatal(err)
	}
	var diffIDs []string
	for _, d := range cfg.RootFS.DiffIDs {
		diffIDs = append(diffIDs, d.String())
	}
	return manifest.Layers, diffIDs, blob
}

// TestAgainstUmoci unpacks the layers image with berth (plain directory and
// overlay snapshots) and with umoci, an independent implementation of the
// OCI layer rules, and compares the trees.
func TestAgainstUmoci(t *testing.T) {
	needRoot(t)
	umoci, err := exec.LookPath("umoci")
	if err != nil {
		t.Skip("needs umoci")
	}
	layout := ociLayout(t, layersImage(t, 2<<20))
	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, err := exec.Command(umoci, "unpack", "--image", layout+":latest", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	want := treeState(t, filepath.Join(bundle, "rootfs"), true)
	if _, ok := want["data/xattr.txt"]; !ok || !strings.Contains(want["data/xattr.txt"].Xattrs, imagegen.XattrKey) {
		t.Fatalf("umoci's tree lacks data/xattr.txt with its attribute: %+v", want["data/xattr.txt"])
	}

	layers, diffIDs, blob := layoutLayers(t, layout)
	cs := newStore(t)
	d := New(cs, t.TempDir())
	var descs []ocispec.Descriptor
	for _, l := range layers {
		descs = append(descs, putBlob(t, cs, l.MediaType, blob(l)))
	}

	t.Run("plain", func(t *testing.T) {
		root := t.TempDir()
		for i, desc := range descs {
			applied, err := d.Apply(context.Background(), desc, bindRW(root))
			if err != nil {
				t.Fatalf("layer %d: %v", i, err)
			}
			if applied.Digest.String() != diffIDs[i] {
				t.Fatalf("layer %d: diff ID %s, the config says %s", i, applied.Digest, diffIDs[i])
			}
		}
		if diff := diffStates(want, treeState(t, root, true)); diff != "" {
			t.Errorf("berth and umoci unpack differently:\n%s", diff)
		}
	})

	t.Run("overlay", func(t *testing.T) {
		// As the overlay snapshotter does: each layer straight into its
		// own upper directory over the ones below.
		var uppers []string // topmost first
		for i, desc := range descs {
			upper := t.TempDir()
			lowers := uppers
			m := mount.Mount{Type: "bind", Source: upper, Options: []string{"rw", "rbind"}}
			if len(lowers) > 0 {
				m = mount.Mount{Type: "overlay", Source: "overlay", Options: []string{
					"workdir=" + t.TempDir(), "upperdir=" + upper, "lowerdir=" + strings.Join(lowers, ":"),
				}}
			}
			if _, err := d.Apply(context.Background(), desc, []mount.Mount{m}); err != nil {
				t.Fatalf("layer %d: %v", i, err)
			}
			uppers = append([]string{upper}, uppers...)
		}
		merged := t.TempDir()
		if err := mount.All([]mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + strings.Join(uppers, ":")}}}, merged); err != nil {
			t.Fatal(err)
		}
		defer mount.UnmountAll(merged)
		if diff := diffStates(want, treeState(t, merged, true)); diff != "" {
			t.Errorf("berth's overlay snapshots and umoci unpack differently:\n%s", diff)
		}
	})
}
