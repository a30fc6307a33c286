package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/server"
)

func TestFlagsOverrideConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "berthd.toml")
	if err := os.WriteFile(path, []byte("root = \"/from/file\"\nstate = \"/state/from/file\"\nlog_level = \"warn\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := configure([]string{"--config", path, "--root", "/from/flag", "--metrics-address", "127.0.0.1:0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := server.DefaultConfig()
	want.Root, want.State, want.MetricsAddress, want.LogLevel = "/from/flag", "/state/from/file", "127.0.0.1:0", "warn"
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got %+v, want %+v", cfg, want)
	}
}

func TestConfigureErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.toml")
	if _, _, err := configure([]string{"--config", missing}, io.Discard); !errdefs.IsNotFound(err) {
		t.Errorf("missing explicit config: %v, want not found", err)
	}
	if _, _, err := configure([]string{"--config", "", "--log-level", "loud"}, io.Discard); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad log level: %v, want invalid argument", err)
	}
	if _, _, err := configure([]string{"--no-such-flag"}, io.Discard); !errors.Is(err, errUsage) {
		t.Errorf("unknown flag: %v, want a usage error", err)
	}
	if _, _, err := configure([]string{"--config", "", "extra"}, io.Discard); !errors.Is(err, errUsage) {
		t.Errorf("stray argument: %v, want a usage error", err)
	}
	if _, v, err := configure([]string{"--version", "--config", missing}, io.Discard); err != nil || !v {
		t.Errorf("--version: %v, %v; want it to need no config", v, err)
	}
}

func TestStartupFailureExitsNonZero(t *testing.T) {
	if code := run([]string{"--config", filepath.Join(t.TempDir(), "missing.toml")}); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
}
