package ocispec

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-engine/berth/internal/errdefs"
)

// errNotDevice marks a path that is not a character or block device.
var errNotDevice = errors.New("not a device node")

// deviceFromPath describes the device node at p (symbolic links followed).
func deviceFromPath(p string) (specs.LinuxDevice, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return specs.LinuxDevice{}, errdefs.Errorf(errdefs.ErrInvalidArgument,
			"error gathering device information while adding custom device %q: %v", p, err)
	}
	dev, err := deviceFromStat(p, &st)
	if err != nil {
		return specs.LinuxDevice{}, errdefs.Errorf(errdefs.ErrInvalidArgument,
			"cannot add device %q: it is not a character or block device", p)
	}
	return dev, nil
}

func deviceFromStat(p string, st *unix.Stat_t) (specs.LinuxDevice, error) {
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return specs.LinuxDevice{}, errNotDevice
	}
	mode := os.FileMode(st.Mode &^ unix.S_IFMT)
	uid, gid := st.Uid, st.Gid
	return specs.LinuxDevice{
		Path:     p,
		Type:     typ,
		Major:    int64(unix.Major(st.Rdev)),
		Minor:    int64(unix.Minor(st.Rdev)),
		FileMode: &mode,
		UID:      &uid,
		GID:      &gid,
	}, nil
}

// hostDeviceSkips are folders of /dev whose nodes a privileged container
// does not copy, as Docker: the container gets its own pts, shm and mqueue.
var hostDeviceSkips = map[string]bool{"pts": true, "shm": true, "mqueue": true, "fd": true, ".lxc": true, ".lxd-mounts": true, ".udev": true}

// HostDevices lists the character and block devices under dir (the host's
// /dev), as --privileged creates them in the container. /dev/console is
// left out: the runtime sets it up for a terminal.
func HostDevices(dir string) ([]specs.LinuxDevice, error) {
	var devs []specs.LinuxDevice
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && errors.Is(err, fs.ErrPermission) {
				return nil
			}
			return err
		}
		if e.IsDir() {
			if p != dir && hostDeviceSkips[e.Name()] {
				return filepath.SkipDir
			}
			return nil
		}
		if e.Type()&fs.ModeDevice == 0 || p == filepath.Join(dir, "console") {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return nil // gone meanwhile
		}
		d, err := deviceFromStat(filepath.Join("/dev", mustRel(dir, p)), &st)
		if err == nil {
			devs = append(devs, d)
		}
		return nil
	})
	if err != nil {
		return nil, errdefs.Errorf(errdefs.ErrUnknown, "listing the host devices in %s for a privileged container: %v", dir, err)
	}
	return devs, nil
}

func mustRel(base, p string) string {
	r, err := filepath.Rel(base, p)
	if err != nil {
		return filepath.Base(p)
	}
	return r
}
