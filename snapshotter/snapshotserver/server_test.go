package snapshotserver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/grpctest"
	snapshotsv1 "github.com/berth-engine/berth/proto/snapshots/v1"
	"github.com/berth-engine/berth/snapshotter/native"
	"github.com/berth-engine/berth/snapshotter/overlay"
	"github.com/berth-engine/berth/snapshotter/snapshotproxy"
	"github.com/berth-engine/berth/snapshotter/snapshots"
	"github.com/berth-engine/berth/snapshotter/snapshotserver"
)

func newOverlay(t *testing.T) snapshots.Snapshotter {
	t.Helper()
	o, err := overlay.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

func TestRefusesOtherSnapshotters(t *testing.T) {
	conn := grpctest.Dial(t, func(s *grpc.Server) { snapshotserver.Register(s, newOverlay(t), "overlay") })
	client := snapshotsv1.NewSnapshotsClient(conn)
	ctx := context.Background()
	for _, name := range []string{"", "overlay"} {
		if _, err := snapshotproxy.NewSnapshotter(client, name).Prepare(ctx, "key-"+name, ""); err != nil {
			t.Errorf("snapshotter field %q: %v", name, err)
		}
	}
	_, err := snapshotproxy.NewSnapshotter(client, "native").Stat(ctx, "key-")
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), `snapshotter "native" is not served here (this serves "overlay")`) {
		t.Fatalf("asking for native from an overlay server: %v", err)
	}
	// A streamed call is refused the same way.
	err = snapshotproxy.NewSnapshotter(client, "native").Walk(ctx, func(context.Context, snapshots.Info) error { return nil })
	if !errdefs.IsNotFound(err) {
		t.Fatalf("List for native from an overlay server: %v", err)
	}
}

func TestMultiDispatchesByName(t *testing.T) {
	nat, err := native.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer nat.Close()
	backends := map[string]snapshots.Snapshotter{"overlay": newOverlay(t), "native": nat}
	conn := grpctest.Dial(t, func(s *grpc.Server) {
		snapshotserver.RegisterMulti(s, func(name string) (snapshots.Snapshotter, error) {
			if sn, ok := backends[name]; ok {
				return sn, nil
			}
			return nil, fmt.Errorf("snapshotter %q is not configured: %w", name, errdefs.ErrNotFound)
		})
	})
	client := snapshotsv1.NewSnapshotsClient(conn)
	ctx := context.Background()
	for name, backend := range backends {
		if _, err := snapshotproxy.NewSnapshotter(client, name).Prepare(ctx, "only-in-"+name, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := backend.Stat(ctx, "only-in-"+name); err != nil {
			t.Errorf("the snapshot prepared through %q is not in that backend: %v", name, err)
		}
		caps, err := snapshotproxy.NewSnapshotter(client, name).Capabilities(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rebase := len(caps) == 1 && caps[0] == snapshots.CapabilityRebase; rebase != (name == "overlay") {
			t.Errorf("capabilities of %s: %v", name, caps)
		}
	}
	if _, err := backends["native"].Stat(ctx, "only-in-overlay"); !errdefs.IsNotFound(err) {
		t.Errorf("the overlay snapshot leaked into native: %v", err)
	}
	_, err = snapshotproxy.NewSnapshotter(client, "zfs").Stat(ctx, "x")
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), `"zfs" is not configured`) {
		t.Fatalf("unknown snapshotter: %v", err)
	}
}

func TestListStreamsInBatches(t *testing.T) {
	sn := newOverlay(t)
	ctx := context.Background()
	const n = 250
	for i := 0; i < n; i++ {
		if _, err := sn.View(ctx, fmt.Sprintf("view-%03d", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	conn := grpctest.Dial(t, func(s *grpc.Server) { snapshotserver.Register(s, sn, "overlay") })
	stream, err := snapshotsv1.NewSnapshotsClient(conn).List(ctx, &snapshotsv1.ListSnapshotsRequest{Filters: []string{"kind==view"}})
	if err != nil {
		t.Fatal(err)
	}
	var batches []int
	seen := map[string]bool{}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		batches = append(batches, len(resp.GetInfo()))
		for _, info := range resp.GetInfo() {
			seen[info.GetName()] = true
		}
	}
	if len(seen) != n || len(batches) != 3 || batches[0] != 100 || batches[2] != 50 {
		t.Fatalf("listed %d snapshots in batches %v", len(seen), batches)
	}
}
