package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/internal/errdefs"
)

// Overlay attributes that make an upper directory depend on its lower
// layers in ways a layer tar cannot express.
const (
	overlayRedirectXattr = "trusted.overlay.redirect"
	overlayMetacopyXattr = "trusted.overlay.metacopy"
)

// WriteDiff writes to w, as an uncompressed layer tar, what changed from the
// directory lower to the directory upper: entries added or changed, ".wh."
// whiteouts for those removed. Files linked together in upper are written
// as hard links to the first of their paths. The output depends only on the
// two trees: entries are sorted (whiteouts of a directory before its other
// entries), times are cut to seconds, and owners are numeric.
//
// With WithUpperOverlay, upper is an overlay upper directory and everything
// in it is a change: its whiteout devices become ".wh." entries and its
// opaque directories ".wh..wh..opq" entries; lower is not read. An upper
// directory that overlayfs wrote with redirect_dir or metacopy cannot be
// expressed and gives ErrNotImplemented, so that the caller may compare the
// mounted trees instead.
func WriteDiff(ctx context.Context, w io.Writer, lower, upper string, opts ...DiffOpt) error {
	var o DiffOpts
	for _, opt := range opts {
		opt(&o)
	}
	ufd, err := unix.Open(upper, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening upper directory %s: %w", upper, err)
	}
	defer unix.Close(ufd)
	d := &differ{
		ctx:   ctx,
		tw:    tar.NewWriter(w),
		links: map[fileID]*linkInfo{},
		buf:   make([]byte, 1<<20),
	}
	if o.UpperOverlay {
		err = d.overlayDir(ufd, "")
	} else {
		lfd, lerr := unix.Open(lower, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if lerr != nil {
			return fmt.Errorf("opening lower directory %s: %w", lower, lerr)
		}
		defer unix.Close(lfd)
		err = d.compareDir(lfd, ufd, "")
	}
	if err != nil {
		return err
	}
	return d.tw.Close()
}

type fileID struct{ dev, ino uint64 }

// linkInfo is the first path met of a file with several links, and whether
// the diff holds it.
type linkInfo struct {
	path    string
	written bool
}

type differ struct {
	ctx   context.Context
	tw    *tar.Writer
	links map[fileID]*linkInfo
	buf   []byte
	buf2  []byte
}

// dirEntry is a name of a directory and its stat.
type dirEntry struct {
	name string
	st   unix.Stat_t
}

func fileType(st *unix.Stat_t) uint32 { return st.Mode & unix.S_IFMT }

func isDir(st *unix.Stat_t) bool { return fileType(st) == unix.S_IFDIR }

// listDir returns the entries of the directory dirfd, sorted by name.
func listDir(dirfd int, rel string) ([]dirEntry, error) {
	names, err := readDirNames(dirfd)
	if err != nil {
		return nil, fmt.Errorf("listing %q: %w", displayPath(rel), err)
	}
	sort.Strings(names)
	out := make([]dirEntry, 0, len(names))
	for _, n := range names {
		e := dirEntry{name: n}
		if err := unix.Fstatat(dirfd, n, &e.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed meanwhile
			}
			return nil, fmt.Errorf("reading %q: %w", path.Join(displayPath(rel), n), err)
		}
		out = append(out, e)
	}
	return out, nil
}

func displayPath(rel string) string {
	if rel == "" {
		return "/"
	}
	return rel
}

func openSubdir(dirfd int, name string) (int, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening directory %q: %w", name, err)
	}
	return fd, nil
}

// compareDir writes the differences between two directories that both
// trees hold at rel.
func (d *differ) compareDir(lfd, ufd int, rel string) error {
	lower, err := listDir(lfd, rel)
	if err != nil {
		return err
	}
	upper, err := listDir(ufd, rel)
	if err != nil {
		return err
	}
	lowerByName := make(map[string]*dirEntry, len(lower))
	for i := range lower {
		lowerByName[lower[i].name] = &lower[i]
	}
	upperNames := make(map[string]bool, len(upper))
	for _, u := range upper {
		upperNames[u.name] = true
	}
	for _, l := range lower {
		if !upperNames[l.name] {
			if err := d.writeWhiteout(path.Join(rel, WhiteoutPrefix+l.name)); err != nil {
				return err
			}
		}
	}
	for i := range upper {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		u := &upper[i]
		child := path.Join(rel, u.name)
		l, inLower := lowerByName[u.name]
		switch {
		case !inLower || isDir(&u.st) != isDir(&l.st):
			// New, or a directory where there was none (or the other way
			// round): written whole, which replaces what was there.
			if err := d.addTree(ufd, u, child); err != nil {
				return err
			}
		case isDir(&u.st):
			same, err := sameDir(lfd, ufd, u.name, &l.st, &u.st)
			if err != nil {
				return fmt.Errorf("comparing %q: %w", child, err)
			}
			if !same {
				if err := d.writeEntry(ufd, u, child, ""); err != nil {
					return err
				}
			}
			if err := d.compareSubdirs(lfd, ufd, u.name, child); err != nil {
				return err
			}
		default:
			same, err := d.sameFile(lfd, ufd, u.name, &l.st, &u.st)
			if err != nil {
				return fmt.Errorf("comparing %q: %w", child, err)
			}
			if err := d.writeFile(ufd, u, child, !same); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *differ) compareSubdirs(lfd, ufd int, name, rel string) error {
	lsub, err := openSubdir(lfd, name)
	if err != nil {
		return err
	}
	defer unix.Close(lsub)
	usub, err := openSubdir(ufd, name)
	if err != nil {
		return err
	}
	defer unix.Close(usub)
	return d.compareDir(lsub, usub, rel)
}

// addTree writes the entry e of dirfd and, for a directory, all it holds.
func (d *differ) addTree(dirfd int, e *dirEntry, rel string) error {
	if !isDir(&e.st) {
		return d.writeFile(dirfd, e, rel, true)
	}
	if err := d.writeEntry(dirfd, e, rel, ""); err != nil {
		return err
	}
	sub, err := openSubdir(dirfd, e.name)
	if err != nil {
		return err
	}
	defer unix.Close(sub)
	children, err := listDir(sub, rel)
	if err != nil {
		return err
	}
	for i := range children {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		if err := d.addTree(sub, &children[i], path.Join(rel, children[i].name)); err != nil {
			return err
		}
	}
	return nil
}

// overlayDir writes the contents of the overlay upper directory dirfd at
// rel: every entry is a change.
func (d *differ) overlayDir(dirfd int, rel string) error {
	entries, err := listDir(dirfd, rel)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if isWhiteoutDevice(&e.st) {
			if err := d.writeWhiteout(path.Join(rel, WhiteoutPrefix+e.name)); err != nil {
				return err
			}
		}
	}
	for i := range entries {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		e := &entries[i]
		if isWhiteoutDevice(&e.st) {
			continue
		}
		child := path.Join(rel, e.name)
		all, err := node{dir: dirfd, name: e.name}.allXattrs()
		if err != nil {
			return fmt.Errorf("reading %q: %w", child, err)
		}
		for _, key := range []string{overlayRedirectXattr, overlayMetacopyXattr} {
			if _, ok := all[key]; ok {
				return errdefs.Errorf(errdefs.ErrNotImplemented,
					"overlay upper entry %q carries %s: a layer cannot express it; compare the mounted trees instead", child, key)
			}
		}
		if !isDir(&e.st) {
			if err := d.writeFile(dirfd, e, child, true); err != nil {
				return err
			}
			continue
		}
		if err := d.writeEntry(dirfd, e, child, ""); err != nil {
			return err
		}
		if v, ok := all[overlayOpaqueXattr]; ok && string(v) == "y" {
			if err := d.writeWhiteout(path.Join(child, WhiteoutOpaqueDir)); err != nil {
				return err
			}
		}
		sub, err := openSubdir(dirfd, e.name)
		if err != nil {
			return err
		}
		err = d.overlayDir(sub, child)
		unix.Close(sub)
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *differ) writeWhiteout(name string) error {
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, ModTime: time.Unix(0, 0)}
	if err := d.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing whiteout %q: %w", name, err)
	}
	return nil
}

// writeFile writes a non-directory when changed, or as a hard link when it
// shares its inode with a path written before; an unchanged link to a
// changed file is written too, so the link survives.
func (d *differ) writeFile(dirfd int, e *dirEntry, rel string, changed bool) error {
	if e.st.Nlink > 1 {
		id := fileID{dev: e.st.Dev, ino: e.st.Ino}
		if first, ok := d.links[id]; ok {
			if !changed && !first.written {
				return nil
			}
			first.written = true
			return d.writeEntry(dirfd, e, rel, first.path)
		}
		d.links[id] = &linkInfo{path: rel, written: changed}
	}
	if !changed {
		return nil
	}
	return d.writeEntry(dirfd, e, rel, "")
}

// writeEntry writes the header of e, then the data of a regular file; with
// linkTo, a hard link to that path instead.
func (d *differ) writeEntry(dirfd int, e *dirEntry, rel, linkTo string) error {
	st := &e.st
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, 0),
	}
	if linkTo != "" {
		hdr.Typeflag, hdr.Linkname = tar.TypeLink, linkTo
		if err := d.tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("writing %q: %w", rel, err)
		}
		return nil
	}
	switch fileType(st) {
	case unix.S_IFREG:
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
	case unix.S_IFDIR:
		hdr.Typeflag, hdr.Name = tar.TypeDir, rel+"/"
	case unix.S_IFLNK:
		target, err := readlinkat(dirfd, e.name)
		if err != nil {
			return fmt.Errorf("reading %q: %w", rel, err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if fileType(st) == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil // sockets have no place in a layer
	}
	xattrs, err := node{dir: dirfd, name: e.name}.xattrs()
	if err != nil {
		return fmt.Errorf("reading %q: %w", rel, err)
	}
	for key, v := range xattrs {
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords[paxXattrPrefix+key] = string(v)
	}
	if err := d.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("writing %q: %w", rel, err)
	}
	if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
		return nil
	}
	fd, err := unix.Openat(dirfd, e.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %q: %w", rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	n, err := io.CopyBuffer(writerOnly{d.tw}, io.LimitReader(f, hdr.Size), d.buf)
	if err != nil {
		return fmt.Errorf("writing %q: %w", rel, err)
	}
	if n != hdr.Size {
		return fmt.Errorf("%q shrank from %d to %d bytes while it was read: stop what writes to it and try again: %w",
			rel, hdr.Size, n, errdefs.ErrAborted)
	}
	return nil
}

// writerOnly hides the ReadFrom of a writer, so that io.CopyBuffer uses its
// buffer.
type writerOnly struct{ io.Writer }

// sameDir reports whether two directories have the same owner, mode, times
// and extended attributes.
func sameDir(lfd, ufd int, name string, l, u *unix.Stat_t) (bool, error) {
	if l.Mode != u.Mode || l.Uid != u.Uid || l.Gid != u.Gid || l.Mtim != u.Mtim {
		return false, nil
	}
	return sameXattrs(node{dir: lfd, name: name}, node{dir: ufd, name: name})
}

// sameFile reports whether two non-directories are the same: type, mode,
// owner, size, device number, time, extended attributes, link target, and,
// when the times may have been cut to seconds, content.
func (d *differ) sameFile(lfd, ufd int, name string, l, u *unix.Stat_t) (bool, error) {
	if l.Mode != u.Mode || l.Uid != u.Uid || l.Gid != u.Gid || l.Size != u.Size || l.Rdev != u.Rdev ||
		l.Mtim.Sec != u.Mtim.Sec || l.Mtim.Nsec != u.Mtim.Nsec {
		return false, nil
	}
	if same, err := sameXattrs(node{dir: lfd, name: name}, node{dir: ufd, name: name}); err != nil || !same {
		return false, err
	}
	switch fileType(u) {
	case unix.S_IFLNK:
		lt, err := readlinkat(lfd, name)
		if err != nil {
			return false, err
		}
		ut, err := readlinkat(ufd, name)
		if err != nil {
			return false, err
		}
		return lt == ut, nil
	case unix.S_IFREG:
		// Equal nanoseconds say the file was not written since; equal
		// whole seconds may hide a change made within the same second
		// on a tree whose times came from a tar.
		if u.Mtim.Nsec != 0 || u.Size == 0 {
			return true, nil
		}
		return d.sameContent(lfd, ufd, name)
	}
	return true, nil
}

func sameXattrs(l, u node) (bool, error) {
	lx, err := l.xattrs()
	if err != nil {
		return false, err
	}
	ux, err := u.xattrs()
	if err != nil {
		return false, err
	}
	if len(lx) != len(ux) {
		return false, nil
	}
	for k, v := range lx {
		if uv, ok := ux[k]; !ok || !bytes.Equal(v, uv) {
			return false, nil
		}
	}
	return true, nil
}

func (d *differ) sameContent(lfd, ufd int, name string) (bool, error) {
	open := func(dirfd int) (*os.File, error) {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		return os.NewFile(uintptr(fd), name), nil
	}
	lf, err := open(lfd)
	if err != nil {
		return false, err
	}
	defer lf.Close()
	uf, err := open(ufd)
	if err != nil {
		return false, err
	}
	defer uf.Close()
	if d.buf2 == nil {
		d.buf2 = make([]byte, len(d.buf))
	}
	for {
		ln, lerr := io.ReadFull(lf, d.buf)
		un, uerr := io.ReadFull(uf, d.buf2)
		if ln != un || !bytes.Equal(d.buf[:ln], d.buf2[:un]) {
			return false, nil
		}
		lend := errors.Is(lerr, io.EOF) || errors.Is(lerr, io.ErrUnexpectedEOF)
		uend := errors.Is(uerr, io.EOF) || errors.Is(uerr, io.ErrUnexpectedEOF)
		if lerr != nil && !lend {
			return false, lerr
		}
		if uerr != nil && !uend {
			return false, uerr
		}
		if lend || uend {
			return lend == uend, nil
		}
	}
}
