package metadata

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-engine/berth/internal/mount"
	nsctx "github.com/berth-engine/berth/internal/namespaces"
	"github.com/berth-engine/berth/services/content/local"
	"github.com/berth-engine/berth/snapshotter/native"
	"github.com/berth-engine/berth/snapshotter/snapshots"
	"github.com/berth-engine/berth/snapshotter/snapshots/testsuite"
)

// TestSnapshotterConformance runs the snapshotter conformance suite on the
// namespaced view of a real native snapshotter (mounting, and so the file
// checks, only as root).
func TestSnapshotterConformance(t *testing.T) {
	testsuite.Run(t, func(t *testing.T, root string) snapshots.Snapshotter {
		backend, err := native.New(filepath.Join(root, "native"))
		if err != nil {
			t.Fatal(err)
		}
		bdb, err := bolt.Open(filepath.Join(root, "metadata.db"), 0o600, &bolt.Options{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		cs, err := local.NewStore(filepath.Join(root, "content"))
		if err != nil {
			t.Fatal(err)
		}
		db := NewDB(bdb, cs, nil, WithSnapshotters(map[string]snapshots.Snapshotter{"native": backend}), WithGCDelay(time.Hour))
		if err := db.Init(context.Background()); err != nil {
			t.Fatal(err)
		}
		return &inNamespace{Snapshotter: db.Snapshotter("native"), ns: "conformance", close: func() error {
			db.Close()
			bdb.Close()
			return backend.Close()
		}}
	})
}

// inNamespace calls a namespaced snapshotter in one namespace, for the
// suite, whose contexts carry none, and closes what backs it.
type inNamespace struct {
	snapshots.Snapshotter
	ns    string
	close func() error
}

func (s *inNamespace) ctx(ctx context.Context) context.Context { return nsctx.WithNamespace(ctx, s.ns) }

func (s *inNamespace) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	return s.Snapshotter.Stat(s.ctx(ctx), key)
}

func (s *inNamespace) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	return s.Snapshotter.Update(s.ctx(ctx), info, fieldpaths...)
}

func (s *inNamespace) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	return s.Snapshotter.Usage(s.ctx(ctx), key)
}

func (s *inNamespace) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	return s.Snapshotter.Mounts(s.ctx(ctx), key)
}

func (s *inNamespace) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.Snapshotter.Prepare(s.ctx(ctx), key, parent, opts...)
}

func (s *inNamespace) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return s.Snapshotter.View(s.ctx(ctx), key, parent, opts...)
}

func (s *inNamespace) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	return s.Snapshotter.Commit(s.ctx(ctx), name, key, opts...)
}

func (s *inNamespace) Remove(ctx context.Context, key string) error {
	return s.Snapshotter.Remove(s.ctx(ctx), key)
}

func (s *inNamespace) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	return s.Snapshotter.Walk(s.ctx(ctx), fn, filters...)
}

func (s *inNamespace) Cleanup(ctx context.Context) error { return s.Snapshotter.Cleanup(s.ctx(ctx)) }

func (s *inNamespace) Capabilities(ctx context.Context) ([]string, error) {
	return s.Snapshotter.Capabilities(s.ctx(ctx))
}

func (s *inNamespace) Close() error { return s.close() }
