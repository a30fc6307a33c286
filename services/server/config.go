package server

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/berth-engine/berth/internal/errdefs"
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
}

// DefaultConfig returns the configuration berthd uses without a file.
func DefaultConfig() Config {
	return Config{
		Root:     "/var/lib/berth",
		State:    "/run/berth",
		LogLevel: "info",
	}
}

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
			return cfg, fmt.Errorf("config file %s: unknown key(s) %s: the keys are root, state, address, metrics_address and log_level: %w",
				path, strings.Join(keys, ", "), errdefs.ErrInvalidArgument)
		case errors.As(err, &decodeErr):
			row, col := decodeErr.Position()
			return cfg, fmt.Errorf("config file %s, line %d column %d: %v: %w", path, row, col, decodeErr, errdefs.ErrInvalidArgument)
		}
		return cfg, fmt.Errorf("config file %s: %v: %w", path, err, errdefs.ErrInvalidArgument)
	}
	return cfg, nil
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
	// sun_path holds 108 bytes including the terminating NUL.
	if len(c.Address) >= 108 {
		return c, fmt.Errorf("socket address %s is %d bytes long; unix sockets allow at most 107: choose a shorter --address: %w",
			c.Address, len(c.Address), errdefs.ErrInvalidArgument)
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		return c, err
	}
	return c, nil
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
