package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
)

// userXattrs reports whether the filesystem of dir takes user.* attributes.
func userXattrs(t *testing.T, dir string) bool {
	p := filepath.Join(dir, "probe")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(p)
	return unix.Lsetxattr(p, "user.probe", []byte("1"), 0) == nil
}

func TestApplyEntryTypes(t *testing.T) {
	resolvers(t, func(t *testing.T, opts ...ApplyOpt) {
		root := t.TempDir()
		// Without root, the test's clean-up could not empty x/ro.
		t.Cleanup(func() { os.Chmod(filepath.Join(root, "x/ro"), 0o755) })
		withXattr := fileEnt("x/xattr", 0o644, "has attributes")
		withXattr.hdr.PAXRecords = map[string]string{
			"SCHILY.xattr.user.berth":            "value\x00binary",
			"SCHILY.xattr." + overlayOpaqueXattr: "y", // never taken from a layer
		}
		fifo := ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "x/fifo", Mode: 0o620}}
		apply(t, root, mkTar(t,
			dirEnt("x", 0o750),
			fileEnt("x/file", 0o640, "hello"),
			fileEnt("x/setuid", 0o4755, "#!/bin/sh\n"),
			symlinkEnt("x/link", "file"),
			symlinkEnt("x/abs", "/etc/passwd"),
			hardlinkEnt("x/hard", "x/file"),
			fifo,
			withXattr,
			dirEnt("x/ro", 0o555),
			fileEnt("x/ro/inside", 0o444, "in a read-only directory"),
			dirEnt("sticky", 0o1777),
			fileEnt("implicit/parent/file", 0o600, "parents made on the way"),
		), opts...)

		// Times, before any read changes them: files at once, directories
		// after their contents.
		for _, p := range []string{"x", "x/file", "x/ro", "x/setuid", "x/link"} {
			st := lstat(t, filepath.Join(root, p))
			if st.Mtim.Sec != testTime.Unix() || st.Atim.Sec != testTime.Unix() {
				t.Errorf("%s: mtime %d atime %d, want %d", p, st.Mtim.Sec, st.Atim.Sec, testTime.Unix())
			}
		}
		modes := map[string]os.FileMode{
			"x":                    os.ModeDir | 0o750,
			"x/file":               0o640,
			"x/setuid":             os.ModeSetuid | 0o755,
			"x/fifo":               os.ModeNamedPipe | 0o620,
			"x/ro":                 os.ModeDir | 0o555,
			"x/ro/inside":          0o444,
			"sticky":               os.ModeDir | os.ModeSticky | 0o777,
			"implicit/parent":      os.ModeDir | 0o755,
			"implicit/parent/file": 0o600,
		}
		for p, want := range modes {
			fi, err := os.Lstat(filepath.Join(root, p))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != want {
				t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
			}
		}
		if got := readFile(t, filepath.Join(root, "x/file")); got != "hello" {
			t.Errorf("x/file holds %q", got)
		}
		for link, target := range map[string]string{"x/link": "file", "x/abs": "/etc/passwd"} {
			if got, err := os.Readlink(filepath.Join(root, link)); err != nil || got != target {
				t.Errorf("%s -> %q (%v), want %q", link, got, err, target)
			}
		}
		file, hard := lstat(t, filepath.Join(root, "x/file")), lstat(t, filepath.Join(root, "x/hard"))
		if file.Ino != hard.Ino || file.Nlink != 2 {
			t.Errorf("x/hard is not a hard link of x/file: inodes %d and %d, %d links", file.Ino, hard.Ino, file.Nlink)
		}
		x, err := pathXattrs(filepath.Join(root, "x/xattr"))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := x[overlayOpaqueXattr]; ok {
			t.Error("an overlay attribute was taken from the layer")
		}
		if userXattrs(t, t.TempDir()) && string(x["user.berth"]) != "value\x00binary" {
			t.Errorf("x/xattr attributes %q, want user.berth", x)
		}
		if all, _ := readXattrList(func(b []byte) (int, error) { return unix.Llistxattr(filepath.Join(root, "x/xattr"), b) }); strings.Contains(strings.Join(all, ","), "overlay") {
			t.Errorf("overlay attribute set: %v", all)
		}
	})
}

func TestApplyOwnersAndDevices(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	owned := func(e ent, uid, gid int) ent { e.hdr.Uid, e.hdr.Gid = uid, gid; return e }
	char := ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}}
	block := ent{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/loop9", Mode: 0o660, Devmajor: 7, Devminor: 9, Gid: 6}}
	trusted := fileEnt("trusted", 0o644, "")
	trusted.hdr.PAXRecords = map[string]string{"SCHILY.xattr.trusted.berth": "t"}
	apply(t, root, mkTar(t,
		owned(dirEnt("home", 0o2750), 1000, 2000),
		owned(fileEnt("home/setuid", 0o6755, "suid and sgid survive chown"), 1000, 2000),
		owned(symlinkEnt("home/link", "setuid"), 1001, 1002),
		dirEnt("dev", 0o755),
		char, block, trusted,
	))
	check := func(p string, uid, gid uint32, mode os.FileMode) {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		sst := lstat(t, filepath.Join(root, p))
		if sst.Uid != uid || sst.Gid != gid || fi.Mode() != mode {
			t.Errorf("%s: %d:%d %v, want %d:%d %v", p, sst.Uid, sst.Gid, fi.Mode(), uid, gid, mode)
		}
	}
	check("home", 1000, 2000, os.ModeDir|os.ModeSetgid|0o750)
	check("home/setuid", 1000, 2000, os.ModeSetuid|os.ModeSetgid|0o755)
	check("home/link", 1001, 1002, os.ModeSymlink|0o777)
	check("dev/null", 0, 0, os.ModeDevice|os.ModeCharDevice|0o666)
	check("dev/loop9", 0, 6, os.ModeDevice|0o660)
	if st := lstat(t, filepath.Join(root, "dev/loop9")); unix.Major(st.Rdev) != 7 || unix.Minor(st.Rdev) != 9 {
		t.Errorf("dev/loop9 is %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	x, err := pathXattrs(filepath.Join(root, "trusted"))
	if err != nil || string(x["trusted.berth"]) != "t" {
		t.Errorf("trusted attribute: %q %v", x, err)
	}
}

func TestApplyReplaces(t *testing.T) {
	resolvers(t, func(t *testing.T, opts ...ApplyOpt) {
		root := t.TempDir()
		apply(t, root, mkTar(t,
			fileEnt("a", 0o644, "a file"),
			dirEnt("d", 0o755), fileEnt("d/f", 0o644, "in d"),
			symlinkEnt("s", "/etc/passwd"),
			dirEnt("keep", 0o755), fileEnt("keep/child", 0o644, "stays"),
			fileEnt("hl", 0o644, "linked"), hardlinkEnt("hl2", "hl"),
		), opts...)
		apply(t, root, mkTar(t,
			dirEnt("a", 0o700), fileEnt("a/inside", 0o644, "a is a directory now"),
			fileEnt("d", 0o600, "d is a file now"),
			fileEnt("s", 0o644, "not written through the link"),
			dirEnt("keep", 0o711),
			fileEnt("hl", 0o644, "new file, the old link keeps the old data"),
		), opts...)
		if got := readFile(t, filepath.Join(root, "a/inside")); got != "a is a directory now" {
			t.Errorf("a/inside: %q", got)
		}
		if got := readFile(t, filepath.Join(root, "d")); got != "d is a file now" {
			t.Errorf("d: %q", got)
		}
		if fi, err := os.Lstat(filepath.Join(root, "s")); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("s should be a regular file now: %v %v", fi, err)
		}
		if got := readFile(t, filepath.Join(root, "keep/child")); got != "stays" {
			t.Errorf("keep/child: %q", got)
		}
		if fi, _ := os.Stat(filepath.Join(root, "keep")); fi.Mode().Perm() != 0o711 {
			t.Errorf("keep: mode %v, want 0711", fi.Mode())
		}
		if got := readFile(t, filepath.Join(root, "hl2")); got != "linked" {
			t.Errorf("hl2 was written through its link: %q", got)
		}
		// And back: a directory replaced by a file replaced by a directory.
		apply(t, root, mkTar(t, fileEnt("a", 0o644, "file again")), opts...)
		apply(t, root, mkTar(t, dirEnt("a", 0o755), fileEnt("a/again", 0o644, "x")), opts...)
		if exists(filepath.Join(root, "a/inside")) || !exists(filepath.Join(root, "a/again")) {
			t.Error("directory to file to directory left the wrong contents")
		}
	})
}

// whiteoutLayers are two layers whose second deletes from the first in
// every way the OCI rules allow.
func whiteoutLayers(t testing.TB) [][]byte {
	l1 := mkTar(t,
		dirEnt("etc", 0o755), fileEnt("etc/a", 0o644, "a"), fileEnt("etc/b", 0o644, "b"),
		dirEnt("gone", 0o755), fileEnt("gone/x", 0o644, "x"),
		dirEnt("opq", 0o750), fileEnt("opq/old", 0o644, "old"), fileEnt("opq/-old", 0o644, "-old"),
		dirEnt("opq/-dir", 0o700), fileEnt("opq/-dir/old", 0o644, "old"),
		dirEnt("opq/sub", 0o755), fileEnt("opq/sub/old", 0o644, "old"),
		fileEnt("keep", 0o644, "keep"),
		dirEnt("swap", 0o755), fileEnt("swap/inside", 0o644, "dir"),
	)
	l2 := mkTar(t,
		dirEnt("etc", 0o755),
		fileEnt("etc/c", 0o644, "written before its whiteout, so it stays"),
		whiteoutEnt("etc", "a"),
		whiteoutEnt("etc", "c"),
		whiteoutEnt("", "gone"),
		whiteoutEnt("", "never-existed"),
		whiteoutEnt("no/such/dir", "x"),
		dirEnt("opq", 0o750),
		fileEnt("opq/-new", 0o644, "sorts before the opaque marker"),
		fileEnt("opq/-dir/x", 0o644, "inside a lower directory, before the marker"),
		opaqueEnt("opq"),
		fileEnt("opq/new", 0o644, "after the marker"),
		fileEnt("opq/sub/new2", 0o644, "in a directory the marker removed"),
		fileEnt("swap", 0o644, "file"),
	)
	l3 := mkTar(t, dirEnt("swap", 0o755), fileEnt("swap/again", 0o644, "dir again"))
	return [][]byte{l1, l2, l3}
}

func TestApplyWhiteouts(t *testing.T) {
	resolvers(t, func(t *testing.T, opts ...ApplyOpt) {
		root := t.TempDir()
		for _, l := range whiteoutLayers(t) {
			apply(t, root, l, opts...)
		}
		want := []string{
			"etc", "etc/b", "etc/c", "keep",
			"opq", "opq/-new", "opq/-dir", "opq/-dir/x", "opq/new", "opq/sub", "opq/sub/new2",
			"swap", "swap/again",
		}
		got := treeState(t, root)
		if len(got) != len(want) {
			t.Errorf("tree holds %d entries, want %d: %v", len(got), len(want), got)
		}
		for _, p := range want {
			if _, ok := got[p]; !ok {
				t.Errorf("%s is missing", p)
			}
		}
	})
}

func TestApplyRefusesBadWhiteouts(t *testing.T) {
	for _, name := range []string{".wh..", ".wh...", "d/.wh."} {
		root := t.TempDir()
		_, err := Apply(context.Background(), root, bytes.NewReader(mkTar(t, dirEnt("d", 0o755), fileEnt(name, 0o644, ""))))
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), name) {
			t.Errorf("whiteout %q: got %v, want an invalid-argument error naming it", name, err)
		}
		if !exists(filepath.Join(root, "d")) {
			t.Errorf("whiteout %q removed the directory", name)
		}
	}
}

// overlayStack applies layers as the overlay snapshotter does, each
// straight into its own upper directory over the ones before, and returns
// the upper directories, bottom first.
func overlayStack(t *testing.T, layers [][]byte, opts ...ApplyOpt) []string {
	t.Helper()
	var uppers []string
	for _, l := range layers {
		upper := t.TempDir()
		var parents []string
		for i := len(uppers) - 1; i >= 0; i-- {
			parents = append(parents, uppers[i])
		}
		apply(t, upper, l, append([]ApplyOpt{WithOverlayWhiteouts(), WithParents(parents)}, opts...)...)
		uppers = append(uppers, upper)
	}
	return uppers
}

// mountOverlay mounts the directories (bottom first) read-only and returns
// the mount point, unmounted when the test ends.
func mountOverlay(t *testing.T, dirs []string) string {
	t.Helper()
	var lowers []string
	for i := len(dirs) - 1; i >= 0; i-- {
		lowers = append(lowers, dirs[i])
	}
	if len(lowers) == 1 {
		lowers = append(lowers, t.TempDir()) // overlay needs two lowers without an upper
	}
	target := t.TempDir()
	m := mount.Mount{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + strings.Join(lowers, ":")}}
	if err := mount.All([]mount.Mount{m}, target); err != nil {
		t.Fatalf("mounting overlay: %v", err)
	}
	t.Cleanup(func() {
		if err := mount.UnmountAll(target); err != nil {
			t.Errorf("unmounting %s: %v", target, err)
		}
	})
	return target
}

func TestApplyOverlayWhiteouts(t *testing.T) {
	needRoot(t)
	layers := whiteoutLayers(t)
	resolvers(t, func(t *testing.T, opts ...ApplyOpt) {
		uppers := overlayStack(t, layers, opts...)
		upper := uppers[1]
		for _, p := range []string{"etc/a", "gone"} {
			st := lstat(t, filepath.Join(upper, p))
			if !isWhiteoutDevice(st) {
				t.Errorf("%s is not an overlay whiteout: mode %o rdev %d", p, st.Mode, st.Rdev)
			}
		}
		if exists(filepath.Join(upper, "etc/c")) == false {
			t.Error("etc/c, written before its whiteout, is gone")
		}
		if exists(filepath.Join(upper, "never-existed")) == false {
			t.Error("whiteouts are written whether or not a lower layer has the name")
		}
		if x, _ := unix.Lgetxattr(filepath.Join(upper, "opq"), overlayOpaqueXattr, make([]byte, 8)); x != 1 {
			t.Error("opq is not marked opaque")
		}
		// -dir was copied up from the lower layer with its mode.
		if fi, err := os.Stat(filepath.Join(upper, "opq/-dir")); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("copied-up opq/-dir: %v %v", fi, err)
		}

		// The merged view equals the tree that deleting whiteouts make.
		plain := t.TempDir()
		for _, l := range layers {
			apply(t, plain, l, opts...)
		}
		merged := mountOverlay(t, uppers)
		if d := diffStates(treeState(t, plain), treeState(t, merged)); d != "" {
			t.Errorf("overlay view differs from the plain tree:\n%s", d)
		}
	})
}

func TestApplyHardlinkAcrossLayers(t *testing.T) {
	l1 := mkTar(t, dirEnt("data", 0o711), fileEnt("data/a", 0o640, "shared"), hardlinkEnt("data/b", "data/a"),
		dirEnt("hidden", 0o755), fileEnt("hidden/f", 0o644, "f"))
	l2 := mkTar(t, dirEnt("data2", 0o755), hardlinkEnt("data2/link", "data/a"), whiteoutEnt("", "hidden"))
	t.Run("plain", func(t *testing.T) {
		root := t.TempDir()
		apply(t, root, l1)
		apply(t, root, l2)
		a, link := lstat(t, filepath.Join(root, "data/a")), lstat(t, filepath.Join(root, "data2/link"))
		if a.Ino != link.Ino {
			t.Error("data2/link is not linked to data/a")
		}
	})
	t.Run("overlay copy-up", func(t *testing.T) {
		lower, upper := t.TempDir(), t.TempDir()
		apply(t, lower, l1)
		// Hard links only; no whiteouts, so this runs as any user.
		apply(t, upper, mkTar(t, hardlinkEnt("data2/link", "data/a")), WithOverlayWhiteouts(), WithParents([]string{lower}))
		a, link := lstat(t, filepath.Join(upper, "data/a")), lstat(t, filepath.Join(upper, "data2/link"))
		if a.Ino != link.Ino {
			t.Errorf("data2/link is not linked to the copied-up data/a: %d/%d, %d links", a.Ino, link.Ino, a.Nlink)
		}
		// The lower file's other name is linked to the copy too, so the
		// merged view keeps one file with three names, as a plain tree.
		if b := lstat(t, filepath.Join(upper, "data/b")); b.Ino != a.Ino || a.Nlink != 3 {
			t.Errorf("data/b is not linked to the copied-up data/a: %d/%d, %d links", a.Ino, b.Ino, a.Nlink)
		}
		if got := readFile(t, filepath.Join(upper, "data/a")); got != "shared" {
			t.Errorf("copied-up data/a holds %q", got)
		}
		if fi, _ := os.Stat(filepath.Join(upper, "data")); fi.Mode().Perm() != 0o711 {
			t.Errorf("copied-up data has mode %v, want the lower 0711", fi.Mode())
		}
		if fi, _ := os.Stat(filepath.Join(upper, "data/a")); fi.Mode().Perm() != 0o640 {
			t.Errorf("copied-up data/a has mode %v, want the lower 0640", fi.Mode())
		}
		if st := lstat(t, filepath.Join(lower, "data/a")); st.Nlink != 2 {
			t.Error("the lower layer was linked to")
		}
	})
	t.Run("overlay target whited out", func(t *testing.T) {
		needRoot(t)
		uppers := overlayStack(t, [][]byte{l1, l2})
		var parents []string
		for i := len(uppers) - 1; i >= 0; i-- {
			parents = append(parents, uppers[i])
		}
		_, err := Apply(context.Background(), t.TempDir(), bytes.NewReader(mkTar(t, hardlinkEnt("x", "hidden/f"))),
			WithOverlayWhiteouts(), WithParents(parents))
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "hidden/f") {
			t.Errorf("link to a whited-out file: got %v", err)
		}
	})
}

func TestApplySizeCoversWholeStream(t *testing.T) {
	data := mkTar(t, fileEnt("f", 0o644, "x"))
	data = append(data, make([]byte, 4096)...) // padding some writers add
	root := t.TempDir()
	n, err := Apply(context.Background(), root, bytes.NewReader(data))
	if err != nil || n != int64(len(data)) {
		t.Fatalf("Apply read %d of %d bytes: %v", n, len(data), err)
	}
}

func TestApplyTruncatedTar(t *testing.T) {
	data := mkTar(t, fileEnt("f", 0o644, strings.Repeat("x", 5000)))
	_, err := Apply(context.Background(), t.TempDir(), bytes.NewReader(data[:2000]))
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("truncated tar: got %v, want an invalid-argument error", err)
	}
}

func TestApplyCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Apply(ctx, t.TempDir(), bytes.NewReader(mkTar(t, fileEnt("f", 0o644, "x"))))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestApplyDirectoryTimesLastEntryWins(t *testing.T) {
	first, second := dirEnt("d", 0o755), dirEnt("d", 0o700)
	first.hdr.ModTime = testTime.Add(-time.Hour)
	second.hdr.ModTime = testTime.Add(time.Hour)
	root := t.TempDir()
	apply(t, root, mkTar(t, first, fileEnt("d/x", 0o644, "x"), second))
	st := lstat(t, filepath.Join(root, "d"))
	if st.Mtim.Sec != second.hdr.ModTime.Unix() || st.Mode&0o777 != 0o700 {
		t.Errorf("d: mtime %d mode %o, want the last entry's %d and 0700", st.Mtim.Sec, st.Mode&0o777, second.hdr.ModTime.Unix())
	}
}
