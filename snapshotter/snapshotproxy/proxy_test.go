package snapshotproxy_test

import (
	"testing"

	"google.golang.org/grpc"

	"github.com/berth-engine/berth/internal/grpctest"
	snapshotsv1 "github.com/berth-engine/berth/proto/snapshots/v1"
	"github.com/berth-engine/berth/snapshotter/overlay"
	"github.com/berth-engine/berth/snapshotter/snapshotproxy"
	"github.com/berth-engine/berth/snapshotter/snapshots"
	"github.com/berth-engine/berth/snapshotter/snapshots/testsuite"
	"github.com/berth-engine/berth/snapshotter/snapshotserver"
)

// remote is a proxy whose Close also closes the backend behind the server.
type remote struct {
	snapshots.Snapshotter
	backend snapshots.Snapshotter
}

func (r remote) Close() error {
	if err := r.Snapshotter.Close(); err != nil {
		return err
	}
	return r.backend.Close()
}

// TestConformance runs the suite against the overlay snapshotter through
// the gRPC server and this proxy, so that every kind of error, label, time
// and mount has to cross the wire intact.
func TestConformance(t *testing.T) {
	testsuite.Run(t, func(t *testing.T, root string) snapshots.Snapshotter {
		backend, err := overlay.New(root)
		if err != nil {
			t.Fatal(err)
		}
		conn := grpctest.Dial(t, func(s *grpc.Server) { snapshotserver.Register(s, backend, "overlay") })
		return remote{snapshotproxy.NewSnapshotter(snapshotsv1.NewSnapshotsClient(conn), "overlay"), backend}
	})
}
