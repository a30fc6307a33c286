package layer

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// node names a file by a directory descriptor and a name in it, or, with an
// empty name, the file of the descriptor itself. Symbolic links are never
// followed.
type node struct {
	dir  int
	name string
}

// fdPath is the /proc path of a descriptor; the kernel resolves it to the
// very file of the descriptor, which lets calls that have no *at form (the
// xattr calls) or refuse O_PATH descriptors (chmod) reach it.
func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// xattrPath is a path for the l*xattr calls: their last component is not
// followed, and the /proc part resolves to the directory descriptor itself.
func (n node) xattrPath() string {
	if n.name == "" {
		return fdPath(n.dir)
	}
	return fdPath(n.dir) + "/" + n.name
}

func (n node) lchown(uid, gid int) error {
	if n.name == "" {
		return unix.Fchownat(n.dir, "", uid, gid, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
	}
	return unix.Fchownat(n.dir, n.name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
}

// chmod changes the mode of a node that is not a symbolic link.
func (n node) chmod(mode uint32) error {
	if n.name != "" {
		return unix.Fchmodat(n.dir, n.name, mode, 0)
	}
	err := unix.Fchmodat(n.dir, "", mode, unix.AT_EMPTY_PATH)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) {
		// Kernels before 6.6 lack fchmodat2.
		return unix.Chmod(fdPath(n.dir), mode)
	}
	return err
}

func (n node) setXattr(key string, value []byte) error {
	if n.name == "" {
		return unix.Setxattr(n.xattrPath(), key, value, 0)
	}
	return unix.Lsetxattr(n.xattrPath(), key, value, 0)
}

func (n node) utimes(atime, mtime unix.Timespec) error {
	if n.name == "" {
		return unix.UtimesNanoAt(unix.AT_FDCWD, fdPath(n.dir), []unix.Timespec{atime, mtime}, 0)
	}
	return unix.UtimesNanoAt(n.dir, n.name, []unix.Timespec{atime, mtime}, unix.AT_SYMLINK_NOFOLLOW)
}

// xattrs reads the extended attributes of the node, without those that
// overlayfs interprets.
func (n node) xattrs() (map[string][]byte, error) {
	all, err := n.allXattrs()
	for key := range all {
		if isOverlayXattr(key) {
			delete(all, key)
		}
	}
	return all, err
}

// allXattrs reads all extended attributes of the node.
func (n node) allXattrs() (map[string][]byte, error) {
	p := n.xattrPath()
	list, get := unix.Llistxattr, unix.Lgetxattr
	if n.name == "" {
		list, get = unix.Listxattr, unix.Getxattr
	}
	names, err := readXattrList(func(b []byte) (int, error) { return list(p, b) })
	if err != nil || len(names) == 0 {
		return nil, err
	}
	out := map[string][]byte{}
	for _, key := range names {
		v, err := readXattrValue(func(b []byte) (int, error) { return get(p, key, b) })
		if errors.Is(err, unix.ENODATA) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("reading extended attribute %q: %w", key, err)
		}
		out[key] = v
	}
	return out, nil
}

// readXattrList calls list with a growing buffer and splits the names.
func readXattrList(list func([]byte) (int, error)) ([]string, error) {
	buf, err := readXattrValue(list)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing extended attributes: %w", err)
	}
	var names []string
	start := 0
	for i, b := range buf {
		if b == 0 {
			if i > start {
				names = append(names, string(buf[start:i]))
			}
			start = i + 1
		}
	}
	sort.Strings(names)
	return names, nil
}

// readXattrValue calls get with a buffer large enough for its result.
func readXattrValue(get func([]byte) (int, error)) ([]byte, error) {
	for size := 256; size <= 1<<20; size *= 4 {
		buf := make([]byte, size)
		n, err := get(buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
	return nil, unix.E2BIG
}

// isOpaque reports whether the directory of fd is an opaque overlay
// directory.
func isOpaque(fd int) bool {
	buf := make([]byte, 2)
	n, err := unix.Getxattr(fdPath(fd), overlayOpaqueXattr, buf)
	return err == nil && n == 1 && buf[0] == 'y'
}

// setOpaque marks the directory of fd opaque for overlayfs.
func setOpaque(fd int) error {
	if err := unix.Setxattr(fdPath(fd), overlayOpaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("marking the directory opaque with %s (needs root): %w", overlayOpaqueXattr, err)
	}
	return nil
}

// copyAttrs gives the file dst the owner, mode and extended attributes of
// src, whose stat is st; both are O_PATH descriptors of the same kind of
// file, not symbolic links.
func copyAttrs(src, dst int, st *unix.Stat_t) error {
	if unix.Geteuid() == 0 {
		if err := (node{dir: dst}).lchown(int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("changing owner: %w", err)
		}
	}
	if err := (node{dir: dst}).chmod(st.Mode & 0o7777); err != nil {
		return fmt.Errorf("changing mode: %w", err)
	}
	xattrs, err := node{dir: src}.xattrs()
	if err != nil {
		return err
	}
	for _, key := range sortedKeys(xattrs) {
		if err := (node{dir: dst}).setXattr(key, xattrs[key]); err != nil {
			return fmt.Errorf("setting extended attribute %q: %w", key, err)
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}
