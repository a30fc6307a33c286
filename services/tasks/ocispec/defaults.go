package ocispec

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultPathEnv is the PATH a container gets when neither the image nor the
// run options set one (Docker's value for Linux).
const DefaultPathEnv = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultShmSize is the size of /dev/shm, 64 MB as Docker's default --shm-size.
const DefaultShmSize = "65536k"

// DefaultNofile is the RLIMIT_NOFILE soft and hard limit. Docker lets the
// container inherit the daemon's limit (often 1048576); we take containerd's
// fixed 1024:1024 so a container does not depend on how berthd was started.
const DefaultNofile = 1024

// DefaultCapabilities returns Docker's default capability set for an
// unprivileged container.
func DefaultCapabilities() []string {
	return []string{
		"CAP_CHOWN",
		"CAP_DAC_OVERRIDE",
		"CAP_FSETID",
		"CAP_FOWNER",
		"CAP_MKNOD",
		"CAP_NET_RAW",
		"CAP_SETGID",
		"CAP_SETUID",
		"CAP_SETFCAP",
		"CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE",
		"CAP_SYS_CHROOT",
		"CAP_KILL",
		"CAP_AUDIT_WRITE",
	}
}

// DefaultMaskedPaths returns the paths Docker hides from an unprivileged
// container (bind-mounted over with /dev/null or an empty read-only tmpfs).
func DefaultMaskedPaths() []string {
	return []string{
		"/proc/asound",
		"/proc/acpi",
		"/proc/interrupts",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/proc/sched_debug",
		"/proc/scsi",
		"/sys/firmware",
		"/sys/devices/virtual/powercap",
	}
}

// DefaultReadonlyPaths returns the paths Docker makes read-only in an
// unprivileged container.
func DefaultReadonlyPaths() []string {
	return []string{
		"/proc/bus",
		"/proc/fs",
		"/proc/irq",
		"/proc/sys",
		"/proc/sysrq-trigger",
	}
}

// DefaultMounts returns the kernel filesystems every container gets, as
// Docker mounts them.
func DefaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=" + DefaultShmSize}},
	}
}

// DefaultNamespaces returns the namespaces a container gets by default.
// Network is present; WithHostNetwork removes it.
func DefaultNamespaces() []specs.LinuxNamespace {
	return []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.IPCNamespace},
		{Type: specs.UTSNamespace},
		{Type: specs.MountNamespace},
		{Type: specs.NetworkNamespace},
	}
}

// defaultDeviceRules is Docker's device cgroup allow-list. The runtime adds
// the rules for the devices it always creates (pts, ptmx, ...).
func defaultDeviceRules() []specs.LinuxDeviceCgroup {
	c := func(allow bool, major, minor int64) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: allow, Type: "c", Major: &major, Minor: &minor, Access: "rwm"}
	}
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		c(true, 1, 5),     // /dev/zero
		c(true, 1, 3),     // /dev/null
		c(true, 1, 9),     // /dev/urandom
		c(true, 1, 8),     // /dev/random
		c(true, 5, 0),     // /dev/tty
		c(true, 5, 1),     // /dev/console
		c(false, 10, 229), // /dev/fuse
	}
}

// DefaultSpec returns the spec of an unprivileged Linux container before the
// image and run options are applied: Docker's mounts, namespaces,
// capabilities, masked and read-only paths and device rules, and
// RLIMIT_NOFILE DefaultNofile. The root path is "rootfs" (relative to the
// bundle) and the process has no arguments yet.
func DefaultSpec() *specs.Spec {
	caps := DefaultCapabilities
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Cwd:  "/",
			User: specs.User{UID: 0, GID: 0},
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  caps(),
				Permitted: caps(),
				Effective: caps(),
			},
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: DefaultNofile, Soft: DefaultNofile},
			},
			NoNewPrivileges: false,
		},
		Mounts: DefaultMounts(),
		Linux: &specs.Linux{
			Namespaces:    DefaultNamespaces(),
			MaskedPaths:   DefaultMaskedPaths(),
			ReadonlyPaths: DefaultReadonlyPaths(),
			Resources: &specs.LinuxResources{
				Devices: defaultDeviceRules(),
			},
		},
	}
}
