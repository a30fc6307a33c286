package sockets

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-engine/berth/internal/errdefs"
)

func TestListenUnix(t *testing.T) {
	dir, err := os.MkdirTemp("", "sock-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "sub", "s.sock")

	lis, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	// A live socket is left alone.
	if _, err := ListenUnix(path); !errdefs.IsUnavailable(err) {
		t.Fatalf("second listener on a live socket: %v", err)
	}
	// A dead one is replaced. Closing a Go listener removes its file, so
	// leave the file behind as a crashed process would.
	lis.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
	lis.Close()
	lis, err = ListenUnix(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	lis.Close()

	// A file that is not a socket is refused.
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(plain); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("plain file: %v", err)
	}
}
