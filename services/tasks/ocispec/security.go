package ocispec

import (
	"encoding/json"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-engine/berth/internal/errdefs"
)

// Security holds the `docker run` settings that loosen or tighten the
// container's confinement: --privileged, --cap-add, --cap-drop,
// --security-opt and --device.
type Security struct {
	// Privileged gives every capability and every host device, no seccomp
	// filter, no masked or read-only paths and a writable /sys.
	Privileged bool
	// CapAdd and CapDrop change Docker's default capability set. Names
	// are case-insensitive, with or without the CAP_ prefix; "ALL" means
	// every capability.
	CapAdd  []string
	CapDrop []string
	// NoNewPrivileges sets the no_new_privs bit.
	NoNewPrivileges bool
	// SeccompUnconfined runs the container without a seccomp filter.
	SeccompUnconfined bool
	// SeccompProfile is a seccomp profile in Docker's JSON format that
	// replaces the default one; empty means Docker's default profile.
	SeccompProfile []byte
	// Devices are host devices to create in the container (--device).
	Devices []Device
}

// Device is one --device entry: a host device node made available in the
// container at ContainerPath with cgroup permissions Permissions.
type Device struct {
	HostPath      string
	ContainerPath string
	// Permissions is a combination of r, w and m; empty means "rwm".
	Permissions string
}

// allCapabilities are the Linux capabilities by number (CAP_CHOWN is 0).
var allCapabilities = [...]string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// AllCapabilities returns every capability this process may pass on: those
// in its bounding set (from /proc/self/status, which a container engine in
// a confined host lacks some of), else every capability the kernel knows
// (/proc/sys/kernel/cap_last_cap), else every capability berth knows. It
// is what --privileged and --cap-add ALL give.
func AllCapabilities() []string {
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
				if mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil {
					return capabilitiesIn(mask)
				}
			}
		}
	}
	n := len(allCapabilities)
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if last, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && last >= 0 && last < n {
			n = last + 1
		}
	}
	return slices.Clone(allCapabilities[:n])
}

// capabilitiesIn returns the capabilities whose bits are set in mask.
func capabilitiesIn(mask uint64) []string {
	var caps []string
	for i, c := range allCapabilities {
		if mask&(1<<i) != 0 {
			caps = append(caps, c)
		}
	}
	return caps
}

// NormalizeCapabilities returns caps in the runtime's spelling (CAP_CHOWN
// for chown, Chown or CAP_CHOWN), without duplicates; "ALL" stays "ALL".
// An unknown name is an error.
func NormalizeCapabilities(caps []string) ([]string, error) {
	out := make([]string, 0, len(caps))
	for _, c := range caps {
		c = strings.ToUpper(strings.TrimSpace(c))
		if c != "ALL" && !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		if c != "ALL" && !slices.Contains(allCapabilities[:], c) {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument,
				"unknown capability: %q: use a name such as NET_ADMIN or CAP_NET_ADMIN, or ALL", strings.TrimPrefix(c, "CAP_"))
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// Capabilities returns the capability set of a container as Docker computes
// it: every capability when privileged; else the default set less CapDrop
// plus CapAdd, where "ALL" in CapAdd means every capability (less CapDrop)
// and "ALL" in CapDrop means only CapAdd.
func Capabilities(privileged bool, capAdd, capDrop []string) ([]string, error) {
	if privileged {
		return AllCapabilities(), nil
	}
	adds, err := NormalizeCapabilities(capAdd)
	if err != nil {
		return nil, err
	}
	drops, err := NormalizeCapabilities(capDrop)
	if err != nil {
		return nil, err
	}
	var caps []string
	switch {
	case slices.Contains(adds, "ALL"):
		for _, c := range AllCapabilities() {
			if !slices.Contains(drops, c) {
				caps = append(caps, c)
			}
		}
	case slices.Contains(drops, "ALL"):
		caps = adds
	default:
		for _, c := range DefaultCapabilities() {
			if !slices.Contains(drops, c) {
				caps = append(caps, c)
			}
		}
		for _, c := range adds {
			if !slices.Contains(caps, c) {
				caps = append(caps, c)
			}
		}
	}
	if caps == nil {
		caps = []string{}
	}
	return caps, nil
}

// ValidateSeccompProfile checks that profile is a seccomp profile in
// Docker's JSON format, so that a bad file is refused before anything is
// created.
func ValidateSeccompProfile(profile []byte) error {
	var p seccomp.Seccomp
	if err := json.Unmarshal(profile, &p); err != nil {
		return errdefs.Errorf(errdefs.ErrInvalidArgument,
			"invalid seccomp profile: %v: give a profile in Docker's JSON format", err)
	}
	if p.DefaultAction == "" && len(p.Syscalls) == 0 {
		return errdefs.Errorf(errdefs.ErrInvalidArgument,
			"invalid seccomp profile: it has neither defaultAction nor syscalls: use seccomp=unconfined to run without a filter")
	}
	return nil
}

// securityOpts turns sec into spec options. They must run after the
// mounts are set (privileged makes /sys writable), and seccomp comes last
// because the default profile depends on the capabilities.
func securityOpts(sec Security) ([]SpecOpt, error) {
	caps, err := Capabilities(sec.Privileged, sec.CapAdd, sec.CapDrop)
	if err != nil {
		return nil, err
	}
	opts := []SpecOpt{WithCapabilities(caps)}
	if sec.Privileged {
		opts = append(opts, WithPrivileged)
	}
	for _, d := range sec.Devices {
		opts = append(opts, WithDevice(d))
	}
	if sec.NoNewPrivileges {
		opts = append(opts, WithNoNewPrivileges)
	}
	switch {
	case sec.Privileged || sec.SeccompUnconfined:
		opts = append(opts, WithoutSeccomp)
	case len(sec.SeccompProfile) > 0:
		opts = append(opts, WithSeccompProfile(sec.SeccompProfile))
	default:
		opts = append(opts, WithDefaultSeccomp)
	}
	return opts, nil
}

// WithDefaultSeccomp sets Docker's default seccomp profile, built for the
// spec's bounding capabilities and the running kernel: apply it after the
// capabilities are final.
func WithDefaultSeccomp(s *specs.Spec) error {
	ensureProcess(s)
	if s.Process.Capabilities == nil {
		s.Process.Capabilities = &specs.LinuxCapabilities{}
	}
	sc, err := seccomp.GetDefaultProfile(s)
	if err != nil {
		return errdefs.Errorf(errdefs.ErrUnknown, "building the default seccomp profile: %v", err)
	}
	ensureLinux(s).Seccomp = sc
	return nil
}

// WithSeccompProfile sets the seccomp profile profile, in Docker's JSON
// format (conditions on capabilities, architectures and kernel versions are
// resolved here, as Docker does).
func WithSeccompProfile(profile []byte) SpecOpt {
	return func(s *specs.Spec) error {
		if err := ValidateSeccompProfile(profile); err != nil {
			return err
		}
		ensureProcess(s)
		if s.Process.Capabilities == nil {
			s.Process.Capabilities = &specs.LinuxCapabilities{}
		}
		sc, err := seccomp.LoadProfile(string(profile), s)
		if err != nil {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid seccomp profile: %v", err)
		}
		ensureLinux(s).Seccomp = sc
		return nil
	}
}

// WithoutSeccomp runs the container without a seccomp filter.
func WithoutSeccomp(s *specs.Spec) error {
	ensureLinux(s).Seccomp = nil
	return nil
}

// WithPrivileged lifts what Docker lifts for --privileged, except the
// capabilities and seccomp, which securityOpts sets: no masked or read-only
// paths, /sys and /sys/fs/cgroup writable, every host device created and
// allowed.
func WithPrivileged(s *specs.Spec) error {
	l := ensureLinux(s)
	l.MaskedPaths = nil
	l.ReadonlyPaths = nil
	for i, m := range s.Mounts {
		if m.Type == "sysfs" || m.Type == "cgroup" {
			s.Mounts[i].Options = slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return o == "ro" })
		}
	}
	devs, err := HostDevices("/dev")
	if err != nil {
		return err
	}
	l.Devices = devs
	if l.Resources == nil {
		l.Resources = &specs.LinuxResources{}
	}
	l.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	return nil
}

// WithDevice creates the host device d.HostPath in the container and
// allows it in the device cgroup.
func WithDevice(d Device) SpecOpt {
	return func(s *specs.Spec) error {
		perms := d.Permissions
		if perms == "" {
			perms = "rwm"
		}
		if strings.Trim(perms, "rwm") != "" {
			return errdefs.Errorf(errdefs.ErrInvalidArgument,
				"invalid device permissions %q for %s: use a combination of r, w and m", d.Permissions, d.HostPath)
		}
		dst := d.ContainerPath
		if dst == "" {
			dst = d.HostPath
		}
		if !path.IsAbs(dst) {
			return errdefs.Errorf(errdefs.ErrInvalidArgument,
				"invalid device path %q in the container: it must be absolute", dst)
		}
		dev, err := deviceFromPath(d.HostPath)
		if err != nil {
			return err
		}
		dev.Path = path.Clean(dst)
		l := ensureLinux(s)
		l.Devices = slices.DeleteFunc(l.Devices, func(x specs.LinuxDevice) bool { return x.Path == dev.Path })
		l.Devices = append(l.Devices, dev)
		if l.Resources == nil {
			l.Resources = &specs.LinuxResources{}
		}
		major, minor := dev.Major, dev.Minor
		l.Resources.Devices = append(l.Resources.Devices, specs.LinuxDeviceCgroup{
			Allow: true, Type: dev.Type, Major: &major, Minor: &minor, Access: perms,
		})
		return nil
	}
}
