// Command berth-snapshotter serves one snapshotter backend, overlay or
// native, over the berth.snapshots.v1.Snapshots gRPC API on a unix socket,
// with server reflection and gRPC health. berthd starts one per configured
// backend as a child process and reads its stderr; it writes nothing to
// stdout.
//
//	berth-snapshotter --backend overlay --root /var/lib/berth/snapshots/overlay --address /run/berth/snapshotter-overlay.sock
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/berth-engine/berth/internal/sockets"
	"github.com/berth-engine/berth/internal/version"
	"github.com/berth-engine/berth/snapshotter/native"
	"github.com/berth-engine/berth/snapshotter/overlay"
	"github.com/berth-engine/berth/snapshotter/snapshots"
	"github.com/berth-engine/berth/snapshotter/snapshotserver"
)

// shutdownTimeout bounds how long a graceful stop waits for calls in flight.
const shutdownTimeout = 10 * time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

type config struct {
	backend, root, address string
	level                  slog.Level
}

// errUsage marks a bad command line; the message has been written.
var errUsage = errors.New("usage")

func run(args []string, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.level})).With("backend", cfg.backend)
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("berth-snapshotter failed", "error", err)
		return 1
	}
	log.Info("berth-snapshotter stopped")
	return 0
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("berth-snapshotter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	backend := fs.String("backend", "overlay", "snapshotter backend: overlay or native")
	root := fs.String("root", "", "folder for the backend's snapshots and metadata (required)")
	address := fs.String("address", "", "unix socket to serve on (required)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	cfg := config{backend: *backend, root: *root, address: *address}
	fail := func(format string, args ...any) (config, error) {
		fmt.Fprintf(stderr, "berth-snapshotter: "+format+" (see berth-snapshotter -h)\n", args...)
		return config{}, errUsage
	}
	switch {
	case fs.NArg() > 0:
		return fail("unexpected argument %q: berth-snapshotter takes only flags", fs.Arg(0))
	case cfg.backend != "overlay" && cfg.backend != "native":
		return fail("unknown backend %q: use overlay or native", cfg.backend)
	case cfg.root == "":
		return fail("--root is required")
	case cfg.address == "":
		return fail("--address is required")
	}
	if err := cfg.level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fail("log level %q: use debug, info, warn or error", *logLevel)
	}
	return cfg, nil
}

// serve opens the backend, removes what a crash left, and serves until ctx
// ends.
func serve(ctx context.Context, cfg config, log *slog.Logger) (retErr error) {
	sn, err := open(cfg.backend, cfg.root)
	if err != nil {
		return err
	}
	defer func() {
		if err := sn.Close(); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()
	if err := sn.Cleanup(ctx); err != nil {
		log.Warn("cleaning up after an earlier run", "error", err)
	}

	lis, err := sockets.ListenUnix(cfg.address)
	if err != nil {
		return err
	}
	defer os.Remove(cfg.address)
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(logCalls(log)))
	snapshotserver.Register(srv, sn, cfg.backend)
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(srv, healthSrv)
	reflection.Register(srv)
	for name := range srv.GetServiceInfo() {
		healthSrv.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	log.Info("berth-snapshotter serving", "address", cfg.address, "root", cfg.root, "version", version.Version)
	select {
	case err := <-errc:
		return fmt.Errorf("serving on %s: %w", cfg.address, err)
	case <-ctx.Done():
	}
	log.Info("berth-snapshotter stopping")
	healthSrv.Shutdown()
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(shutdownTimeout):
		log.Warn("calls still running after the shutdown timeout: cutting them off", "timeout", shutdownTimeout)
		srv.Stop()
		<-done
	}
	return nil
}

func open(backend, root string) (snapshots.Snapshotter, error) {
	if backend == "native" {
		return native.New(root)
	}
	return overlay.New(root)
}

// logCalls logs each call at debug level, failures with their error.
func logCalls(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !log.Enabled(ctx, slog.LevelDebug) {
			return handler(ctx, req)
		}
		start := time.Now()
		resp, err := handler(ctx, req)
		if err != nil {
			log.DebugContext(ctx, "call failed", "method", info.FullMethod, "duration", time.Since(start), "error", err)
		} else {
			log.DebugContext(ctx, "call", "method", info.FullMethod, "duration", time.Since(start))
		}
		return resp, err
	}
}
