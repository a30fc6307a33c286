// Package tasks defines the tasks service: what runs in a container record,
// one berth-shim per container. The Service has the shape of the
// berth.tasks.v1 API so that the local implementation, the gRPC server and
// the gRPC client (taskproxy) are interchangeable.
package tasks

import (
	"context"

	"google.golang.org/protobuf/types/known/emptypb"

	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
)

// Service runs tasks in the namespace of the context. Errors carry errdefs
// kinds.
type Service interface {
	Create(ctx context.Context, req *tasksv1.CreateTaskRequest) (*tasksv1.CreateTaskResponse, error)
	Start(ctx context.Context, req *tasksv1.StartRequest) (*tasksv1.StartResponse, error)
	Delete(ctx context.Context, req *tasksv1.DeleteTaskRequest) (*tasksv1.DeleteResponse, error)
	DeleteProcess(ctx context.Context, req *tasksv1.DeleteProcessRequest) (*tasksv1.DeleteResponse, error)
	Get(ctx context.Context, req *tasksv1.GetRequest) (*tasksv1.GetResponse, error)
	List(ctx context.Context, req *tasksv1.ListTasksRequest) (*tasksv1.ListTasksResponse, error)
	Kill(ctx context.Context, req *tasksv1.KillRequest) (*emptypb.Empty, error)
	Exec(ctx context.Context, req *tasksv1.ExecProcessRequest) (*emptypb.Empty, error)
	ResizePty(ctx context.Context, req *tasksv1.ResizePtyRequest) (*emptypb.Empty, error)
	CloseIO(ctx context.Context, req *tasksv1.CloseIORequest) (*emptypb.Empty, error)
	Pause(ctx context.Context, req *tasksv1.PauseTaskRequest) (*emptypb.Empty, error)
	Resume(ctx context.Context, req *tasksv1.ResumeTaskRequest) (*emptypb.Empty, error)
	ListPids(ctx context.Context, req *tasksv1.ListPidsRequest) (*tasksv1.ListPidsResponse, error)
	Wait(ctx context.Context, req *tasksv1.WaitRequest) (*tasksv1.WaitResponse, error)
	Metrics(ctx context.Context, req *tasksv1.MetricsRequest) (*tasksv1.MetricsResponse, error)
	Update(ctx context.Context, req *tasksv1.UpdateTaskRequest) (*emptypb.Empty, error)
}
