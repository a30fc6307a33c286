package client

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/namespaces"
)

func TestSocketPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                     DefaultAddress,
		"/tmp/b.sock":          "/tmp/b.sock",
		"unix:///tmp/b.sock":   "/tmp/b.sock",
		"relative/berthd.sock": "relative/berthd.sock",
	} {
		if got := SocketPath(in); got != want {
			t.Errorf("SocketPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNewFailsClearlyWithoutBerthd(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	want := "is it running? start it with 'berthd' or set --address"

	// No socket file at all.
	missing := filepath.Join(dir, "missing.sock")
	_, err := New(ctx, missing)
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "cannot connect to berthd at "+missing+": "+want) {
		t.Errorf("missing socket: %v", err)
	}

	// A socket file left behind by a berthd that died.
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("the stale socket file is gone: %v", err)
	}
	if _, err := New(ctx, stale); !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), want) {
		t.Errorf("stale socket: %v", err)
	}

	// Something listening: New succeeds without a call.
	live := filepath.Join(dir, "live.sock")
	l, err = net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	c, err := New(ctx, "unix://"+live)
	if err != nil {
		t.Fatalf("live socket: %v", err)
	}
	c.Close()
}

func TestWithNamespace(t *testing.T) {
	ctx, err := WithNamespace(context.Background(), "team-a")
	if err != nil {
		t.Fatal(err)
	}
	if ns, _ := namespaces.Namespace(ctx); ns != "team-a" {
		t.Errorf("namespace = %q", ns)
	}
	if _, err := WithNamespace(context.Background(), "bad/name"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad name: err = %v, want invalid argument", err)
	}
}
