package layer

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/internal/errdefs"
)

// maxSymlinks is how many symbolic links one resolution follows, as the
// kernel's MAXSYMLINKS.
const maxSymlinks = 40

// errNotExist marks a path that does not exist where a lookup must not
// create it.
var errNotExist = errors.New("does not exist")

// openMode says what openDir does with directories that the root lacks.
type openMode int

const (
	// mustExist finds directories of the merged view, copying up those
	// that only a lower layer holds.
	mustExist openMode = iota
	// createMissing also makes the directories that do not exist at all.
	createMissing
	// upperOnly finds directories that the writable root itself holds.
	upperOnly
)

// cleanName turns a tar entry name into a path relative to the root: a
// leading "/" is dropped, "." and ".." are resolved lexically, and a name
// that climbs above the root is refused. The root itself is "".
func cleanName(name string) (string, error) {
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", errdefs.Errorf(errdefs.ErrInvalidArgument, "path %q climbs out of the root with \"..\"", name)
	}
	if p == "." {
		return "", nil
	}
	return p, nil
}

// splitPath splits a slash-separated path into its components, dropping
// empty ones.
func splitPath(p string) []string {
	return strings.FieldsFunc(p, func(r rune) bool { return r == '/' })
}

// tree is the directory that Apply writes to, and the overlay lower layers
// it reads through when it is an overlay upper directory.
type tree struct {
	root    int   // O_PATH descriptor of the writable root
	lowers  []int // O_PATH descriptors of the lower roots, topmost first
	overlay bool  // whiteouts and opaque directories are overlay markers
	openat2 bool  // the kernel has openat2 and we may use it

	// copiedUp is called for each directory that materialize copies up
	// from a lower layer, with its path and lower attributes.
	copiedUp func(rel string, st *unix.Stat_t)
}

// hasOpenat2 reports whether openat2 works here: kernels before 5.6 lack
// it, and some seccomp profiles refuse it with EPERM.
func hasOpenat2(dirfd int) bool {
	fd, err := unix.Openat2(dirfd, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// openDir returns an O_PATH descriptor of the directory rel of the root,
// resolving symbolic links as if the root were "/" and, for an overlay
// upper directory, through the lower layers as overlayfs would. The mode
// says whether directories that only a lower layer holds are copied up and
// whether missing ones are made (mode 0755); a missing directory otherwise
// gives an error that matches errNotExist.
func (t *tree) openDir(rel string, mode openMode) (int, error) {
	if t.openat2 {
		resolve := uint64(unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS)
		if len(t.lowers) > 0 {
			// A symbolic link in the upper directory may point into a
			// lower layer; only the walk below follows those right.
			resolve |= unix.RESOLVE_NO_SYMLINKS
		}
		name := rel
		if name == "" {
			name = "."
		}
		for range 8 {
			fd, err := unix.Openat2(t.root, name, &unix.OpenHow{
				Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
				Resolve: resolve,
			})
			if err == nil {
				return fd, nil
			}
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue // a rename raced with the lookup: the kernel asks to retry
			}
			if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) && !errors.Is(err, unix.ELOOP) {
				return -1, fmt.Errorf("opening directory %q: %w", rel, err)
			}
			break
		}
	}
	levels, err := t.walk(rel)
	if err != nil {
		return -1, err
	}
	defer closeLevels(levels)
	return t.materialize(levels, mode)
}

// level is one directory of a path being walked: its name and its
// descriptors in each layer that merges there (index 0 is the writable
// root, then the lowers; -1 where the layer does not take part).
type level struct {
	name   string
	fds    []int
	exists bool // the directory exists in the merged view
	owned  bool // fds were opened by the walk and must be closed
}

func closeLevels(levels []level) {
	for _, l := range levels {
		closeLevel(l)
	}
}

func closeLevel(l level) {
	if !l.owned {
		return
	}
	for _, fd := range l.fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

func (t *tree) rootLevel() level {
	return level{fds: append([]int{t.root}, t.lowers...), exists: true}
}

// kind is what a name is in the merged view.
type kind int

const (
	kindNone kind = iota
	kindDir
	kindSymlink
	kindOther
)

// isWhiteoutDevice reports whether st is an overlay whiteout: a character
// device 0/0.
func isWhiteoutDevice(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// lookup finds name in the directory l as overlayfs would: the topmost
// layer that has it decides what it is; a whiteout hides it; a directory
// merges with the directories of the same name below it until a layer has
// a non-directory there or marks its directory opaque. For a directory it
// returns the next level; for a symbolic link or other file, the index of
// the layer that holds it.
func (t *tree) lookup(l level, name string) (kind, level, int, error) {
	next := level{name: name, fds: make([]int, len(l.fds)), owned: true}
	for i := range next.fds {
		next.fds[i] = -1
	}
	found := kindNone
	for i, fd := range l.fds {
		if fd < 0 {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			closeLevel(next)
			return kindNone, level{}, -1, fmt.Errorf("looking up %q: %w", name, err)
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if found == kindNone {
			switch {
			case t.overlay && isWhiteoutDevice(&st):
				closeLevel(next)
				return kindNone, level{}, i, nil
			case st.Mode&unix.S_IFMT == unix.S_IFLNK:
				closeLevel(next)
				return kindSymlink, level{}, i, nil
			case !isDir:
				closeLevel(next)
				return kindOther, level{}, i, nil
			}
			found = kindDir
		} else if !isDir {
			break // a non-directory ends the merge
		}
		dfd, err := unix.Openat(fd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			closeLevel(next)
			return kindNone, level{}, -1, fmt.Errorf("opening directory %q: %w", name, err)
		}
		next.fds[i] = dfd
		if t.overlay && isOpaque(dfd) {
			break
		}
	}
	next.exists = found == kindDir
	if found == kindNone {
		closeLevel(next)
		return kindNone, level{}, -1, nil
	}
	return found, next, -1, nil
}

// walk resolves rel component by component, following symbolic links as if
// the root were "/" ("/" and ".." never leave it). It returns the levels of
// the resolved path, root first; components that do not exist get levels
// without descriptors. The caller closes the levels.
func (t *tree) walk(rel string) ([]level, error) {
	levels := []level{t.rootLevel()}
	comps := splitPath(rel)
	links := 0
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		switch c {
		case ".":
			continue
		case "..":
			if len(levels) > 1 {
				closeLevel(levels[len(levels)-1])
				levels = levels[:len(levels)-1]
			}
			continue
		}
		top := levels[len(levels)-1]
		if !top.exists {
			levels = append(levels, level{name: c})
			continue
		}
		k, next, layer, err := t.lookup(top, c)
		if err != nil {
			closeLevels(levels)
			return nil, err
		}
		switch k {
		case kindNone:
			levels = append(levels, level{name: c})
		case kindDir:
			levels = append(levels, next)
		case kindOther:
			p := levelPath(levels, c)
			closeLevels(levels)
			return nil, fmt.Errorf("%q is not a directory: %w", p, unix.ENOTDIR)
		case kindSymlink:
			links++
			if links > maxSymlinks {
				closeLevels(levels)
				return nil, fmt.Errorf("resolving %q: more than %d symbolic links: %w", rel, maxSymlinks, unix.ELOOP)
			}
			target, err := readlinkat(top.fds[layer], c)
			if err != nil {
				closeLevels(levels)
				return nil, err
			}
			if strings.HasPrefix(target, "/") {
				closeLevels(levels[1:])
				levels = levels[:1]
			}
			comps = append(splitPath(target), comps...)
		}
	}
	return levels, nil
}

func levelPath(levels []level, name string) string {
	var parts []string
	for _, l := range levels[1:] {
		parts = append(parts, l.name)
	}
	return path.Join(append(parts, name)...)
}

// materialize opens the walked directory in the writable root, copying up
// the directories that only lower layers hold and making those that do not
// exist at all, as mode allows.
func (t *tree) materialize(levels []level, mode openMode) (int, error) {
	cur, err := unix.Openat(t.root, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening root: %w", err)
	}
	for i := 1; i < len(levels); i++ {
		l := levels[i]
		if (!l.exists && mode != createMissing) || (mode == upperOnly && (len(l.fds) == 0 || l.fds[0] < 0)) {
			unix.Close(cur)
			return -1, fmt.Errorf("%q %w", levelPath(levels[:i], l.name), errNotExist)
		}
		next, err := t.openOrMakeDir(cur, levels[:i+1])
		unix.Close(cur)
		if err != nil {
			return -1, err
		}
		cur = next
	}
	return cur, nil
}

// openOrMakeDir opens the last of levels in the writable directory parent,
// making it when the root does not have it.
func (t *tree) openOrMakeDir(parent int, levels []level) (int, error) {
	l := levels[len(levels)-1]
	fd, err := unix.Openat(parent, l.name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		return fd, nil
	}
	p := levelPath(levels[:len(levels)-1], l.name)
	opaque := false
	switch {
	case errors.Is(err, unix.ENOENT):
	case errors.Is(err, unix.ENOTDIR) && t.overlay:
		// The walk saw no directory here, so this is a whiteout: the new
		// directory replaces what it deleted and must hide it too.
		var st unix.Stat_t
		if serr := unix.Fstatat(parent, l.name, &st, unix.AT_SYMLINK_NOFOLLOW); serr != nil || !isWhiteoutDevice(&st) {
			return -1, fmt.Errorf("%q is not a directory: %w", p, unix.ENOTDIR)
		}
		if err := unix.Unlinkat(parent, l.name, 0); err != nil {
			return -1, fmt.Errorf("removing whiteout %q: %w", p, err)
		}
		opaque = true
	default:
		return -1, fmt.Errorf("opening directory %q: %w", p, err)
	}
	if err := unix.Mkdirat(parent, l.name, 0o755); err != nil {
		return -1, fmt.Errorf("making directory %q: %w", p, err)
	}
	fd, err = unix.Openat(parent, l.name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening directory %q: %w", p, err)
	}
	if opaque {
		if err := setOpaque(fd); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("directory %q: %w", p, err)
		}
	}
	// A directory that a lower layer holds is copied up with its owner,
	// mode, attributes and times, so the merged view does not change.
	for i, lfd := range l.fds {
		if i == 0 || lfd < 0 {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstat(lfd, &st); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("reading lower directory %q: %w", p, err)
		}
		if err := copyAttrs(lfd, fd, &st); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("copying up directory %q: %w", p, err)
		}
		if t.copiedUp != nil {
			t.copiedUp(p, &st)
		}
		break
	}
	return fd, nil
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", fmt.Errorf("reading symbolic link %q: %w", name, err)
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}
