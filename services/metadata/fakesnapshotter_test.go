package metadata

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

// fakeSnapshotter is an in-memory backend with a snapshotter's rules:
// parents must be committed, only active snapshots commit, snapshots with
// children cannot go. fail makes the next call of a method fail.
type fakeSnapshotter struct {
	mu    sync.Mutex
	snaps map[string]snapshots.Info
	fail  map[string]error // method -> error for its next call
	calls []string
}

func newFakeSnapshotter() *fakeSnapshotter {
	return &fakeSnapshotter{snaps: map[string]snapshots.Info{}, fail: map[string]error{}}
}

func (f *fakeSnapshotter) call(method string) error {
	f.calls = append(f.calls, method)
	if err, ok := f.fail[method]; ok {
		delete(f.fail, method)
		return err
	}
	return nil
}

func (f *fakeSnapshotter) failNext(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[method] = err
}

// names lists the backend snapshots.
func (f *fakeSnapshotter) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.snaps {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (f *fakeSnapshotter) get(key string) (snapshots.Info, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	info, ok := f.snaps[key]
	return info, ok
}

func (f *fakeSnapshotter) Stat(_ context.Context, key string) (snapshots.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("Stat"); err != nil {
		return snapshots.Info{}, err
	}
	info, ok := f.snaps[key]
	if !ok {
		return snapshots.Info{}, fmt.Errorf("backend snapshot %q: %w", key, errdefs.ErrNotFound)
	}
	return info, nil
}

func (f *fakeSnapshotter) Update(_ context.Context, info snapshots.Info, _ ...string) (snapshots.Info, error) {
	return snapshots.Info{}, fmt.Errorf("the fake does not update: %w", errdefs.ErrNotImplemented)
}

func (f *fakeSnapshotter) Usage(_ context.Context, key string) (snapshots.Usage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("Usage"); err != nil {
		return snapshots.Usage{}, err
	}
	if _, ok := f.snaps[key]; !ok {
		return snapshots.Usage{}, fmt.Errorf("backend snapshot %q: %w", key, errdefs.ErrNotFound)
	}
	return snapshots.Usage{Size: int64(len(key)), Inodes: 1}, nil
}

func (f *fakeSnapshotter) Mounts(_ context.Context, key string) ([]mount.Mount, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("Mounts"); err != nil {
		return nil, err
	}
	info, ok := f.snaps[key]
	if !ok {
		return nil, fmt.Errorf("backend snapshot %q: %w", key, errdefs.ErrNotFound)
	}
	return fakeMounts(info), nil
}

func fakeMounts(info snapshots.Info) []mount.Mount {
	opts := []string{"rbind"}
	if info.Kind == snapshots.KindView {
		opts = append(opts, "ro")
	}
	return []mount.Mount{{Type: "bind", Source: "/fake/" + info.Name, Options: opts}}
}

func (f *fakeSnapshotter) create(kind snapshots.Kind, key, parent string, opts []snapshots.Opt) ([]mount.Mount, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	method := map[snapshots.Kind]string{snapshots.KindActive: "Prepare", snapshots.KindView: "View"}[kind]
	if err := f.call(method); err != nil {
		return nil, err
	}
	if _, ok := f.snaps[key]; ok {
		return nil, fmt.Errorf("backend snapshot %q: %w", key, errdefs.ErrAlreadyExists)
	}
	if parent != "" {
		if p, ok := f.snaps[parent]; !ok || p.Kind != snapshots.KindCommitted {
			return nil, fmt.Errorf("backend parent %q is not a committed snapshot: %w", parent, errdefs.ErrFailedPrecondition)
		}
	}
	info := snapshots.Info{Kind: kind, Name: key, Parent: parent, Created: time.Now(), Updated: time.Now()}
	for _, o := range opts {
		if err := o(&info); err != nil {
			return nil, err
		}
	}
	f.snaps[key] = info
	return fakeMounts(info), nil
}

func (f *fakeSnapshotter) Prepare(_ context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return f.create(snapshots.KindActive, key, parent, opts)
}

func (f *fakeSnapshotter) View(_ context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	return f.create(snapshots.KindView, key, parent, opts)
}

func (f *fakeSnapshotter) Commit(_ context.Context, name, key string, opts ...snapshots.Opt) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("Commit"); err != nil {
		return err
	}
	active, ok := f.snaps[key]
	if !ok || active.Kind != snapshots.KindActive {
		return fmt.Errorf("backend snapshot %q is not active: %w", key, errdefs.ErrFailedPrecondition)
	}
	if _, ok := f.snaps[name]; ok {
		return fmt.Errorf("backend snapshot %q: %w", name, errdefs.ErrAlreadyExists)
	}
	info := snapshots.Info{Kind: snapshots.KindCommitted, Name: name, Parent: active.Parent, Created: time.Now(), Updated: time.Now()}
	for _, o := range opts {
		if err := o(&info); err != nil {
			return err
		}
	}
	if info.Parent != active.Parent {
		if p, ok := f.snaps[info.Parent]; !ok || p.Kind != snapshots.KindCommitted {
			return fmt.Errorf("backend parent %q is not a committed snapshot: %w", info.Parent, errdefs.ErrFailedPrecondition)
		}
	}
	delete(f.snaps, key)
	f.snaps[name] = info
	return nil
}

func (f *fakeSnapshotter) Remove(_ context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("Remove"); err != nil {
		return err
	}
	if _, ok := f.snaps[key]; !ok {
		return fmt.Errorf("backend snapshot %q: %w", key, errdefs.ErrNotFound)
	}
	for _, s := range f.snaps {
		if s.Parent == key {
			return fmt.Errorf("backend snapshot %q has child %q: %w", key, s.Name, errdefs.ErrFailedPrecondition)
		}
	}
	delete(f.snaps, key)
	return nil
}

func (f *fakeSnapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, _ ...string) error {
	f.mu.Lock()
	if err := f.call("Walk"); err != nil {
		f.mu.Unlock()
		return err
	}
	var infos []snapshots.Info
	for _, s := range f.snaps {
		infos = append(infos, s)
	}
	f.mu.Unlock()
	for _, info := range infos {
		if err := fn(ctx, info); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeSnapshotter) Cleanup(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.call("Cleanup")
}

func (f *fakeSnapshotter) Capabilities(context.Context) ([]string, error) {
	return []string{snapshots.CapabilityRebase}, nil
}

func (f *fakeSnapshotter) Close() error { return nil }
