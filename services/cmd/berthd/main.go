// Command berthd is berth's daemon: it serves the content, images, leases,
// namespaces, events and introspection APIs on a unix socket. The wiring
// lives in services/server; this file reads flags and configuration, sets up
// logging and turns signals into a clean shutdown.
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

	"github.com/berth-engine/berth/internal/version"
	"github.com/berth-engine/berth/services/server"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// errUsage marks a bad command line; flag has already said why.
var errUsage = errors.New("usage")

func run(args []string) int {
	cfg, showVersion, err := configure(args, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case err != nil:
		fmt.Fprintf(os.Stderr, "berthd: %v\n", err)
		return 1
	case showVersion:
		fmt.Printf("berthd %s (revision %s)\n", version.Version, version.Revision)
		return 0
	}
	level, _ := server.ParseLogLevel(cfg.LogLevel) // checked by configure
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv, err := server.New(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "berthd: cannot start: %v\n", err)
		return 1
	}
	if err := srv.Serve(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "berthd: %v\n", err)
		return 1
	}
	slog.Info("berthd stopped")
	return 0
}

// configure reads the flags and the configuration file they name; flags
// given on the command line override the file.
func configure(args []string, stderr io.Writer) (cfg server.Config, showVersion bool, err error) {
	defaults := server.DefaultConfig()
	fs := flag.NewFlagSet("berthd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", server.DefaultConfigPath, `configuration file (TOML); "" for none`)
	root := fs.String("root", defaults.Root, "folder for persistent data")
	state := fs.String("state", defaults.State, "folder for runtime data")
	address := fs.String("address", "", "unix socket of the gRPC API (default <state>/berthd.sock)")
	metricsAddress := fs.String("metrics-address", "", "TCP address for Prometheus /metrics (off when empty)")
	logLevel := fs.String("log-level", defaults.LogLevel, "debug, info, warn or error")
	versionFlag := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, false, err
		}
		return cfg, false, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "berthd: unexpected argument %q: berthd takes only flags (see berthd -h)\n", fs.Arg(0))
		return cfg, false, errUsage
	}
	if *versionFlag {
		return cfg, true, nil
	}

	if cfg, err = server.LoadConfig(*configPath); err != nil {
		return cfg, false, err
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "root":
			cfg.Root = *root
		case "state":
			cfg.State = *state
		case "address":
			cfg.Address = *address
		case "metrics-address":
			cfg.MetricsAddress = *metricsAddress
		case "log-level":
			cfg.LogLevel = *logLevel
		}
	})
	if _, err := server.ParseLogLevel(cfg.LogLevel); err != nil {
		return cfg, false, err
	}
	return cfg, false, nil
}
