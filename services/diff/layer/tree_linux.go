package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/internal/errdefs"
)

// PathInfo is what a path names inside a root.
type PathInfo struct {
	// Path is the path relative to the root, after the last symbolic link
	// was followed when Stat was asked to; "" is the root.
	Path string
	// Exists says whether anything is there; the fields below are zero
	// when not.
	Exists  bool
	IsDir   bool
	Symlink bool // Path itself is a symbolic link (never with follow)
	// Size is the size in bytes of a regular file.
	Size int64
}

// openTree opens root for lookups that stay inside it.
func openTree(root string) (*tree, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening root %s: %w", root, err)
	}
	return &tree{root: fd, openat2: hasOpenat2(fd)}, nil
}

// Stat looks up p inside root, resolving symbolic links on the way as if
// root were "/" (openat2 RESOLVE_IN_ROOT where the kernel has it), so that
// no link leads out of root. With follow, a symbolic link that p itself
// names is followed too, inside root. A missing parent directory is an
// error that matches errdefs.ErrNotFound; a missing last component is not.
func Stat(root, p string, follow bool) (PathInfo, error) {
	t, err := openTree(root)
	if err != nil {
		return PathInfo{}, err
	}
	defer unix.Close(t.root)
	return t.stat(p, follow)
}

func (t *tree) stat(p string, follow bool) (PathInfo, error) {
	rel := inRoot(p)
	for range maxSymlinks {
		if rel == "" {
			return PathInfo{Exists: true, IsDir: true}, nil
		}
		dir, base := splitName(rel)
		parent, err := t.openDir(dir, mustExist)
		if err != nil {
			if errors.Is(err, errNotExist) {
				return PathInfo{Path: rel}, errdefs.Errorf(errdefs.ErrNotFound, "directory %q does not exist", "/"+dir)
			}
			return PathInfo{Path: rel}, err
		}
		var st unix.Stat_t
		err = unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err != nil {
			unix.Close(parent)
			if errors.Is(err, unix.ENOENT) {
				return PathInfo{Path: rel}, nil
			}
			return PathInfo{Path: rel}, fmt.Errorf("looking at %q: %w", "/"+rel, err)
		}
		if fileType(&st) != unix.S_IFLNK || !follow {
			unix.Close(parent)
			info := PathInfo{Path: rel, Exists: true, IsDir: isDir(&st), Symlink: fileType(&st) == unix.S_IFLNK}
			if fileType(&st) == unix.S_IFREG {
				info.Size = st.Size
			}
			return info, nil
		}
		target, err := readlinkat(parent, base)
		unix.Close(parent)
		if err != nil {
			return PathInfo{Path: rel}, fmt.Errorf("reading link %q: %w", "/"+rel, err)
		}
		if !strings.HasPrefix(target, "/") {
			target = path.Join(dir, target)
		}
		rel = inRoot(target)
	}
	return PathInfo{Path: rel}, errdefs.Errorf(errdefs.ErrInvalidArgument, "%q: too many levels of symbolic links", p)
}

// inRoot turns p into a path relative to a root: "/" and ".." at the top
// stay at the root, as they do in a chroot.
func inRoot(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

// WriteTree writes to w, as a tar, what p names inside root: a file, or a
// directory with all it holds. Entries are named under name ("etc/passwd"
// for p "/etc/passwd" and name "passwd"); with name "", a directory's
// contents are written with names relative to it. p is resolved as Stat
// does, without following a last symbolic link: the caller resolves one it
// wants followed with Stat first. The walk below p never follows symbolic
// links and does not write sockets; owners are numeric, files linked
// together are written as hard links to the first of their paths.
func WriteTree(ctx context.Context, w io.Writer, root, p, name string) error {
	t, err := openTree(root)
	if err != nil {
		return err
	}
	defer unix.Close(t.root)
	rel := inRoot(p)
	dir, base := splitName(rel)
	if rel == "" {
		base = "."
	}
	parent, err := t.openDir(dir, mustExist)
	if err != nil {
		if errors.Is(err, errNotExist) {
			return errdefs.Errorf(errdefs.ErrNotFound, "directory %q does not exist", "/"+dir)
		}
		return err
	}
	defer unix.Close(parent)
	e := dirEntry{name: base}
	if err := unix.Fstatat(parent, base, &e.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return errdefs.Errorf(errdefs.ErrNotFound, "%q does not exist", "/"+rel)
		}
		return fmt.Errorf("looking at %q: %w", "/"+rel, err)
	}
	d := &differ{
		ctx:   ctx,
		tw:    tar.NewWriter(w),
		links: map[fileID]*linkInfo{},
		buf:   make([]byte, 1<<20),
	}
	name = strings.Trim(path.Clean("/"+name), "/")
	if name != "" || !isDir(&e.st) {
		if name == "" {
			name = path.Base("/" + rel)
		}
		err = d.addTree(parent, &e, name)
	} else {
		err = d.addContents(parent, &e)
	}
	if err != nil {
		return err
	}
	return d.tw.Close()
}

// addContents writes what the directory e of dirfd holds, named relative
// to it.
func (d *differ) addContents(dirfd int, e *dirEntry) error {
	sub, err := openSubdir(dirfd, e.name)
	if err != nil {
		return err
	}
	defer unix.Close(sub)
	children, err := listDir(sub, "")
	if err != nil {
		return err
	}
	for i := range children {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		if err := d.addTree(sub, &children[i], children[i].name); err != nil {
			return err
		}
	}
	return nil
}
