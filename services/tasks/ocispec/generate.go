// Package ocispec builds the OCI runtime spec (config.json) of a container from
// its image config and Docker-style run options, the way Docker does.
//
// It reads nothing but the container's /etc/passwd and /etc/group under the
// rootfs it is given and, of the host, what Docker's rules depend on: the
// kernel version (seccomp profile), this process's capability bounding set
// (--privileged, --cap-add ALL), the devices in /dev (--privileged,
// --device), the number of CPUs and whether the memory cgroup limits swap.
// Everything the runtime or the caller must do on disk is left to them: creating process.cwd when it is missing (Docker's `-w`
// creates it), writing the per-container hosts, hostname and resolv.conf
// files, and checking that bind sources exist.
package ocispec

import (
	"context"
	"maps"
	"path"
	"slices"
	"strings"

	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-engine/berth/internal/errdefs"
)

// Network modes understood by Generate.
const (
	NetworkDefault = ""     // a private network namespace (bridge networking comes later)
	NetworkNone    = "none" // a private network namespace with loopback only
	NetworkHost    = "host" // the host's network namespace
)

// Mount types understood by Generate.
const (
	MountTypeBind  = "bind"
	MountTypeTmpfs = "tmpfs"
)

// Mount is one -v/--mount/--tmpfs entry, already parsed and with volumes
// resolved to host paths by the caller.
type Mount struct {
	// Type is MountTypeBind or MountTypeTmpfs.
	Type string
	// Source is the host path of a bind mount; unused for tmpfs.
	Source string
	// Destination is the absolute path in the container.
	Destination string
	// ReadOnly mounts it read-only.
	ReadOnly bool
	// Propagation of a bind mount: private, rprivate (the default), shared,
	// rshared, slave or rslave.
	Propagation string
	// Options are extra mount options, e.g. "size=64m" or "mode=1777" for
	// tmpfs, "exec" to undo tmpfs's default noexec.
	Options []string
}

// RunOptions are the `docker run` settings that shape the spec.
type RunOptions struct {
	// Entrypoint overrides the image's (--entrypoint). nil keeps the image's;
	// []string{""} removes it. Any non-nil value also drops the image's Cmd
	// unless Cmd is given, as Docker does.
	Entrypoint []string
	// Cmd replaces the image's Cmd (the arguments after the image name).
	Cmd []string
	// Env holds -e entries followed by the lines of --env-file files (see
	// ParseEnvFile). A bare NAME takes its value from LookupEnv; when that
	// does not know it, NAME is removed from the container's environment.
	Env []string
	// LookupEnv resolves bare NAME entries; nil leaves them unresolved.
	LookupEnv LookupEnvFunc
	// User overrides the image's user (-u): name, uid, name:group, uid:gid.
	User string
	// GroupAdd adds supplementary groups (--group-add), names or gids.
	GroupAdd []string
	// WorkingDir overrides the image's working directory (-w); it must be
	// absolute. The default is "/".
	WorkingDir string
	// Hostname of the container (Docker's default is the short id); also
	// exported as HOSTNAME.
	Hostname string
	// Tty allocates a terminal (-t) and defaults TERM to xterm.
	Tty bool
	// Labels are merged over the image's labels and recorded as annotations.
	Labels map[string]string
	// ReadOnlyRoot mounts the root filesystem read-only (--read-only).
	ReadOnlyRoot bool
	// NetworkMode is NetworkDefault, NetworkNone or NetworkHost.
	NetworkMode string
	// Mounts are -v/--mount/--tmpfs entries.
	Mounts []Mount
	// HostsPath, HostnamePath and ResolvConfPath are the per-container files
	// bind-mounted on /etc/hosts, /etc/hostname and /etc/resolv.conf; empty
	// ones are not mounted. A Mount on the same destination wins.
	HostsPath      string
	HostnamePath   string
	ResolvConfPath string
	// Security holds --privileged, --cap-add, --cap-drop, --security-opt
	// and --device; its zero value is Docker's defaults, with Docker's
	// default seccomp profile.
	Security Security
	// Resources holds the cgroup limits, --ulimit and --shm-size.
	Resources Resources
	// CgroupsPath is the container's cgroup, e.g. /berth/<id> (the runtime
	// creates it under every controller; empty leaves it to the runtime).
	CgroupsPath string
}

// Generate returns the OCI runtime spec of a container made from an image
// with config img and run options opts. rootfs is a directory holding the
// container's root filesystem; only its /etc/passwd and /etc/group are read
// (to resolve the user). The spec's root path is "rootfs", relative to the
// bundle; pass WithRootPath to change it. extra options are applied last
// (an extra option that changes the capabilities should also set seccomp,
// since Docker's default profile depends on them).
//
// The caller must honour process.cwd: Docker creates the working directory
// when it is missing, the runtime does not.
func Generate(ctx context.Context, img imagespec.ImageConfig, opts RunOptions, rootfs string, extra ...SpecOpt) (*specs.Spec, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	args, err := MergeArgs(img.Entrypoint, img.Cmd, opts.Entrypoint, opts.Cmd)
	if err != nil {
		return nil, err
	}
	cwd, err := workingDir(img.WorkingDir, opts.WorkingDir)
	if err != nil {
		return nil, err
	}
	userSpec := opts.User
	if userSpec == "" {
		userSpec = img.User
	}
	resolved, err := ResolveUser(rootfs, userSpec, opts.GroupAdd)
	if err != nil {
		return nil, err
	}
	runEnv, err := ResolveEnv(opts.Env, opts.LookupEnv)
	if err != nil {
		return nil, err
	}
	if err := opts.Resources.Validate(); err != nil {
		return nil, err
	}
	secOpts, err := securityOpts(opts.Security)
	if err != nil {
		return nil, err
	}

	s := DefaultSpec()
	s.Hostname = opts.Hostname
	s.Process.Args = args
	s.Process.Cwd = cwd
	s.Process.Terminal = opts.Tty
	s.Process.User = resolved.User
	s.Process.Env = containerEnv(img.Env, runEnv, opts.Hostname, opts.Tty, resolved.Home)

	var specOpts []SpecOpt
	switch opts.NetworkMode {
	case NetworkDefault, NetworkNone:
	case NetworkHost:
		specOpts = append(specOpts, WithHostNetwork)
	default:
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument,
			"network mode %q is not supported: use %q or %q", opts.NetworkMode, NetworkNone, NetworkHost)
	}
	mounts, err := runMounts(opts)
	if err != nil {
		return nil, err
	}
	specOpts = append(specOpts, WithMounts(mounts))
	if opts.ReadOnlyRoot {
		// Docker also makes the default mounts read-only except /proc and
		// /dev/*; /sys and /sys/fs/cgroup already are, and the network
		// files were made read-only above.
		specOpts = append(specOpts, WithReadonlyRoot)
	}
	if labels := mergeLabels(img.Labels, opts.Labels); len(labels) > 0 {
		specOpts = append(specOpts, WithAnnotations(labels))
	}
	specOpts = append(specOpts, resourceOpts(opts.Resources)...)
	if opts.CgroupsPath != "" {
		specOpts = append(specOpts, WithCgroupsPath(opts.CgroupsPath))
	}
	// Last: privileged edits the mounts, and the seccomp profile depends
	// on the capabilities.
	specOpts = append(specOpts, secOpts...)
	if err := ApplyOpts(s, append(specOpts, extra...)...); err != nil {
		return nil, err
	}
	return s, nil
}

// EntrypointAndCmd returns the entrypoint and the command a container runs,
// apart, as Docker records them in a container's Config: the rules of
// MergeArgs, which joins them.
func EntrypointAndCmd(imgEntrypoint, imgCmd, runEntrypoint, runCmd []string) (entrypoint, cmd []string) {
	entrypoint, cmd = runEntrypoint, runCmd
	if len(entrypoint) == 0 {
		if len(cmd) == 0 {
			cmd = imgCmd
		}
		if entrypoint == nil {
			entrypoint = imgEntrypoint
		}
	}
	if len(entrypoint) == 1 && entrypoint[0] == "" {
		entrypoint = nil
	}
	return entrypoint, cmd
}

// MergeArgs returns the process arguments, following Docker's rules: run
// arguments replace the image's Cmd; a run entrypoint replaces the image's
// and drops its Cmd; []string{""} as run entrypoint means "no entrypoint".
// No arguments at all is an error.
func MergeArgs(imgEntrypoint, imgCmd, runEntrypoint, runCmd []string) ([]string, error) {
	entrypoint, cmd := EntrypointAndCmd(imgEntrypoint, imgCmd, runEntrypoint, runCmd)
	args := append(slices.Clone(entrypoint), cmd...)
	if len(args) == 0 {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument,
			"no command specified: the image has no Entrypoint or Cmd; give a command after the image name")
	}
	if args[0] == "" {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument,
			"the command to run is an empty string: give a command after the image name")
	}
	return args, nil
}

func workingDir(imgDir, runDir string) (string, error) {
	dir := runDir
	if dir == "" {
		dir = imgDir
	}
	if dir == "" {
		return "/", nil
	}
	if !path.IsAbs(dir) {
		return "", errdefs.Errorf(errdefs.ErrInvalidArgument,
			"the working directory '%s' is invalid, it needs to be an absolute path", dir)
	}
	return path.Clean(dir), nil
}

// containerEnv builds the process environment as Docker does: PATH, HOSTNAME
// and (with a tty) TERM=xterm as defaults, then the image's Env, then the run
// Env, each overriding earlier entries by name; HOME from passwd when nothing
// set it.
func containerEnv(imgEnv, runEnv []string, hostname string, tty bool, home string) []string {
	defaults := []string{"PATH=" + DefaultPathEnv, "HOSTNAME=" + hostname}
	if tty {
		defaults = append(defaults, "TERM=xterm")
	}
	overrides := append(slices.Clone(imgEnv), runEnv...)
	env := MergeEnv(defaults, overrides)
	if !slices.ContainsFunc(env, func(e string) bool { return envKey(e) == "HOME" }) {
		env = append(env, "HOME="+home)
	}
	return env
}

func mergeLabels(img, run map[string]string) map[string]string {
	if len(img) == 0 && len(run) == 0 {
		return nil
	}
	out := make(map[string]string, len(img)+len(run))
	maps.Copy(out, img)
	maps.Copy(out, run)
	return out
}

var propagations = []string{"private", "rprivate", "shared", "rshared", "slave", "rslave"}

// runMounts turns the run options' mounts and per-container network files
// into OCI mounts. A user mount on /etc/hosts (etc.) replaces the file.
func runMounts(opts RunOptions) ([]specs.Mount, error) {
	out := make([]specs.Mount, 0, len(opts.Mounts)+3)
	taken := make(map[string]bool, len(opts.Mounts))
	for _, m := range opts.Mounts {
		om, err := ociMount(m)
		if err != nil {
			return nil, err
		}
		taken[om.Destination] = true
		out = append(out, om)
	}
	for _, f := range []struct{ src, dst string }{
		{opts.ResolvConfPath, "/etc/resolv.conf"},
		{opts.HostnamePath, "/etc/hostname"},
		{opts.HostsPath, "/etc/hosts"},
	} {
		if f.src == "" || taken[f.dst] {
			continue
		}
		if !path.IsAbs(f.src) {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument,
				"the file to mount on %s (%q) must be an absolute host path", f.dst, f.src)
		}
		o := []string{"rbind", "rprivate"}
		if opts.ReadOnlyRoot {
			o = append(o, "ro")
		}
		out = append(out, specs.Mount{Destination: f.dst, Type: "bind", Source: f.src, Options: o})
	}
	return out, nil
}

func ociMount(m Mount) (specs.Mount, error) {
	dst := path.Clean(m.Destination)
	if !path.IsAbs(m.Destination) {
		return specs.Mount{}, errdefs.Errorf(errdefs.ErrInvalidArgument,
			"invalid mount destination %q: it must be an absolute path", m.Destination)
	}
	if dst == "/" {
		return specs.Mount{}, errdefs.Errorf(errdefs.ErrInvalidArgument,
			"invalid mount destination \"/\": mounting over the container's root is not allowed")
	}
	var o []string
	switch m.Type {
	case MountTypeBind:
		if !path.IsAbs(m.Source) {
			return specs.Mount{}, errdefs.Errorf(errdefs.ErrInvalidArgument,
				"invalid bind mount source %q for %s: it must be an absolute host path", m.Source, dst)
		}
		p := m.Propagation
		if p == "" {
			p = "rprivate"
		}
		if !slices.Contains(propagations, p) {
			return specs.Mount{}, errdefs.Errorf(errdefs.ErrInvalidArgument,
				"invalid propagation %q for mount %s: use one of %s", p, dst, strings.Join(propagations, ", "))
		}
		o = append(o, "rbind", p)
	case MountTypeTmpfs:
		if m.Propagation != "" {
			return specs.Mount{}, errdefs.Errorf(errdefs.ErrInvalidArgument,
				"propagation %q given for tmpfs mount %s: propagation applies to bind mounts only", m.Propagation, dst)
		}
		o = append(o, "nosuid", "nodev", "noexec")
	default:
		return specs.Mount{}, errdefs.Errorf(errdefs.ErrInvalidArgument,
			"mount type %q for %s is not supported: use %q or %q", m.Type, dst, MountTypeBind, MountTypeTmpfs)
	}
	o = append(o, m.Options...)
	if m.ReadOnly {
		o = append(o, "ro")
	}
	src := m.Source
	if m.Type == MountTypeTmpfs {
		src = "tmpfs"
	}
	return specs.Mount{Destination: dst, Type: m.Type, Source: src, Options: o}, nil
}
