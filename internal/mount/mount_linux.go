package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/internal/errdefs"
)

const (
	// busyRetries and busyDelay bound how long Unmount waits for a busy
	// mount to be let go of (a process leaving it, a scan finishing)
	// before it detaches it lazily.
	busyRetries = 50
	busyDelay   = 10 * time.Millisecond
)

// All mounts each of mounts, in order, at target (joined with the mount's
// Target). When one fails, those already mounted are unmounted again.
func All(mounts []Mount, target string) error {
	for i, m := range mounts {
		if err := m.Mount(target); err != nil {
			for j := i - 1; j >= 0; j-- {
				if uerr := Unmount(mounts[j].dest(target)); uerr != nil {
					err = errors.Join(err, uerr)
				}
			}
			return err
		}
	}
	return nil
}

// dest is where m goes below target.
func (m *Mount) dest(target string) string {
	if m.Target == "" {
		return target
	}
	return filepath.Join(target, m.Target)
}

// Mount mounts m at target (joined with m.Target). Options that mount(8)
// turns into flags become flags; the others are the filesystem's data,
// which the kernel takes in one page. An overlay whose lowerdir list is
// longer than that is mounted with lowerdir paths relative to their common
// folder, from a thread whose working directory is that folder; if even
// that does not fit, Mount refuses with ErrInvalidArgument.
func (m *Mount) Mount(target string) error {
	if m.Target != "" && !filepath.IsLocal(m.Target) {
		return fmt.Errorf("mounting %s at %s: the mount's target %q leaves the target folder: %w", m.Type, target, m.Target, errdefs.ErrInvalidArgument)
	}
	dest, err := filepath.Abs(m.dest(target))
	if err != nil {
		return fmt.Errorf("mounting %s at %s: %w", m.Type, target, err)
	}
	opts := parseOptions(m.Options)
	if m.Type == "bind" {
		opts.flags |= unix.MS_BIND
	}

	var cwd string // the working directory the mount needs, "" for any
	data := opts.data
	pageSize := unix.Getpagesize()
	if m.Type == "overlay" && len(data) >= pageSize {
		cwd, data = compactLowerdir(data)
	}
	// The kernel copies one page of data, including its terminating NUL.
	if len(data) >= pageSize {
		return fmt.Errorf("mounting %s at %s: the options are %d bytes, and the kernel takes at most %d: use an image with fewer layers or shorter paths: %w",
			m.Type, dest, len(data), pageSize-1, errdefs.ErrInvalidArgument)
	}

	if opts.flags&unix.MS_REMOUNT == 0 || data != "" {
		err := inDir(cwd, func() error {
			return unix.Mount(m.Source, dest, m.Type, opts.flags, data)
		})
		if err != nil {
			return mountError(m, dest, err)
		}
	}
	if opts.propagation != 0 {
		if err := unix.Mount("", dest, "", opts.propagation, ""); err != nil {
			return errors.Join(mountError(m, dest, fmt.Errorf("setting propagation: %w", err)), Unmount(dest))
		}
	}
	// A bind mount ignores MS_RDONLY; it takes a remount to apply it.
	if opts.flags&unix.MS_BIND != 0 && opts.flags&unix.MS_RDONLY != 0 {
		if err := unix.Mount("", dest, "", opts.flags|unix.MS_REMOUNT, ""); err != nil {
			return errors.Join(mountError(m, dest, fmt.Errorf("making the bind mount read-only: %w", err)), Unmount(dest))
		}
	}
	return nil
}

func mountError(m *Mount, dest string, err error) error {
	switch {
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("mounting %s %s at %s: %w: mounting needs root (CAP_SYS_ADMIN): %w", m.Type, m.Source, dest, err, errdefs.ErrPermissionDenied)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("mounting %s %s at %s: %w: the target or a source folder does not exist: %w", m.Type, m.Source, dest, err, errdefs.ErrNotFound)
	}
	return fmt.Errorf("mounting %s %s at %s: %w", m.Type, m.Source, dest, err)
}

// compactLowerdir rewrites the lowerdir option of overlay data with paths
// relative to the lower folders' common parent and returns that parent,
// which must be the working directory of the mount. Data it cannot shorten
// comes back as it was, with no directory.
func compactLowerdir(data string) (dir, compacted string) {
	opts := strings.Split(data, ",")
	for i, o := range opts {
		value, ok := strings.CutPrefix(o, "lowerdir=")
		if !ok {
			continue
		}
		lowers := strings.Split(value, ":")
		common := commonDir(lowers)
		if common == "" {
			return "", data
		}
		for j, l := range lowers {
			lowers[j] = strings.TrimPrefix(l, common+"/")
		}
		opts[i] = "lowerdir=" + strings.Join(lowers, ":")
		return common, strings.Join(opts, ",")
	}
	return "", data
}

// commonDir returns the deepest folder that holds every one of paths, or ""
// when they are not all absolute or share only "/".
func commonDir(paths []string) string {
	if len(paths) == 0 || !filepath.IsAbs(paths[0]) {
		return ""
	}
	common := filepath.Dir(filepath.Clean(paths[0]))
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return ""
		}
		for !strings.HasPrefix(filepath.Clean(p), common+"/") {
			common = filepath.Dir(common)
			if common == "/" {
				return ""
			}
		}
	}
	return common
}

// inDir runs fn on a thread whose working directory is dir (fn runs as is
// when dir is ""). The thread unshares its filesystem attributes first, so
// the process's working directory and other goroutines are untouched; it is
// never unlocked, so Go ends it with the goroutine.
func inDir(dir string, fn func() error) error {
	if dir == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("giving the mounting thread its own working directory: %w", err)
			return
		}
		if err := unix.Chdir(dir); err != nil {
			errc <- fmt.Errorf("changing to %s for the mount: %w", dir, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Unmount unmounts the topmost mount at target. A busy mount is retried
// briefly, then detached lazily: the kernel finishes unmounting it when its
// last user lets go. A target that is not (or no longer) a mount point is
// not an error, so cleanup can call Unmount unconditionally.
func Unmount(target string) error {
	for i := 0; ; i++ {
		err := unix.Unmount(target, 0)
		switch {
		case err == nil, errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EBUSY) && i < busyRetries:
			time.Sleep(busyDelay)
			continue
		case errors.Is(err, unix.EBUSY):
			err = unix.Unmount(target, unix.MNT_DETACH)
			if err == nil || errors.Is(err, unix.EINVAL) {
				return nil
			}
		}
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("unmounting %s: %w: unmounting needs root (CAP_SYS_ADMIN): %w", target, err, errdefs.ErrPermissionDenied)
		}
		return fmt.Errorf("unmounting %s: %w", target, err)
	}
}

// UnmountAll unmounts every mount at or below target, deepest first, and
// every mount stacked on each. A target that does not exist has nothing
// mounted.
func UnmountAll(target string) error {
	abs, err := filepath.Abs(target)
	if err != nil {
		return fmt.Errorf("unmounting everything under %s: %w", target, err)
	}
	// mountinfo lists mount points with symlinks resolved.
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("unmounting everything under %s: %w", target, err)
	}
	// A mount stacked on a folder hides the mounts below that folder, so
	// unmount in passes, each over what the last one left, until a pass
	// changes nothing; what is left then is busy and goes through Unmount.
	for {
		infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(resolved))
		if err != nil {
			return fmt.Errorf("listing the mounts under %s: %w", target, err)
		}
		if len(infos) == 0 {
			return nil
		}
		sort.SliceStable(infos, func(i, j int) bool {
			return len(infos[i].Mountpoint) > len(infos[j].Mountpoint)
		})
		progress := false
		for _, info := range infos {
			err := unix.Unmount(info.Mountpoint, 0)
			switch {
			case err == nil:
				progress = true
			case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT), errors.Is(err, unix.EBUSY), errors.Is(err, unix.EINTR):
				// hidden, gone or busy for now: the next pass sees
			default:
				return Unmount(info.Mountpoint) // says why, with hints
			}
		}
		if !progress {
			var errs []error
			for _, info := range infos {
				errs = append(errs, Unmount(info.Mountpoint))
			}
			return errors.Join(errs...)
		}
	}
}
