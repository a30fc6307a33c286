// Package introspection serves berth.introspection.v1.Introspection: which
// berthd this is, what it serves and what machine it runs on.
package introspection

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/protoconv"
	"github.com/berth-engine/berth/internal/version"
	introspectionv1 "github.com/berth-engine/berth/proto/introspection/v1"
)

// ServiceLister lists the gRPC services a server serves; *grpc.Server is one.
type ServiceLister interface {
	GetServiceInfo() map[string]grpc.ServiceInfo
}

// Component is a snapshotter (or later another part) berthd uses, and how it
// is doing.
type Component struct {
	Name    string
	Address string // "" when in-process
	Status  string // "ok" or a short reason why not
}

// Config says what Info reports.
type Config struct {
	Root  string
	State string
	// Services lists what berthd serves; it is asked at each Info call.
	Services ServiceLister
	// MetadataSchema is the schema of the metadata database, e.g. "v1".
	MetadataSchema string
	// Snapshotters reports the snapshotters in use; nil while there are none.
	Snapshotters       func(ctx context.Context) []Component
	DefaultSnapshotter string
	// StartedAt is when berthd started; zero means when New was called.
	StartedAt time.Time
	// DefaultRuntime is the OCI runtime the shims drive.
	DefaultRuntime string
	// CgroupDriver manages the containers' cgroups ("cgroupfs").
	CgroupDriver string
	// SecurityOptions are the confinements every container gets.
	SecurityOptions []string
}

// Service implements introspectionv1.IntrospectionServer.
type Service struct {
	introspectionv1.UnimplementedIntrospectionServer
	cfg    Config
	uuid   string
	host   hostInfo
	cgroup string
}

// New reads this berthd's UUID from <root>/uuid, making one on first start,
// and gathers what does not change while berthd runs.
func New(cfg Config) (*Service, error) {
	if cfg.StartedAt.IsZero() {
		cfg.StartedAt = time.Now()
	}
	id, err := loadOrCreateUUID(filepath.Join(cfg.Root, "uuid"))
	if err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, uuid: id, host: readHostInfo(), cgroup: cgroupVersion("/sys/fs/cgroup")}, nil
}

// Register serves svc on s.
func Register(s *grpc.Server, svc *Service) {
	introspectionv1.RegisterIntrospectionServer(s, svc)
}

// UUID identifies this berthd's root across restarts.
func (s *Service) UUID() string { return s.uuid }

// Version tells the build of this berthd.
func (s *Service) Version(context.Context, *emptypb.Empty) (*introspectionv1.VersionResponse, error) {
	return &introspectionv1.VersionResponse{
		Version:   version.Version,
		Revision:  version.Revision,
		GoVersion: runtime.Version(),
		Os:        runtime.GOOS,
		Arch:      runtime.GOARCH,
	}, nil
}

// Info tells what this berthd serves and the machine it runs on.
func (s *Service) Info(ctx context.Context, _ *emptypb.Empty) (*introspectionv1.InfoResponse, error) {
	var components []*introspectionv1.Component
	if s.cfg.Services != nil {
		for _, name := range slices.Sorted(maps.Keys(s.cfg.Services.GetServiceInfo())) {
			components = append(components, &introspectionv1.Component{Type: "service", Name: name, Status: "ok"})
		}
	}
	if s.cfg.Snapshotters != nil {
		for _, sn := range s.cfg.Snapshotters(ctx) {
			components = append(components, &introspectionv1.Component{Type: "snapshotter", Name: sn.Name, Address: sn.Address, Status: sn.Status})
		}
	}
	return &introspectionv1.InfoResponse{
		Uuid:               s.uuid,
		Root:               s.cfg.Root,
		State:              s.cfg.State,
		Pid:                int32(os.Getpid()),
		StartedAt:          protoconv.TimestampToProto(s.cfg.StartedAt),
		Components:         components,
		DefaultSnapshotter: s.cfg.DefaultSnapshotter,
		MetadataSchema:     s.cfg.MetadataSchema,
		CgroupVersion:      s.cgroup,
		KernelVersion:      s.host.kernel,
		Os:                 runtime.GOOS,
		Arch:               runtime.GOARCH,
		Ncpu:               int32(runtime.NumCPU()),
		MemTotal:           s.host.memTotal,
		DefaultRuntime:     s.cfg.DefaultRuntime,
		CgroupDriver:       s.cfg.CgroupDriver,
		SecurityOptions:    s.cfg.SecurityOptions,
	}, nil
}

// loadOrCreateUUID returns the UUID in path, writing a new one there if the
// file does not exist yet.
func loadOrCreateUUID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		id, err := uuid.Parse(strings.TrimSpace(string(b)))
		if err != nil {
			return "", fmt.Errorf("%s does not hold a UUID (%v): remove it and berthd makes a new one: %w", path, err, errdefs.ErrFailedPrecondition)
		}
		return id.String(), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("reading berthd's UUID: %w", err)
	}
	id := uuid.NewString()
	// Write then rename, so that a crash never leaves a half-written UUID.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("writing berthd's UUID: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("writing berthd's UUID: %w", err)
	}
	return id, nil
}

type hostInfo struct {
	kernel   string
	memTotal int64
}

// readHostInfo reads what it can; a field it cannot read stays empty rather
// than failing the whole Info.
func readHostInfo() hostInfo {
	var h hostInfo
	var uts unix.Utsname
	if err := unix.Uname(&uts); err == nil {
		h.kernel = string(bytes.TrimRight(uts.Release[:], "\x00"))
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		h.memTotal, _ = parseMemTotal(f)
		f.Close()
	}
	return h
}

// parseMemTotal returns MemTotal from /proc/meminfo, in bytes.
func parseMemTotal(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "MemTotal:" {
			continue
		}
		n, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("MemTotal %q: %w", fields[1], err)
		}
		if len(fields) > 2 && fields[2] == "kB" {
			n *= 1024
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no MemTotal line: %w", errdefs.ErrNotFound)
}

// cgroupVersion tells how cgroups are mounted at dir: "v2" (unified), "hybrid"
// (v1 controllers plus a v2 hierarchy at unified/), "v1", or "none".
func cgroupVersion(dir string) string {
	if fsType(dir) == unix.CGROUP2_SUPER_MAGIC {
		return "v2"
	}
	if fsType(filepath.Join(dir, "unified")) == unix.CGROUP2_SUPER_MAGIC {
		return "hybrid"
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() && fsType(filepath.Join(dir, e.Name())) == unix.CGROUP_SUPER_MAGIC {
			return "v1"
		}
	}
	return "none"
}

// fsType returns the file system magic number of path, or 0.
func fsType(path string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0
	}
	return st.Type
}
