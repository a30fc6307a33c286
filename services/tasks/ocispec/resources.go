package ocispec

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	units "github.com/docker/go-units"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-engine/berth/internal/errdefs"
)

// Resources are the limits of `docker run`: cgroup limits (--memory,
// --cpus, --pids-limit, ...), process limits (--ulimit) and the size of
// /dev/shm. Zero values mean "not set".
type Resources struct {
	// Memory is the memory limit in bytes (--memory).
	Memory int64
	// MemorySwap is the limit of memory plus swap (--memory-swap); -1 is
	// unlimited swap. When Memory is set and MemorySwap is not, it is
	// twice Memory, as Docker does.
	MemorySwap int64
	// MemoryReservation is the soft limit (--memory-reservation).
	MemoryReservation int64
	// OomKillDisable disables the OOM killer (--oom-kill-disable).
	OomKillDisable bool
	// NanoCPUs is the CPU limit in billionths of a CPU (--cpus);
	// exclusive with CPUQuota and CPUPeriod.
	NanoCPUs int64
	// CPUShares is the relative CPU weight (--cpu-shares).
	CPUShares int64
	// CPUQuota and CPUPeriod are the CFS quota and period in
	// microseconds (--cpu-quota, --cpu-period).
	CPUQuota  int64
	CPUPeriod int64
	// CpusetCpus and CpusetMems pin the container (--cpuset-cpus,
	// --cpuset-mems), e.g. "0-1,3".
	CpusetCpus string
	CpusetMems string
	// PidsLimit caps the number of processes (--pids-limit); zero or
	// negative means unlimited.
	PidsLimit int64
	// BlkioWeight is the block IO weight, 10 to 1000 (--blkio-weight).
	BlkioWeight uint16
	// ShmSize is the size of /dev/shm in bytes (--shm-size); zero means
	// DefaultShmSize.
	ShmSize int64
	// Ulimits set process limits (--ulimit); they replace the defaults of
	// the same name.
	Ulimits []Ulimit
}

// Ulimit is one --ulimit: a Docker name (nofile, nproc, core, ...) and its
// soft and hard limits; -1 is unlimited.
type Ulimit struct {
	Name string
	Soft int64
	Hard int64
}

// CPUPeriod is the CFS period, in microseconds, that --cpus is expressed
// in, as Docker's.
const CPUPeriod = 100000

// Docker's bounds on resource values.
const (
	minMemory        = 6 * 1024 * 1024 // 6 MB
	minCPUPeriod     = 1000            // 1 ms
	maxCPUPeriod     = 1000000         // 1 s
	minCPUQuota      = 1000            // 1 ms
	minBlkioWeight   = 10
	maxBlkioWeight   = 1000
	unlimitedSwap    = -1
	unlimitedUlimit  = -1
	rlimitTypePrefix = "RLIMIT_"
)

// Validate checks r as Docker's daemon does, so that a bad combination is
// refused before anything is created. Each error says which flag to fix.
func (r Resources) Validate() error {
	bad := func(format string, args ...any) error {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, format, args...)
	}
	switch {
	case r.Memory < 0:
		return bad("invalid --memory %d: it must not be negative", r.Memory)
	case r.Memory > 0 && r.Memory < minMemory:
		return bad("Minimum memory limit allowed is 6MB: give --memory 6m or more")
	case r.MemorySwap < unlimitedSwap:
		return bad("invalid --memory-swap %d: use -1 for unlimited swap or a size", r.MemorySwap)
	case r.MemorySwap > 0 && r.Memory == 0:
		return bad("You should always set the Memory limit when using Memoryswap limit: add --memory")
	case r.MemorySwap > 0 && r.MemorySwap < r.Memory:
		return bad("Minimum memoryswap limit should be larger than memory limit: give --memory-swap at least --memory")
	case r.MemoryReservation < 0:
		return bad("invalid --memory-reservation %d: it must not be negative", r.MemoryReservation)
	case r.MemoryReservation > 0 && r.MemoryReservation < minMemory:
		return bad("Minimum memory reservation allowed is 6MB: give --memory-reservation 6m or more")
	case r.Memory > 0 && r.MemoryReservation > r.Memory:
		return bad("Minimum memory limit can not be less than memory reservation limit: give --memory at least --memory-reservation")
	case r.NanoCPUs < 0:
		return bad("invalid --cpus: it must not be negative")
	case r.NanoCPUs > 0 && r.CPUPeriod != 0:
		return bad("Conflicting options: Nano CPUs and CPU Period cannot both be set: use --cpus or --cpu-period with --cpu-quota")
	case r.NanoCPUs > 0 && r.CPUQuota != 0:
		return bad("Conflicting options: Nano CPUs and CPU Quota cannot both be set: use --cpus or --cpu-quota")
	case r.NanoCPUs > int64(runtime.NumCPU())*1e9:
		return bad("Range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available: lower --cpus", runtime.NumCPU(), runtime.NumCPU())
	case r.NanoCPUs > 0 && r.NanoCPUs*CPUPeriod/1e9 < minCPUQuota:
		return bad("Range of CPUs is from 0.01 to %d.00: raise --cpus", runtime.NumCPU())
	case r.CPUShares < 0:
		return bad("invalid --cpu-shares %d: it must not be negative", r.CPUShares)
	case r.CPUPeriod != 0 && (r.CPUPeriod < minCPUPeriod || r.CPUPeriod > maxCPUPeriod):
		return bad("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000): fix --cpu-period")
	case r.CPUQuota > 0 && r.CPUQuota < minCPUQuota:
		return bad("CPU cfs quota can not be less than 1ms (i.e. 1000): fix --cpu-quota")
	case r.BlkioWeight != 0 && (r.BlkioWeight < minBlkioWeight || r.BlkioWeight > maxBlkioWeight):
		return bad("Range of blkio weight is from 10 to 1000: fix --blkio-weight")
	case r.ShmSize < 0:
		return bad("SHM size can not be less than 0: fix --shm-size")
	}
	if r.CpusetCpus != "" {
		ids, err := parseCPUList(r.CpusetCpus)
		if err != nil {
			return bad("invalid value %s for cpuset cpus: %v: give a list such as 0-2,4", r.CpusetCpus, err)
		}
		if n := runtime.NumCPU(); slices.Max(ids) >= n {
			return bad("Requested CPUs are not available - requested %s, available: 0-%d: fix --cpuset-cpus", r.CpusetCpus, n-1)
		}
	}
	if r.CpusetMems != "" {
		if _, err := parseCPUList(r.CpusetMems); err != nil {
			return bad("invalid value %s for cpuset mems: %v: give a list such as 0-1", r.CpusetMems, err)
		}
	}
	for _, u := range r.Ulimits {
		if _, err := rlimitType(u.Name); err != nil {
			return err
		}
		if u.Hard != unlimitedUlimit && (u.Soft == unlimitedUlimit || u.Soft > u.Hard) {
			return bad("ulimit soft limit must be less than or equal to hard limit: %s=%d:%d", u.Name, u.Soft, u.Hard)
		}
	}
	return nil
}

// parseCPUList parses a cpuset list ("0-2,4") into its numbers.
func parseCPUList(s string) ([]int, error) {
	var ids []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "%q is not a number", lo)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 16); err != nil || b < a {
				return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "%q is not a range", part)
			}
		}
		for i := a; i <= b; i++ {
			ids = append(ids, int(i))
		}
	}
	return ids, nil
}

// rlimitType returns the spec's name of a Docker ulimit name.
func rlimitType(name string) (string, error) {
	if _, err := (&units.Ulimit{Name: name}).GetRlimit(); err != nil {
		return "", errdefs.Errorf(errdefs.ErrInvalidArgument,
			"invalid ulimit type: %s: use core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending or stack", name)
	}
	return rlimitTypePrefix + strings.ToUpper(name), nil
}

// resourceOpts turns r into spec options; r must be valid.
func resourceOpts(r Resources) []SpecOpt {
	opts := []SpecOpt{WithCgroupResources(r)}
	if r.ShmSize > 0 {
		opts = append(opts, WithShmSize(r.ShmSize))
	}
	for _, u := range r.Ulimits {
		typ, _ := rlimitType(u.Name)
		// -1 becomes RLIM_INFINITY.
		opts = append(opts, WithRlimit(typ, uint64(u.Soft), uint64(u.Hard)))
	}
	return opts
}

// WithCgroupResources sets the cgroup limits of r in the spec, leaving the
// device rules alone. The runtime writes them into the container's cgroup
// (v1 or v2) when it creates it.
func WithCgroupResources(r Resources) SpecOpt {
	return func(s *specs.Spec) error {
		if err := r.Validate(); err != nil {
			return err
		}
		l := ensureLinux(s)
		if l.Resources == nil {
			l.Resources = &specs.LinuxResources{}
		}
		res := l.Resources
		if r.Memory > 0 || r.MemoryReservation > 0 || r.MemorySwap != 0 || r.OomKillDisable {
			m := &specs.LinuxMemory{}
			if r.Memory > 0 {
				m.Limit = ptr(r.Memory)
				swap := r.MemorySwap
				if swap == 0 {
					swap = 2 * r.Memory
				}
				if SwapLimitSupported() {
					m.Swap = ptr(swap)
				}
			}
			if r.MemoryReservation > 0 {
				m.Reservation = ptr(r.MemoryReservation)
			}
			if r.OomKillDisable {
				m.DisableOOMKiller = ptr(true)
			}
			res.Memory = m
		}
		if r.NanoCPUs > 0 || r.CPUShares > 0 || r.CPUQuota != 0 || r.CPUPeriod > 0 || r.CpusetCpus != "" || r.CpusetMems != "" {
			c := &specs.LinuxCPU{Cpus: r.CpusetCpus, Mems: r.CpusetMems}
			if r.CPUShares > 0 {
				c.Shares = ptr(uint64(r.CPUShares))
			}
			if r.NanoCPUs > 0 {
				c.Period = ptr(uint64(CPUPeriod))
				c.Quota = ptr(r.NanoCPUs * CPUPeriod / 1e9)
			}
			if r.CPUQuota != 0 {
				c.Quota = ptr(r.CPUQuota)
			}
			if r.CPUPeriod > 0 {
				c.Period = ptr(uint64(r.CPUPeriod))
			}
			res.CPU = c
		}
		if r.PidsLimit > 0 {
			res.Pids = &specs.LinuxPids{Limit: ptr(r.PidsLimit)}
		}
		if r.BlkioWeight > 0 {
			res.BlockIO = &specs.LinuxBlockIO{Weight: ptr(r.BlkioWeight)}
		}
		return nil
	}
}

// SwapLimitSupported tells whether the host's memory cgroup limits swap: on
// cgroup v1 only when the kernel was booted with it (memory.memsw.*). As
// Docker, berth drops the swap limit where it cannot be set rather than
// fail the start.
func SwapLimitSupported() bool {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return true // cgroup v2: memory.swap.max
	}
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	return err == nil
}

// WithShmSize sets the size of the container's /dev/shm in bytes.
func WithShmSize(size int64) SpecOpt {
	return func(s *specs.Spec) error {
		if size <= 0 {
			return errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid /dev/shm size %d: it must be positive", size)
		}
		for i, m := range s.Mounts {
			if m.Destination != "/dev/shm" || m.Type != "tmpfs" {
				continue
			}
			o := slices.DeleteFunc(slices.Clone(m.Options), func(o string) bool { return strings.HasPrefix(o, "size=") })
			s.Mounts[i].Options = append(o, "size="+strconv.FormatInt(size, 10))
		}
		return nil
	}
}

// ShmSize returns the size of the spec's /dev/shm in bytes, 0 when it has
// none or its size is not given.
func ShmSize(s *specs.Spec) int64 {
	for _, m := range s.Mounts {
		if m.Destination != "/dev/shm" {
			continue
		}
		for _, o := range m.Options {
			if v, ok := strings.CutPrefix(o, "size="); ok {
				n, err := units.RAMInBytes(v)
				if err != nil {
					return 0
				}
				return n
			}
		}
	}
	return 0
}

func ptr[T any](v T) *T { return &v }
