package cgroup

import (
	"context"
	"os"
	"slices"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup1"
	"golang.org/x/sys/unix"

	typesv1 "github.com/berth-engine/berth/proto/types/v1"
)

type v1 struct {
	cg cgroup1.Cgroup
}

// statControllers are the v1 controllers stats reads; leaving the others
// out keeps each sample (and the shim's heap) small.
var statControllers = []cgroup1.Name{cgroup1.Cpuacct, cgroup1.Memory, cgroup1.Pids, cgroup1.Blkio}

// statHierarchy is cgroup1.Default restricted to statControllers.
func statHierarchy() ([]cgroup1.Subsystem, error) {
	all, err := cgroup1.Default()
	if err != nil {
		return nil, err
	}
	var out []cgroup1.Subsystem
	for _, s := range all {
		if slices.Contains(statControllers, s.Name()) {
			out = append(out, s)
		}
	}
	return out, nil
}

func loadV1(pid int) (Cgroup, error) {
	cg, err := cgroup1.Load(cgroup1.PidPath(pid), cgroup1.WithHierarchy(statHierarchy))
	if err != nil {
		return nil, err
	}
	return &v1{cg: cg}, nil
}

func (c *v1) Stats(m *typesv1.Metrics) error {
	st, err := c.cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return err
	}
	m.CpuUsageNs = st.GetCPU().GetUsage().GetTotal()
	if mem := st.GetMemory(); mem != nil {
		m.MemoryUsage = mem.GetUsage().GetUsage()
		m.MemoryLimit = mem.GetUsage().GetLimit()
		m.MemoryInactiveFile = mem.GetTotalInactiveFile()
	}
	m.PidsCurrent = st.GetPids().GetCurrent()
	m.PidsLimit = st.GetPids().GetLimit()
	for _, e := range st.GetBlkio().GetIoServiceBytesRecursive() {
		switch strings.ToLower(e.GetOp()) {
		case "read":
			m.BlkioReadBytes += e.GetValue()
		case "write":
			m.BlkioWriteBytes += e.GetValue()
		}
	}
	return nil
}

func (c *v1) OOMKills() (uint64, error) {
	st, err := c.cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return 0, err
	}
	return st.GetMemoryOomControl().GetOomKill(), nil
}

// WatchOOM waits on the memory cgroup's OOM eventfd (memory.oom_control)
// through Go's poller, so that no thread blocks on it and closing it ends
// the wait. The kernel also signals it when the cgroup is removed, which
// ends the watch.
func (c *v1) WatchOOM(ctx context.Context, fn func()) error {
	fd, err := c.cg.OOMEventFD()
	if err != nil {
		return err
	}
	if err := unix.SetNonblock(int(fd), true); err != nil {
		unix.Close(int(fd))
		return err
	}
	f := os.NewFile(fd, "memory.oom_control eventfd")
	stop := context.AfterFunc(ctx, func() { f.Close() })
	go func() {
		defer stop()
		defer f.Close()
		buf := make([]byte, 8)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
			if c.cg.State() == cgroup1.Deleted {
				return
			}
			fn()
		}
	}()
	return nil
}
