package command

import (
	"context"

	"github.com/berth-engine/berth/cli/client"
	"github.com/berth-engine/berth/cli/formatter"
	"github.com/berth-engine/berth/services/containers"
)

// sizer computes ps -s's SIZE: the container's writable snapshot's own
// usage, and "virtual", that plus the usage of every committed snapshot
// below it (the unpacked image). It remembers the chains it summed, as
// containers of one image share theirs.
type sizer struct {
	cl     *client.Client
	chains map[[2]string]int64 // snapshotter, parent -> size of the chain
}

func newSizer(cl *client.Client) *sizer {
	return &sizer{cl: cl, chains: map[[2]string]int64{}}
}

// of returns Docker's "12B (virtual 1.2MB)"; what cannot be measured (a
// container without snapshot, one removed meanwhile) shows as "0B".
func (s *sizer) of(ctx context.Context, ctr containers.Container) string {
	if ctr.Snapshotter == "" || ctr.SnapshotKey == "" {
		return "0B"
	}
	sn := s.cl.Snapshotter(ctr.Snapshotter)
	u, err := sn.Usage(ctx, ctr.SnapshotKey)
	if err != nil {
		return "0B"
	}
	virtual := u.Size
	if info, err := sn.Stat(ctx, ctr.SnapshotKey); err == nil {
		virtual += s.chain(ctx, ctr.Snapshotter, info.Parent)
	}
	return formatter.HumanSize(u.Size) + " (virtual " + formatter.HumanSize(virtual) + ")"
}

// chain sums the usage of the committed snapshot name and its parents.
func (s *sizer) chain(ctx context.Context, snapshotter, name string) int64 {
	if name == "" {
		return 0
	}
	k := [2]string{snapshotter, name}
	if size, ok := s.chains[k]; ok {
		return size
	}
	sn := s.cl.Snapshotter(snapshotter)
	var size int64
	if u, err := sn.Usage(ctx, name); err == nil {
		size = u.Size
	}
	if info, err := sn.Stat(ctx, name); err == nil {
		size += s.chain(ctx, snapshotter, info.Parent)
	}
	s.chains[k] = size
	return size
}
