package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/namespaces"
	containersv1 "github.com/berth-engine/berth/proto/containers/v1"
	contentv1 "github.com/berth-engine/berth/proto/content/v1"
	eventsv1 "github.com/berth-engine/berth/proto/events/v1"
	imagesv1 "github.com/berth-engine/berth/proto/images/v1"
	introspectionv1 "github.com/berth-engine/berth/proto/introspection/v1"
	leasesv1 "github.com/berth-engine/berth/proto/leases/v1"
	namespacesv1 "github.com/berth-engine/berth/proto/namespaces/v1"
	tasksv1 "github.com/berth-engine/berth/proto/tasks/v1"
	"github.com/berth-engine/berth/services/containers"
	"github.com/berth-engine/berth/services/containers/containerproxy"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/content/contentproxy"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/services/images/imageproxy"
	"github.com/berth-engine/berth/services/leases"
	"github.com/berth-engine/berth/services/leases/leaseproxy"
	"github.com/berth-engine/berth/services/namespaces/namespaceproxy"
	"github.com/berth-engine/berth/services/tasks/taskproxy"
)

// testConfig returns a configuration on fresh folders, with the socket in a
// short folder of its own: unix socket paths must stay under 108 bytes. The
// embedded snapshotters are off; the tests that want them turn them on.
func testConfig(t *testing.T) Config {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "berth")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	base := t.TempDir()
	return Config{
		Root:     filepath.Join(base, "root"),
		State:    filepath.Join(base, "state"),
		Address:  filepath.Join(sockDir, "berthd.sock"),
		LogLevel: "debug",
		Snapshotters: map[string]SnapshotterConfig{
			"overlay": {Disabled: true},
			"native":  {Disabled: true},
		},
	}
}

// start runs a server on cfg until the test ends.
func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("serve: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("server not ready within 10s")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("serve returned %v after cancel", err)
		}
	})
	return srv
}

func dial(t *testing.T, address string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestServer(t *testing.T) {
	cfg := testConfig(t)
	cfg.MetricsAddress = "127.0.0.1:0"
	srv := start(t, cfg)
	conn := dial(t, cfg.Address)
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), "default"), 30*time.Second)
	defer cancel()

	fi, err := os.Stat(cfg.Address)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	if fi, err := os.Stat(cfg.Root); err != nil || fi.Mode().Perm() != 0o711 {
		t.Errorf("root: %v, mode %v, want 0711", err, fi.Mode())
	}

	wantServices := []string{
		"berth.containers.v1.Containers",
		"berth.content.v1.Content",
		"berth.diff.v1.Diff",
		"berth.events.v1.Events",
		"berth.images.v1.Images",
		"berth.introspection.v1.Introspection",
		"berth.leases.v1.Leases",
		"berth.namespaces.v1.Namespaces",
		"berth.snapshots.v1.Snapshots",
		"berth.tasks.v1.Tasks",
		"grpc.health.v1.Health",
	}
	t.Run("reflection", func(t *testing.T) {
		stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{
			MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
		}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var listed []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			listed = append(listed, s.GetName())
		}
		for _, want := range wantServices {
			if !slices.Contains(listed, want) {
				t.Errorf("reflection does not list %s: %v", want, listed)
			}
		}
	})

	t.Run("health", func(t *testing.T) {
		hc := healthpb.NewHealthClient(conn)
		for _, svc := range append([]string{""}, wantServices...) {
			resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
			if err != nil {
				t.Fatalf("health of %q: %v", svc, err)
			}
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("health of %q: %v", svc, resp.GetStatus())
			}
		}
	})

	// Subscribe before changing anything, to see the events of the changes.
	evStream, err := eventsv1.NewEventsClient(conn).Subscribe(ctx, &eventsv1.SubscribeRequest{Filters: []string{`topic=="/images/create"`}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := evStream.Header(); err != nil {
		t.Fatal(err)
	}

	data := []byte(`{"schemaVersion":2}`)
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(data), Size: int64(len(data))}
	t.Run("content", func(t *testing.T) {
		cs := contentproxy.NewStore(contentv1.NewContentClient(conn))
		if err := content.WriteBlob(ctx, cs, "manifest", strings.NewReader(string(data)), desc); err != nil {
			t.Fatal(err)
		}
		got, err := content.ReadBlob(ctx, cs, desc)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(data) {
			t.Fatalf("read back %q, want %q", got, data)
		}
		if _, err := os.Stat(filepath.Join(cfg.Root, "content", "blobs", "sha256", desc.Digest.Encoded())); err != nil {
			t.Fatalf("blob not under the root: %v", err)
		}
	})

	t.Run("images", func(t *testing.T) {
		is := imageproxy.NewStore(imagesv1.NewImagesClient(conn))
		name := "docker.io/library/busybox:latest"
		if _, err := is.Create(ctx, images.Image{Name: name, Target: desc}); err != nil {
			t.Fatal(err)
		}
		list, err := is.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].Name != name || list[0].Target.Digest != desc.Digest {
			t.Fatalf("list: %+v", list)
		}
		if _, err := is.Get(ctx, "docker.io/library/missing:latest"); !errdefs.IsNotFound(err) {
			t.Fatalf("get missing: %v, want not found", err)
		}
		env, err := evStream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		ev, err := env.GetEvent().UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		if create, ok := ev.(*eventsv1.ImageCreate); !ok || create.GetName() != name || env.GetNamespace() != "default" {
			t.Fatalf("event %v in %q, want the image create", ev, env.GetNamespace())
		}
	})

	t.Run("containers", func(t *testing.T) {
		cs := containerproxy.NewStore(containersv1.NewContainersClient(conn))
		c := containers.Container{
			ID:      strings.Repeat("c0", containers.IDLength/2),
			Name:    "web",
			Image:   "docker.io/library/busybox:latest",
			Runtime: containers.RuntimeInfo{Name: "runc"},
			Spec:    &anypb.Any{TypeUrl: containers.SpecTypeURL, Value: []byte(`{"ociVersion":"1.2.0"}`)},
		}
		if _, err := cs.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
		list, err := cs.List(ctx, "name==web")
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].ID != c.ID || list[0].CreatedAt.IsZero() {
			t.Fatalf("list: %+v", list)
		}
		if _, err := cs.Create(ctx, c); !errdefs.IsAlreadyExists(err) {
			t.Fatalf("create twice: %v, want already exists", err)
		}
	})

	t.Run("tasks", func(t *testing.T) {
		ts := taskproxy.New(tasksv1.NewTasksClient(conn))
		list, err := ts.List(ctx, &tasksv1.ListTasksRequest{})
		if err != nil || len(list.GetTasks()) != 0 {
			t.Fatalf("list: %v %v, want no tasks", list, err)
		}
		if _, err := ts.Get(ctx, &tasksv1.GetRequest{ContainerId: "nothere"}); !errdefs.IsNotFound(err) {
			t.Fatalf("get of a missing task: %v, want not found", err)
		}
	})

	t.Run("leases", func(t *testing.T) {
		lm := leaseproxy.NewManager(leasesv1.NewLeasesClient(conn))
		l, err := lm.Create(ctx, leases.WithID("test-lease"))
		if err != nil {
			t.Fatal(err)
		}
		if l.ID != "test-lease" || l.CreatedAt.IsZero() {
			t.Fatalf("lease %+v", l)
		}
	})

	t.Run("namespaces", func(t *testing.T) {
		names, err := namespaceproxy.NewStore(namespacesv1.NewNamespacesClient(conn)).List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(names, "default") {
			t.Fatalf("namespaces %v, want default among them", names)
		}
	})

	t.Run("introspection", func(t *testing.T) {
		info, err := introspectionv1.NewIntrospectionClient(conn).Info(ctx, &emptypb.Empty{})
		if err != nil {
			t.Fatal(err)
		}
		if info.GetRoot() != cfg.Root || info.GetState() != cfg.State || info.GetPid() != int32(os.Getpid()) || info.GetMetadataSchema() == "" {
			t.Fatalf("info %v", info)
		}
		var names []string
		for _, c := range info.GetComponents() {
			names = append(names, c.GetName())
		}
		for _, want := range wantServices {
			if !slices.Contains(names, want) {
				t.Errorf("info does not list %s: %v", want, names)
			}
		}
		if b, err := os.ReadFile(filepath.Join(cfg.Root, "uuid")); err != nil || strings.TrimSpace(string(b)) != info.GetUuid() {
			t.Errorf("uuid %q not persisted (%v)", info.GetUuid(), err)
		}
	})

	t.Run("second server refused", func(t *testing.T) {
		other := cfg
		other.Address = cfg.Address + "2"
		_, err := New(context.Background(), other)
		if !errdefs.IsUnavailable(err) {
			t.Fatalf("second server: %v, want unavailable", err)
		}
		want := "another berthd is running with root " + cfg.Root + " (pid " + strconv.Itoa(os.Getpid()) + "): stop it or choose another --root"
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("second server: %q, want it to contain %q", err, want)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		addr := srv.MetricsAddr()
		if addr == "" || strings.HasSuffix(addr, ":0") {
			t.Fatalf("metrics address %q", addr)
		}
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
		}
		for _, want := range []string{
			`grpc_server_handled_total{grpc_code="OK",grpc_method="Create",grpc_service="berth.images.v1.Images",grpc_type="unary"} 1`,
			`grpc_server_handled_total{grpc_code="NotFound",grpc_method="Get",grpc_service="berth.images.v1.Images",grpc_type="unary"} 1`,
			`berth_build_info{goversion="`,
			`go_goroutines `,
			`process_start_time_seconds `,
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
}

func TestStopReleasesEverything(t *testing.T) {
	cfg := testConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx) }()
	<-srv.Ready()
	// A client holding an event stream open must not hold up the stop.
	conn := dial(t, cfg.Address)
	stream, err := eventsv1.NewEventsClient(conn).Subscribe(namespaces.WithNamespace(context.Background(), "default"), &eventsv1.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}

	stopped := time.Now()
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("serve after cancel: %v", err)
	}
	if d := time.Since(stopped); d > shutdownTimeout/2 {
		t.Errorf("stop took %v: an event stream held it up", d)
	}
	if _, err := stream.Recv(); !errdefs.IsUnavailable(errdefs.FromGRPC(err)) {
		t.Errorf("event stream at shutdown: %v, want unavailable", err)
	}
	if _, err := os.Lstat(cfg.Address); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	srv.Stop() // a second Stop does nothing

	// The root is free again.
	again, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("restart on the same root: %v", err)
	}
	again.Stop()
}

func TestSocketFile(t *testing.T) {
	t.Run("stale socket is replaced", func(t *testing.T) {
		cfg := testConfig(t)
		lis, err := net.Listen("unix", cfg.Address)
		if err != nil {
			t.Fatal(err)
		}
		lis.(*net.UnixListener).SetUnlinkOnClose(false)
		lis.Close()
		start(t, cfg)
		conn := dial(t, cfg.Address)
		if _, err := introspectionv1.NewIntrospectionClient(conn).Version(context.Background(), &emptypb.Empty{}); err != nil {
			t.Fatalf("after replacing the stale socket: %v", err)
		}
	})
	t.Run("live socket is kept", func(t *testing.T) {
		cfg := testConfig(t)
		lis, err := net.Listen("unix", cfg.Address)
		if err != nil {
			t.Fatal(err)
		}
		defer lis.Close()
		srv, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = srv.Serve(context.Background())
		if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "another process is serving on") {
			t.Fatalf("serve on a live socket: %v", err)
		}
		if _, err := os.Lstat(cfg.Address); err != nil {
			t.Fatalf("the other process's socket was removed: %v", err)
		}
		// Serve's failure stopped the server and freed the root.
		again, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatalf("root still locked after a failed Serve: %v", err)
		}
		again.Stop()
	})
}
