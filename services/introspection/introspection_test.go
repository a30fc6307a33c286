package introspection

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/grpctest"
	"github.com/berth-engine/berth/internal/version"
	introspectionv1 "github.com/berth-engine/berth/proto/introspection/v1"
)

func TestUUIDPersists(t *testing.T) {
	root := t.TempDir()
	a, err := New(Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := uuid.Parse(a.UUID()); err != nil {
		t.Fatalf("not a UUID: %q", a.UUID())
	}
	b, err := New(Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if a.UUID() != b.UUID() {
		t.Fatalf("UUID changed across restarts: %s then %s", a.UUID(), b.UUID())
	}
	other, err := New(Config{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if other.UUID() == a.UUID() {
		t.Fatal("two roots got the same UUID")
	}

	if err := os.WriteFile(filepath.Join(root, "uuid"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Root: root}); !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "remove it") {
		t.Fatalf("corrupt uuid file: %v, want a failed precondition saying what to do", err)
	}
}

func TestVersionAndInfo(t *testing.T) {
	root, state := t.TempDir(), t.TempDir()
	started := time.Date(2024, 3, 4, 5, 6, 7, 0, time.UTC)
	var gs *grpc.Server
	svc, err := New(Config{
		Root:           root,
		State:          state,
		Services:       lister(func() map[string]grpc.ServiceInfo { return gs.GetServiceInfo() }),
		MetadataSchema: "v1",
		StartedAt:      started,
		Snapshotters: func(context.Context) []Component {
			return []Component{{Name: "native", Address: "/run/berth/snapshotter-native.sock", Status: "ok"}}
		},
		DefaultSnapshotter: "native",
	})
	if err != nil {
		t.Fatal(err)
	}
	c := introspectionv1.NewIntrospectionClient(grpctest.Dial(t, func(s *grpc.Server) {
		gs = s
		Register(s, svc)
	}))
	ctx := context.Background()

	v, err := c.Version(ctx, &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if v.GetVersion() != version.Version || v.GetRevision() != version.Revision || v.GetGoVersion() != runtime.Version() || v.GetOs() != runtime.GOOS || v.GetArch() != runtime.GOARCH {
		t.Fatalf("version: %v", v)
	}

	info, err := c.Info(ctx, &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetUuid() != svc.UUID() || info.GetRoot() != root || info.GetState() != state || info.GetPid() != int32(os.Getpid()) {
		t.Fatalf("identity: %v", info)
	}
	if !info.GetStartedAt().AsTime().Equal(started) || info.GetMetadataSchema() != "v1" || info.GetDefaultSnapshotter() != "native" {
		t.Fatalf("start time, schema or snapshotter: %v", info)
	}
	if info.GetNcpu() != int32(runtime.NumCPU()) || info.GetOs() != runtime.GOOS || info.GetArch() != runtime.GOARCH {
		t.Fatalf("host: %v", info)
	}
	if info.GetMemTotal() <= 0 || info.GetKernelVersion() == "" {
		t.Fatalf("memory %d or kernel %q not read", info.GetMemTotal(), info.GetKernelVersion())
	}
	if !slices.Contains([]string{"v1", "v2", "hybrid", "none"}, info.GetCgroupVersion()) {
		t.Fatalf("cgroup version %q", info.GetCgroupVersion())
	}
	var services []string
	var snapshotters []*introspectionv1.Component
	for _, comp := range info.GetComponents() {
		switch comp.GetType() {
		case "service":
			if comp.GetStatus() != "ok" {
				t.Errorf("service %s: status %q", comp.GetName(), comp.GetStatus())
			}
			services = append(services, comp.GetName())
		case "snapshotter":
			snapshotters = append(snapshotters, comp)
		default:
			t.Errorf("component of unknown type %v", comp)
		}
	}
	if !slices.Equal(services, []string{"berth.introspection.v1.Introspection"}) {
		t.Errorf("services %v, want the one registered", services)
	}
	if len(snapshotters) != 1 || snapshotters[0].GetName() != "native" || snapshotters[0].GetAddress() == "" {
		t.Errorf("snapshotters %v", snapshotters)
	}
}

type lister func() map[string]grpc.ServiceInfo

func (l lister) GetServiceInfo() map[string]grpc.ServiceInfo { return l() }

func TestParseMemTotal(t *testing.T) {
	n, err := parseMemTotal(strings.NewReader("MemFree:  100 kB\nMemTotal:       16318468 kB\nBuffers: 1 kB\n"))
	if err != nil {
		t.Fatal(err)
	}
	if n != 16318468*1024 {
		t.Fatalf("got %d", n)
	}
	if _, err := parseMemTotal(strings.NewReader("MemFree: 1 kB\n")); !errdefs.IsNotFound(err) {
		t.Fatalf("no MemTotal: %v", err)
	}
	if _, err := parseMemTotal(strings.NewReader("MemTotal: lots kB\n")); err == nil {
		t.Fatal("a bad number was accepted")
	}
}

func TestCgroupVersion(t *testing.T) {
	if got := cgroupVersion(t.TempDir()); got != "none" {
		t.Errorf("a plain folder: %q, want none", got)
	}
	const cgroup2 = 0x63677270
	got := cgroupVersion("/sys/fs/cgroup")
	switch {
	case fsType("/sys/fs/cgroup") == cgroup2:
		if got != "v2" {
			t.Errorf("this machine has cgroup v2 at /sys/fs/cgroup, detected %q", got)
		}
	case fsType("/sys/fs/cgroup/unified") == cgroup2:
		if got != "hybrid" {
			t.Errorf("this machine has a hybrid cgroup layout, detected %q", got)
		}
	}
}
