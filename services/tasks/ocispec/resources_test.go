package ocispec

import (
	"runtime"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-engine/berth/internal/errdefs"
)

func TestResourcesInSpec(t *testing.T) {
	s := generate(t, shCmd, RunOptions{Resources: Resources{
		Memory: 64 << 20, MemorySwap: 128 << 20, MemoryReservation: 32 << 20, OomKillDisable: true,
		NanoCPUs: 1.5e9, CPUShares: 512, CpusetCpus: "0", CpusetMems: "0",
		PidsLimit: 100, BlkioWeight: 300, ShmSize: 128 << 20,
		Ulimits: []Ulimit{{Name: "nofile", Soft: 2048, Hard: 4096}, {Name: "core", Soft: -1, Hard: -1}},
	}})
	r := s.Linux.Resources
	m := r.Memory
	if *m.Limit != 64<<20 || *m.Reservation != 32<<20 || !*m.DisableOOMKiller {
		t.Errorf("memory = %+v", m)
	}
	if SwapLimitSupported() && *m.Swap != 128<<20 {
		t.Errorf("swap = %d", *m.Swap)
	}
	if c := r.CPU; *c.Quota != 150000 || *c.Period != 100000 || *c.Shares != 512 || c.Cpus != "0" || c.Mems != "0" {
		t.Errorf("cpu = %+v", c)
	}
	if *r.Pids.Limit != 100 || *r.BlockIO.Weight != 300 {
		t.Errorf("pids %d, blkio weight %d", *r.Pids.Limit, *r.BlockIO.Weight)
	}
	if len(r.Devices) == 0 {
		t.Error("limits dropped the device rules")
	}
	if got := ShmSize(s); got != 128<<20 {
		t.Errorf("ShmSize = %d", got)
	}
	wantRlimits := []specs.POSIXRlimit{
		{Type: "RLIMIT_NOFILE", Soft: 2048, Hard: 4096},
		{Type: "RLIMIT_CORE", Soft: ^uint64(0), Hard: ^uint64(0)},
	}
	if !slices.Equal(s.Process.Rlimits, wantRlimits) {
		t.Errorf("rlimits = %+v", s.Process.Rlimits)
	}
}

func TestResourceDefaults(t *testing.T) {
	s := generate(t, shCmd, RunOptions{Resources: Resources{Memory: 64 << 20, PidsLimit: -1, CPUQuota: 50000, CPUPeriod: 200000}})
	r := s.Linux.Resources
	if SwapLimitSupported() && *r.Memory.Swap != 128<<20 {
		t.Errorf("swap without --memory-swap = %d, want twice the memory", *r.Memory.Swap)
	}
	if r.Pids != nil {
		t.Errorf("--pids-limit -1 set a limit: %+v", r.Pids)
	}
	if *r.CPU.Quota != 50000 || *r.CPU.Period != 200000 {
		t.Errorf("cpu = %+v", r.CPU)
	}
	if got := ShmSize(s); got != 64<<20 {
		t.Errorf("default ShmSize = %d", got)
	}
	s = generate(t, shCmd, RunOptions{Resources: Resources{Memory: 64 << 20, MemorySwap: -1}})
	if SwapLimitSupported() && *s.Linux.Resources.Memory.Swap != -1 {
		t.Errorf("--memory-swap -1 = %d", *s.Linux.Resources.Memory.Swap)
	}
	if s := generate(t, shCmd, RunOptions{}); s.Linux.Resources.Memory != nil || s.Linux.Resources.CPU != nil || s.Linux.Resources.Pids != nil {
		t.Errorf("limits set without flags: %+v", s.Linux.Resources)
	}
}

func TestResourcesValidate(t *testing.T) {
	for _, c := range []struct {
		r    Resources
		want string
	}{
		{Resources{Memory: 1 << 20}, "Minimum memory limit allowed is 6MB"},
		{Resources{MemorySwap: 64 << 20}, "You should always set the Memory limit"},
		{Resources{Memory: 64 << 20, MemorySwap: 32 << 20}, "Minimum memoryswap limit should be larger than memory limit"},
		{Resources{MemorySwap: -2}, "invalid --memory-swap"},
		{Resources{Memory: 32 << 20, MemoryReservation: 64 << 20}, "can not be less than memory reservation"},
		{Resources{NanoCPUs: 1e9, CPUQuota: 1000}, "Nano CPUs and CPU Quota"},
		{Resources{NanoCPUs: 1e9, CPUPeriod: 1000}, "Nano CPUs and CPU Period"},
		{Resources{NanoCPUs: int64(runtime.NumCPU()+1) * 1e9}, "Range of CPUs"},
		{Resources{NanoCPUs: 1e6}, "Range of CPUs"},
		{Resources{CPUPeriod: 999}, "CPU cfs period"},
		{Resources{CPUQuota: 999}, "CPU cfs quota"},
		{Resources{BlkioWeight: 1001}, "blkio weight"},
		{Resources{ShmSize: -1}, "SHM size"},
		{Resources{CpusetCpus: "1-0"}, "cpuset cpus"},
		{Resources{CpusetCpus: "4096"}, "Requested CPUs are not available"},
		{Resources{CpusetMems: "a"}, "cpuset mems"},
		{Resources{Ulimits: []Ulimit{{Name: "as", Soft: 1, Hard: 1}}}, "invalid ulimit type: as"},
		{Resources{Ulimits: []Ulimit{{Name: "nofile", Soft: 2, Hard: 1}}}, "soft limit must be less than or equal to hard limit"},
	} {
		err := c.r.Validate()
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.r, err, c.want)
		}
		if _, err := Generate(t.Context(), shCmd, RunOptions{Resources: c.r}, newRootfs(t)); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Generate with %+v: %v, want invalid argument", c.r, err)
		}
	}
	ok := Resources{Memory: 6 << 20, MemorySwap: -1, NanoCPUs: 1e7, CpusetCpus: "0", CpusetMems: "0-1,3", BlkioWeight: 10,
		Ulimits: []Ulimit{{Name: "nofile", Soft: 1, Hard: -1}}}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid resources refused: %v", err)
	}
}
