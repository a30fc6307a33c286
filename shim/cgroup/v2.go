package cgroup

import (
	"context"

	"github.com/containerd/cgroups/v3/cgroup2"

	typesv1 "github.com/berth-engine/berth/proto/types/v1"
)

type v2 struct {
	m *cgroup2.Manager
}

func loadV2(pid int) (Cgroup, error) {
	group, err := cgroup2.PidGroupPath(pid)
	if err != nil {
		return nil, err
	}
	m, err := cgroup2.Load(group)
	if err != nil {
		return nil, err
	}
	return &v2{m: m}, nil
}

func (c *v2) Stats(m *typesv1.Metrics) error {
	st, err := c.m.Stat()
	if err != nil {
		return err
	}
	m.CpuUsageNs = st.GetCPU().GetUsageUsec() * 1000
	if mem := st.GetMemory(); mem != nil {
		m.MemoryUsage = mem.GetUsage()
		m.MemoryLimit = mem.GetUsageLimit()
		m.MemoryInactiveFile = mem.GetInactiveFile()
	}
	m.PidsCurrent = st.GetPids().GetCurrent()
	m.PidsLimit = st.GetPids().GetLimit()
	for _, e := range st.GetIo().GetUsage() {
		m.BlkioReadBytes += e.GetRbytes()
		m.BlkioWriteBytes += e.GetWbytes()
	}
	return nil
}

func (c *v2) OOMKills() (uint64, error) {
	st, err := c.m.Stat()
	if err != nil {
		return 0, err
	}
	return st.GetMemoryEvents().GetOomKill(), nil
}

// WatchOOM follows memory.events with inotify (cgroup2's EventChan) and
// calls fn when its oom_kill counter grows.
func (c *v2) WatchOOM(ctx context.Context, fn func()) error {
	events, errs := c.m.EventChan()
	select {
	case err := <-errs:
		// EventChan reports a failed setup at once.
		if err != nil {
			return err
		}
	default:
	}
	go func() {
		var seen uint64
		for {
			select {
			case <-ctx.Done():
				return
			case <-errs:
				return
			case e, ok := <-events:
				if !ok {
					return
				}
				if e.OOMKill > seen {
					seen = e.OOMKill
					fn()
				}
			}
		}
	}()
	return nil
}
