package shim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSocketPath(t *testing.T) {
	short := "/run/berth/tasks/default/" + strings.Repeat("a", 64)
	if got := SocketPath(short, "/run/berth"); got != filepath.Join(short, SocketFile) {
		t.Errorf("SocketPath(%s) = %s, want it in the bundle", short, got)
	}
	long := "/run/berth/tasks/a-long-namespace-name/" + strings.Repeat("b", 64)
	got := SocketPath(long, "/run/berth")
	if !strings.HasPrefix(got, "/run/berth/s/") || len(got) > maxSocketPath {
		t.Errorf("SocketPath(%s) = %s, want a short path under /run/berth/s", long, got)
	}
	if got == SocketPath(long+"x", "/run/berth") {
		t.Error("two bundles share a socket path")
	}
}

func TestExitRecord(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadExit(dir); !os.IsNotExist(err) {
		t.Fatalf("ReadExit of an empty bundle: %v, want not exist", err)
	}
	want := Exit{Pid: 12, ExitStatus: 3, ExitedAt: time.Now().UTC().Round(0)}
	if err := WriteExit(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadExit(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Pid != want.Pid || got.ExitStatus != want.ExitStatus || !got.ExitedAt.Equal(want.ExitedAt) || got.Dead {
		t.Errorf("ReadExit = %+v, want %+v", got, want)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left beside %s: %v", ExitFile, entries)
	}
}
