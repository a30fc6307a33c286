package native

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/snapshotter/snapshots"
	"github.com/berth-engine/berth/snapshotter/snapshots/testsuite"
)

func TestConformance(t *testing.T) {
	testsuite.Run(t, func(t *testing.T, root string) snapshots.Snapshotter {
		n, err := New(root)
		if err != nil {
			t.Fatal(err)
		}
		return n
	})
}

// TestPrepareCopiesParent checks, without mounting, that an active
// snapshot starts as a copy of its parent and a view uses the parent as is.
func TestPrepareCopiesParent(t *testing.T) {
	n, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx := context.Background()
	m, err := n.Prepare(ctx, "base-active", "")
	if err != nil {
		t.Fatal(err)
	}
	base := m[0].Source
	if err := os.WriteFile(filepath.Join(base, "f"), []byte("parent"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.Commit(ctx, "base", "base-active"); err != nil {
		t.Fatal(err)
	}
	m, err = n.Prepare(ctx, "child", "base")
	if err != nil {
		t.Fatal(err)
	}
	child := m[0].Source
	if child == base {
		t.Fatal("the child shares its parent's folder")
	}
	if err := os.WriteFile(filepath.Join(child, "f"), []byte("child"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(base, "f")); string(b) != "parent" {
		t.Fatalf("writing into the child changed the parent: %q", b)
	}
	m, err = n.View(ctx, "view", "base")
	if err != nil {
		t.Fatal(err)
	}
	if m[0].Source != base || m[0].Options[0] != "ro" {
		t.Fatalf("view of base: %+v, want a read-only bind of %s", m, base)
	}
}

// TestCopyTree copies a tree with every kind of entry that does not need
// root, and compares.
func TestCopyTree(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	past := time.Date(2021, 3, 4, 5, 6, 7, 890, time.UTC)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "a", "b"), 0o755))
	must(os.WriteFile(filepath.Join(src, "a", "b", "file"), []byte("content"), 0o640))
	must(os.Link(filepath.Join(src, "a", "b", "file"), filepath.Join(src, "link-elsewhere")))
	must(os.Symlink("a/b/file", filepath.Join(src, "sym")))
	must(os.Symlink("/absolute/dangling", filepath.Join(src, "dangling")))
	must(unix.Mkfifo(filepath.Join(src, "fifo"), 0o600))
	must(os.WriteFile(filepath.Join(src, "exec"), []byte("#!/bin/sh\n"), 0o755))
	must(os.Chmod(filepath.Join(src, "exec"), 0o2755|os.ModeSetgid))
	must(os.Chmod(filepath.Join(src, "a"), 0o1777|os.ModeSticky))
	xattrs := unix.Setxattr(filepath.Join(src, "exec"), "user.berth", []byte("v"), 0) == nil
	must(os.Chtimes(filepath.Join(src, "a", "b", "file"), past, past))
	must(os.Chtimes(filepath.Join(src, "a", "b"), past, past))
	must(unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(src, "sym"), []unix.Timespec{unix.NsecToTimespec(past.UnixNano()), unix.NsecToTimespec(past.UnixNano())}, unix.AT_SYMLINK_NOFOLLOW))
	must(os.Chmod(src, 0o711))
	must(os.Chtimes(src, past, past))

	dst := filepath.Join(t.TempDir(), "dst")
	if err := copyTree(context.Background(), dst, src); err != nil {
		t.Fatal(err)
	}
	err := filepath.Walk(src, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		cp := filepath.Join(dst, rel)
		var s, d unix.Stat_t
		must(unix.Lstat(path, &s))
		if err := unix.Lstat(cp, &d); err != nil {
			t.Errorf("%s not copied: %v", rel, err)
			return nil
		}
		if s.Mode != d.Mode || s.Uid != d.Uid || s.Gid != d.Gid || s.Size != d.Size || s.Nlink != d.Nlink || s.Mtim != d.Mtim {
			t.Errorf("%s: copy differs: mode %#o/%#o owner %d:%d/%d:%d size %d/%d links %d/%d mtime %v/%v",
				rel, s.Mode, d.Mode, s.Uid, s.Gid, d.Uid, d.Gid, s.Size, d.Size, s.Nlink, d.Nlink, s.Mtim, d.Mtim)
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			a, _ := os.Readlink(path)
			b, _ := os.Readlink(cp)
			if a != b {
				t.Errorf("%s: link target %q, want %q", rel, b, a)
			}
		case fi.Mode().IsRegular():
			a, _ := os.ReadFile(path)
			b, _ := os.ReadFile(cp)
			if string(a) != string(b) {
				t.Errorf("%s: content %q, want %q", rel, b, a)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var file, link unix.Stat_t
	must(unix.Stat(filepath.Join(dst, "a", "b", "file"), &file))
	must(unix.Stat(filepath.Join(dst, "link-elsewhere"), &link))
	if file.Ino != link.Ino {
		t.Error("the hard link became two files")
	}
	if xattrs {
		buf := make([]byte, 8)
		if n, err := unix.Getxattr(filepath.Join(dst, "exec"), "user.berth", buf); err != nil || string(buf[:n]) != "v" {
			t.Errorf("xattr: %q, %v", buf[:max(n, 0)], err)
		}
	}
}

func TestCopyWithoutReflink(t *testing.T) {
	src := t.TempDir()
	data := make([]byte, 3<<20+17)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(filepath.Join(src, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	c := &copier{links: map[inode]string{}, noReflink: true}
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.copyDir(context.Background(), dst, src); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dst, "big"))
	if err != nil || string(got) != string(data) {
		t.Fatalf("copy of %d bytes: %d bytes, equal %v, %v", len(data), len(got), string(got) == string(data), err)
	}
}
