package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
)

// baseLayer is the tree the round-trip tests change.
func baseLayer(t testing.TB) []byte {
	withXattr := fileEnt("xattr", 0o644, "x")
	withXattr.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.old": "1"}
	return mkTar(t,
		dirEnt("dir", 0o755), dirEnt("dir/sub", 0o750), fileEnt("dir/sub/deep", 0o644, "deep"),
		dirEnt("gone-dir", 0o755), fileEnt("gone-dir/a", 0o644, "a"), dirEnt("gone-dir/b", 0o755), fileEnt("gone-dir/b/c", 0o644, "c"),
		dirEnt("to-file", 0o755), fileEnt("to-file/x", 0o644, "x"),
		dirEnt("opq", 0o755), fileEnt("opq/old1", 0o644, "1"), fileEnt("opq/old2", 0o644, "2"),
		fileEnt("same-size", 0o644, "aaaa"),
		fileEnt("grow", 0o644, "abc"),
		fileEnt("chmod", 0o644, "chmod"),
		fileEnt("chown", 0o644, "chown"),
		withXattr,
		fileEnt("gone-file", 0o644, "gone"),
		fileEnt("to-dir", 0o644, "file"),
		fileEnt("unchanged", 0o644, "unchanged"),
		fileEnt("linked1", 0o644, "linked"), hardlinkEnt("linked2", "linked1"),
		symlinkEnt("sym", "unchanged"),
		symlinkEnt("sym-change", "a"),
		ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o600}},
		fileEnt("suid", 0o4755, "suid"),
	)
}

// unchangedPaths are the entries of baseLayer that mutate leaves alone.
var unchangedPaths = []string{"dir/", "dir/sub/", "dir/sub/deep", "unchanged", "sym", "fifo", "suid"}

// mutate changes the tree at root in every way a container can.
func mutate(t *testing.T, root string, xattrs bool) {
	t.Helper()
	p := func(name string) string { return filepath.Join(root, name) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Same size, same whole-second time: only the content tells.
	must(os.WriteFile(p("same-size"), []byte("bbbb"), 0o644))
	must(os.Chtimes(p("same-size"), testTime, testTime))
	f, err := os.OpenFile(p("grow"), os.O_APPEND|os.O_WRONLY, 0)
	must(err)
	_, err = f.WriteString("def")
	must(err)
	must(f.Close())
	must(os.Chmod(p("chmod"), 0o600))
	if os.Geteuid() == 0 {
		must(os.Lchown(p("chown"), 1234, 5678))
		must(unix.Mknod(p("new-dev"), unix.S_IFCHR|0o640, int(unix.Mkdev(1, 5))))
	}
	if xattrs {
		must(unix.Lsetxattr(p("xattr"), "user.new", []byte("2"), 0))
	}
	must(os.Remove(p("gone-file")))
	must(os.RemoveAll(p("gone-dir")))
	must(os.RemoveAll(p("to-file")))
	must(os.WriteFile(p("to-file"), []byte("was a directory"), 0o640))
	must(os.Remove(p("to-dir")))
	must(os.Mkdir(p("to-dir"), 0o711))
	must(os.WriteFile(p("to-dir/child"), []byte("child"), 0o644))
	must(os.Remove(p("sym-change")))
	must(os.Symlink("b", p("sym-change")))
	must(os.WriteFile(p("new-file"), []byte("new"), 0o644))
	must(os.MkdirAll(p("new-dir/inner"), 0o755))
	must(os.WriteFile(p("new-dir/inner/f"), []byte("f"), 0o644))
	must(os.WriteFile(p("new-pair1"), []byte("pair"), 0o644))
	must(os.Link(p("new-pair1"), p("new-pair2")))
	must(os.Link(p("unchanged"), p("unchanged-link")))
	f, err = os.OpenFile(p("linked1"), os.O_APPEND|os.O_WRONLY, 0)
	must(err)
	_, err = f.WriteString(" and changed")
	must(err)
	must(f.Close())
	must(unix.Mkfifo(p("new-fifo"), 0o644))
	must(os.RemoveAll(p("opq")))
	must(os.Mkdir(p("opq"), 0o755))
	must(os.WriteFile(p("opq/new"), []byte("new"), 0o644))
}

func writeDiff(t *testing.T, lower, upper string, opts ...DiffOpt) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteDiff(context.Background(), &buf, lower, upper, opts...); err != nil {
		t.Fatalf("WriteDiff: %v", err)
	}
	return buf.Bytes()
}

func tarNames(t *testing.T, data []byte) map[string]*tar.Header {
	t.Helper()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[hdr.Name] = hdr
	}
}

func sameInode(t *testing.T, a, b string) bool {
	return lstat(t, a).Ino == lstat(t, b).Ino
}

func TestWriteDiffRoundTrip(t *testing.T) {
	base := baseLayer(t)
	lower, upper := t.TempDir(), t.TempDir()
	apply(t, lower, base)
	apply(t, upper, base)
	mutate(t, upper, userXattrs(t, upper))
	want := treeState(t, upper)

	diff := writeDiff(t, lower, upper)
	if again := writeDiff(t, lower, upper); !bytes.Equal(diff, again) {
		t.Error("two diffs of the same trees differ")
	}
	names := tarNames(t, diff)
	for _, p := range unchangedPaths {
		if _, ok := names[p]; ok {
			t.Errorf("the diff holds unchanged %s", p)
		}
	}
	for _, p := range []string{".wh.gone-file", ".wh.gone-dir", "opq/.wh.old1", "same-size", "to-file", "to-dir/", "to-dir/child"} {
		if _, ok := names[p]; !ok {
			t.Errorf("the diff lacks %s", p)
		}
	}
	if h := names["unchanged-link"]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "unchanged" {
		t.Errorf("unchanged-link should be a hard link to unchanged: %+v", h)
	}
	if h := names["linked2"]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "linked1" {
		t.Errorf("linked2 should be a hard link to linked1: %+v", h)
	}

	target := t.TempDir()
	apply(t, target, base)
	apply(t, target, diff)
	if d := diffStates(want, treeState(t, target)); d != "" {
		t.Errorf("lower plus diff differs from upper:\n%s", d)
	}
	for _, pair := range [][2]string{{"new-pair1", "new-pair2"}, {"unchanged", "unchanged-link"}, {"linked1", "linked2"}} {
		if !sameInode(t, filepath.Join(target, pair[0]), filepath.Join(target, pair[1])) {
			t.Errorf("%s and %s are not linked after the round trip", pair[0], pair[1])
		}
	}
	// Nothing changed: an empty diff.
	if n := tarNames(t, writeDiff(t, lower, lower)); len(n) != 0 {
		t.Errorf("a tree compared with itself gave %d entries", len(n))
	}
}

func TestWriteDiffOverlayRoundTrip(t *testing.T) {
	needRoot(t)
	base := baseLayer(t)
	lower, upper, work, merged := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	apply(t, lower, base)
	m := mount.Mount{Type: "overlay", Source: "overlay", Options: []string{
		"lowerdir=" + lower, "upperdir=" + upper, "workdir=" + work,
	}}
	if err := mount.All([]mount.Mount{m}, merged); err != nil {
		t.Fatalf("mounting overlay: %v", err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			mount.UnmountAll(merged)
		}
	})
	mutate(t, merged, userXattrs(t, lower))
	want := treeState(t, merged)
	if err := mount.UnmountAll(merged); err != nil {
		t.Fatal(err)
	}
	mounted = false

	diff := writeDiff(t, "", upper, WithUpperOverlay())
	names := tarNames(t, diff)
	for _, p := range []string{".wh.gone-file", ".wh.gone-dir", "opq/", "opq/" + WhiteoutOpaqueDir, "opq/new"} {
		if _, ok := names[p]; !ok {
			t.Errorf("the diff lacks %s", p)
		}
	}
	for _, p := range unchangedPaths {
		if p == "unchanged" {
			continue // linking to it copied it up
		}
		if _, ok := names[p]; ok {
			t.Errorf("the diff holds unchanged %s", p)
		}
	}
	target := t.TempDir()
	apply(t, target, base)
	apply(t, target, diff)
	if d := diffStates(want, treeState(t, target)); d != "" {
		t.Errorf("lower plus overlay diff differs from the merged view:\n%s", d)
	}
}

func TestWriteDiffOverlayRedirectRefused(t *testing.T) {
	needRoot(t)
	upper := t.TempDir()
	if err := os.Mkdir(filepath.Join(upper, "moved"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(filepath.Join(upper, "moved"), overlayRedirectXattr, []byte("/orig"), 0); err != nil {
		t.Fatal(err)
	}
	err := WriteDiff(context.Background(), io.Discard, "", upper, WithUpperOverlay())
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "moved") {
		t.Fatalf("got %v, want ErrNotImplemented naming the directory", err)
	}
}
