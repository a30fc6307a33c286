package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/internal/errdefs"
)

// Apply extracts the uncompressed layer tar r into the directory root and
// returns the number of bytes read from r, which it reads to the end.
//
// Whiteouts delete from root (".wh.NAME" removes NAME, ".wh..wh..opq"
// removes what the directory held before this layer), or, with
// WithOverlayWhiteouts, become overlayfs markers. An entry replaces what
// root holds at its name, except that a directory over a directory only
// updates its attributes. Owners are set when running as root; times of
// directories are set after their contents.
//
// No entry lands outside root: names that climb out with ".." and hard
// links to targets out of root are refused with ErrInvalidArgument, and
// symbolic links met on the way are resolved as if root were "/".
func Apply(ctx context.Context, root string, r io.Reader, opts ...ApplyOpt) (int64, error) {
	var o ApplyOpts
	for _, opt := range opts {
		opt(&o)
	}
	a, err := newApplier(root, o)
	if err != nil {
		return 0, err
	}
	defer a.close()

	cr := &countingReader{r: r}
	tr := tar.NewReader(cr)
	for {
		if err := ctx.Err(); err != nil {
			return cr.n, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if errors.Is(err, tar.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) {
				return cr.n, fmt.Errorf("reading layer tar at byte %d: %v: %w", cr.n, err, errdefs.ErrInvalidArgument)
			}
			return cr.n, fmt.Errorf("reading layer tar at byte %d: %w", cr.n, err)
		}
		if err := a.entry(tr, hdr); err != nil {
			return cr.n, fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
	if err := a.finish(); err != nil {
		return cr.n, err
	}
	// The digest of a layer covers the whole stream, padding included.
	if _, err := io.CopyBuffer(io.Discard, cr, a.buf); err != nil {
		return cr.n, fmt.Errorf("reading the end of the layer tar: %w", err)
	}
	return cr.n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// applier holds the state of one Apply.
type applier struct {
	tree
	isRoot     bool
	plainNames bool
	buf        []byte
	// written holds the entries this layer wrote and their ancestors: a
	// whiteout or an opaque directory hides only what came before the layer.
	written map[string]struct{}
	// dirs are the directories whose times (and, for an unprivileged
	// caller, restrictive modes) are set once the whole layer is written.
	dirs []dirFixup
	// linksByLayer caches lowerLinks.
	linksByLayer map[int]map[fileID][]string
}

type dirFixup struct {
	rel          string
	dev, ino     uint64
	atime, mtime unix.Timespec
	mode         uint32
	chmod        bool
}

func newApplier(root string, o ApplyOpts) (*applier, error) {
	rootfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening layer root %s: %w", root, err)
	}
	a := &applier{
		tree:       tree{root: rootfd, overlay: o.OverlayWhiteouts},
		isRoot:     unix.Geteuid() == 0,
		plainNames: o.PlainNames,
		buf:        make([]byte, 1<<20),
		written:    map[string]struct{}{},
	}
	a.openat2 = !o.noOpenat2 && hasOpenat2(rootfd)
	a.copiedUp = func(rel string, st *unix.Stat_t) {
		a.dirs = append(a.dirs, dirFixup{rel: rel, atime: st.Atim, mtime: st.Mtim})
	}
	for _, p := range o.Parents {
		fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			a.close()
			return nil, fmt.Errorf("opening lower directory %s: %w", p, err)
		}
		a.lowers = append(a.lowers, fd)
	}
	return a, nil
}

func (a *applier) close() {
	unix.Close(a.root)
	for _, fd := range a.lowers {
		unix.Close(fd)
	}
}

// markWritten records that this layer wrote rel, and so its ancestors.
func (a *applier) markWritten(rel string) {
	for rel != "" && rel != "." {
		if _, ok := a.written[rel]; ok {
			return
		}
		a.written[rel] = struct{}{}
		rel = path.Dir(rel)
	}
}

func (a *applier) wasWritten(rel string) bool {
	_, ok := a.written[rel]
	return ok
}

func splitName(name string) (dir, base string) {
	dir, base = path.Split(name)
	return strings.TrimSuffix(dir, "/"), base
}

func (a *applier) entry(tr *tar.Reader, hdr *tar.Header) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "" {
		// The root belongs to the snapshot, not to the layer.
		return nil
	}
	dir, base := splitName(name)
	if strings.HasPrefix(base, WhiteoutPrefix) && !a.plainNames {
		return a.whiteout(dir, base)
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont, tar.TypeDir, tar.TypeSymlink, tar.TypeLink,
		tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "unsupported tar entry type %q", hdr.Typeflag)
	}

	var target *linkTarget
	if hdr.Typeflag == tar.TypeLink {
		// Find the target before anything at name is replaced.
		if target, err = a.linkTarget(hdr.Linkname); err != nil {
			return err
		}
		defer unix.Close(target.dir)
	}

	parent, err := a.openDir(dir, createMissing)
	if err != nil {
		return fmt.Errorf("parent directory: %w", err)
	}
	defer unix.Close(parent)
	a.markWritten(name)

	var st unix.Stat_t
	exists := true
	if err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("looking at what is there: %w", err)
		}
		exists = false
	}
	replacesWhiteout := false
	if exists {
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		switch {
		case hdr.Typeflag == tar.TypeDir && isDir:
			return a.setDirAttrs(node{dir: parent, name: base}, name, hdr, &st)
		case target != nil && target.sameFile(&st):
			return nil // already the same file
		}
		replacesWhiteout = a.overlay && isWhiteoutDevice(&st)
		if err := removeAll(parent, base); err != nil {
			return fmt.Errorf("replacing what is there: %w", err)
		}
	}

	n := node{dir: parent, name: base}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(parent, base, 0o700); err != nil {
			return fmt.Errorf("making directory: %w", err)
		}
		if replacesWhiteout {
			// The directory replaces one that this layer deleted; the lower
			// one's contents must stay hidden.
			fd, err := unix.Openat(parent, base, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			err = setOpaque(fd)
			unix.Close(fd)
			if err != nil {
				return err
			}
		}
		var st unix.Stat_t
		if err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		return a.setDirAttrs(n, name, hdr, &st)
	case tar.TypeLink:
		if err := unix.Linkat(target.dir, target.name, parent, base, 0); err != nil {
			return fmt.Errorf("making hard link to %q: %w", hdr.Linkname, err)
		}
		return nil
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, parent, base); err != nil {
			return fmt.Errorf("making symbolic link: %w", err)
		}
		return a.setAttrs(n, hdr, false)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(unix.S_IFIFO)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode = unix.S_IFCHR
		case tar.TypeBlock:
			mode = unix.S_IFBLK
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknodat(parent, base, mode|0o600, int(dev)); err != nil {
			if errors.Is(err, unix.EPERM) && !a.isRoot {
				return fmt.Errorf("making device node %d:%d needs root: %w", hdr.Devmajor, hdr.Devminor, errdefs.ErrPermissionDenied)
			}
			return fmt.Errorf("making device node: %w", err)
		}
		return a.setAttrs(n, hdr, true)
	default:
		return a.writeFile(parent, base, tr, hdr)
	}
}

// writeFile makes a regular file with the entry's data and attributes.
func (a *applier) writeFile(parent int, base string, r io.Reader, hdr *tar.Header) error {
	fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("creating file: %w", err)
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	for remaining := hdr.Size; remaining > 0; {
		chunk := a.buf
		if int64(len(chunk)) > remaining {
			chunk = chunk[:remaining]
		}
		n, rerr := io.ReadFull(r, chunk)
		if n > 0 {
			if _, err := f.Write(chunk[:n]); err != nil {
				return fmt.Errorf("writing file: %w", err)
			}
			remaining -= int64(n)
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
				return fmt.Errorf("the tar ends inside the file, %d bytes short: %w", remaining, errdefs.ErrInvalidArgument)
			}
			return fmt.Errorf("reading file data: %w", rerr)
		}
	}
	// The attributes go on after the data: writing would clear setuid bits
	// and file capabilities.
	if err := a.setAttrs(node{dir: fd}, hdr, true); err != nil {
		return err
	}
	return f.Close()
}

// setAttrs sets owner, mode (not on symbolic links), extended attributes
// and times, in that order: chown clears setuid bits and capabilities.
func (a *applier) setAttrs(n node, hdr *tar.Header, chmod bool) error {
	if a.isRoot {
		if err := n.lchown(hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("changing owner to %d:%d: %w", hdr.Uid, hdr.Gid, err)
		}
	}
	if chmod {
		if err := n.chmod(uint32(hdr.Mode) & 0o7777); err != nil {
			return fmt.Errorf("changing mode to %o: %w", hdr.Mode&0o7777, err)
		}
	}
	if err := a.setXattrs(n, hdr); err != nil {
		return err
	}
	atime, mtime := entryTimes(hdr)
	if err := n.utimes(atime, mtime); err != nil {
		return fmt.Errorf("setting times: %w", err)
	}
	return nil
}

// setDirAttrs sets the attributes of a directory entry now and records its
// times for the end. Without root, a mode that would stop us writing into
// the directory is deferred too.
func (a *applier) setDirAttrs(n node, rel string, hdr *tar.Header, st *unix.Stat_t) error {
	if a.isRoot {
		if err := n.lchown(hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("changing owner to %d:%d: %w", hdr.Uid, hdr.Gid, err)
		}
	}
	mode := uint32(hdr.Mode) & 0o7777
	now := mode
	deferChmod := !a.isRoot && mode&0o700 != 0o700
	if deferChmod {
		now |= 0o700
	}
	if err := n.chmod(now); err != nil {
		return fmt.Errorf("changing mode to %o: %w", now, err)
	}
	if err := a.setXattrs(n, hdr); err != nil {
		return err
	}
	atime, mtime := entryTimes(hdr)
	a.dirs = append(a.dirs, dirFixup{
		rel: rel, dev: st.Dev, ino: st.Ino,
		atime: atime, mtime: mtime, mode: mode, chmod: deferChmod,
	})
	return nil
}

func entryTimes(hdr *tar.Header) (atime, mtime unix.Timespec) {
	mtime = timespec(hdr.ModTime)
	atime = mtime
	if !hdr.AccessTime.IsZero() {
		atime = timespec(hdr.AccessTime)
	}
	return atime, mtime
}

// setXattrs sets the entry's extended attributes from its PAX records.
// Attributes that overlayfs interprets are never taken from a layer. Without
// root, trusted.* and security.* attributes that the kernel refuses are
// skipped, as tar does.
func (a *applier) setXattrs(n node, hdr *tar.Header) error {
	for _, rec := range sortedKeys(hdr.PAXRecords) {
		key, ok := strings.CutPrefix(rec, paxXattrPrefix)
		if !ok || isOverlayXattr(key) {
			continue
		}
		if err := n.setXattr(key, []byte(hdr.PAXRecords[rec])); err != nil {
			privileged := strings.HasPrefix(key, "trusted.") || strings.HasPrefix(key, "security.")
			if !a.isRoot && privileged && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.ENOTSUP)) {
				continue
			}
			return fmt.Errorf("setting extended attribute %q: %w", key, err)
		}
	}
	return nil
}

// finish sets the times of the directories (and deferred modes), latest
// first so that a parent's mode never blocks its children.
func (a *applier) finish() error {
	done := make(map[string]bool, len(a.dirs))
	for i := len(a.dirs) - 1; i >= 0; i-- {
		d := a.dirs[i]
		if done[d.rel] {
			continue // a later entry of the same directory has set it
		}
		done[d.rel] = true
		dir, base := splitName(d.rel)
		parent, err := a.openDir(dir, upperOnly)
		if err != nil {
			if errors.Is(err, errNotExist) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ENOENT) {
				continue // a later entry replaced it
			}
			return fmt.Errorf("setting times of %q: %w", d.rel, err)
		}
		err = a.fixDir(node{dir: parent, name: base}, d)
		unix.Close(parent)
		if err != nil {
			return fmt.Errorf("setting times of %q: %w", d.rel, err)
		}
	}
	return nil
}

func (a *applier) fixDir(n node, d dirFixup) error {
	var st unix.Stat_t
	if err := unix.Fstatat(n.dir, n.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || (d.ino != 0 && (st.Dev != d.dev || st.Ino != d.ino)) {
		return nil // not the directory we made any more
	}
	if d.chmod {
		if err := n.chmod(d.mode); err != nil {
			return err
		}
	}
	return n.utimes(d.atime, d.mtime)
}

// linkTarget is the file a hard link entry points to.
type linkTarget struct {
	dir      int // O_PATH descriptor of its directory; the caller closes it
	name     string
	dev, ino uint64
}

func (t *linkTarget) sameFile(st *unix.Stat_t) bool {
	return st.Dev == t.dev && st.Ino == t.ino
}

// linkTarget finds the target of a hard link inside the root; for an
// overlay upper directory, a target that only a lower layer holds is copied
// up first.
func (a *applier) linkTarget(linkname string) (*linkTarget, error) {
	rel, err := cleanName(linkname)
	if err != nil {
		return nil, fmt.Errorf("hard link target: %w", err)
	}
	if rel == "" {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "hard link to the root directory %q", linkname)
	}
	notFound := func() error {
		return errdefs.Errorf(errdefs.ErrInvalidArgument,
			"hard link target %q does not exist in this layer or below it", linkname)
	}
	dir, base := splitName(rel)
	var parent int
	if len(a.lowers) == 0 {
		if parent, err = a.openDir(dir, mustExist); err != nil {
			if errors.Is(err, errNotExist) || errors.Is(err, unix.ENOTDIR) {
				return nil, notFound()
			}
			return nil, err
		}
	} else {
		if parent, err = a.lowerLinkTarget(dir, base); err != nil {
			if errors.Is(err, errNotExist) || errors.Is(err, unix.ENOTDIR) {
				return nil, notFound()
			}
			return nil, err
		}
	}
	var st unix.Stat_t
	if err := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		unix.Close(parent)
		if errors.Is(err, unix.ENOENT) {
			return nil, notFound()
		}
		return nil, fmt.Errorf("hard link target %q: %w", linkname, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		unix.Close(parent)
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "hard link target %q is a directory", linkname)
	}
	return &linkTarget{dir: parent, name: base, dev: st.Dev, ino: st.Ino}, nil
}

// lowerLinkTarget returns the directory of a hard link target in the upper
// directory, copying the target up from the lower layer that holds it.
func (a *applier) lowerLinkTarget(dir, base string) (int, error) {
	levels, err := a.walk(dir)
	if err != nil {
		return -1, err
	}
	defer closeLevels(levels)
	top := levels[len(levels)-1]
	if !top.exists {
		return -1, errNotExist
	}
	k, next, layer, err := a.lookup(top, base)
	if err != nil {
		return -1, err
	}
	closeLevel(next)
	switch k {
	case kindNone:
		return -1, errNotExist
	case kindDir:
		return -1, errdefs.Errorf(errdefs.ErrInvalidArgument, "hard link target %q is a directory", path.Join(dir, base))
	}
	parent, err := a.materialize(levels, mustExist)
	if err != nil {
		return -1, err
	}
	if layer > 0 {
		if err := a.copyUpLinked(top.fds[layer], layer, parent, dir, base); err != nil {
			unix.Close(parent)
			return -1, fmt.Errorf("copying up hard link target %q: %w", path.Join(dir, base), err)
		}
	}
	return parent, nil
}

// copyUpLinked copies the file base of the lower directory src (of lower
// layer index layer, 1-based as in levels) up into the upper directory dst,
// and links to the copy the other names that the lower file has and the
// merged view shows, so that the link stays whole as in an unpacked tree.
func (a *applier) copyUpLinked(src, layer, dst int, dir, base string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(src, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if err := copyUp(src, dst, base, a.isRoot); err != nil {
		return err
	}
	if st.Nlink < 2 {
		return nil
	}
	links, err := a.lowerLinks(layer)
	if err != nil {
		return err
	}
	target := path.Join(dir, base)
	for _, p := range links[fileID{dev: st.Dev, ino: st.Ino}] {
		if p == target {
			continue
		}
		if err := a.linkCopiedUp(p, layer, &st, dst, base); err != nil {
			return fmt.Errorf("linking %q to the copy: %w", p, err)
		}
	}
	return nil
}

// linkCopiedUp links the path p to the copied-up file (dst, name) if the
// merged view shows at p the lower file st of the given layer.
func (a *applier) linkCopiedUp(p string, layer int, st *unix.Stat_t, dst int, name string) error {
	dir, base := splitName(p)
	levels, err := a.walk(dir)
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		return nil // hidden behind a non-directory above it
	}
	if err != nil {
		return err
	}
	defer closeLevels(levels)
	top := levels[len(levels)-1]
	if !top.exists {
		return nil
	}
	k, next, found, err := a.lookup(top, base)
	closeLevel(next)
	if err != nil || k != kindOther || found != layer {
		return err
	}
	var fst unix.Stat_t
	if err := unix.Fstatat(top.fds[found], base, &fst, unix.AT_SYMLINK_NOFOLLOW); err != nil || fst.Ino != st.Ino || fst.Dev != st.Dev {
		return err
	}
	parent, err := a.materialize(levels, mustExist)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	return unix.Linkat(dst, name, parent, base, 0)
}

// lowerLinks returns, for the lower layer index layer, the paths of its
// files that have more than one link, by inode; read once per layer.
func (a *applier) lowerLinks(layer int) (map[fileID][]string, error) {
	if links, ok := a.linksByLayer[layer]; ok {
		return links, nil
	}
	links := map[fileID][]string{}
	var walk func(dirfd int, rel string) error
	walk = func(dirfd int, rel string) error {
		names, err := readDirNames(dirfd)
		if err != nil {
			return err
		}
		sort.Strings(names)
		for _, n := range names {
			var st unix.Stat_t
			if err := unix.Fstatat(dirfd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
			p := path.Join(rel, n)
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				if st.Nlink > 1 {
					id := fileID{dev: st.Dev, ino: st.Ino}
					links[id] = append(links[id], p)
				}
				continue
			}
			sub, err := unix.Openat(dirfd, n, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			err = walk(sub, p)
			unix.Close(sub)
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(a.lowers[layer-1], ""); err != nil {
		return nil, fmt.Errorf("finding the hard links of lower layer %d: %w", layer, err)
	}
	if a.linksByLayer == nil {
		a.linksByLayer = map[int]map[fileID][]string{}
	}
	a.linksByLayer[layer] = links
	return links, nil
}

// copyUp copies the file name of the lower directory src into the upper
// directory dst with its data and attributes.
func copyUp(src, dst int, name string, isRoot bool) error {
	var st unix.Stat_t
	if err := unix.Fstatat(src, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		in, err := unix.Openat(src, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		inf := os.NewFile(uintptr(in), name)
		defer inf.Close()
		out, err := unix.Openat(dst, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		outf := os.NewFile(uintptr(out), name)
		defer outf.Close()
		if _, err := io.Copy(outf, inf); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := readlinkat(src, name)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(target, dst, name); err != nil {
			return err
		}
	default:
		if err := unix.Mknodat(dst, name, st.Mode&unix.S_IFMT|0o600, int(st.Rdev)); err != nil {
			return err
		}
	}
	n := node{dir: dst, name: name}
	if isRoot {
		if err := n.lchown(int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := n.chmod(st.Mode & 0o7777); err != nil {
			return err
		}
	}
	xattrs, err := node{dir: src, name: name}.xattrs()
	if err != nil {
		return err
	}
	for _, key := range sortedKeys(xattrs) {
		if err := n.setXattr(key, xattrs[key]); err != nil {
			return fmt.Errorf("setting extended attribute %q: %w", key, err)
		}
	}
	return n.utimes(st.Atim, st.Mtim)
}

// whiteout applies a ".wh." entry found in dir.
func (a *applier) whiteout(dir, base string) error {
	if base == WhiteoutOpaqueDir {
		return a.opaque(dir)
	}
	if strings.HasPrefix(base, WhiteoutMetaPrefix) {
		return nil // other aufs metadata, meaningless here
	}
	name := strings.TrimPrefix(base, WhiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "whiteout %q names no file", base)
	}
	parent, err := a.openDir(dir, mustExist)
	if err != nil {
		if errors.Is(err, errNotExist) || errors.Is(err, unix.ENOTDIR) {
			return nil // nothing there to delete
		}
		return fmt.Errorf("directory of whiteout: %w", err)
	}
	defer unix.Close(parent)
	rel := path.Join(dir, name)
	if !a.overlay {
		return a.removeLower(parent, rel, name)
	}
	if a.wasWritten(rel) {
		// This layer wrote rel itself: only what lies below it goes.
		var st unix.Stat_t
		if err := unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil
		}
		fd, err := unix.Openat(parent, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := a.removeLowerChildren(fd, rel); err != nil {
			return err
		}
		return setOpaque(fd)
	}
	if err := removeAll(parent, name); err != nil {
		return fmt.Errorf("removing %q before its whiteout: %w", rel, err)
	}
	if err := unix.Mknodat(parent, name, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("making overlay whiteout device for %q (needs root): %w", rel, err)
	}
	return nil
}

// opaque applies a ".wh..wh..opq" entry: what dir held before this layer
// goes, and an overlay directory is marked opaque.
func (a *applier) opaque(dir string) error {
	fd, err := a.openDir(dir, mustExist)
	if err != nil {
		if errors.Is(err, errNotExist) || errors.Is(err, unix.ENOTDIR) {
			return nil
		}
		return fmt.Errorf("opaque directory: %w", err)
	}
	defer unix.Close(fd)
	if err := a.removeLowerChildren(fd, dir); err != nil {
		return err
	}
	if a.overlay {
		return setOpaque(fd)
	}
	return nil
}

// removeLower removes name (at rel) of the directory dirfd unless this
// layer wrote it; if it did and it is a directory, it removes what of its
// contents the layer did not write.
func (a *applier) removeLower(dirfd int, rel, name string) error {
	if !a.wasWritten(rel) {
		return removeAll(dirfd, name)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return a.removeLowerChildren(fd, rel)
}

func (a *applier) removeLowerChildren(dirfd int, rel string) error {
	names, err := readDirNames(dirfd)
	if err != nil {
		return fmt.Errorf("listing %q: %w", rel, err)
	}
	for _, n := range names {
		if err := a.removeLower(dirfd, path.Join(rel, n), n); err != nil {
			return err
		}
	}
	return nil
}

// readDirNames lists the directory of dirfd (which may be O_PATH).
func readDirNames(dirfd int) ([]string, error) {
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), ".")
	defer f.Close()
	return f.Readdirnames(-1)
}

// removeAll removes name from dirfd, and all it holds if it is a directory.
// A missing name is not an error.
func removeAll(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("removing %q: %w", name, err)
	}
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("removing %q: %w", name, err)
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	if err == nil && st.Mode&0o700 != 0o700 {
		// An unprivileged caller could neither list nor empty it; it goes
		// anyway, so open it up first.
		err = unix.Fchmodat(dirfd, name, 0o700, 0)
	}
	var names []string
	if err == nil {
		names, err = readDirNames(fd)
	}
	if err == nil {
		for _, n := range names {
			if err = removeAll(fd, n); err != nil {
				break
			}
		}
	}
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("removing %q: %w", name, err)
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing directory %q: %w", name, err)
	}
	return nil
}
