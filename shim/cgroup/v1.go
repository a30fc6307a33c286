package cgroup

import (
	"context"
	"errors"
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

// WatchOOM waits on the memory cgroup's OOM eventfd (memory.oom_control).
// The kernel also signals it when the cgroup is removed, which ends the
// watch.
func (c *v1) WatchOOM(ctx context.Context, fn func()) error {
	fd, err := c.cg.OOMEventFD()
	if err != nil {
		return err
	}
	efd := int(fd)
	// Closing the eventfd does not wake a blocked read: ctx's end is told
	// by a second eventfd both are polled with.
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(efd)
		return err
	}
	go func() {
		<-ctx.Done()
		unix.Write(stop, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	}()
	go func() {
		defer unix.Close(efd)
		defer unix.Close(stop)
		fds := []unix.PollFd{{Fd: int32(efd), Events: unix.POLLIN}, {Fd: int32(stop), Events: unix.POLLIN}}
		buf := make([]byte, 8)
		for {
			if _, err := unix.Poll(fds, -1); err != nil {
				if errors.Is(err, unix.EINTR) {
					continue
				}
				return
			}
			if fds[1].Revents != 0 {
				return
			}
			if _, err := unix.Read(efd, buf); err != nil {
				if errors.Is(err, unix.EINTR) {
					continue
				}
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
