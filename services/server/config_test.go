package server

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/errdefs"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "berthd.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfig(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, `
root = "/srv/berth"
address = "/srv/berth.sock"
metrics_address = "127.0.0.1:9323"
log_level = "debug"
`))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Root, want.Address, want.MetricsAddress, want.LogLevel = "/srv/berth", "/srv/berth.sock", "127.0.0.1:9323", "debug"
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got %+v, want %+v (keys not in the file keep their defaults)", cfg, want)
	}
}

func TestLoadConfigMissing(t *testing.T) {
	if _, err := os.Stat(DefaultConfigPath); err == nil {
		t.Skipf("%s exists on this machine", DefaultConfigPath)
	}
	cfg, err := LoadConfig(DefaultConfigPath)
	if err != nil || !reflect.DeepEqual(cfg, DefaultConfig()) {
		t.Fatalf("missing default file: %+v, %v; want the defaults", cfg, err)
	}
	if cfg, err := LoadConfig(""); err != nil || !reflect.DeepEqual(cfg, DefaultConfig()) {
		t.Fatalf("no file: %+v, %v; want the defaults", cfg, err)
	}
	missing := filepath.Join(t.TempDir(), "nope.toml")
	if _, err := LoadConfig(missing); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing explicit file: %v, want a not-found naming it", err)
	}
}

func TestLoadConfigBad(t *testing.T) {
	for name, text := range map[string]string{
		"unknown key": "root = \"/x\"\nmetrics_adress = \"127.0.0.1:1\"\n",
		"wrong type":  "root = 3\n",
		"syntax":      "root = \n",
	} {
		_, err := LoadConfig(writeConfig(t, text))
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v, want invalid argument", name, err)
		}
		if name == "unknown key" && (err == nil || !strings.Contains(err.Error(), "metrics_adress")) {
			t.Errorf("unknown key: %v does not name the key", err)
		}
	}
}

func TestResolve(t *testing.T) {
	cfg, err := Config{Root: "/r", State: "/s", LogLevel: "warn"}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Address != "/s/berthd.sock" {
		t.Errorf("address %q, want the socket in the state folder", cfg.Address)
	}
	if _, err := (Config{Root: "/r", State: "/s", LogLevel: "loud"}).resolve(); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad log level: %v", err)
	}
	if _, err := (Config{Root: "/r", State: "/s", Address: "/" + strings.Repeat("a", 120)}).resolve(); !errdefs.IsInvalidArgument(err) {
		t.Errorf("long socket path: %v", err)
	}
	if _, err := (Config{State: "/s"}).resolve(); !errdefs.IsInvalidArgument(err) {
		t.Errorf("no root: %v", err)
	}
	rel, err := Config{Root: "r", State: "s"}.resolve()
	if err != nil || !filepath.IsAbs(rel.Root) || !filepath.IsAbs(rel.Address) {
		t.Errorf("relative paths: %+v, %v", rel, err)
	}
}

// The example configuration must stay loadable, and its uncommented values
// must be the defaults it documents.
func TestExampleConfig(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("..", "..", "deploy", "berthd.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, DefaultConfig()) {
		t.Fatalf("deploy/berthd.toml gives %+v, defaults are %+v", cfg, DefaultConfig())
	}
}

func TestLoadConfigSnapshotters(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, `
default_snapshotter = "native"
snapshotter_binary = "/opt/berth/berth-snapshotter"

[snapshotters.overlay]
disabled = true

[snapshotters.fast]
backend = "overlay"

[snapshotters.remote]
address = "/run/remote/snapshots.sock"
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]SnapshotterConfig{
		"overlay": {Disabled: true},
		"native":  {}, // a default the file does not mention stays
		"fast":    {Backend: "overlay"},
		"remote":  {Address: "/run/remote/snapshots.sock"},
	}
	if !reflect.DeepEqual(cfg.Snapshotters, want) || cfg.DefaultSnapshotter != "native" || cfg.SnapshotterBinary != "/opt/berth/berth-snapshotter" {
		t.Fatalf("got %+v", cfg)
	}
	cfg.Root, cfg.State = "/r", "/s"
	resolved, err := cfg.resolve()
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]SnapshotterConfig{
		"native": {Backend: "native"},
		"fast":   {Backend: "overlay"},
		"remote": {Address: "/run/remote/snapshots.sock"},
	}
	if !reflect.DeepEqual(resolved.Snapshotters, want) {
		t.Errorf("resolved snapshotters %+v, want %+v (disabled ones dropped, backends filled in)", resolved.Snapshotters, want)
	}
	if got := resolved.snapshotterAddress("fast", resolved.Snapshotters["fast"]); got != "/s/snapshotter-fast.sock" {
		t.Errorf("embedded snapshotter served at %q, want in the state folder", got)
	}

	_, err = LoadConfig(writeConfig(t, "[snapshotters.overlay]\nadress = \"/x.sock\"\n"))
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "snapshotters.overlay.adress") {
		t.Errorf("unknown snapshotter key: %v, want invalid argument naming it", err)
	}
}

func TestResolveSnapshotters(t *testing.T) {
	base := Config{Root: "/r", State: "/s"}
	cfg, err := base.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DefaultSnapshotter != "overlay" || len(cfg.Snapshotters) != 2 || cfg.Snapshotters["overlay"].Backend != "overlay" {
		t.Errorf("defaults: %+v", cfg)
	}
	for name, c := range map[string]Config{
		"default disabled":    {DefaultSnapshotter: "overlay", Snapshotters: map[string]SnapshotterConfig{"overlay": {Disabled: true}}},
		"default unknown":     {DefaultSnapshotter: "zfs"},
		"unknown backend":     {Snapshotters: map[string]SnapshotterConfig{"zfs": {}}},
		"address and backend": {Snapshotters: map[string]SnapshotterConfig{"x": {Address: "/x.sock", Backend: "native"}}},
		"bad name":            {Snapshotters: map[string]SnapshotterConfig{"no/slash": {Address: "/x.sock"}}},
		"long address":        {Snapshotters: map[string]SnapshotterConfig{"x": {Address: "/" + strings.Repeat("a", 120)}}},
		"long state":          {State: "/" + strings.Repeat("s", 90)},
	} {
		c.Root = "/r"
		if c.State == "" {
			c.State = "/s"
		}
		if _, err := c.resolve(); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v, want invalid argument", name, err)
		}
	}
	none, err := Config{Root: "/r", State: "/s", Snapshotters: map[string]SnapshotterConfig{
		"overlay": {Disabled: true}, "native": {Disabled: true},
	}}.resolve()
	if err != nil || len(none.Snapshotters) != 0 {
		t.Errorf("all disabled: %+v, %v; want no snapshotters and no error", none.Snapshotters, err)
	}
}
