// Package shim is berth-shim: the per-container process that creates the
// container with the OCI runtime, is the subreaper of its processes, plumbs
// their stdio, writes the container's json-file log, records its exit in
// the bundle and serves the berth.shim.v1 Task API over ttrpc.
package shim

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/identifiers"
	"github.com/berth-engine/berth/internal/mount"
	shimv1 "github.com/berth-engine/berth/proto/shim/v1"
	"github.com/berth-engine/berth/shim/cgroup"
	"github.com/berth-engine/berth/shim/logs"
	"github.com/berth-engine/berth/shim/reaper"
	"github.com/berth-engine/berth/shim/runtime"
)

const (
	// initPidFile is where the runtime writes the init pid, in the bundle.
	initPidFile = "init.pid"
	// ioDrainTimeout bounds how long an exit waits for output to be copied.
	ioDrainTimeout = 2 * time.Second
	// unmatchedTTL is how long an exit of an unknown pid is kept for a
	// process whose pid the shim has not learned yet.
	unmatchedTTL = 10 * time.Second
)

// process is the init process (execID "") or an exec.
type process struct {
	execID string
	stdio  stdio
	spec   *specs.Process // execs only
	io     *processIO

	pid        int
	status     shimv1.Status
	exited     chan struct{} // closed on exit, after the exit is recorded
	exitStatus int
	exitedAt   time.Time
}

func newProcess(execID string, s stdio) *process {
	return &process{execID: execID, stdio: s, status: shimv1.Status_STATUS_CREATED, exited: make(chan struct{})}
}

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Config is what one shim serves.
type Config struct {
	ID        string
	Namespace string
	Bundle    string
	Runtime   *runtime.Runtime
}

// Service implements shimv1.TaskService for one container.
type Service struct {
	cfg    Config
	rt     *runtime.Runtime
	reaper *reaper.Reaper
	// shutdown is called once the shim may exit.
	shutdown func()

	mu        sync.Mutex
	init      *process
	execs     map[string]*process
	log       *logs.Writer
	mounted   bool
	unmatched map[int]reaper.Exit

	// cgroup is the init process's cgroup, for metrics and OOM reports;
	// oomEvents counts its OOM events, and oomChanged is closed (and
	// replaced) when the count grows.
	cgroup       cgroup.Cgroup
	stopOOMWatch context.CancelFunc
	oomEvents    uint64
	oomChanged   chan struct{}
	// release returns the memory of samples once sampling pauses.
	release *time.Timer
}

var _ shimv1.TaskService = (*Service)(nil)

// NewService returns the task service of cfg; exits come from r, which must
// be running, and shutdown is called when a Shutdown request is accepted.
func NewService(cfg Config, r *reaper.Reaper, shutdown func()) *Service {
	rt := *cfg.Runtime
	rt.Reaper = r
	s := &Service{
		cfg:        cfg,
		rt:         &rt,
		reaper:     r,
		shutdown:   shutdown,
		execs:      make(map[string]*process),
		unmatched:  make(map[int]reaper.Exit),
		oomChanged: make(chan struct{}),
	}
	go s.handleExits(r.Subscribe())
	return s
}

// handleExits matches every reaped pid to the process it belongs to.
func (s *Service) handleExits(c chan reaper.Exit) {
	for e := range c {
		s.mu.Lock()
		p := s.processByPid(e.Pid)
		if p == nil {
			s.keepUnmatched(e)
			s.mu.Unlock()
			continue
		}
		s.mu.Unlock()
		s.setExited(p, e)
	}
}

// processByPid returns the live process with pid; s.mu is held.
func (s *Service) processByPid(pid int) *process {
	if s.init != nil && s.init.pid == pid && !s.init.hasExited() {
		return s.init
	}
	for _, p := range s.execs {
		if p.pid == pid && !p.hasExited() {
			return p
		}
	}
	return nil
}

// keepUnmatched remembers an exit whose process the shim does not know yet:
// a short-lived process can exit before its pid file is read. s.mu is held.
func (s *Service) keepUnmatched(e reaper.Exit) {
	for pid, old := range s.unmatched {
		if e.Timestamp.Sub(old.Timestamp) > unmatchedTTL {
			delete(s.unmatched, pid)
		}
	}
	s.unmatched[e.Pid] = e
}

// setPid records the pid of a process that the runtime just made and
// applies an exit that came first. s.mu is held; it may be unlocked and
// locked again.
func (s *Service) setPid(p *process, pid int) {
	p.pid = pid
	if e, ok := s.unmatched[pid]; ok {
		delete(s.unmatched, pid)
		s.mu.Unlock()
		s.setExited(p, e)
		s.mu.Lock()
	}
}

// setExited records the exit of p: for init durably in the bundle first,
// then it wakes the waiters once the output has been drained.
func (s *Service) setExited(p *process, e reaper.Exit) {
	if p.io != nil {
		p.io.wait(ioDrainTimeout)
	}
	if p.execID == "" {
		oom := s.checkOOMKills()
		if err := WriteExit(s.cfg.Bundle, Exit{Pid: uint32(e.Pid), ExitStatus: uint32(e.Status), ExitedAt: e.Timestamp, OOMKilled: oom}); err != nil {
			fmt.Fprintf(os.Stderr, "berth-shim %s: %v\n", s.cfg.ID, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.hasExited() {
		return
	}
	p.exitStatus, p.exitedAt = e.Status, e.Timestamp
	p.status = shimv1.Status_STATUS_STOPPED
	close(p.exited)
	if p.execID == "" && s.log != nil {
		s.log.Close()
	}
}

// Create creates the container.
func (s *Service) Create(ctx context.Context, req *shimv1.CreateTaskRequest) (*shimv1.CreateTaskResponse, error) {
	pid, err := s.create(ctx, req)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &shimv1.CreateTaskResponse{Pid: uint32(pid)}, nil
}

func (s *Service) create(ctx context.Context, req *shimv1.CreateTaskRequest) (_ int, retErr error) {
	if err := s.checkID(req.GetId()); err != nil {
		return 0, err
	}
	if req.GetBundle() != "" && filepath.Clean(req.GetBundle()) != filepath.Clean(s.cfg.Bundle) {
		return 0, errdefs.Errorf(errdefs.ErrInvalidArgument, "create %q: bundle %s is not this shim's bundle %s: start a shim for it", req.GetId(), req.GetBundle(), s.cfg.Bundle)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.init != nil {
		return 0, errdefs.Errorf(errdefs.ErrAlreadyExists, "task %q already created in this shim: delete it first", req.GetId())
	}

	if len(req.GetRootfs()) > 0 {
		rootfs := filepath.Join(s.cfg.Bundle, "rootfs")
		if err := os.MkdirAll(rootfs, 0o711); err != nil {
			return 0, fmt.Errorf("create %q: making the rootfs mount point: %w", req.GetId(), err)
		}
		mounts := make([]mount.Mount, 0, len(req.GetRootfs()))
		for _, m := range req.GetRootfs() {
			mounts = append(mounts, mount.Mount{Type: m.GetType(), Source: m.GetSource(), Target: m.GetTarget(), Options: m.GetOptions()})
		}
		if err := mount.All(mounts, rootfs); err != nil {
			return 0, fmt.Errorf("create %q: mounting the rootfs: %w", req.GetId(), err)
		}
		s.mounted = true
		defer func() {
			if retErr != nil {
				mount.UnmountAll(rootfs)
				s.mounted = false
			}
		}()
	}

	var log *logs.Writer
	if l := req.GetLog(); l.GetPath() != "" {
		w, err := logs.NewWriter(logs.Options{Path: l.GetPath(), MaxSize: l.GetMaxSize(), MaxFiles: int(l.GetMaxFiles())})
		if err != nil {
			return 0, fmt.Errorf("create %q: %w", req.GetId(), err)
		}
		log = w
		defer func() {
			if retErr != nil {
				log.Close()
			}
		}()
	}

	st := stdio{terminal: req.GetTerminal(), stdin: req.GetStdin(), stdout: req.GetStdout(), stderr: req.GetStderr()}
	p := newProcess("", st)
	pio, err := newProcessIO(s.cfg.Bundle, st, log != nil)
	if err != nil {
		return 0, fmt.Errorf("create %q: %w", req.GetId(), err)
	}
	p.io = pio
	opts := runtime.CreateOpts{PidFile: filepath.Join(s.cfg.Bundle, initPidFile), IO: pio.runtimeIO}
	if pio.consoleSocket != nil {
		opts.ConsoleSocket = pio.consoleSocket.path()
	}
	if err := s.rt.Create(ctx, s.cfg.ID, s.cfg.Bundle, opts); err != nil {
		pio.closeRuntimeIO()
		pio.close()
		return 0, fmt.Errorf("create %q: %w", req.GetId(), err)
	}
	pid, err := ReadPidFile(opts.PidFile)
	if err == nil {
		err = pio.start(ctx, st, log)
	}
	if err != nil {
		pio.close()
		s.rt.Delete(context.WithoutCancel(ctx), s.cfg.ID, true)
		return 0, fmt.Errorf("create %q: %w", req.GetId(), err)
	}
	s.init, s.log = p, log
	s.watchOOM(pid)
	s.setPid(p, pid)
	return pid, nil
}

// Start starts the init process or an exec.
func (s *Service) Start(ctx context.Context, req *shimv1.StartRequest) (*shimv1.StartResponse, error) {
	pid, err := s.start(ctx, req)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &shimv1.StartResponse{Pid: uint32(pid)}, nil
}

func (s *Service) start(ctx context.Context, req *shimv1.StartRequest) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.process(req.GetId(), req.GetExecId())
	if err != nil {
		return 0, err
	}
	if p.status != shimv1.Status_STATUS_CREATED || p.hasExited() {
		return 0, errdefs.Errorf(errdefs.ErrFailedPrecondition, "start %s: it is %s, not created", describe(req.GetId(), req.GetExecId()), statusName(p.status))
	}
	if p.execID == "" {
		if err := s.rt.Start(ctx, s.cfg.ID); err != nil {
			return 0, fmt.Errorf("start %s: %w", describe(req.GetId(), ""), err)
		}
		p.status = shimv1.Status_STATUS_RUNNING
		return p.pid, nil
	}
	if s.init.status != shimv1.Status_STATUS_RUNNING || s.init.hasExited() {
		return 0, errdefs.Errorf(errdefs.ErrFailedPrecondition, "start %s: container %q is not running: start it first", describe(req.GetId(), req.GetExecId()), req.GetId())
	}
	pio, err := newProcessIO(s.cfg.Bundle, p.stdio, false)
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", describe(req.GetId(), req.GetExecId()), err)
	}
	pidFile := filepath.Join(s.cfg.Bundle, "exec-"+p.execID+".pid")
	defer os.Remove(pidFile)
	opts := runtime.ExecOpts{PidFile: pidFile, IO: pio.runtimeIO}
	if pio.consoleSocket != nil {
		opts.ConsoleSocket = pio.consoleSocket.path()
	}
	if err := s.rt.Exec(ctx, s.cfg.ID, p.spec, opts); err != nil {
		pio.closeRuntimeIO()
		pio.close()
		return 0, fmt.Errorf("start %s: %w", describe(req.GetId(), req.GetExecId()), err)
	}
	pid, err := ReadPidFile(pidFile)
	if err == nil {
		err = pio.start(ctx, p.stdio, nil)
	}
	if err != nil {
		pio.close()
		return 0, fmt.Errorf("start %s: %w", describe(req.GetId(), req.GetExecId()), err)
	}
	p.io = pio
	p.status = shimv1.Status_STATUS_RUNNING
	s.setPid(p, pid)
	return pid, nil
}

// Delete removes an exited process; for init also the container.
func (s *Service) Delete(ctx context.Context, req *shimv1.DeleteRequest) (*shimv1.DeleteResponse, error) {
	resp, err := s.delete(ctx, req)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return resp, nil
}

func (s *Service) delete(ctx context.Context, req *shimv1.DeleteRequest) (*shimv1.DeleteResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.process(req.GetId(), req.GetExecId())
	if err != nil {
		return nil, err
	}
	started := p.status != shimv1.Status_STATUS_CREATED
	if started && !p.hasExited() {
		return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "delete %s: it is still %s: kill it first", describe(req.GetId(), req.GetExecId()), statusName(p.status))
	}
	if p.execID != "" {
		if p.io != nil {
			p.io.close()
		}
		delete(s.execs, p.execID)
		return deleteResponse(p), nil
	}
	for _, e := range s.execs {
		if !e.hasExited() && e.status != shimv1.Status_STATUS_CREATED {
			return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "delete %s: exec %q still runs: kill it first", describe(req.GetId(), ""), e.execID)
		}
	}
	// A created container never started is killed by the forced delete.
	if err := s.rt.Delete(ctx, s.cfg.ID, !started); err != nil && !errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("delete %s: %w", describe(req.GetId(), ""), err)
	}
	if !started {
		// Its init was killed; wait for the reaper to report it.
		s.mu.Unlock()
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
		}
		s.mu.Lock()
	}
	if s.mounted {
		if err := mount.UnmountAll(filepath.Join(s.cfg.Bundle, "rootfs")); err != nil {
			return nil, fmt.Errorf("delete %s: %w", describe(req.GetId(), ""), err)
		}
		s.mounted = false
	}
	if p.io != nil {
		p.io.close()
	}
	for _, e := range s.execs {
		if e.io != nil {
			e.io.close()
		}
	}
	os.Remove(filepath.Join(s.cfg.Bundle, initPidFile))
	s.forgetCgroup()
	s.init, s.execs, s.log = nil, make(map[string]*process), nil
	return deleteResponse(p), nil
}

func deleteResponse(p *process) *shimv1.DeleteResponse {
	resp := &shimv1.DeleteResponse{Pid: uint32(p.pid), ExitStatus: uint32(p.exitStatus)}
	if !p.exitedAt.IsZero() {
		resp.ExitedAt = timestamppb.New(p.exitedAt)
	}
	return resp
}

// Exec adds an exec to the running container; Start runs it.
func (s *Service) Exec(ctx context.Context, req *shimv1.ExecProcessRequest) (*emptypb.Empty, error) {
	if err := s.exec(req); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *Service) exec(req *shimv1.ExecProcessRequest) error {
	if req.GetExecId() == "" {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "exec in %q: no exec id given", req.GetId())
	}
	if err := identifiers.Validate(req.GetExecId()); err != nil {
		return fmt.Errorf("exec %q in %q: %w", req.GetExecId(), req.GetId(), err)
	}
	var spec specs.Process
	if err := json.Unmarshal(req.GetSpec(), &spec); err != nil {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "exec %q in %q: the process spec is not an OCI process as JSON: %v", req.GetExecId(), req.GetId(), err)
	}
	if len(spec.Args) == 0 {
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "exec %q in %q: the process spec has no args: give the command to run", req.GetExecId(), req.GetId())
	}
	spec.Terminal = req.GetTerminal()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.process(req.GetId(), ""); err != nil {
		return err
	}
	if s.init.hasExited() || s.init.status != shimv1.Status_STATUS_RUNNING {
		return errdefs.Errorf(errdefs.ErrFailedPrecondition, "exec %q in %q: the container is %s, not running: start it first", req.GetExecId(), req.GetId(), statusName(s.init.status))
	}
	if _, ok := s.execs[req.GetExecId()]; ok {
		return errdefs.Errorf(errdefs.ErrAlreadyExists, "exec %q already exists in %q: choose another exec id", req.GetExecId(), req.GetId())
	}
	p := newProcess(req.GetExecId(), stdio{terminal: req.GetTerminal(), stdin: req.GetStdin(), stdout: req.GetStdout(), stderr: req.GetStderr()})
	p.spec = &spec
	s.execs[p.execID] = p
	return nil
}

// ResizePty resizes a process's terminal.
func (s *Service) ResizePty(ctx context.Context, req *shimv1.ResizePtyRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	p, err := s.process(req.GetId(), req.GetExecId())
	s.mu.Unlock()
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if p.io == nil || p.io.console == nil {
		return nil, errdefs.ToGRPC(errdefs.Errorf(errdefs.ErrFailedPrecondition, "resize %s: it has no terminal: create it with terminal set", describe(req.GetId(), req.GetExecId())))
	}
	if err := p.io.resize(req.GetWidth(), req.GetHeight()); err != nil {
		return nil, errdefs.ToGRPC(fmt.Errorf("resize %s: %w", describe(req.GetId(), req.GetExecId()), err))
	}
	return &emptypb.Empty{}, nil
}

// CloseIO closes a process's stdin.
func (s *Service) CloseIO(ctx context.Context, req *shimv1.CloseIORequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	p, err := s.process(req.GetId(), req.GetExecId())
	s.mu.Unlock()
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	if req.GetStdin() && p.io != nil {
		p.io.closeInput()
	}
	return &emptypb.Empty{}, nil
}

// Kill signals a process.
func (s *Service) Kill(ctx context.Context, req *shimv1.KillRequest) (*emptypb.Empty, error) {
	if err := s.kill(ctx, req); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *Service) kill(ctx context.Context, req *shimv1.KillRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.process(req.GetId(), req.GetExecId())
	if err != nil {
		return err
	}
	if p.hasExited() {
		return errdefs.Errorf(errdefs.ErrNotFound, "kill %s: it has already exited", describe(req.GetId(), req.GetExecId()))
	}
	sig := int(req.GetSignal())
	if sig == 0 {
		sig = int(unix.SIGTERM)
	}
	if p.execID == "" {
		if err := s.rt.Kill(ctx, s.cfg.ID, sig, req.GetAll()); err != nil {
			return fmt.Errorf("kill %s: %w", describe(req.GetId(), ""), err)
		}
		return nil
	}
	if p.pid == 0 {
		return errdefs.Errorf(errdefs.ErrFailedPrecondition, "kill %s: it was not started", describe(req.GetId(), req.GetExecId()))
	}
	if err := unix.Kill(p.pid, unix.Signal(sig)); err != nil {
		return fmt.Errorf("kill %s (pid %d): %w", describe(req.GetId(), req.GetExecId()), p.pid, err)
	}
	return nil
}

// Pids lists the container's processes.
func (s *Service) Pids(ctx context.Context, req *shimv1.PidsRequest) (*shimv1.PidsResponse, error) {
	s.mu.Lock()
	_, err := s.process(req.GetId(), "")
	byPid := make(map[int]string)
	for id, p := range s.execs {
		if p.pid != 0 {
			byPid[p.pid] = id
		}
	}
	s.mu.Unlock()
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	pids, err := s.rt.Ps(ctx, s.cfg.ID)
	if err != nil {
		return nil, errdefs.ToGRPC(fmt.Errorf("listing the processes of %q: %w", req.GetId(), err))
	}
	resp := &shimv1.PidsResponse{}
	for _, pid := range pids {
		resp.Processes = append(resp.Processes, &shimv1.ProcessInfo{Pid: uint32(pid), ExecId: byPid[pid]})
	}
	return resp, nil
}

// Pause freezes the container.
func (s *Service) Pause(ctx context.Context, req *shimv1.PauseRequest) (*emptypb.Empty, error) {
	if err := s.setPaused(ctx, req.GetId(), true); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

// Resume thaws the container.
func (s *Service) Resume(ctx context.Context, req *shimv1.ResumeRequest) (*emptypb.Empty, error) {
	if err := s.setPaused(ctx, req.GetId(), false); err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &emptypb.Empty{}, nil
}

func (s *Service) setPaused(ctx context.Context, id string, pause bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.process(id, "")
	if err != nil {
		return err
	}
	from, to, verb := shimv1.Status_STATUS_RUNNING, shimv1.Status_STATUS_PAUSED, "pause"
	if !pause {
		from, to, verb = shimv1.Status_STATUS_PAUSED, shimv1.Status_STATUS_RUNNING, "resume"
	}
	if p.hasExited() || p.status != from {
		return errdefs.Errorf(errdefs.ErrFailedPrecondition, "%s %q: it is %s, not %s", verb, id, statusName(p.status), statusName(from))
	}
	if pause {
		err = s.rt.Pause(ctx, s.cfg.ID)
	} else {
		err = s.rt.Resume(ctx, s.cfg.ID)
	}
	if err != nil {
		return fmt.Errorf("%s %q: %w", verb, id, err)
	}
	p.status = to
	return nil
}

// State reports a process.
func (s *Service) State(ctx context.Context, req *shimv1.StateRequest) (*shimv1.StateResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, err := s.process(req.GetId(), req.GetExecId())
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	resp := &shimv1.StateResponse{
		Id: s.cfg.ID, ExecId: p.execID, Bundle: s.cfg.Bundle, Pid: uint32(p.pid), Status: p.status,
		Stdin: p.stdio.stdin, Stdout: p.stdio.stdout, Stderr: p.stdio.stderr, Terminal: p.stdio.terminal,
		OomKilled: p.execID == "" && s.oomEvents > 0,
	}
	if p.hasExited() {
		resp.ExitStatus = uint32(p.exitStatus)
		resp.ExitedAt = timestamppb.New(p.exitedAt)
	}
	return resp, nil
}

// Wait blocks until the process exits.
func (s *Service) Wait(ctx context.Context, req *shimv1.WaitRequest) (*shimv1.WaitResponse, error) {
	s.mu.Lock()
	p, err := s.process(req.GetId(), req.GetExecId())
	s.mu.Unlock()
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		return nil, errdefs.ToGRPC(ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &shimv1.WaitResponse{ExitStatus: uint32(p.exitStatus), ExitedAt: timestamppb.New(p.exitedAt), OomKilled: p.execID == "" && s.oomEvents > 0}, nil
}

// Shutdown lets the shim exit once its container is deleted.
func (s *Service) Shutdown(ctx context.Context, req *shimv1.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	live := s.init != nil
	s.mu.Unlock()
	if live && !req.GetNow() {
		return nil, errdefs.ToGRPC(errdefs.Errorf(errdefs.ErrFailedPrecondition, "shutdown of the shim of %q: its task still exists: delete it first, or shut down now", s.cfg.ID))
	}
	if s.shutdown != nil {
		s.shutdown()
	}
	return &emptypb.Empty{}, nil
}

// checkID checks that id is this shim's container.
func (s *Service) checkID(id string) error {
	if id != s.cfg.ID {
		return errdefs.Errorf(errdefs.ErrNotFound, "task %q is not served by this shim, which serves %q", id, s.cfg.ID)
	}
	return nil
}

// process returns the init process or an exec; s.mu is held.
func (s *Service) process(id, execID string) (*process, error) {
	if err := s.checkID(id); err != nil {
		return nil, err
	}
	if s.init == nil {
		return nil, errdefs.Errorf(errdefs.ErrNotFound, "task %q not created: create it first", id)
	}
	if execID == "" {
		return s.init, nil
	}
	p, ok := s.execs[execID]
	if !ok {
		return nil, errdefs.Errorf(errdefs.ErrNotFound, "exec %q not found in task %q", execID, id)
	}
	return p, nil
}

func describe(id, execID string) string {
	if execID == "" {
		return fmt.Sprintf("task %q", id)
	}
	return fmt.Sprintf("exec %q of task %q", execID, id)
}

func statusName(st shimv1.Status) string {
	return strings.ToLower(strings.TrimPrefix(st.String(), "STATUS_"))
}

// ReadPidFile reads a pid file written by the shim or the runtime.
func ReadPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading the pid in %s: %w", path, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("reading the pid in %s: %q is not a pid", path, b)
	}
	return pid, nil
}
