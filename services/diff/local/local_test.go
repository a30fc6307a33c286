package local

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/diff"
	"github.com/berth-engine/berth/services/diff/layer"
)

func bindRW(dir string) []mount.Mount {
	return []mount.Mount{{Type: "bind", Source: dir, Options: []string{"rw", "rbind"}}}
}

func bindRO(dir string) []mount.Mount {
	return []mount.Mount{{Type: "bind", Source: dir, Options: []string{"ro", "rbind"}}}
}

// applyPlain applies uncompressed layer tars with the layer package alone:
// what the Differ must reproduce.
func applyPlain(t *testing.T, tars [][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for _, data := range tars {
		if _, err := layer.Apply(context.Background(), dir, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestApplyCompressions(t *testing.T) {
	img := layersImage(t, 3<<20)
	var tars [][]byte
	for _, l := range img.Layers {
		tars = append(tars, layerTar(t, l))
	}
	want := treeState(t, applyPlain(t, tars), true)
	for _, c := range []compression{gzipped, zstandard, uncompressed} {
		t.Run(string(c), func(t *testing.T) {
			cs := newStore(t)
			d := New(cs, t.TempDir())
			root := t.TempDir()
			for i, data := range tars {
				blob := compress(t, c, data)
				if got := detect(bufioOf(blob)); got != c {
					t.Fatalf("layer %d detected as %s, want %s", i, got, c)
				}
				applied, err := d.Apply(context.Background(), putBlob(t, cs, ocispec.MediaTypeImageLayerGzip, blob), bindRW(root))
				if err != nil {
					t.Fatalf("layer %d: %v", i, err)
				}
				wantDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(data), Size: int64(len(data))}
				if applied.Digest != wantDesc.Digest || applied.Size != wantDesc.Size || applied.MediaType != wantDesc.MediaType {
					t.Errorf("layer %d: applied %+v, want %+v", i, applied, wantDesc)
				}
			}
			if d := diffStates(want, treeState(t, root, true)); d != "" {
				t.Errorf("tree differs from the plain apply:\n%s", d)
			}
		})
	}
}

func TestApplyDigestCoversTrailingData(t *testing.T) {
	data := append(layerTar(t, layersImage(t, 0).Layers[3]), make([]byte, 10240)...)
	cs := newStore(t)
	applied, err := New(cs, "").Apply(context.Background(), putBlob(t, cs, "", compress(t, gzipped, data)), bindRW(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if applied.Digest != digest.FromBytes(data) || applied.Size != int64(len(data)) {
		t.Errorf("applied %s (%d bytes), want %s (%d bytes)", applied.Digest, applied.Size, digest.FromBytes(data), len(data))
	}
}

func TestApplyCorrupt(t *testing.T) {
	data := layerTar(t, layersImage(t, 1<<20).Layers[1])
	flip := func(b []byte) []byte {
		b = append([]byte(nil), b...)
		for i := len(b) / 2; i < len(b)/2+64; i++ {
			b[i] ^= 0x5a
		}
		return b
	}
	gz, zs := compress(t, gzipped, data), compress(t, zstandard, data)
	for name, blob := range map[string][]byte{
		"gzip flipped":   flip(gz),
		"gzip truncated": gz[:len(gz)/2],
		"gzip header":    append([]byte{0x1f, 0x8b, 0xff}, gz[3:]...),
		"zstd flipped":   flip(zs),
		"zstd truncated": zs[:len(zs)/2],
	} {
		t.Run(name, func(t *testing.T) {
			cs := newStore(t)
			desc := putBlob(t, cs, "", blob)
			_, err := New(cs, "").Apply(context.Background(), desc, bindRW(t.TempDir()))
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "corrupt") || !strings.Contains(err.Error(), desc.Digest.String()) {
				t.Fatalf("got %v, want an invalid-argument error saying layer %s is corrupt", err, desc.Digest)
			}
		})
	}
}

func TestApplyMissingBlob(t *testing.T) {
	_, err := New(newStore(t), "").Apply(context.Background(), ocispec.Descriptor{Digest: digest.FromString("none")}, bindRW(t.TempDir()))
	if !errdefs.IsNotFound(err) {
		t.Fatalf("got %v, want not found", err)
	}
}

func TestApplyThroughTemporaryMount(t *testing.T) {
	needRoot(t)
	img := layersImage(t, 0)
	data := layerTar(t, img.Layers[0])
	cs := newStore(t)
	base := t.TempDir()
	d := New(cs, base)
	d.noFastPath = true
	root := t.TempDir()
	if _, err := d.Apply(context.Background(), putBlob(t, cs, "", compress(t, gzipped, data)), bindRW(root)); err != nil {
		t.Fatal(err)
	}
	if d := diffStates(treeState(t, applyPlain(t, [][]byte{data}), true), treeState(t, root, true)); d != "" {
		t.Errorf("tree differs from the plain apply:\n%s", d)
	}
	if left, _ := os.ReadDir(base); len(left) != 0 {
		t.Errorf("temporary mount points left in %s: %v", base, left)
	}
}

func TestApplyOverlayUpper(t *testing.T) {
	needRoot(t)
	img := layersImage(t, 0)
	cs := newStore(t)
	d := New(cs, t.TempDir())
	lower, upper, work := t.TempDir(), t.TempDir(), t.TempDir()
	if _, err := d.Apply(context.Background(), putBlob(t, cs, "", layerTar(t, img.Layers[1])), bindRW(lower)); err != nil {
		t.Fatal(err)
	}
	overlay := []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{
		"workdir=" + work, "upperdir=" + upper, "lowerdir=" + lower,
	}}}
	if _, err := d.Apply(context.Background(), putBlob(t, cs, "", compress(t, gzipped, layerTar(t, img.Layers[2]))), overlay); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(upper, "etc/removed-later"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("etc/removed-later is not an overlay whiteout in the upper directory: %v", err)
	}
	if n, _ := unix.Lgetxattr(filepath.Join(upper, "opaque"), "trusted.overlay.opaque", make([]byte, 4)); n != 1 {
		t.Error("opaque is not marked opaque in the upper directory")
	}
	if !sameInodes(t, filepath.Join(upper, "data/a-original.txt"), filepath.Join(upper, "data2/cross-hardlink")) {
		t.Error("the cross-layer hard link was not made against a copied-up target")
	}
}

func sameInodes(t *testing.T, a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Lstat(a, &sa) != nil || unix.Lstat(b, &sb) != nil {
		return false
	}
	return sa.Ino == sb.Ino
}

// change alters a tree the ways a container does.
func change(t *testing.T, root string) {
	t.Helper()
	p := func(n string) string { return filepath.Join(root, n) }
	for _, err := range []error{
		os.WriteFile(p("data/a-original.txt"), []byte("changed in place, so its hard link changes too\n"), 0o644),
		os.RemoveAll(p("data/big")),
		os.Remove(p("etc/passwd")),
		os.RemoveAll(p("swap")),
		os.WriteFile(p("swap"), []byte("a file again"), 0o600),
		os.MkdirAll(p("new/dir"), 0o750),
		os.WriteFile(p("new/dir/file"), []byte("new"), 0o644),
		os.Symlink("../bin/busybox", p("new/link")),
		os.Chmod(p("data/setuid"), 0o755),
		os.Link(p("new/dir/file"), p("new/hardlink")),
		os.RemoveAll(p("opaque")),
		os.Mkdir(p("opaque"), 0o755),
		os.WriteFile(p("opaque/only"), []byte("only"), 0o644),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// checkRoundTrip applies the diff desc onto a fresh copy of the lower
// layers and compares the result with want.
func checkRoundTrip(t *testing.T, cs content.Store, desc ocispec.Descriptor, lowerTars [][]byte, want map[string]fileState) {
	t.Helper()
	info, err := cs.Info(context.Background(), desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	target := applyPlain(t, lowerTars)
	applied, err := New(cs, "").Apply(context.Background(), desc, bindRW(target))
	if err != nil {
		t.Fatal(err)
	}
	if info.Labels[diff.LabelUncompressed] != applied.Digest.String() {
		t.Errorf("label %s is %q, the layer's diff ID %s", diff.LabelUncompressed, info.Labels[diff.LabelUncompressed], applied.Digest)
	}
	if d := diffStates(want, treeState(t, target, true)); d != "" {
		t.Errorf("lower plus diff differs from upper:\n%s", d)
	}
}

func TestCompareRoundTrip(t *testing.T) {
	img := layersImage(t, 1<<20)
	var tars [][]byte
	for _, l := range img.Layers {
		tars = append(tars, layerTar(t, l))
	}
	lower, upper := applyPlain(t, tars), applyPlain(t, tars)
	change(t, upper)
	want := treeState(t, upper, true)
	for _, tc := range []struct {
		mediaType string
		magic     []byte
	}{
		{"", gzipMagic},
		{ocispec.MediaTypeImageLayerZstd, zstdMagic},
		{ocispec.MediaTypeImageLayer, []byte("data/")},
	} {
		t.Run(tc.mediaType, func(t *testing.T) {
			cs := newStore(t)
			desc, err := New(cs, t.TempDir()).Compare(context.Background(), bindRO(lower), bindRW(upper),
				diff.WithMediaType(tc.mediaType), diff.WithLabels(map[string]string{"test": "yes"}))
			if err != nil {
				t.Fatal(err)
			}
			if tc.mediaType != "" && desc.MediaType != tc.mediaType || tc.mediaType == "" && desc.MediaType != ocispec.MediaTypeImageLayerGzip {
				t.Errorf("media type %q", desc.MediaType)
			}
			blob, err := content.ReadBlob(context.Background(), cs, desc)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(blob, tc.magic) || digest.FromBytes(blob) != desc.Digest || int64(len(blob)) != desc.Size {
				t.Errorf("blob %s (%d bytes) starts %q", desc.Digest, desc.Size, blob[:8])
			}
			if info, _ := cs.Info(context.Background(), desc.Digest); info.Labels["test"] != "yes" {
				t.Errorf("labels %v lack the given one", info.Labels)
			}
			checkRoundTrip(t, cs, desc, tars, want)
		})
	}
}

func TestCompareOverlay(t *testing.T) {
	needRoot(t)
	img := layersImage(t, 1<<20)
	var tars [][]byte
	for _, l := range img.Layers {
		tars = append(tars, layerTar(t, l))
	}
	lower, upper, work, merged := applyPlain(t, tars), t.TempDir(), t.TempDir(), t.TempDir()
	overlay := []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{
		"workdir=" + work, "upperdir=" + upper, "lowerdir=" + lower,
	}}}
	if err := mount.All(overlay, merged); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mount.UnmountAll(merged) })
	change(t, merged)
	want := treeState(t, merged, true)
	for _, fast := range []bool{true, false} {
		cs := newStore(t)
		base := t.TempDir()
		d := New(cs, base)
		d.noFastPath = !fast
		desc, err := d.Compare(context.Background(), bindRO(lower), overlay)
		if err != nil {
			t.Fatalf("fast path %v: %v", fast, err)
		}
		checkRoundTrip(t, cs, desc, tars, want)
		if left, _ := os.ReadDir(base); len(left) != 0 {
			t.Errorf("temporary mount points left in %s: %v", base, left)
		}
	}
}

func TestCompareWithoutParent(t *testing.T) {
	upper := t.TempDir()
	if err := os.WriteFile(filepath.Join(upper, "f"), []byte("f"), 0o644); err != nil {
		t.Fatal(err)
	}
	cs := newStore(t)
	desc, err := New(cs, t.TempDir()).Compare(context.Background(), nil, bindRW(upper))
	if err != nil {
		t.Fatal(err)
	}
	checkRoundTrip(t, cs, desc, nil, treeState(t, upper, true))
}

func TestCompareRefusesUnknownMediaType(t *testing.T) {
	_, err := New(newStore(t), "").Compare(context.Background(), bindRO(t.TempDir()), bindRW(t.TempDir()), diff.WithMediaType("text/plain"))
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("got %v, want invalid argument", err)
	}
}

func TestCompareOverlayWithoutParent(t *testing.T) {
	needRoot(t)
	empty, upper, work, merged := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	overlay := []mount.Mount{{Type: "overlay", Source: "overlay", Options: []string{
		"workdir=" + work, "upperdir=" + upper, "lowerdir=" + empty,
	}}}
	if err := mount.All(overlay, merged); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mount.UnmountAll(merged) })
	if err := os.MkdirAll(filepath.Join(merged, "a/b"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(merged, "a/b/f"), []byte("f"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !sameLowers(nil, []string{empty}) {
		t.Error("an empty lower directory is not taken for no parent")
	}
	cs := newStore(t)
	desc, err := New(cs, t.TempDir()).Compare(context.Background(), nil, overlay)
	if err != nil {
		t.Fatal(err)
	}
	checkRoundTrip(t, cs, desc, nil, treeState(t, merged, true))
}
