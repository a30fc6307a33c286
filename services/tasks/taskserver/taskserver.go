// Package taskserver serves the berth.tasks.v1.Tasks gRPC API from a
// tasks.Service.
package taskserver

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/internal/errdefs"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/tasks"
)

type service struct {
	tasksv1.UnimplementedTasksServer
	svc tasks.Service
}

// New returns the Tasks gRPC service backed by svc.
func New(svc tasks.Service) tasksv1.TasksServer {
	return &service{svc: svc}
}

// Register serves the Tasks service of svc on s.
func Register(s *grpc.Server, svc tasks.Service) {
	tasksv1.RegisterTasksServer(s, New(svc))
}

func (s *service) Create(ctx context.Context, req *tasksv1.CreateTaskRequest) (*tasksv1.CreateTaskResponse, error) {
	resp, err := s.svc.Create(ctx, req)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return resp, nil
}

func (s *service) Start(ctx context.Context, req *tasksv1.StartRequest) (*tasksv1.StartResponse, error) {
	resp, err := s.svc.Start(ctx, req)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return resp, nil
}

func (s *service) Delete(ctx context.Context, req *tasksv1.DeleteTaskRequest) (*tasksv1.DeleteResponse, error) {
	resp, err := s.svc.Delete(ctx, req)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return resp, nil
}

func (s *service) DeleteProcess(ctx context.Context, req *tasksv1.DeleteProcessRequest) (*tasksv1.DeleteResponse, error) {
	resp, err := s.svc.DeleteProcess(ctx, req)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return resp, nil
}

func (s *service) Get(ctx context.Context, req *tasksv1.GetRequest) (*tasksv1.GetResponse, error) {
	resp, err := s.svc.Get(ctx, req)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return resp, nil
}

func (s *service) List(ctx context.Context, req *tasksv1.ListTasksRequest) (*tasksv1.ListTasksResponse, error) {
	resp, err := s.svc.List(ctx, req)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return resp, nil
}

func (s *service) Kill(ctx context.Context, req *tasksv1.KillRequest) (*emptypb.Empty, error) {
	resp, err := s.svc.Kill(ctx, req)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return resp, nil
}

func (s *service) Exec(ctx context.Context, req *tasksv1.ExecProcessRequest) (*emptypb.Empty, error) {
	resp, err := s.svc.Exec(ctx, req)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return resp, nil
}

func (s *service) ResizePty(ctx context.Context, req *tasksv1.ResizePtyRequest) (*emptypb.Empty, error) {
	resp, err := s.svc.ResizePty(ctx, req)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return resp, nil
}

func (s *service) CloseIO(ctx context.Context, req *tasksv1.CloseIORequest) (*emptypb.Empty, error) {
	resp, err := s.svc.CloseIO(ctx, req)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return resp, nil
}

func (s *service) Pause(ctx context.Context, req *tasksv1.PauseTaskRequest) (*emptypb.Empty, error) {
	resp, err := s.svc.Pause(ctx, req)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return resp, nil
}

func (s *service) Resume(ctx context.Context, req *tasksv1.ResumeTaskRequest) (*emptypb.Empty, error) {
	resp, err := s.svc.Resume(ctx, req)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return resp, nil
}

func (s *service) ListPids(ctx context.Context, req *tasksv1.ListPidsRequest) (*tasksv1.ListPidsResponse, error) {
	resp, err := s.svc.ListPids(ctx, req)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return resp, nil
}

func (s *service) Wait(ctx context.Context, req *tasksv1.WaitRequest) (*tasksv1.WaitResponse, error) {
	resp, err := s.svc.Wait(ctx, req)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return resp, nil
}

func (s *service) Metrics(ctx context.Context, req *tasksv1.MetricsRequest) (*tasksv1.MetricsResponse, error) {
	resp, err := s.svc.Metrics(ctx, req)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return resp, nil
}

func (s *service) Update(ctx context.Context, req *tasksv1.UpdateTaskRequest) (*emptypb.Empty, error) {
	resp, err := s.svc.Update(ctx, req)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return resp, nil
}
