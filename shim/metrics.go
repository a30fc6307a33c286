package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/internal/errdefs"
	shimv1 "github.com/berth-engine/berth/proto/shim/v1"
	"github.com/berth-engine/berth/shim/cgroup"
)

// releaseDelay is how long sampling must pause before a shim returns the
// memory its samples used.
const releaseDelay = 3 * time.Second

// watchOOM finds the cgroup of the init process pid and follows its OOM
// events, until the task is deleted. A cgroup that cannot be read (no
// memory controller) leaves the container without OOM reports, not
// without a shim. s.mu is held.
func (s *Service) watchOOM(pid int) {
	cg, err := cgroup.Load(pid)
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-shim %s: no OOM reports: %v\n", s.cfg.ID, err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := cg.WatchOOM(ctx, s.setOOMKilled); err != nil {
		cancel()
		fmt.Fprintf(os.Stderr, "berth-shim %s: no OOM reports: %v\n", s.cfg.ID, err)
	} else {
		s.stopOOMWatch = cancel
	}
	s.cgroup = cg
}

func (s *Service) setOOMKilled() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addOOMEvent()
}

// addOOMEvent counts an OOM event and wakes the WaitOOM callers. s.mu is
// held.
func (s *Service) addOOMEvent() {
	s.oomEvents++
	close(s.oomChanged)
	s.oomChanged = make(chan struct{})
}

// checkOOMKills reads the cgroup's OOM kill counter when the init process
// exits, so that an OOM kill whose event is still on its way is not
// missed, and says whether the OOM killer acted. s.mu is not held.
func (s *Service) checkOOMKills() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cgroup != nil && s.oomEvents == 0 {
		if n, err := s.cgroup.OOMKills(); err == nil && n > 0 {
			s.addOOMEvent()
		}
	}
	return s.oomEvents > 0
}

// forgetCgroup stops the OOM watch of a deleted task. s.mu is held.
func (s *Service) forgetCgroup() {
	if s.stopOOMWatch != nil {
		s.stopOOMWatch()
	}
	s.cgroup, s.stopOOMWatch, s.oomEvents = nil, nil, 0
}

// running returns the init pid of a running or paused task. s.mu is held.
func (s *Service) running(id, verb string) (int, error) {
	p, err := s.process(id, "")
	if err != nil {
		return 0, err
	}
	if p.hasExited() || (p.status != shimv1.Status_STATUS_RUNNING && p.status != shimv1.Status_STATUS_PAUSED) {
		return 0, errdefs.Errorf(errdefs.ErrFailedPrecondition, "%s task %q: it is %s, not running: start it first", verb, id, statusName(p.status))
	}
	return p.pid, nil
}

// Metrics samples the container's resource usage.
func (s *Service) Metrics(ctx context.Context, req *shimv1.MetricsRequest) (*shimv1.MetricsResponse, error) {
	s.mu.Lock()
	pid, err := s.running(req.GetId(), "sampling")
	cg := s.cgroup
	if err == nil && cg == nil {
		if cg, err = cgroup.Load(pid); err == nil {
			s.cgroup = cg
		}
	}
	s.mu.Unlock()
	if err != nil {
		return nil, errdefs.ToGRPC(fmt.Errorf("sampling task %q: %w", req.GetId(), err))
	}
	m, err := cgroup.Sample(cg, pid)
	if err != nil {
		return nil, errdefs.ToGRPC(fmt.Errorf("sampling task %q: %w", req.GetId(), err))
	}
	s.releaseMemory()
	return &shimv1.MetricsResponse{Metrics: m}, nil
}

// releaseMemory gives a sample's garbage back to the system once sampling
// has paused for releaseDelay. A shim is mostly idle: without this, each
// shim that `stats` sampled keeps about 1.5 MiB more resident (its heap
// grown to the GC goal). Waiting keeps the forced GC off the path of a
// `stats` that samples many shims at once, and does it once per pause.
func (s *Service) releaseMemory() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.release == nil {
		s.release = time.AfterFunc(releaseDelay, debug.FreeOSMemory)
		return
	}
	s.release.Reset(releaseDelay)
}

// Update changes the running container's resources with the runtime.
func (s *Service) Update(ctx context.Context, req *shimv1.UpdateTaskRequest) (*emptypb.Empty, error) {
	var res specs.LinuxResources
	if err := json.Unmarshal(req.GetResources(), &res); err != nil {
		return nil, errdefs.ToGRPC(errdefs.Errorf(errdefs.ErrInvalidArgument, "updating task %q: the resources are not OCI LinuxResources as JSON: %v", req.GetId(), err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.running(req.GetId(), "updating"); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if err := s.rt.Update(ctx, s.cfg.ID, &res); err != nil {
		return nil, errdefs.ToGRPC(fmt.Errorf("updating task %q: %w", req.GetId(), err))
	}
	return &emptypb.Empty{}, nil
}

// WaitOOM returns the count of OOM events once it differs from the
// caller's, or once the init process has exited.
func (s *Service) WaitOOM(ctx context.Context, req *shimv1.WaitOOMRequest) (*shimv1.WaitOOMResponse, error) {
	for {
		s.mu.Lock()
		p, err := s.process(req.GetId(), "")
		if err != nil {
			s.mu.Unlock()
			return nil, errdefs.ToGRPC(err)
		}
		// The exit path counts a last OOM kill before it marks the exit.
		n, changed, exited := s.oomEvents, s.oomChanged, p.hasExited()
		s.mu.Unlock()
		if n != req.GetSeen() || exited {
			return &shimv1.WaitOOMResponse{OomEvents: n, Exited: exited}, nil
		}
		select {
		case <-changed:
		case <-p.exited:
		case <-ctx.Done():
			return nil, errdefs.ToGRPC(ctx.Err())
		}
	}
}
