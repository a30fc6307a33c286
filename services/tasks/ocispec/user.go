package ocispec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/internal/errdefs"
)

// maxIDFileSize bounds how much of a container's /etc/passwd or /etc/group is
// read: the image is untrusted and berthd must not be made to swallow a huge
// file.
const maxIDFileSize = 16 << 20

// ResolvedUser is a user spec (-u) resolved against a container's files.
type ResolvedUser struct {
	User specs.User
	// Home is the user's home directory from /etc/passwd, "/" when unknown.
	Home string
}

// ResolveUser resolves a Docker user spec — "", "name", "uid", "name:group",
// "uid:gid", "name:gid", "uid:group" — against <rootfs>/etc/passwd and
// <rootfs>/etc/group, as Docker does: "" means root (uid 0); a numeric uid
// with no passwd entry is allowed (gid 0, home "/"); an unknown name is an
// error. AdditionalGids holds the primary gid, then the groups that list the
// user in /etc/group (only when no group was given), then groupAdd
// (--group-add, names or gids).
//
// The files are opened inside rootfs: symlinks are resolved as if rootfs were
// "/", so an image cannot make berthd read host files.
func ResolveUser(rootfs, userSpec string, groupAdd []string) (ResolvedUser, error) {
	passwd, err := readRootfsFile(rootfs, "/etc/passwd")
	if err != nil {
		return ResolvedUser{}, err
	}
	group, err := readRootfsFile(rootfs, "/etc/group")
	if err != nil {
		return ResolvedUser{}, err
	}
	eu, err := user.GetExecUser(userSpec, nil, optionalReader(passwd), optionalReader(group))
	if err != nil {
		// moby/sys/user's text is Docker's ("unable to find user NAME: no
		// matching entries in passwd file"); keep it verbatim.
		return ResolvedUser{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "%s", err.Error())
	}
	var added []int
	if len(groupAdd) > 0 {
		added, err = user.GetAdditionalGroups(groupAdd, optionalReader(group))
		if err != nil {
			return ResolvedUser{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "%s", err.Error())
		}
	}
	if eu.Uid < 0 || eu.Gid < 0 {
		return ResolvedUser{}, errdefs.Errorf(errdefs.ErrInvalidArgument,
			"invalid user %q: uid and gid must not be negative", userSpec)
	}
	u := specs.User{UID: uint32(eu.Uid), GID: uint32(eu.Gid), AdditionalGids: []uint32{uint32(eu.Gid)}}
	for _, g := range append(eu.Sgids, added...) {
		if g < 0 {
			return ResolvedUser{}, errdefs.Errorf(errdefs.ErrInvalidArgument,
				"invalid group %d for user %q: gids must not be negative", g, userSpec)
		}
		if !containsGid(u.AdditionalGids, uint32(g)) {
			u.AdditionalGids = append(u.AdditionalGids, uint32(g))
		}
	}
	home := eu.Home
	if home == "" {
		home = "/"
	}
	return ResolvedUser{User: u, Home: home}, nil
}

func containsGid(gids []uint32, g uint32) bool {
	for _, x := range gids {
		if x == g {
			return true
		}
	}
	return false
}

// optionalReader returns nil for a missing file: moby/sys/user treats a nil
// reader as "no such file" (numeric ids still work, names do not).
func optionalReader(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}

// readRootfsFile reads name (an absolute path inside the container) from
// rootfs, resolving symlinks and ".." within rootfs. A missing file gives
// (nil, nil). Only regular files are read, at most maxIDFileSize bytes.
func readRootfsFile(rootfs, name string) ([]byte, error) {
	if rootfs == "" {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "no rootfs given to read %s from", name)
	}
	f, err := openInRoot(rootfs, name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("open %s in container rootfs %s: %w", name, rootfs, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s in container rootfs %s: %w", name, rootfs, err)
	}
	if !st.Mode().IsRegular() {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument,
			"%s in the container is not a regular file (%s): fix the image", name, st.Mode().Type())
	}
	if st.Size() > maxIDFileSize {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument,
			"%s in the container is %d bytes, more than the %d allowed: fix the image", name, st.Size(), maxIDFileSize)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxIDFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s in container rootfs %s: %w", name, rootfs, err)
	}
	if len(b) > maxIDFileSize {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument,
			"%s in the container is more than the %d bytes allowed: fix the image", name, maxIDFileSize)
	}
	return b, nil
}

// openInRoot opens name as if rootfs were the root directory (openat2
// RESOLVE_IN_ROOT, Linux 5.6+). Where openat2 is missing it falls back to
// os.Root, which refuses (rather than re-roots) symlinks that leave rootfs.
// O_NONBLOCK keeps a FIFO planted by the image from blocking the open.
func openInRoot(rootfs, name string) (*os.File, error) {
	rel := strings.TrimLeft(filepath.Clean("/"+name), "/")
	dir, err := os.Open(rootfs)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	how := &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for attempt := 0; ; attempt++ {
		fd, err := unix.Openat2(int(dir.Fd()), rel, how)
		switch {
		case err == nil:
			return os.NewFile(uintptr(fd), filepath.Join(rootfs, rel)), nil
		case errors.Is(err, unix.EAGAIN) && attempt < 8:
			// The kernel saw a concurrent rename in rootfs; try again.
			continue
		case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EPERM):
			// No openat2 (old kernel, or a seccomp filter that refuses it).
			return openWithRoot(rootfs, rel)
		default:
			return nil, &os.PathError{Op: "openat2", Path: filepath.Join(rootfs, rel), Err: err}
		}
	}
}

// openWithRoot is openInRoot without openat2: os.Root keeps the open inside
// rootfs but refuses symlinks that point outside it, even absolute ones that
// would resolve inside the container.
func openWithRoot(rootfs, rel string) (*os.File, error) {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return root.OpenFile(rel, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
}
