// Package cgroup reads a container's cgroup from its shim: resource usage
// for `stats` and OOM kills, on cgroup v1 (legacy or hybrid hierarchies)
// and v2, through github.com/containerd/cgroups/v3. The cgroup is found
// from the container's init pid, whatever cgroupsPath the spec chose.
package cgroup

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/cgroups/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-engine/berth/internal/errdefs"
	typesv1 "github.com/berth-engine/berth/proto/types/v1"
)

// Cgroup is the cgroup of one container.
type Cgroup interface {
	// Stats fills in the cgroup's counters of m: CPU, memory, pids and
	// block IO.
	Stats(m *typesv1.Metrics) error
	// OOMKills returns how many processes the OOM killer killed in the
	// cgroup.
	OOMKills() (uint64, error)
	// WatchOOM calls fn each time the cgroup runs out of memory, until ctx
	// ends or the cgroup is removed. It returns once the watch is set up.
	WatchOOM(ctx context.Context, fn func()) error
}

// Load returns the cgroup that process pid is in.
func Load(pid int) (Cgroup, error) {
	var (
		cg  Cgroup
		err error
	)
	if cgroups.Mode() == cgroups.Unified {
		cg, err = loadV2(pid)
	} else {
		cg, err = loadV1(pid)
	}
	if err != nil {
		return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "loading the cgroup of pid %d: %v", pid, err)
	}
	return cg, nil
}

// Sample reads one sample of the container whose init is pid: its cgroup's
// counters, the host's CPU time and memory, and the network counters of
// pid's network namespace.
func Sample(cg Cgroup, pid int) (*typesv1.Metrics, error) {
	m := &typesv1.Metrics{Timestamp: timestamppb.New(time.Now())}
	if err := cg.Stats(m); err != nil {
		return nil, fmt.Errorf("reading the cgroup of pid %d: %w", pid, err)
	}
	sys, cpus, err := hostCPU(procStat)
	if err != nil {
		return nil, err
	}
	m.SystemCpuNs, m.OnlineCpus = sys, cpus
	if total, err := hostMemory(procMeminfo); err == nil && (m.MemoryLimit == 0 || m.MemoryLimit > total) {
		// Docker shows the host's memory for a container without a limit.
		m.MemoryLimit = total
	}
	rx, tx, err := netDev(fmt.Sprintf("/proc/%d/net/dev", pid))
	if err != nil {
		return nil, err
	}
	m.NetRxBytes, m.NetTxBytes = rx, tx
	return m, nil
}
