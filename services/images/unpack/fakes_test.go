package unpack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

// fakeContent is an in-memory content store with labels.
type fakeContent struct {
	content.Store // methods the unpacker must not call panic

	mu     sync.Mutex
	blobs  map[digest.Digest][]byte
	labels map[digest.Digest]map[string]string
	// updates counts the calls to Update.
	updates int
}

func newFakeContent() *fakeContent {
	return &fakeContent{blobs: map[digest.Digest][]byte{}, labels: map[digest.Digest]map[string]string{}}
}

func (c *fakeContent) add(mediaType string, blob []byte) ocispec.Descriptor {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := digest.FromBytes(blob)
	c.blobs[d] = blob
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(blob))}
}

func (c *fakeContent) addJSON(mediaType string, v any) ocispec.Descriptor {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return c.add(mediaType, b)
}

type readerAt struct{ *bytes.Reader }

func (readerAt) Close() error { return nil }

func (c *fakeContent) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.blobs[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, errdefs.ErrNotFound)
	}
	return readerAt{bytes.NewReader(b)}, nil
}

func (c *fakeContent) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.blobs[dgst]
	if !ok {
		return content.Info{}, fmt.Errorf("blob %s: %w", dgst, errdefs.ErrNotFound)
	}
	return content.Info{Digest: dgst, Size: int64(len(b)), Labels: maps.Clone(c.labels[dgst])}, nil
}

func (c *fakeContent) Update(ctx context.Context, info content.Info, fieldpaths ...string) (content.Info, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.updates++
	if _, ok := c.blobs[info.Digest]; !ok {
		return content.Info{}, fmt.Errorf("blob %s: %w", info.Digest, errdefs.ErrNotFound)
	}
	l := c.labels[info.Digest]
	if l == nil {
		l = map[string]string{}
		c.labels[info.Digest] = l
	}
	for _, p := range fieldpaths {
		key, ok := strings.CutPrefix(p, "labels.")
		if !ok {
			return content.Info{}, fmt.Errorf("fieldpath %q: %w", p, errdefs.ErrNotImplemented)
		}
		l[key] = info.Labels[key]
	}
	return content.Info{Digest: info.Digest, Labels: l}, nil
}

func (c *fakeContent) label(d digest.Digest, key string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.labels[d][key]
}

// testImage is an image stored in a fakeContent: its layers are the bytes
// "layer <name>" and its diff IDs are the digests of "tar <name>", which
// fakeApplier returns.
type testImage struct {
	img     images.Image
	config  ocispec.Descriptor
	layers  []ocispec.Descriptor
	diffIDs []digest.Digest
}

func diffIDOf(layerName string) digest.Digest { return digest.FromString("tar " + layerName) }

func (c *fakeContent) addImage(name string, platform ocispec.Platform, layerNames ...string) testImage {
	var ti testImage
	cfg := ocispec.Image{Platform: platform, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{}}}
	for _, l := range layerNames {
		ti.layers = append(ti.layers, c.add(ocispec.MediaTypeImageLayerGzip, []byte("layer "+l)))
		ti.diffIDs = append(ti.diffIDs, diffIDOf(l))
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, diffIDOf(l))
	}
	ti.config = c.addJSON(ocispec.MediaTypeImageConfig, cfg)
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: ti.config, Layers: ti.layers}
	m.SchemaVersion = 2
	ti.img = images.Image{Name: name, Target: c.addJSON(ocispec.MediaTypeImageManifest, m)}
	return ti
}

// fakeApplier "applies" a layer by recording it against the mount's
// source (the snapshot key) and returns the diff ID of the layer's name.
type fakeApplier struct {
	mu      sync.Mutex
	cs      *fakeContent
	applied map[string]string // snapshot key -> layer name
	calls   []string          // layer names, in call order
	// wrong and fail name layers that unpack to a wrong digest or fail;
	// needsParent those that fail on a snapshot without a parent (as a
	// hard link to a lower layer's file does).
	wrong, fail, needsParent map[string]bool
	// parentOf returns the parent of the snapshot key.
	parentOf    func(key string) string
	delay       time.Duration
	inFlight    atomic.Int32
	maxInFlight atomic.Int32
}

func newFakeApplier(cs *fakeContent) *fakeApplier {
	return &fakeApplier{cs: cs, applied: map[string]string{}, wrong: map[string]bool{}, fail: map[string]bool{}, needsParent: map[string]bool{}}
}

func (a *fakeApplier) Apply(ctx context.Context, desc ocispec.Descriptor, mounts []mount.Mount) (ocispec.Descriptor, error) {
	n := a.inFlight.Add(1)
	defer a.inFlight.Add(-1)
	for {
		m := a.maxInFlight.Load()
		if n <= m || a.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	blob, err := content.ReadBlob(ctx, a.cs, desc)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	name := strings.TrimPrefix(string(blob), "layer ")
	if len(mounts) != 1 || mounts[0].Type != "fake" {
		return ocispec.Descriptor{}, fmt.Errorf("layer %s: unexpected mounts %+v", name, mounts)
	}
	a.mu.Lock()
	a.calls = append(a.calls, name)
	a.mu.Unlock()
	if a.delay > 0 {
		select {
		case <-time.After(a.delay):
		case <-ctx.Done():
			return ocispec.Descriptor{}, ctx.Err()
		}
	}
	if a.fail[name] {
		return ocispec.Descriptor{}, fmt.Errorf("layer %s: corrupt gzip stream: %w", name, errdefs.ErrInvalidArgument)
	}
	if a.needsParent[name] && a.parentOf(mounts[0].Source) == "" {
		return ocispec.Descriptor{}, fmt.Errorf("layer %s: hard link target does not exist in this layer or below it: %w", name, errdefs.ErrNotFound)
	}
	a.mu.Lock()
	a.applied[mounts[0].Source] = name
	a.mu.Unlock()
	d := diffIDOf(name)
	if a.wrong[name] {
		d = digest.FromString("something else " + name)
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d}, nil
}

func (a *fakeApplier) callList() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.calls...)
}

// fakeSnapshot is a snapshot of fakeSnapshotter; layer is what was applied
// into it, carried over from the active snapshot at Commit.
type fakeSnapshot struct {
	info  snapshots.Info
	layer string
}

// fakeSnapshotter keeps snapshots in memory and logs every change.
type fakeSnapshotter struct {
	snapshots.Snapshotter // methods the unpacker must not call panic

	mu        sync.Mutex
	rebase    bool
	applier   *fakeApplier
	snapshots map[string]*fakeSnapshot
	log       []string
	// beforeCommit runs before each Commit, unlocked.
	beforeCommit func(name string)
}

func newFakeSnapshotter(a *fakeApplier, rebase bool) *fakeSnapshotter {
	return &fakeSnapshotter{applier: a, rebase: rebase, snapshots: map[string]*fakeSnapshot{}}
}

func (s *fakeSnapshotter) logf(format string, args ...any) {
	s.log = append(s.log, fmt.Sprintf(format, args...))
}

func (s *fakeSnapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, ok := s.snapshots[key]
	if !ok {
		return snapshots.Info{}, fmt.Errorf("snapshot %s: %w", key, errdefs.ErrNotFound)
	}
	return sn.info, nil
}

func (s *fakeSnapshotter) Capabilities(ctx context.Context) ([]string, error) {
	if s.rebase {
		return []string{snapshots.CapabilityRebase}, nil
	}
	return nil, nil
}

func (s *fakeSnapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := snapshots.Info{Kind: snapshots.KindActive, Name: key, Parent: parent}
	for _, o := range opts {
		if err := o(&info); err != nil {
			return nil, err
		}
	}
	if _, ok := s.snapshots[key]; ok {
		return nil, fmt.Errorf("snapshot %s: %w", key, errdefs.ErrAlreadyExists)
	}
	if p, ok := s.snapshots[parent]; parent != "" && (!ok || p.info.Kind != snapshots.KindCommitted) {
		return nil, fmt.Errorf("parent %s: %w", parent, errdefs.ErrNotFound)
	}
	s.logf("prepare %s parent=%q rebase=%q", key, parent, info.Labels[snapshots.LabelRebase])
	s.snapshots[key] = &fakeSnapshot{info: info}
	return []mount.Mount{{Type: "fake", Source: key}}, nil
}

func (s *fakeSnapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	if s.beforeCommit != nil {
		s.beforeCommit(name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	active, ok := s.snapshots[key]
	if !ok || active.info.Kind != snapshots.KindActive {
		return fmt.Errorf("active snapshot %s: %w", key, errdefs.ErrNotFound)
	}
	info := active.info
	info.Parent = ""
	for _, o := range opts {
		if err := o(&info); err != nil {
			return err
		}
	}
	switch {
	case info.Parent == "":
		info.Parent = active.info.Parent
	case !s.rebase:
		return fmt.Errorf("commit with a parent: %w", errdefs.ErrNotImplemented)
	case active.info.Parent != "":
		return fmt.Errorf("rebase of a snapshot that has a parent: %w", errdefs.ErrInvalidArgument)
	}
	if _, ok := s.snapshots[name]; ok {
		return fmt.Errorf("snapshot %s: %w", name, errdefs.ErrAlreadyExists)
	}
	info.Kind = snapshots.KindCommitted
	info.Name = name
	delete(info.Labels, snapshots.LabelRebase)
	s.applier.mu.Lock()
	layer := s.applier.applied[key]
	s.applier.mu.Unlock()
	delete(s.snapshots, key)
	s.snapshots[name] = &fakeSnapshot{info: info, layer: layer}
	s.logf("commit %s parent=%q", name, info.Parent)
	return nil
}

func (s *fakeSnapshotter) Remove(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.snapshots[key]; !ok {
		return fmt.Errorf("snapshot %s: %w", key, errdefs.ErrNotFound)
	}
	for _, sn := range s.snapshots {
		if sn.info.Parent == key {
			return fmt.Errorf("snapshot %s has children: %w", key, errdefs.ErrFailedPrecondition)
		}
	}
	delete(s.snapshots, key)
	s.logf("remove %s", key)
	return nil
}

// entries returns the log lines that start with prefix.
func (s *fakeSnapshotter) entries(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range s.log {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// byKind returns the names of the snapshots of one kind.
func (s *fakeSnapshotter) byKind(k snapshots.Kind) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name, sn := range s.snapshots {
		if sn.info.Kind == k {
			out = append(out, name)
		}
	}
	return out
}

// chain returns, from the top down, the layers of the snapshot name and its
// parents.
func (s *fakeSnapshotter) chain(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name != "" {
		sn, ok := s.snapshots[name]
		if !ok {
			return append(out, "missing "+name)
		}
		out = append(out, sn.layer)
		name = sn.info.Parent
	}
	return out
}
