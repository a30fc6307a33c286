package local

import (
	"context"
	"encoding/json"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/namespaces"
	eventsv1 "github.com/berth-engine/berth/proto/events/v1"
	shimv1 "github.com/berth-engine/berth/proto/shim/v1"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
)

// metricsConcurrency bounds the shims sampled at once by one Metrics call:
// enough to hide each shim's latency, few enough not to swamp a small host.
const metricsConcurrency = 16

// Metrics samples the named tasks, or every task of the namespace with a
// live shim, asking their shims concurrently. A task that cannot be
// sampled gets an error in its entry; the call fails only for a bad
// request.
func (s *Service) Metrics(ctx context.Context, req *tasksv1.MetricsRequest) (*tasksv1.MetricsResponse, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	ids := req.GetContainerIds()
	if len(ids) == 0 {
		s.mu.Lock()
		for _, t := range s.tasks {
			if t.ns == ns && t.shim != nil {
				ids = append(ids, t.id)
			}
		}
		s.mu.Unlock()
	}
	out := make([]*tasksv1.TaskMetrics, len(ids))
	sem := make(chan struct{}, metricsConcurrency)
	var wg sync.WaitGroup
	for i, id := range ids {
		out[i] = &tasksv1.TaskMetrics{ContainerId: id}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t, svc, err := s.live(ctx, id, "sampling")
			if err == nil {
				var mr *shimv1.MetricsResponse
				if mr, err = svc.Metrics(ctx, &shimv1.MetricsRequest{Id: t.id}); err == nil {
					out[i].Metrics = mr.GetMetrics()
					return
				}
				err = errdefs.FromGRPC(err)
			}
			out[i].Error = err.Error()
		}()
	}
	wg.Wait()
	return &tasksv1.MetricsResponse{Metrics: out}, nil
}

// Update changes the resources of a running task; the container record is
// the caller's to update, so that the next start keeps them.
func (s *Service) Update(ctx context.Context, req *tasksv1.UpdateTaskRequest) (*emptypb.Empty, error) {
	var res specs.LinuxResources
	if err := json.Unmarshal(req.GetResources(), &res); err != nil {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "updating task %q: the resources are not OCI LinuxResources as JSON: %v", req.GetContainerId(), err)
	}
	t, svc, err := s.live(ctx, req.GetContainerId(), "updating")
	if err != nil {
		return nil, err
	}
	if _, err := svc.Update(ctx, &shimv1.UpdateTaskRequest{Id: t.id, Resources: req.GetResources()}); err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// watchOOM long-polls the shim's WaitOOM and publishes /tasks/oom for each
// OOM event as it happens, until the init process exits. After a berthd
// restart (baseline), the events counted before are not published again
// here; the exit publishes one if none was.
func (s *Service) watchOOM(t *task, baseline bool) {
	s.mu.Lock()
	svc := t.shim
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var seen uint64
		for {
			r, err := svc.WaitOOM(s.ctx, &shimv1.WaitOOMRequest{Id: t.id, Seen: seen})
			if err != nil {
				return // the shim is gone, or berthd stops; the exit watcher takes over
			}
			n := r.GetOomEvents()
			if baseline {
				baseline = false
			} else if n > seen {
				s.publishOOM(t, n)
			}
			seen = n
			if r.GetExited() {
				return
			}
		}
	}()
}

// publishOOM publishes /tasks/oom when the shim's OOM event count n grows
// past what was published; n == 0 (from the exit, which knows only that
// the OOM killer acted) publishes one only when none was.
func (s *Service) publishOOM(t *task, n uint64) {
	s.mu.Lock()
	publish := (n == 0 && t.oomPublished == 0) || n > t.oomPublished
	if n == 0 {
		n = 1
	}
	if n > t.oomPublished {
		t.oomPublished = n
	}
	s.mu.Unlock()
	if publish {
		s.publish(s.ctx, t.ns, TopicOOM, &eventsv1.TaskOOM{ContainerId: t.id})
	}
}
