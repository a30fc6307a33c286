package local

import (
	"context"
	"encoding/json"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/namespaces"
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
