package taskproxy_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/grpctest"
	"github.com/berth-engine/berth/internal/namespaces"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/tasks"
	"github.com/berth-engine/berth/services/tasks/taskproxy"
	"github.com/berth-engine/berth/services/tasks/taskserver"
)

// fake answers from the request, so that a test sees what crossed the wire,
// and records the namespace of the call.
type fake struct {
	tasks.Service // methods the test does not call panic
	ns            string
}

func (f *fake) Create(ctx context.Context, req *tasksv1.CreateTaskRequest) (*tasksv1.CreateTaskResponse, error) {
	f.ns, _ = namespaces.Namespace(ctx)
	if req.GetContainerId() == "taken" {
		return nil, errdefs.Errorf(errdefs.ErrAlreadyExists, "task %q already exists", req.GetContainerId())
	}
	return &tasksv1.CreateTaskResponse{ContainerId: req.GetContainerId(), Pid: uint32(len(req.GetStdout()))}, nil
}

func (f *fake) Get(ctx context.Context, req *tasksv1.GetRequest) (*tasksv1.GetResponse, error) {
	return nil, errdefs.Errorf(errdefs.ErrNotFound, "task %q not found", req.GetContainerId())
}

func (f *fake) Kill(ctx context.Context, req *tasksv1.KillRequest) (*emptypb.Empty, error) {
	if req.GetSignal() != 9 || !req.GetAll() {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "got signal %d all %v", req.GetSignal(), req.GetAll())
	}
	return &emptypb.Empty{}, nil
}

func (f *fake) Wait(ctx context.Context, req *tasksv1.WaitRequest) (*tasksv1.WaitResponse, error) {
	return &tasksv1.WaitResponse{ExitStatus: uint32(len(req.GetExecId()))}, nil
}

func TestProxyOverGRPC(t *testing.T) {
	f := &fake{}
	conn := grpctest.Dial(t, func(s *grpc.Server) { taskserver.Register(s, f) })
	p := taskproxy.New(tasksv1.NewTasksClient(conn))
	ctx := namespaces.WithNamespace(context.Background(), "ns1")

	cr, err := p.Create(ctx, &tasksv1.CreateTaskRequest{ContainerId: "c1", Stdout: "/tmp/fifo"})
	if err != nil || cr.GetContainerId() != "c1" || cr.GetPid() != uint32(len("/tmp/fifo")) {
		t.Fatalf("Create: %v %v", cr, err)
	}
	if f.ns != "ns1" {
		t.Errorf("the server saw namespace %q, want ns1", f.ns)
	}
	if _, err := p.Create(ctx, &tasksv1.CreateTaskRequest{ContainerId: "taken"}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("Create of a taken id: %v, want already exists", err)
	}
	if _, err := p.Get(ctx, &tasksv1.GetRequest{ContainerId: "gone"}); !errdefs.IsNotFound(err) {
		t.Errorf("Get: %v, want not found", err)
	}
	if _, err := p.Kill(ctx, &tasksv1.KillRequest{ContainerId: "c1", Signal: 9, All: true}); err != nil {
		t.Errorf("Kill: %v", err)
	}
	if _, err := p.Kill(ctx, &tasksv1.KillRequest{ContainerId: "c1", Signal: 15}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Kill with the wrong fields: %v, want invalid argument", err)
	}
	wr, err := p.Wait(ctx, &tasksv1.WaitRequest{ContainerId: "c1", ExecId: "abc"})
	if err != nil || wr.GetExitStatus() != 3 {
		t.Errorf("Wait: %v %v, want exit status 3", wr, err)
	}
}
