package command

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	units "github.com/docker/go-units"
	"github.com/spf13/pflag"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/tasks/ocispec"
)

// limitOptions are the flags of create and run that set the container's
// confinement and resource limits, spelled as Docker's.
type limitOptions struct {
	privileged     bool
	capAdd         []string
	capDrop        []string
	securityOpt    []string
	readOnly       bool
	tmpfs          []string
	devices        []string
	ulimits        ulimitsValue
	shmSize        memBytes
	oomKillDisable bool
	resourceFlags
}

// resourceFlags are the cgroup limits that create, run and update share.
type resourceFlags struct {
	memory            memBytes
	memorySwap        memSwapBytes
	memoryReservation memBytes
	cpus              nanoCPUs
	cpuShares         int64
	cpuQuota          int64
	cpuPeriod         int64
	cpusetCpus        string
	cpusetMems        string
	pidsLimit         int64
	blkioWeight       uint16
}

// addFlags registers the limits as Docker spells them.
func (o *resourceFlags) addFlags(flags *pflag.FlagSet) {
	flags.VarP(&o.memory, "memory", "m", "Memory limit")
	flags.Var(&o.memorySwap, "memory-swap", "Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
	flags.Var(&o.memoryReservation, "memory-reservation", "Memory soft limit")
	flags.Var(&o.cpus, "cpus", "Number of CPUs")
	flags.Int64VarP(&o.cpuShares, "cpu-shares", "c", 0, "CPU shares (relative weight)")
	flags.Int64Var(&o.cpuQuota, "cpu-quota", 0, "Limit CPU CFS (Completely Fair Scheduler) quota")
	flags.Int64Var(&o.cpuPeriod, "cpu-period", 0, "Limit CPU CFS (Completely Fair Scheduler) period")
	flags.StringVar(&o.cpusetCpus, "cpuset-cpus", "", "CPUs in which to allow execution (0-3, 0,1)")
	flags.StringVar(&o.cpusetMems, "cpuset-mems", "", "MEMs in which to allow execution (0-3, 0,1)")
	flags.Int64Var(&o.pidsLimit, "pids-limit", 0, "Tune container pids limit (set -1 for unlimited)")
	flags.Uint16Var(&o.blkioWeight, "blkio-weight", 0, "Block IO (relative weight), between 10 and 1000, or 0 to disable (default 0)")
}

// resources returns the limits as the spec generator takes them.
func (o *resourceFlags) resources() ocispec.Resources {
	return ocispec.Resources{
		Memory:            int64(o.memory),
		MemorySwap:        int64(o.memorySwap),
		MemoryReservation: int64(o.memoryReservation),
		NanoCPUs:          int64(o.cpus),
		CPUShares:         o.cpuShares,
		CPUQuota:          o.cpuQuota,
		CPUPeriod:         o.cpuPeriod,
		CpusetCpus:        o.cpusetCpus,
		CpusetMems:        o.cpusetMems,
		PidsLimit:         o.pidsLimit,
		BlkioWeight:       o.blkioWeight,
	}
}

func (o *limitOptions) addFlags(flags *pflag.FlagSet) {
	flags.BoolVar(&o.privileged, "privileged", false, "Give extended privileges to this container")
	flags.StringArrayVar(&o.capAdd, "cap-add", nil, "Add Linux capabilities")
	flags.StringArrayVar(&o.capDrop, "cap-drop", nil, "Drop Linux capabilities")
	flags.StringArrayVar(&o.securityOpt, "security-opt", nil, "Security Options: no-new-privileges[:true|false], seccomp=unconfined|PROFILE.json")
	flags.BoolVar(&o.readOnly, "read-only", false, "Mount the container's root filesystem as read only")
	flags.StringArrayVar(&o.tmpfs, "tmpfs", nil, "Mount a tmpfs directory (PATH[:OPTIONS])")
	flags.StringArrayVar(&o.devices, "device", nil, "Add a host device to the container (HOST[:CONTAINER[:PERMISSIONS]])")
	flags.Var(&o.ulimits, "ulimit", "Ulimit options (NAME=SOFT[:HARD])")
	flags.Var(&o.shmSize, "shm-size", "Size of /dev/shm (default 64MB)")
	flags.BoolVar(&o.oomKillDisable, "oom-kill-disable", false, "Disable OOM Killer")
	o.resourceFlags.addFlags(flags)
}

// apply parses the flags into ro and returns what inspect shows of them
// that the spec does not hold. A bad value is an invalid-argument error
// and nothing is created.
func (o *limitOptions) apply(ro *ocispec.RunOptions) (hostConfigExt, error) {
	ext := hostConfigExt{
		Privileged:  o.privileged,
		NanoCpus:    int64(o.cpus),
		Ulimits:     o.ulimits.list(),
		SecurityOpt: []string{},
	}
	sec := &ro.Security
	sec.Privileged = o.privileged
	var err error
	if sec.CapAdd, err = ocispec.NormalizeCapabilities(o.capAdd); err != nil {
		return ext, err
	}
	if sec.CapDrop, err = ocispec.NormalizeCapabilities(o.capDrop); err != nil {
		return ext, err
	}
	// Shown normalized, as Docker's CLI sends them.
	ext.CapAdd, ext.CapDrop = sec.CapAdd, sec.CapDrop
	for _, opt := range o.securityOpt {
		shown, err := applySecurityOpt(sec, opt)
		if err != nil {
			return ext, err
		}
		ext.SecurityOpt = append(ext.SecurityOpt, shown)
	}
	for _, d := range o.devices {
		dev, err := parseDevice(d)
		if err != nil {
			return ext, err
		}
		sec.Devices = append(sec.Devices, dev)
		ext.Devices = append(ext.Devices, inspectDevice{PathOnHost: dev.HostPath, PathInContainer: dev.ContainerPath, CgroupPermissions: dev.Permissions})
	}
	ro.ReadOnlyRoot = o.readOnly
	for _, t := range o.tmpfs {
		m, err := parseTmpfs(t)
		if err != nil {
			return ext, err
		}
		ro.Mounts = append(ro.Mounts, m)
		if ext.Tmpfs == nil {
			ext.Tmpfs = map[string]string{}
		}
		_, opts, _ := strings.Cut(t, ":")
		ext.Tmpfs[m.Destination] = opts
	}
	ro.Resources = o.resourceFlags.resources()
	ro.Resources.OomKillDisable = o.oomKillDisable
	ro.Resources.ShmSize = int64(o.shmSize)
	for _, u := range o.ulimits.list() {
		ro.Resources.Ulimits = append(ro.Resources.Ulimits, ocispec.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
	}
	return ext, ro.Resources.Validate()
}

// applySecurityOpt applies one --security-opt to sec and returns it as
// inspect shows it (a seccomp file becomes its JSON, as Docker's CLI
// sends it).
func applySecurityOpt(sec *ocispec.Security, opt string) (string, error) {
	key, value, ok := strings.Cut(opt, "=")
	if !ok {
		// Docker's older spelling is KEY:VALUE; no-new-privileges alone is true.
		key, value, ok = strings.Cut(opt, ":")
	}
	switch key {
	case "no-new-privileges":
		nnp := true
		if ok {
			b, err := strconv.ParseBool(value)
			if err != nil {
				return "", errdefs.Errorf(errdefs.ErrInvalidArgument,
					"invalid --security-opt %q: no-new-privileges takes true or false", opt)
			}
			nnp = b
		}
		sec.NoNewPrivileges = nnp
		return opt, nil
	case "seccomp":
		switch {
		case !ok || value == "":
			return "", errdefs.Errorf(errdefs.ErrInvalidArgument,
				"invalid --security-opt %q: use seccomp=unconfined or seccomp=PROFILE.json", opt)
		case value == "unconfined":
			sec.SeccompUnconfined, sec.SeccompProfile = true, nil
			return "seccomp=unconfined", nil
		case value == "builtin":
			// Docker's name for its default profile.
			sec.SeccompUnconfined, sec.SeccompProfile = false, nil
			return "seccomp=builtin", nil
		}
		data, err := os.ReadFile(value)
		if err != nil {
			return "", errdefs.Errorf(errdefs.ErrInvalidArgument,
				"opening seccomp profile (%s) failed: %v", value, err)
		}
		if err := ocispec.ValidateSeccompProfile(data); err != nil {
			return "", fmt.Errorf("seccomp profile %s: %w", value, err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, data); err != nil {
			return "", errdefs.Errorf(errdefs.ErrInvalidArgument, "seccomp profile %s is not JSON: %v", value, err)
		}
		sec.SeccompUnconfined, sec.SeccompProfile = false, compact.Bytes()
		return "seccomp=" + compact.String(), nil
	case "apparmor", "label":
		// berth applies neither AppArmor nor SELinux labels; Docker's
		// ways of turning them off are accepted so scripts keep working.
		if value == "unconfined" || value == "disable" {
			return opt, nil
		}
		return "", errdefs.Errorf(errdefs.ErrInvalidArgument,
			"--security-opt %q is not supported: berth applies no %s profile; use no-new-privileges or seccomp", opt, key)
	}
	return "", errdefs.Errorf(errdefs.ErrInvalidArgument,
		"invalid --security-opt %q: use no-new-privileges[:true|false], seccomp=unconfined or seccomp=PROFILE.json", opt)
}

// parseTmpfs parses --tmpfs PATH[:OPTIONS] as Docker does: options are
// mount options separated by commas (size=64m, mode=1777, exec, ro, ...).
func parseTmpfs(s string) (ocispec.Mount, error) {
	dst, opts, _ := strings.Cut(s, ":")
	if dst == "" {
		return ocispec.Mount{}, errdefs.Errorf(errdefs.ErrInvalidArgument,
			"invalid --tmpfs %q: give an absolute path in the container, e.g. /run or /run:size=64m", s)
	}
	m := ocispec.Mount{Type: ocispec.MountTypeTmpfs, Destination: dst}
	if opts == "" {
		return m, nil
	}
	for o := range strings.SplitSeq(opts, ",") {
		switch {
		case o == "":
		case o == "ro":
			m.ReadOnly = true
		case o == "rw":
			m.ReadOnly = false
		case strings.HasPrefix(o, "size="):
			n, err := units.RAMInBytes(strings.TrimPrefix(o, "size="))
			if err != nil {
				return ocispec.Mount{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid --tmpfs %q: %v", s, err)
			}
			m.Options = append(m.Options, "size="+strconv.FormatInt(n, 10))
		default:
			m.Options = append(m.Options, o)
		}
	}
	return m, nil
}

// parseDevice parses --device HOST[:CONTAINER[:PERMISSIONS]].
func parseDevice(s string) (ocispec.Device, error) {
	parts := strings.Split(s, ":")
	d := ocispec.Device{HostPath: parts[0], Permissions: "rwm"}
	switch len(parts) {
	case 1:
	case 2:
		// The second field is permissions when it looks like them.
		if p := parts[1]; p != "" && strings.Trim(p, "rwm") == "" {
			d.Permissions = p
		} else {
			d.ContainerPath = p
		}
	case 3:
		d.ContainerPath, d.Permissions = parts[1], parts[2]
	default:
		return d, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid device specification: %s: use HOST[:CONTAINER[:PERMISSIONS]]", s)
	}
	if d.HostPath == "" || d.Permissions == "" || strings.Trim(d.Permissions, "rwm") != "" {
		return d, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid device specification: %s: use HOST[:CONTAINER[:PERMISSIONS]], permissions of r, w and m", s)
	}
	if d.ContainerPath == "" {
		d.ContainerPath = d.HostPath
	}
	return d, nil
}

// memBytes is a size flag in Docker's units (b, k, m, g; 1024-based).
type memBytes int64

func (m *memBytes) Set(s string) error {
	n, err := units.RAMInBytes(s)
	if err != nil {
		return err
	}
	*m = memBytes(n)
	return nil
}

func (m *memBytes) String() string {
	if *m == 0 {
		return "0"
	}
	return units.BytesSize(float64(*m))
}

func (m *memBytes) Type() string { return "bytes" }

// memSwapBytes is --memory-swap: a size, or -1 for unlimited swap.
type memSwapBytes int64

func (m *memSwapBytes) Set(s string) error {
	if s == "-1" {
		*m = -1
		return nil
	}
	var b memBytes
	if err := b.Set(s); err != nil {
		return err
	}
	*m = memSwapBytes(b)
	return nil
}

func (m *memSwapBytes) String() string {
	if *m == -1 {
		return "-1"
	}
	b := memBytes(*m)
	return b.String()
}

func (m *memSwapBytes) Type() string { return "bytes" }

// nanoCPUs is --cpus: a decimal number of CPUs kept in billionths.
type nanoCPUs int64

func (n *nanoCPUs) Set(s string) error {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return fmt.Errorf("failed to parse %v as a rational number", s)
	}
	nano := r.Mul(r, big.NewRat(1e9, 1))
	if !nano.IsInt() {
		return errors.New("value is too precise")
	}
	if !nano.Num().IsInt64() || nano.Sign() < 0 {
		return fmt.Errorf("%v is out of range: give a positive number of CPUs", s)
	}
	*n = nanoCPUs(nano.Num().Int64())
	return nil
}

func (n *nanoCPUs) String() string {
	if *n == 0 {
		return ""
	}
	return big.NewRat(int64(*n), 1e9).FloatString(3)
}

func (n *nanoCPUs) Type() string { return "decimal" }

// ulimitsValue is the repeatable --ulimit NAME=SOFT[:HARD]; a later value
// for a name replaces the earlier one.
type ulimitsValue struct {
	byName map[string]*units.Ulimit
}

func (u *ulimitsValue) Set(s string) error {
	l, err := units.ParseUlimit(s)
	if err != nil {
		return err
	}
	if u.byName == nil {
		u.byName = map[string]*units.Ulimit{}
	}
	u.byName[l.Name] = l
	return nil
}

func (u *ulimitsValue) String() string {
	var out []string
	for _, l := range u.byName {
		out = append(out, l.String())
	}
	sort.Strings(out)
	return "[" + strings.Join(out, " ") + "]"
}

func (u *ulimitsValue) Type() string { return "ulimit" }

// list returns the ulimits sorted by name.
func (u *ulimitsValue) list() []inspectUlimit {
	out := make([]inspectUlimit, 0, len(u.byName))
	for _, l := range u.byName {
		out = append(out, inspectUlimit{Name: l.Name, Soft: l.Soft, Hard: l.Hard})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return slices.Clip(out)
}
