package integration

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-engine/berth/internal/mount"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// TestUnpackMatchesUmoci unpacks the layers image with berth and with
// Debian's umoci (an independent implementation of the OCI layer rules) and
// compares the trees.
func TestUnpackMatchesUmoci(t *testing.T) {
	if _, err := exec.LookPath("umoci"); err != nil {
		t.Skip("umoci is not installed (make deps)")
	}
	// umoci's tree, once for both snapshotters.
	dir := t.TempDir()
	layout := filepath.Join(dir, "layout")
	if err := os.Mkdir(layout, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xf", testImage("layers-oci.tar"), "-C", layout).CombinedOutput(); err != nil {
		t.Fatalf("extracting the OCI layout: %v\n%s", err, out)
	}
	bundle := filepath.Join(dir, "bundle")
	if out, err := exec.Command("umoci", "unpack", "--image", layout+":oci", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	want := scanTree(t, filepath.Join(bundle, "rootfs"))
	// The comparison is worth something only if the tree has what appliers
	// get wrong.
	if len(want.entries) < 20 || len(want.links) == 0 || want.entries["data/setuid"].Mode&fs.FileMode(unix.S_ISUID) == 0 ||
		want.entries["data/xattr.txt"].Xattrs == "" || want.entries["data/fifo"].Type != "fifo" ||
		want.entries["swap/again"].Type != "file" || want.entries["opaque/new"].Type != "file" {
		t.Fatalf("umoci's tree lacks what the layers image should hold: %d entries, links %v", len(want.entries), want.links)
	}
	for _, gone := range []string{"etc/removed-later", "opaque/old-1", "opaque/sub", "swap/inside"} {
		if _, ok := want.entries[gone]; ok {
			t.Fatalf("umoci's tree holds %s, which a later layer removes", gone)
		}
	}

	for _, sn := range snapshotters {
		t.Run(sn, func(t *testing.T) {
			d := startDaemon(t)
			b := func(args ...string) string { return d.must(append([]string{"--snapshotter", sn}, args...)...) }
			b("load", "-i", testImage("layers-oci.tar"))
			chain := chainIDs(t, inspect(t, d, "layers:oci").RootFS.Layers)
			mnt := tempMountDir(t)
			runMountLines(t, b("snapshot", "view", "--target", mnt, "compare", chain[len(chain)-1]), mnt)
			got := scanTree(t, mnt)
			compareTrees(t, want, got)
			if err := mount.Unmount(mnt); err != nil {
				t.Fatal(err)
			}
			b("snapshot", "rm", "compare")
		})
	}
}

// treeEntry is what the comparison looks at for one path.
type treeEntry struct {
	Type    string
	Mode    fs.FileMode // permissions, setuid, setgid, sticky
	UID     uint32
	GID     uint32
	Size    int64  // regular files only
	SHA256  string // regular files only
	Link    string // symlink target
	Rdev    uint64 // devices only
	Xattrs  string // user.* attributes, sorted "k=v;"
	inode   uint64
	regular bool
}

type tree struct {
	entries map[string]treeEntry
	// links are the groups of paths that are one file (hard links).
	links []string
}

func scanTree(t *testing.T, root string) tree {
	t.Helper()
	tr := tree{entries: map[string]treeEntry{}}
	byInode := map[uint64][]string{}
	err := filepath.WalkDir(root, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		e := treeEntry{
			Mode:  fs.FileMode(st.Mode & 0o7777),
			UID:   st.Uid,
			GID:   st.Gid,
			inode: st.Ino,
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			e.Type, e.regular = "file", true
			e.Size = st.Size
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			e.SHA256 = hex.EncodeToString(sum[:])
			if st.Nlink > 1 {
				byInode[st.Ino] = append(byInode[st.Ino], rel)
			}
		case unix.S_IFDIR:
			e.Type = "dir"
		case unix.S_IFLNK:
			e.Type = "symlink"
			e.Mode = 0 // symlink permissions mean nothing on Linux
			if e.Link, err = os.Readlink(path); err != nil {
				return err
			}
		case unix.S_IFIFO:
			e.Type = "fifo"
		case unix.S_IFCHR:
			e.Type, e.Rdev = "char", st.Rdev
		case unix.S_IFBLK:
			e.Type, e.Rdev = "block", st.Rdev
		case unix.S_IFSOCK:
			e.Type = "socket"
		}
		if e.Type != "symlink" {
			e.Xattrs = userXattrs(t, path)
		}
		tr.entries[rel] = e
		return nil
	})
	if err != nil {
		t.Fatalf("scanning %s: %v", root, err)
	}
	for _, paths := range byInode {
		if len(paths) > 1 {
			slices.Sort(paths)
			tr.links = append(tr.links, strings.Join(paths, " = "))
		}
	}
	slices.Sort(tr.links)
	return tr
}

func userXattrs(t *testing.T, path string) string {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		t.Fatalf("listing the attributes of %s: %v", path, err)
	}
	var names []string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if strings.HasPrefix(name, "user.") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	var out strings.Builder
	for _, name := range names {
		val := make([]byte, 4096)
		m, err := unix.Lgetxattr(path, name, val)
		if err != nil {
			t.Fatalf("reading attribute %s of %s: %v", name, path, err)
		}
		fmt.Fprintf(&out, "%s=%s;", name, val[:m])
	}
	return out.String()
}

func compareTrees(t *testing.T, want, got tree) {
	t.Helper()
	var diffs []string
	for _, p := range slices.Sorted(maps.Keys(want.entries)) {
		g, ok := got.entries[p]
		w := want.entries[p]
		w.inode, g.inode = 0, 0
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("missing %s (%s)", p, w.Type))
		case w.Type == "dir" && g.Type == "dir":
			// Directory sizes and link counts differ between filesystems.
			if w.Mode != g.Mode || w.UID != g.UID || w.GID != g.GID || w.Xattrs != g.Xattrs {
				diffs = append(diffs, fmt.Sprintf("%s: %+v, umoci %+v", p, g, w))
			}
		case w != g:
			diffs = append(diffs, fmt.Sprintf("%s: %+v, umoci %+v", p, g, w))
		}
	}
	for _, p := range slices.Sorted(maps.Keys(got.entries)) {
		if _, ok := want.entries[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("extra %s (%s)", p, got.entries[p].Type))
		}
	}
	if !slices.Equal(got.links, want.links) {
		diffs = append(diffs, fmt.Sprintf("hard links %q, umoci %q", got.links, want.links))
	}
	if len(diffs) > 0 {
		if len(diffs) > 30 {
			diffs = append(diffs[:30], fmt.Sprintf("... and %d more", len(diffs)-30))
		}
		t.Errorf("berth's tree differs from umoci's:\n%s", strings.Join(diffs, "\n"))
	}
}

// layerBlob is a layer of a crafted image: its blob, media type and the
// diff ID the config states.
type layerBlob struct {
	blob      []byte
	mediaType string
	diffID    digest.Digest
}

// tarOf writes entries (with their data) as an uncompressed layer tar.
func tarOf(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := *e.hdr
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipOf(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// gzipLayer is a well-formed gzip layer of the tar.
func gzipLayer(t *testing.T, tarData []byte) layerBlob {
	return layerBlob{blob: gzipOf(t, tarData), mediaType: ocispec.MediaTypeImageLayerGzip, diffID: digest.FromBytes(tarData)}
}

// ociArchive writes an OCI layout tar holding one image named name.
func ociArchive(t *testing.T, name string, layers ...layerBlob) []byte {
	t.Helper()
	var entries []tarEntry
	blob := func(data []byte, mediaType string) ocispec.Descriptor {
		d := digest.FromBytes(data)
		entries = append(entries, fileEntry("blobs/sha256/"+d.Encoded(), data))
		return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}
	}
	cfg := ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest}
	m.SchemaVersion = 2
	for _, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.diffID)
		m.Layers = append(m.Layers, blob(l.blob, l.mediaType))
	}
	cfgJSON, _ := json.Marshal(cfg)
	m.Config = blob(cfgJSON, ocispec.MediaTypeImageConfig)
	mJSON, _ := json.Marshal(m)
	md := blob(mJSON, ocispec.MediaTypeImageManifest)
	md.Annotations = map[string]string{"io.containerd.image.name": "docker.io/library/" + name}
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{md}}
	idx.SchemaVersion = 2
	idxJSON, _ := json.Marshal(idx)
	entries = append(entries,
		fileEntry("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)),
		fileEntry("index.json", idxJSON))
	return writeTar(t, entries)
}

func dirEntry(name string) tarEntry {
	return tarEntry{hdr: &tar.Header{Name: name, Mode: 0o755, Typeflag: tar.TypeDir}}
}

func symlinkEntry(name, target string) tarEntry {
	return tarEntry{hdr: &tar.Header{Name: name, Linkname: target, Mode: 0o777, Typeflag: tar.TypeSymlink}}
}

func hardlinkEntry(name, target string) tarEntry {
	return tarEntry{hdr: &tar.Header{Name: name, Linkname: target, Mode: 0o644, Typeflag: tar.TypeLink}}
}

// TestLoadRejectsBadLayers loads images whose layers try to write outside
// the snapshot or are broken, and checks that each load fails with a clear
// error and leaves nothing: no snapshot, no mount, no image, no new blob,
// and nothing written outside.
func TestLoadRejectsBadLayers(t *testing.T) {
	for _, sn := range snapshotters {
		t.Run(sn, func(t *testing.T) {
			d := startDaemon(t)
			d.must("--snapshotter", sn, "load", "-i", testImage("busybox-docker.tar"))
			blobsBefore, imagesBefore, snapsBefore := d.blobs(), d.must("images", "-q", "--no-trunc"), keys(d.snapshotList(sn))

			// outside is a host folder the layers aim at; it must stay empty.
			outside := t.TempDir()
			outsideFile := filepath.Join(outside, "precious")
			if err := os.WriteFile(outsideFile, []byte("keep me"), 0o644); err != nil {
				t.Fatal(err)
			}
			escape := fmt.Sprintf("escape-%d", os.Getpid())
			goodTar := tarOf(t, dirEntry("etc/"), fileEntry("etc/hostname", []byte("fine\n")))
			corrupt := gzipOf(t, bytes.Repeat(goodTar, 64))
			for i := len(corrupt) / 3; i < len(corrupt)/3+64; i++ {
				corrupt[i] ^= 0x5a
			}

			cases := []struct {
				name  string
				layer layerBlob
				want  string // a word the error must hold
				// contained, for a layer that writes through a symlink, is
				// where the write must land inside the snapshot instead:
				// symlinks resolve as if the snapshot were "/" (as in
				// containerd and umoci), so such a layer loads.
				contained string
			}{
				{name: "entry climbing out with ..", layer: gzipLayer(t, tarOf(t, fileEntry("../../../../../../"+escape, []byte("x")))), want: ".."},
				{name: "absolute symlink followed", layer: gzipLayer(t, tarOf(t,
					symlinkEntry("evil", outside), fileEntry("evil/pwned", []byte("x")))), contained: filepath.Join(outside, "pwned")},
				{name: "hard link climbing out", layer: gzipLayer(t, tarOf(t, hardlinkEntry("hl", "../../../../../../.."+outsideFile))), want: ".."},
				{name: "hard link to an absolute path", layer: gzipLayer(t, tarOf(t, hardlinkEntry("hl", outsideFile))), want: `"hl"`},
				{name: "symlink swapped for a directory", layer: gzipLayer(t, tarOf(t,
					dirEntry("d/"), fileEntry("d/ok", []byte("x")), symlinkEntry("d", outside), fileEntry("d/pwned", []byte("x")))),
					contained: filepath.Join(outside, "pwned")},
				{name: "corrupt gzip", layer: layerBlob{blob: corrupt, mediaType: ocispec.MediaTypeImageLayerGzip, diffID: digest.FromBytes(bytes.Repeat(goodTar, 64))}, want: "gzip"},
				{name: "diff_id mismatch", layer: layerBlob{blob: gzipOf(t, goodTar), mediaType: ocispec.MediaTypeImageLayerGzip, diffID: digest.FromString("not this layer")},
					want: digest.FromString("not this layer").String()},
			}
			for i, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					name := fmt.Sprintf("bad%d:latest", i)
					archive := ociArchive(t, name, tc.layer)
					_, errOut, code := d.berthIn(archive, "--snapshotter", sn, "load")
					switch {
					case tc.contained != "" && code != 0:
						t.Errorf("load of a layer that writes through a symlink failed: %s", errOut)
					case tc.contained != "":
						checkContained(t, d, sn, tc.layer.diffID.String(), tc.contained)
						d.must("rmi", name)
					case code == 0:
						t.Errorf("load succeeded")
						d.must("rmi", name)
					default:
						t.Logf("berth load: %s", strings.TrimSpace(errOut))
						if !strings.Contains(errOut, tc.want) {
							t.Errorf("error %q does not mention %q", errOut, tc.want)
						}
						if strings.Count(strings.TrimSpace(errOut), "\n") > 2 {
							t.Errorf("error is not short: %q", errOut)
						}
					}
					if got := d.must("images", "-q", "--no-trunc"); got != imagesBefore {
						t.Errorf("images changed: %q, want %q", got, imagesBefore)
					}
					if got := d.blobs(); !slices.Equal(got, blobsBefore) {
						t.Errorf("blobs changed: %v, want %v", got, blobsBefore)
					}
					if got := keys(d.snapshotList(sn)); !slices.Equal(got, snapsBefore) {
						t.Errorf("snapshots changed: %v, want %v", got, snapsBefore)
					}
					for _, dir := range []string{d.root, d.state} {
						if m := mountsUnder(t, dir); len(m) != 0 {
							t.Errorf("mounts left: %v", m)
						}
					}
					checkOutside(t, outside, outsideFile)
					checkNoFileNamed(t, filepath.Dir(d.root), escape)
				})
			}
		})
	}
}

// checkContained mounts a view of snapshot and checks that the file at
// path (absolute, as the layer's symlink named it) is inside it.
func checkContained(t *testing.T, d *daemon, snapshotter, snapshot, path string) {
	t.Helper()
	mnt := tempMountDir(t)
	runMountLines(t, d.must("--snapshotter", snapshotter, "snapshot", "view", "--target", mnt, "contained", snapshot), mnt)
	if fi, err := os.Lstat(filepath.Join(mnt, path)); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("the write through the symlink is not at %s inside the snapshot: %v", path, err)
	}
	if err := mount.Unmount(mnt); err != nil {
		t.Fatal(err)
	}
	d.must("--snapshotter", snapshotter, "snapshot", "rm", "contained")
}

// checkOutside fails when anything but the precious file is in outside, or
// when that file was changed or linked to.
func checkOutside(t *testing.T, outside, precious string) {
	t.Helper()
	entries, err := os.ReadDir(outside)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("written outside the snapshot: %s holds %v", outside, names)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(precious, &st); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(precious)
	if st.Nlink != 1 || string(data) != "keep me" {
		t.Errorf("the file outside was linked to or changed: %d links, %q", st.Nlink, data)
	}
}

// checkNoFileNamed fails when a file named name exists under dir.
func checkNoFileNamed(t *testing.T, dir, name string) {
	t.Helper()
	filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err == nil && de.Name() == name {
			t.Errorf("an entry escaped to %s", path)
		}
		return nil
	})
	if _, err := os.Lstat(filepath.Join("/", name)); err == nil {
		t.Errorf("an entry escaped to /%s", name)
	}
}
