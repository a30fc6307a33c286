package command

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-engine/berth/services/containers"
	"github.com/berth-engine/berth/services/tasks/ocispec"
)

// What inspect shows of a container's confinement and limits comes from
// two places: the numbers the runtime applies are read back from the OCI
// spec (so a later change of the spec shows), and what the spec cannot say
// (the flags as given: --cap-add, --security-opt, --cpus, --tmpfs, ...)
// is kept in the record's hostConfigExtension.
const (
	hostConfigExtension = "berth-hostconfig"
	hostConfigTypeURL   = "types.berth.dev/berth/cli/HostConfig"
)

// hostConfigExt is the JSON in hostConfigExtension.
type hostConfigExt struct {
	Privileged  bool              `json:"privileged,omitempty"`
	CapAdd      []string          `json:"cap_add,omitempty"`
	CapDrop     []string          `json:"cap_drop,omitempty"`
	SecurityOpt []string          `json:"security_opt,omitempty"`
	NanoCpus    int64             `json:"nano_cpus,omitempty"`
	Tmpfs       map[string]string `json:"tmpfs,omitempty"`
	Ulimits     []inspectUlimit   `json:"ulimits,omitempty"`
	Devices     []inspectDevice   `json:"devices,omitempty"`
}

// set records ext on c.
func (ext hostConfigExt) set(c *containers.Container) error {
	return containers.SetExtension(c, hostConfigExtension, hostConfigTypeURL, ext)
}

// hostConfigExtOf reads c's flags as given; none (or damaged) reads as no
// flags given.
func hostConfigExtOf(c containers.Container) hostConfigExt {
	var ext hostConfigExt
	containers.ReadExtension(c, hostConfigExtension, &ext)
	return ext
}

type inspectUlimit struct {
	Name string
	Hard int64
	Soft int64
}

type inspectDevice struct {
	PathOnHost        string
	PathInContainer   string
	CgroupPermissions string
}

// inspectLimits are the fields of Docker's HostConfig about confinement
// and resources, with Docker's names.
type inspectLimits struct {
	Privileged        bool
	CapAdd            []string
	CapDrop           []string
	SecurityOpt       []string
	ReadonlyRootfs    bool
	Tmpfs             map[string]string `json:",omitempty"`
	Ulimits           []inspectUlimit
	ShmSize           int64
	Memory            int64
	MemoryReservation int64
	MemorySwap        int64
	OomKillDisable    bool
	NanoCpus          int64
	CpuShares         int64
	CpuPeriod         int64
	CpuQuota          int64
	CpusetCpus        string
	CpusetMems        string
	PidsLimit         *int64
	BlkioWeight       uint16
	Devices           []inspectDevice
	CgroupParent      string
}

// limitsOf describes the confinement and limits of c, whose spec is s.
func limitsOf(c containers.Container, s *specs.Spec) inspectLimits {
	ext := hostConfigExtOf(c)
	l := inspectLimits{
		Privileged:  ext.Privileged,
		CapAdd:      ext.CapAdd,
		CapDrop:     ext.CapDrop,
		SecurityOpt: ext.SecurityOpt,
		Tmpfs:       ext.Tmpfs,
		Ulimits:     ext.Ulimits,
		NanoCpus:    ext.NanoCpus,
		Devices:     ext.Devices,
		ShmSize:     ocispec.ShmSize(s),
	}
	if len(l.SecurityOpt) == 0 {
		l.SecurityOpt = nil
	}
	if l.Devices == nil {
		l.Devices = []inspectDevice{}
	}
	if s.Root != nil {
		l.ReadonlyRootfs = s.Root.Readonly
	}
	if s.Linux == nil || s.Linux.Resources == nil {
		return l
	}
	r := s.Linux.Resources
	if m := r.Memory; m != nil {
		l.Memory = deref(m.Limit)
		l.MemoryReservation = deref(m.Reservation)
		l.MemorySwap = deref(m.Swap)
		l.OomKillDisable = deref(m.DisableOOMKiller)
	}
	if cpu := r.CPU; cpu != nil {
		l.CpuShares = int64(deref(cpu.Shares))
		l.CpusetCpus, l.CpusetMems = cpu.Cpus, cpu.Mems
		// --cpus is shown as NanoCpus alone, as Docker does.
		if ext.NanoCpus == 0 {
			l.CpuQuota = deref(cpu.Quota)
			l.CpuPeriod = int64(deref(cpu.Period))
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		l.PidsLimit = r.Pids.Limit
	}
	if r.BlockIO != nil {
		l.BlkioWeight = deref(r.BlockIO.Weight)
	}
	return l
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
