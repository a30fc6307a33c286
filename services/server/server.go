// Package server wires berthd together: the metadata database, the content
// store, the event exchange, the snapshotters (berth-snapshotter children it
// supervises, or external processes it connects to) and every gRPC service,
// served on one unix socket, with Prometheus metrics on an optional HTTP
// address. Each service is constructed and registered here, explicitly, so
// that a reader can follow from main to every service.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	shimruntime "github.com/berth-engine/berth/shim/runtime"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/sockets"
	"github.com/berth-engine/berth/internal/version"
	"github.com/berth-engine/berth/services/containers/containerserver"
	"github.com/berth-engine/berth/services/content/contentserver"
	"github.com/berth-engine/berth/services/content/local"
	"github.com/berth-engine/berth/services/diff/diffserver"
	difflocal "github.com/berth-engine/berth/services/diff/local"
	"github.com/berth-engine/berth/services/events/eventserver"
	"github.com/berth-engine/berth/services/events/exchange"
	"github.com/berth-engine/berth/services/images/imageserver"
	"github.com/berth-engine/berth/services/introspection"
	"github.com/berth-engine/berth/services/leases/leaseserver"
	"github.com/berth-engine/berth/services/metadata"
	"github.com/berth-engine/berth/services/namespaces/namespaceserver"
	"github.com/berth-engine/berth/services/supervisor"
	tasklocal "github.com/berth-engine/berth/services/tasks/local"
	"github.com/berth-engine/berth/services/tasks/taskserver"
	"github.com/berth-engine/berth/snapshotter/snapshots"
	"github.com/berth-engine/berth/snapshotter/snapshotserver"
)

const (
	// shutdownTimeout bounds how long a graceful stop waits for calls in
	// flight before it cuts them off.
	shutdownTimeout = 10 * time.Second
	// snapshotterStartTimeout bounds the wait at start for the children to
	// serve; berthd serves without the ones that are late.
	snapshotterStartTimeout = 15 * time.Second
	// boltTimeout bounds the wait for bbolt's own lock on metadata.db.
	boltTimeout = 5 * time.Second
)

// Server is a configured berthd, ready to Serve.
type Server struct {
	cfg          Config
	lock         *rootLock
	bdb          *bolt.DB
	db           *metadata.DB
	snapshotters *snapshotterSet
	exchange     *exchange.Exchange
	tasks        *tasklocal.Service
	supervisor   *supervisor.Supervisor
	grpc         *grpc.Server
	health       *health.Server
	registry     *prometheus.Registry

	ready    chan struct{} // closed once Serve listens
	stopping chan struct{} // closed when Stop begins
	stopOnce sync.Once

	mu          sync.Mutex
	serving     bool
	listener    net.Listener
	metrics     *http.Server
	metricsAddr string
}

// New prepares berthd on cfg: it makes the root and state directories, locks
// the root against a second berthd, opens the metadata database and content
// store, and registers every service. Nothing is served until Serve.
func New(ctx context.Context, cfg Config) (_ *Server, retErr error) {
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		ready:    make(chan struct{}),
		stopping: make(chan struct{}),
	}
	// On failure, undo what was done so far, in reverse.
	var undo []func()
	defer func() {
		if retErr != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	// Lock the root before touching anything else a running berthd owns.
	if err := makeDir(cfg.Root); err != nil {
		return nil, err
	}
	if s.lock, err = lockRoot(cfg.Root); err != nil {
		return nil, err
	}
	undo = append(undo, s.lock.release)
	if err := makeDir(cfg.State); err != nil {
		return nil, err
	}

	dbPath := filepath.Join(cfg.Root, "metadata.db")
	if s.bdb, err = bolt.Open(dbPath, 0o600, &bolt.Options{Timeout: boltTimeout}); err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("opening %s: another process holds it open: stop it or choose another --root: %w", dbPath, errdefs.ErrUnavailable)
		}
		return nil, fmt.Errorf("opening metadata database %s: %w", dbPath, err)
	}
	undo = append(undo, func() { s.bdb.Close() })

	cs, err := local.NewStore(filepath.Join(cfg.Root, "content"))
	if err != nil {
		return nil, fmt.Errorf("opening content store: %w", err)
	}
	if s.snapshotters, err = startSnapshotters(cfg); err != nil {
		return nil, err
	}
	undo = append(undo, s.snapshotters.stop)
	waitCtx, cancel := context.WithTimeout(ctx, snapshotterStartTimeout)
	s.snapshotters.waitReady(waitCtx)
	cancel()
	mountsDir := filepath.Join(cfg.State, "mounts")
	if err := os.MkdirAll(mountsDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the folder for temporary mounts: %w", err)
	}

	s.exchange = exchange.New()
	undo = append(undo, s.exchange.Close)
	s.db = metadata.NewDB(s.bdb, cs, s.exchange, metadata.WithSnapshotters(s.snapshotters.backends()))
	undo = append(undo, func() { s.db.Close() })
	if err := s.db.Init(ctx); err != nil {
		return nil, fmt.Errorf("initialising metadata database %s: %w", dbPath, err)
	}

	snapshotterOf := func(name string) snapshots.Snapshotter {
		if name == "" {
			name = cfg.DefaultSnapshotter
		}
		return s.db.Snapshotter(name)
	}
	// The supervisor subscribes to task events before the tasks service
	// recovers, so that the exits found during recovery reach it.
	s.supervisor, err = supervisor.New(ctx, supervisor.Config{
		Events:      s.exchange,
		Containers:  s.db.Containers(),
		Namespaces:  s.db.Namespaces(),
		Snapshotter: snapshotterOf,
		Root:        cfg.Root,
		CgroupRoot:  "/sys/fs/cgroup",
	})
	if err != nil {
		return nil, err
	}
	undo = append(undo, s.supervisor.Close)
	// Tasks reconnect to the shims of a previous berthd here.
	s.tasks, err = tasklocal.New(ctx, tasklocal.Config{
		Root:        cfg.Root,
		State:       cfg.State,
		ShimBinary:  cfg.ShimBinary,
		Runtime:     cfg.Runtime,
		Containers:  s.db.Containers(),
		Snapshotter: snapshotterOf,
		Publisher:   s.exchange,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the tasks service: %w", err)
	}
	undo = append(undo, func() { s.tasks.Close() })
	if err := s.supervisor.Start(ctx, s.tasks); err != nil {
		return nil, err
	}

	s.registry = prometheus.NewRegistry()
	grpcMetrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "berth_build_info",
		Help: "Always 1; the labels tell which berthd build is running.",
	}, []string{"version", "revision", "goversion"})
	buildInfo.WithLabelValues(version.Version, version.Revision, runtime.Version()).Set(1)
	s.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		grpcMetrics,
		buildInfo,
	)

	s.grpc = grpc.NewServer(
		grpc.ChainUnaryInterceptor(grpcMetrics.UnaryServerInterceptor(), logFailedUnary),
		grpc.ChainStreamInterceptor(grpcMetrics.StreamServerInterceptor(), logFailedStream),
	)
	intro, err := introspection.New(introspection.Config{
		Root:               cfg.Root,
		State:              cfg.State,
		Services:           s.grpc,
		MetadataSchema:     s.db.SchemaVersion(),
		Snapshotters:       s.snapshotters.components,
		DefaultSnapshotter: cfg.DefaultSnapshotter,
		DefaultRuntime:     runtimeName(cfg.Runtime),
		// runc's cgroupfs driver makes /berth/<id>; the spec gets Docker's
		// default seccomp profile unless a container asks otherwise.
		CgroupDriver:    "cgroupfs",
		SecurityOptions: []string{"name=seccomp,profile=builtin"},
	})
	if err != nil {
		return nil, err
	}
	contentserver.Register(s.grpc, s.db.ContentStore())
	imageserver.Register(s.grpc, s.db.Images())
	containerserver.Register(s.grpc, s.db.Containers())
	taskserver.Register(s.grpc, s.tasks)
	leaseserver.Register(s.grpc, s.db.Leases())
	namespaceserver.Register(s.grpc, s.db.Namespaces())
	eventserver.Register(s.grpc, s.exchange)
	snapshotserver.RegisterMulti(s.grpc, s.snapshotters.lookup(s.db))
	diffserver.Register(s.grpc, difflocal.New(s.db.ContentStore(), mountsDir))
	introspection.Register(s.grpc, intro)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	for name := range s.grpc.GetServiceInfo() {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	grpcMetrics.InitializeMetrics(s.grpc)
	return s, nil
}

// Config returns the configuration in use, with paths made absolute.
func (s *Server) Config() Config { return s.cfg }

// Registry returns the Prometheus registry /metrics serves.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// Ready is closed once Serve listens on its addresses.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// MetricsAddr returns the address /metrics is served on once Ready, or ""
// when metrics are off. With a metrics_address port of 0 it tells the port
// picked.
func (s *Server) MetricsAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.metricsAddr
}

// Serve listens on the socket (and the metrics address, if set) and serves
// until ctx ends or Stop is called, then stops gracefully. It returns nil on
// a clean stop.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.serving {
		s.mu.Unlock()
		return fmt.Errorf("berthd is already serving: %w", errdefs.ErrFailedPrecondition)
	}
	s.serving = true
	s.mu.Unlock()
	select {
	case <-s.stopping:
		return fmt.Errorf("berthd was stopped before it served: %w", errdefs.ErrFailedPrecondition)
	default:
	}

	lis, err := sockets.ListenUnix(s.cfg.Address)
	if err != nil {
		s.Stop()
		return err
	}
	var metricsLis net.Listener
	if s.cfg.MetricsAddress != "" {
		if metricsLis, err = net.Listen("tcp", s.cfg.MetricsAddress); err != nil {
			lis.Close()
			s.Stop()
			return fmt.Errorf("listening for metrics on %s: choose another --metrics-address: %w", s.cfg.MetricsAddress, err)
		}
	}

	errc := make(chan error, 2)
	s.mu.Lock()
	s.listener = lis
	if metricsLis != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))
		s.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		s.metricsAddr = metricsLis.Addr().String()
		go func() {
			if err := s.metrics.Serve(metricsLis); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serving metrics on %s: %w", s.metricsAddr, err)
			}
		}()
	}
	s.mu.Unlock()
	go func() {
		if err := s.grpc.Serve(lis); err != nil {
			errc <- fmt.Errorf("serving gRPC on %s: %w", s.cfg.Address, err)
		}
	}()
	slog.InfoContext(ctx, "berthd serving", "address", s.cfg.Address, "metrics", s.MetricsAddr(),
		"root", s.cfg.Root, "state", s.cfg.State, "version", version.Version, "revision", version.Revision)
	close(s.ready)

	select {
	case <-ctx.Done():
		slog.InfoContext(ctx, "berthd stopping")
		s.Stop()
		return nil
	case <-s.stopping:
		s.Stop() // waits for the Stop in progress
		return nil
	case err := <-errc:
		s.Stop()
		return err
	}
}

// Stop stops serving gracefully, cutting off calls still running after a
// timeout, then closes the database, removes the socket and releases the
// root. It is safe to call more than once and without Serve.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		close(s.stopping)
		s.health.Shutdown()
		// Event subscriptions last as long as their clients; end them so
		// that they do not hold up the graceful stop.
		s.exchange.Close()

		done := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(shutdownTimeout):
			slog.Warn("calls still running after the shutdown timeout: cutting them off", "timeout", shutdownTimeout)
			s.grpc.Stop()
			<-done
		}

		s.mu.Lock()
		metrics, lis := s.metrics, s.listener
		s.mu.Unlock()
		if metrics != nil {
			ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			if err := metrics.Shutdown(ctx); err != nil {
				metrics.Close()
			}
			cancel()
		}
		// The shims keep running; a later berthd reconnects to them.
		s.supervisor.Close()
		s.tasks.Close()
		if err := s.db.Close(); err != nil {
			slog.Warn("closing metadata", "error", err)
		}
		if err := s.bdb.Close(); err != nil {
			slog.Warn("closing metadata database", "error", err)
		}
		// After the metadata store, whose collector may be using them.
		s.snapshotters.stop()
		if lis != nil {
			// Closing the listener normally unlinks the socket already.
			if err := os.Remove(s.cfg.Address); err != nil && !errors.Is(err, os.ErrNotExist) {
				slog.Warn("removing socket", "address", s.cfg.Address, "error", err)
			}
		}
		s.lock.release()
	})
}

// makeDir creates dir with mode 0711: others may reach the socket and
// files inside by path but not list them.
func makeDir(dir string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	// MkdirAll is subject to the umask and leaves existing folders alone.
	if err := os.Chmod(dir, 0o711); err != nil {
		return fmt.Errorf("setting the mode of %s: %w", dir, err)
	}
	return nil
}

// logFailedUnary logs calls that fail, at debug: clients see the error, and
// a not-found is no news for the daemon's log.
func logFailedUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	if err != nil {
		logFailure(ctx, info.FullMethod, start, err)
	}
	return resp, err
}

func logFailedStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	if err != nil {
		logFailure(ss.Context(), info.FullMethod, start, err)
	}
	return err
}

func logFailure(ctx context.Context, method string, start time.Time, err error) {
	slog.DebugContext(ctx, "grpc call failed", "method", method, "code", status.Code(err).String(),
		"error", status.Convert(err).Message(), "duration", time.Since(start))
}

// runtimeName is the runtime as info shows it: the configured name or
// path, runc when none is.
func runtimeName(configured string) string {
	if configured == "" {
		return shimruntime.DefaultBinary
	}
	return configured
}
