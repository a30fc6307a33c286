// Package taskproxy is a tasks.Service over the berth.tasks.v1 gRPC API.
package taskproxy

import (
	"context"

	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/internal/errdefs"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/tasks"
)

type proxy struct {
	client tasksv1.TasksClient
}

// New returns a tasks.Service that calls client, turning gRPC statuses
// back into errdefs kinds.
func New(client tasksv1.TasksClient) tasks.Service {
	return &proxy{client: client}
}

func (p *proxy) Create(ctx context.Context, req *tasksv1.CreateTaskRequest) (*tasksv1.CreateTaskResponse, error) {
	resp, err := p.client.Create(ctx, req)
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp, nil
}

func (p *proxy) Start(ctx context.Context, req *tasksv1.StartRequest) (*tasksv1.StartResponse, error) {
	resp, err := p.client.Start(ctx, req)
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp, nil
}

func (p *proxy) Delete(ctx context.Context, req *tasksv1.DeleteTaskRequest) (*tasksv1.DeleteResponse, error) {
	resp, err := p.client.Delete(ctx, req)
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp, nil
}

func (p *proxy) DeleteProcess(ctx context.Context, req *tasksv1.DeleteProcessRequest) (*tasksv1.DeleteResponse, error) {
	resp, err := p.client.DeleteProcess(ctx, req)
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp, nil
}

func (p *proxy) Get(ctx context.Context, req *tasksv1.GetRequest) (*tasksv1.GetResponse, error) {
	resp, err := p.client.Get(ctx, req)
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp, nil
}

func (p *proxy) List(ctx context.Context, req *tasksv1.ListTasksRequest) (*tasksv1.ListTasksResponse, error) {
	resp, err := p.client.List(ctx, req)
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp, nil
}

func (p *proxy) Kill(ctx context.Context, req *tasksv1.KillRequest) (*emptypb.Empty, error) {
	resp, err := p.client.Kill(ctx, req)
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp, nil
}

func (p *proxy) Exec(ctx context.Context, req *tasksv1.ExecProcessRequest) (*emptypb.Empty, error) {
	resp, err := p.client.Exec(ctx, req)
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp, nil
}

func (p *proxy) ResizePty(ctx context.Context, req *tasksv1.ResizePtyRequest) (*emptypb.Empty, error) {
	resp, err := p.client.ResizePty(ctx, req)
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp, nil
}

func (p *proxy) CloseIO(ctx context.Context, req *tasksv1.CloseIORequest) (*emptypb.Empty, error) {
	resp, err := p.client.CloseIO(ctx, req)
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp, nil
}

func (p *proxy) Pause(ctx context.Context, req *tasksv1.PauseTaskRequest) (*emptypb.Empty, error) {
	resp, err := p.client.Pause(ctx, req)
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp, nil
}

func (p *proxy) Resume(ctx context.Context, req *tasksv1.ResumeTaskRequest) (*emptypb.Empty, error) {
	resp, err := p.client.Resume(ctx, req)
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp, nil
}

func (p *proxy) ListPids(ctx context.Context, req *tasksv1.ListPidsRequest) (*tasksv1.ListPidsResponse, error) {
	resp, err := p.client.ListPids(ctx, req)
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp, nil
}

func (p *proxy) Wait(ctx context.Context, req *tasksv1.WaitRequest) (*tasksv1.WaitResponse, error) {
	resp, err := p.client.Wait(ctx, req)
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp, nil
}

func (p *proxy) Metrics(ctx context.Context, req *tasksv1.MetricsRequest) (*tasksv1.MetricsResponse, error) {
	resp, err := p.client.Metrics(ctx, req)
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp, nil
}

func (p *proxy) Update(ctx context.Context, req *tasksv1.UpdateTaskRequest) (*emptypb.Empty, error) {
	resp, err := p.client.Update(ctx, req)
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	return resp, nil
}
