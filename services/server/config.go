package server

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/identifiers"
)

// DefaultConfigPath is where berthd looks for its configuration. The file
// may be missing there; a path given explicitly must exist.
const DefaultConfigPath = "/etc/berth/berthd.toml"

// Config is berthd's configuration, read from TOML; flags override it.
type Config struct {
	// Root holds persistent data: metadata.db, content, ...
	Root string `toml:"root"`
	// State holds runtime data that does not survive a reboot.
	State string `toml:"state"`
	// Address is the unix socket of the gRPC API; empty means
	// <state>/berthd.sock.
	Address string `toml:"address"`
	// MetricsAddress is the TCP address of the Prometheus /metrics
	// endpoint; empty turns it off.
	MetricsAddress string `toml:"metrics_address"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`

	// DefaultSnapshotter serves snapshot requests that name none.
	DefaultSnapshotter string `toml:"default_snapshotter"`
	// SnapshotterBinary is the berth-snapshotter program embedded
	// snapshotters run; empty means the one next to berthd, else on PATH.
	SnapshotterBinary string `toml:"snapshotter_binary"`
	// ShimBinary is the berth-shim program started for each task; empty
	// means the one next to berthd, else on PATH.
	ShimBinary string `toml:"shim_binary"`
	// Runtime is the OCI runtime the shims drive (path or name); empty
	// means runc.
	Runtime string `toml:"runtime"`
	// Snapshotters by name. The embedded "overlay" and "native" are always
	// there unless an entry changes or disables them.
	Snapshotters map[string]SnapshotterConfig `toml:"snapshotters"`
}

// SnapshotterConfig is one snapshotter: embedded (berthd runs a
// berth-snapshotter child for it) or external (berthd connects to Address).
type SnapshotterConfig struct {
	// Address is the unix socket of an external snapshotter, any process
	// that serves berth.snapshots.v1; empty makes the snapshotter embedded.
	Address string `toml:"address"`
	// Backend of an embedded snapshotter, overlay or native; empty means
	// the snapshotter's name.
	Backend string `toml:"backend"`
	// Disabled turns the snapshotter off.
	Disabled bool `toml:"disabled"`
}

// Embedded snapshotter backends.
const (
	BackendOverlay = "overlay"
	BackendNative  = "native"
)

// DefaultConfig returns the configuration berthd uses without a file.
func DefaultConfig() Config {
	return Config{
		Root:               "/var/lib/berth",
		State:              "/run/berth",
		LogLevel:           "info",
		DefaultSnapshotter: BackendOverlay,
		Snapshotters:       defaultSnapshotters(),
	}
}

// defaultSnapshotters are the embedded snapshotters every configuration has.
func defaultSnapshotters() map[string]SnapshotterConfig {
	return map[string]SnapshotterConfig{BackendOverlay: {}, BackendNative: {}}
}

// configKeys lists the top-level keys, for the message about unknown ones.
const configKeys = "root, state, address, metrics_address, log_level, default_snapshotter, snapshotter_binary, shim_binary, runtime and [snapshotters.NAME] (address, backend, disabled)"

// LoadConfig reads the TOML file at path over the defaults. A missing file
// at DefaultConfigPath, or an empty path, gives the defaults; any other
// missing file is an error. Unknown keys are errors, so that a typo does not
// go unnoticed.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	if path == "" {
		return cfg, nil
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist) && path == DefaultConfigPath:
		return cfg, nil
	case errors.Is(err, os.ErrNotExist):
		return cfg, fmt.Errorf("config file %s does not exist: create it (see deploy/berthd.toml), or pass --config \"\" to run without one: %w", path, errdefs.ErrNotFound)
	case err != nil:
		return cfg, fmt.Errorf("reading config file: %w", err)
	}
	// The file's snapshotters go over the defaults, entry by entry.
	cfg.Snapshotters = nil
	dec := toml.NewDecoder(bytes.NewReader(b)).DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		var strict *toml.StrictMissingError
		var decodeErr *toml.DecodeError
		switch {
		case errors.As(err, &strict):
			var keys []string
			for _, e := range strict.Errors {
				keys = append(keys, strings.Join(e.Key(), "."))
			}
			return cfg, fmt.Errorf("config file %s: unknown key(s) %s: the keys are %s: %w",
				path, strings.Join(keys, ", "), configKeys, errdefs.ErrInvalidArgument)
		case errors.As(err, &decodeErr):
			row, col := decodeErr.Position()
			return cfg, fmt.Errorf("config file %s, line %d column %d: %v: %w", path, row, col, decodeErr, errdefs.ErrInvalidArgument)
		}
		return cfg, fmt.Errorf("config file %s: %v: %w", path, err, errdefs.ErrInvalidArgument)
	}
	cfg.Snapshotters = withDefaultSnapshotters(cfg.Snapshotters)
	return cfg, nil
}

// withDefaultSnapshotters returns m with the embedded defaults added where
// m has no entry of their name.
func withDefaultSnapshotters(m map[string]SnapshotterConfig) map[string]SnapshotterConfig {
	out := defaultSnapshotters()
	for name, sc := range m {
		out[name] = sc
	}
	return out
}

// resolve checks cfg and returns it with absolute paths and the address
// filled in.
func (c Config) resolve() (Config, error) {
	if c.Root == "" || c.State == "" {
		return c, fmt.Errorf("root and state must be set (--root, --state): %w", errdefs.ErrInvalidArgument)
	}
	if c.Address == "" {
		c.Address = filepath.Join(c.State, "berthd.sock")
	}
	for _, p := range []*string{&c.Root, &c.State, &c.Address} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return c, fmt.Errorf("path %q: %w", *p, err)
		}
		*p = abs
	}
	if err := checkSocketPath(c.Address, "--address"); err != nil {
		return c, err
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		return c, err
	}
	return c.resolveSnapshotters()
}

// resolveSnapshotters checks the snapshotters, drops the disabled ones,
// fills in backends and makes paths absolute.
func (c Config) resolveSnapshotters() (Config, error) {
	all := withDefaultSnapshotters(c.Snapshotters)
	c.Snapshotters = map[string]SnapshotterConfig{}
	for _, name := range slices.Sorted(maps.Keys(all)) {
		sc := all[name]
		if sc.Disabled {
			continue
		}
		if err := identifiers.Validate(name); err != nil {
			return c, fmt.Errorf("snapshotter name: %w", err)
		}
		if sc.Address != "" {
			if sc.Backend != "" {
				return c, fmt.Errorf("snapshotter %q has both an address and a backend: an external snapshotter (address) brings its own backend; remove one: %w",
					name, errdefs.ErrInvalidArgument)
			}
			abs, err := filepath.Abs(sc.Address)
			if err != nil {
				return c, fmt.Errorf("address of snapshotter %q: %w", name, err)
			}
			sc.Address = abs
		} else {
			if sc.Backend == "" {
				sc.Backend = name
			}
			if sc.Backend != BackendOverlay && sc.Backend != BackendNative {
				return c, fmt.Errorf("snapshotter %q: backend %q is not embedded: use %q or %q, or give the address of an external snapshotter: %w",
					name, sc.Backend, BackendOverlay, BackendNative, errdefs.ErrInvalidArgument)
			}
		}
		hint := "--state"
		if sc.Address != "" {
			hint = "address"
		}
		if err := checkSocketPath(c.snapshotterAddress(name, sc), hint); err != nil {
			return c, fmt.Errorf("snapshotter %q: %w", name, err)
		}
		c.Snapshotters[name] = sc
	}
	if c.DefaultSnapshotter == "" {
		c.DefaultSnapshotter = BackendOverlay
	}
	// With no snapshotter at all, berthd serves without snapshots.
	if _, ok := c.Snapshotters[c.DefaultSnapshotter]; !ok && len(c.Snapshotters) > 0 {
		return c, fmt.Errorf("default_snapshotter %q is not a configured, enabled snapshotter: choose one of %s: %w",
			c.DefaultSnapshotter, strings.Join(slices.Sorted(maps.Keys(c.Snapshotters)), ", "), errdefs.ErrInvalidArgument)
	}
	if c.SnapshotterBinary != "" {
		abs, err := filepath.Abs(c.SnapshotterBinary)
		if err != nil {
			return c, fmt.Errorf("snapshotter_binary: %w", err)
		}
		c.SnapshotterBinary = abs
	}
	return c, nil
}

// snapshotterAddress is where snapshotter name is served: its address, or
// for an embedded one <state>/snapshotter-<name>.sock.
func (c Config) snapshotterAddress(name string, sc SnapshotterConfig) string {
	if sc.Address != "" {
		return sc.Address
	}
	return filepath.Join(c.State, "snapshotter-"+name+".sock")
}

// checkSocketPath fails for a unix socket path the kernel cannot take:
// sun_path holds 108 bytes including the terminating NUL.
func checkSocketPath(path, hint string) error {
	if len(path) >= 108 {
		return fmt.Errorf("socket address %s is %d bytes long; unix sockets allow at most 107: choose a shorter %s: %w",
			path, len(path), hint, errdefs.ErrInvalidArgument)
	}
	return nil
}

// ParseLogLevel parses debug, info, warn or error.
func ParseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log level %q: use debug, info, warn or error: %w", s, errdefs.ErrInvalidArgument)
}
