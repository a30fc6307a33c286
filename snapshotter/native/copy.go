package native

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

type inode struct{ dev, ino uint64 }

// copier copies a tree as it is: owners, modes (setuid included), times,
// extended attributes, hard links, symbolic links, devices, fifos and
// sockets.
type copier struct {
	// links maps each multiply-linked inode copied so far to its copy.
	links map[inode]string
	// noReflink is set once the filesystem has refused to clone a file.
	noReflink bool
}

// copyTree copies the folder src to dst, which must not exist.
func copyTree(ctx context.Context, dst, src string) error {
	c := &copier{links: map[inode]string{}}
	st, err := lstat(src)
	if err != nil {
		return err
	}
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	if err := c.copyDir(ctx, dst, src); err != nil {
		return err
	}
	return copyMetadata(dst, src, st)
}

func lstat(path string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	return &st, nil
}

// copyDir copies the entries of the folder src into the folder dst.
func (c *copier) copyDir(ctx context.Context, dst, src string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		s, d := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		st, err := lstat(s)
		if err != nil {
			return err
		}
		if err := c.copyEntry(ctx, d, s, st); err != nil {
			return err
		}
	}
	return nil
}

func (c *copier) copyEntry(ctx context.Context, dst, src string, st *unix.Stat_t) error {
	typ := st.Mode & unix.S_IFMT
	if typ != unix.S_IFDIR && st.Nlink > 1 {
		in := inode{uint64(st.Dev), st.Ino}
		if first, ok := c.links[in]; ok {
			return os.Link(first, dst)
		}
		c.links[in] = dst
	}
	switch typ {
	case unix.S_IFDIR:
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		if err := c.copyDir(ctx, dst, src); err != nil {
			return err
		}
	case unix.S_IFREG:
		if err := c.copyFile(dst, src); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
		if err := unix.Mknod(dst, st.Mode, int(st.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: dst, Err: err}
		}
	default:
		return fmt.Errorf("%s: unknown file type %#o", src, typ)
	}
	return copyMetadata(dst, src, st)
}

// copyFile copies the content of the regular file src to dst, sharing the
// blocks when the filesystem can (a reflink), with copy_file_range
// otherwise (which io.Copy uses between files).
func (c *copier) copyFile(dst, src string) (retErr error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err := out.Close(); err != nil && retErr == nil {
			retErr = err
		}
	}()
	if !c.noReflink {
		err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd()))
		if err == nil {
			return nil
		}
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) {
			c.noReflink = true
		}
	}
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return nil
}

// copyMetadata gives dst the owner, extended attributes, mode and times of
// src, in that order: a chown clears setuid bits and file capabilities,
// and every change but the times moves the change time.
func copyMetadata(dst, src string, st *unix.Stat_t) error {
	if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if err := copyXattrs(dst, src); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Chmod(dst, st.Mode&07777); err != nil {
			return &os.PathError{Op: "chmod", Path: dst, Err: err}
		}
	}
	times := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, times, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimensat", Path: dst, Err: err}
	}
	return nil
}

func copyXattrs(dst, src string) error {
	names, err := listXattrs(src)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return &os.PathError{Op: "llistxattr", Path: src, Err: err}
	}
	for _, name := range names {
		value, err := getXattr(src, name)
		if err != nil {
			return &os.PathError{Op: "lgetxattr " + name, Path: src, Err: err}
		}
		if err := unix.Lsetxattr(dst, name, value, 0); err != nil {
			return &os.PathError{Op: "lsetxattr " + name, Path: dst, Err: err}
		}
	}
	return nil
}

// listXattrs returns the names of path's extended attributes.
func listXattrs(path string) ([]string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Llistxattr(path, buf)
		if errors.Is(err, unix.ERANGE) {
			if n, err = unix.Llistxattr(path, nil); err != nil {
				return nil, err
			}
			buf = make([]byte, n)
			continue
		}
		if err != nil {
			return nil, err
		}
		var names []string
		for _, b := range splitNul(buf[:n]) {
			names = append(names, string(b))
		}
		return names, nil
	}
}

func splitNul(b []byte) [][]byte {
	var parts [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != 0 {
			i++
		}
		if i > 0 {
			parts = append(parts, b[:i])
		}
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return parts
}

func getXattr(path, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(path, name, buf)
		if errors.Is(err, unix.ERANGE) {
			if n, err = unix.Lgetxattr(path, name, nil); err != nil {
				return nil, err
			}
			buf = make([]byte, n)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
