package ocispec

import (
	"path"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-engine/berth/internal/errdefs"
)

// SpecOpt changes a spec. Generate applies its own options first and then the
// caller's, so a caller's SpecOpt has the last word (seccomp, cgroups,
// --privileged and resource limits plug in here).
type SpecOpt func(*specs.Spec) error

// ApplyOpts applies opts to s in order and stops at the first error.
func ApplyOpts(s *specs.Spec, opts ...SpecOpt) error {
	for _, o := range opts {
		if err := o(s); err != nil {
			return err
		}
	}
	return nil
}

func ensureLinux(s *specs.Spec) *specs.Linux {
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	return s.Linux
}

func ensureProcess(s *specs.Spec) *specs.Process {
	if s.Process == nil {
		s.Process = &specs.Process{}
	}
	return s.Process
}

// WithRootPath sets the root filesystem path the runtime uses, absolute or
// relative to the bundle directory.
func WithRootPath(p string) SpecOpt {
	return func(s *specs.Spec) error {
		if p == "" {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "root path must not be empty")
		}
		if s.Root == nil {
			s.Root = &specs.Root{}
		}
		s.Root.Path = p
		return nil
	}
}

// WithReadonlyRoot makes the root filesystem read-only.
func WithReadonlyRoot(s *specs.Spec) error {
	if s.Root == nil {
		s.Root = &specs.Root{}
	}
	s.Root.Readonly = true
	return nil
}

// WithNamespace makes the container use a namespace of type t: a new one when
// nsPath is empty, or the existing one at nsPath (e.g. /proc/PID/ns/net). It
// replaces any earlier entry of the same type.
func WithNamespace(t specs.LinuxNamespaceType, nsPath string) SpecOpt {
	return func(s *specs.Spec) error {
		l := ensureLinux(s)
		for i := range l.Namespaces {
			if l.Namespaces[i].Type == t {
				l.Namespaces[i].Path = nsPath
				return nil
			}
		}
		l.Namespaces = append(l.Namespaces, specs.LinuxNamespace{Type: t, Path: nsPath})
		return nil
	}
}

// WithoutNamespace makes the container share the host's namespace of type t.
func WithoutNamespace(t specs.LinuxNamespaceType) SpecOpt {
	return func(s *specs.Spec) error {
		l := ensureLinux(s)
		l.Namespaces = slices.DeleteFunc(l.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t })
		return nil
	}
}

// WithHostNetwork shares the host's network namespace (--network host).
func WithHostNetwork(s *specs.Spec) error {
	return WithoutNamespace(specs.NetworkNamespace)(s)
}

// WithCgroupNamespace gives the container its own cgroup namespace, as Docker
// does by default on cgroup v2 hosts (--cgroupns private). The caller knows
// the host's cgroup mode, so it decides.
func WithCgroupNamespace(s *specs.Spec) error {
	return WithNamespace(specs.CgroupNamespace, "")(s)
}

// CgroupParent is the cgroup under which every container's cgroup is made,
// as /berth/<id> for the cgroupfs driver (v1 and v2; the runtime creates
// it). A systemd cgroup driver is not supported yet.
const CgroupParent = "berth"

// CgroupsPath is the cgroupsPath of container id.
func CgroupsPath(id string) string { return "/" + CgroupParent + "/" + id }

// WithCgroupsPath sets the cgroup the runtime puts the container in.
func WithCgroupsPath(p string) SpecOpt {
	return func(s *specs.Spec) error {
		ensureLinux(s).CgroupsPath = p
		return nil
	}
}

// WithCapabilities replaces the bounding, permitted and effective sets.
func WithCapabilities(caps []string) SpecOpt {
	return func(s *specs.Spec) error {
		p := ensureProcess(s)
		p.Capabilities = &specs.LinuxCapabilities{
			Bounding:  slices.Clone(caps),
			Permitted: slices.Clone(caps),
			Effective: slices.Clone(caps),
		}
		return nil
	}
}

// WithNoNewPrivileges sets the no_new_privs bit for the container's process
// (--security-opt no-new-privileges).
func WithNoNewPrivileges(s *specs.Spec) error {
	ensureProcess(s).NoNewPrivileges = true
	return nil
}

// WithRlimit sets (or replaces) one resource limit, e.g. "RLIMIT_NOFILE".
func WithRlimit(typ string, soft, hard uint64) SpecOpt {
	return func(s *specs.Spec) error {
		if soft > hard {
			return errdefs.Errorf(errdefs.ErrInvalidArgument,
				"invalid %s limit %d:%d: the soft limit must not exceed the hard limit", typ, soft, hard)
		}
		p := ensureProcess(s)
		for i := range p.Rlimits {
			if p.Rlimits[i].Type == typ {
				p.Rlimits[i].Soft, p.Rlimits[i].Hard = soft, hard
				return nil
			}
		}
		p.Rlimits = append(p.Rlimits, specs.POSIXRlimit{Type: typ, Soft: soft, Hard: hard})
		return nil
	}
}

// WithAnnotations adds annotations, replacing those with the same keys.
func WithAnnotations(a map[string]string) SpecOpt {
	return func(s *specs.Spec) error {
		if len(a) == 0 {
			return nil
		}
		if s.Annotations == nil {
			s.Annotations = make(map[string]string, len(a))
		}
		for k, v := range a {
			s.Annotations[k] = v
		}
		return nil
	}
}

// WithMounts adds mounts, Docker-style: a new mount replaces a default mount
// at the same destination, a mount on /dev replaces every default mount under
// /dev, and two new mounts on one destination are an error.
func WithMounts(mounts []specs.Mount) SpecOpt {
	return func(s *specs.Spec) error {
		if len(mounts) == 0 {
			return nil
		}
		dests := make(map[string]bool, len(mounts))
		for _, m := range mounts {
			d := path.Clean(m.Destination)
			if !path.IsAbs(d) {
				return errdefs.Errorf(errdefs.ErrInvalidArgument,
					"invalid mount destination %q: it must be an absolute path", m.Destination)
			}
			if dests[d] {
				return errdefs.Errorf(errdefs.ErrInvalidArgument, "duplicate mount point: %s", d)
			}
			dests[d] = true
		}
		s.Mounts = slices.DeleteFunc(s.Mounts, func(m specs.Mount) bool {
			d := path.Clean(m.Destination)
			return dests[d] || (dests["/dev"] && strings.HasPrefix(d, "/dev/"))
		})
		added := make([]specs.Mount, len(mounts))
		for i, m := range mounts {
			m.Destination = path.Clean(m.Destination)
			m.Options = slices.Clone(m.Options)
			added[i] = m
		}
		// Parents before children, so /a is mounted before /a/b.
		slices.SortStableFunc(added, func(a, b specs.Mount) int {
			return depth(a.Destination) - depth(b.Destination)
		})
		s.Mounts = append(s.Mounts, added...)
		return nil
	}
}

func depth(p string) int {
	if p == "/" {
		return 0
	}
	n := 0
	for _, c := range p {
		if c == '/' {
			n++
		}
	}
	return n
}
