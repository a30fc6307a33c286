// Package unpack turns an image's layers into committed snapshots, one per
// layer, named by chain ID, as containerd's unpacker does. A layer whose
// snapshot exists already (from this image or another that shares it) is
// not unpacked again. The caller holds a lease meanwhile, so that nothing
// made here is collected before the image's config blob points at the top
// snapshot.
package unpack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/mount"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/diff"
	"github.com/berth-engine/berth/services/images"
	"github.com/berth-engine/berth/snapshotter/snapshots"
)

// LabelGCRefSnapshot prefixes the label, on an image's config blob, that
// names the image's top snapshot in one snapshotter
// ("berth.gc.ref.snapshot.overlay"): garbage collection keeps that snapshot,
// and its parents, while the blob lives.
const LabelGCRefSnapshot = "berth.gc.ref.snapshot."

// ErrNoPlatform is wrapped by the error of an image whose index has no
// manifest for the platform asked for: nothing of it can be unpacked here.
var ErrNoPlatform = images.ErrNoPlatform

type options struct {
	platform    platforms.MatchComparer
	snapshotter string
	parallel    *bool
	limit       int
}

// Opt sets an option of Unpack.
type Opt func(*options)

// WithPlatform chooses the manifest of an index; the default is the
// platform berth runs on.
func WithPlatform(p platforms.MatchComparer) Opt {
	return func(o *options) { o.platform = p }
}

// WithSnapshotterName names the snapshotter in the garbage collection label
// set on the config blob. Without it no label is set and the caller must
// keep the snapshots alive some other way.
func WithSnapshotterName(name string) Opt {
	return func(o *options) { o.snapshotter = name }
}

// WithParallel applies the missing layers concurrently, each into a
// parentless snapshot that is re-parented as it is committed. It needs a
// snapshotter with the rebase capability (asking for it from another is an
// error); the default is to use it when the snapshotter has it.
func WithParallel(parallel bool) Opt {
	return func(o *options) { o.parallel = &parallel }
}

// WithLimit bounds how many layers are applied at once in parallel mode;
// the default is the number of CPUs.
func WithLimit(n int) Opt {
	return func(o *options) { o.limit = n }
}

// ChainIDs returns the chain ID of each layer of the image config: the
// identity of the filesystem that the layers up to and including it make.
func ChainIDs(config ocispec.Image) []digest.Digest {
	return identity.ChainIDs(slices.Clone(config.RootFS.DiffIDs))
}

// layer is one layer of the image being unpacked.
type layer struct {
	name    string             // "layer 2/5", for messages
	desc    ocispec.Descriptor // the blob
	diffID  digest.Digest      // from the config
	chainID digest.Digest
}

// Unpack unpacks the layers of img into sn through applier and returns the
// chain ID of the top layer ("" for an image without layers). The blobs
// must be in cs. On failure, no active snapshot made by this call stays and
// neither does a committed snapshot of the layer that failed or of any
// above it; the layers below it may stay committed, held by the caller's
// lease like everything else the call made.
func Unpack(ctx context.Context, cs content.Store, sn snapshots.Snapshotter, applier diff.Applier, img images.Image, opts ...Opt) (digest.Digest, error) {
	o := options{platform: platforms.Default(), limit: runtime.NumCPU()}
	for _, opt := range opts {
		opt(&o)
	}
	if o.limit < 1 {
		o.limit = 1
	}
	config, layers, err := readImage(ctx, cs, o.platform, img)
	if err != nil {
		return "", err
	}
	if len(layers) == 0 {
		return "", nil
	}
	top := layers[len(layers)-1].chainID

	missing, err := missingLayers(ctx, sn, layers)
	if err != nil {
		return "", err
	}
	if len(missing) > 0 {
		parallel := false
		if len(missing) > 1 && (o.parallel == nil || *o.parallel) {
			caps, err := sn.Capabilities(ctx)
			if err != nil {
				return "", fmt.Errorf("asking the snapshotter for its capabilities: %w", err)
			}
			parallel = slices.Contains(caps, snapshots.CapabilityRebase)
			if !parallel && o.parallel != nil {
				return "", errdefs.Errorf(errdefs.ErrFailedPrecondition,
					"unpacking image %s in parallel needs a snapshotter with the %q capability, which this one lacks: unpack it sequentially",
					img.Name, snapshots.CapabilityRebase)
			}
		}
		parent := ""
		if first := len(layers) - len(missing); first > 0 {
			parent = layers[first-1].chainID.String()
		}
		u := &unpacker{sn: sn, applier: applier, image: img.Name}
		if parallel {
			err = u.parallel(ctx, missing, parent, o.limit)
		} else {
			err = u.sequential(ctx, missing, parent)
		}
		if err != nil {
			return "", err
		}
	}
	if o.snapshotter != "" {
		key := LabelGCRefSnapshot + o.snapshotter
		// Every container create unpacks; most find the image unpacked and
		// labelled already, and a read is cheaper than a write.
		if len(missing) == 0 {
			if info, err := cs.Info(ctx, config.Digest); err == nil && info.Labels[key] == top.String() {
				return top, nil
			}
		}
		info := content.Info{Digest: config.Digest, Labels: map[string]string{key: top.String()}}
		if _, err := cs.Update(ctx, info, "labels."+key); err != nil {
			return "", fmt.Errorf("labelling the config %s of image %s with its snapshot: %w", config.Digest, img.Name, err)
		}
	}
	return top, nil
}

// readImage reads the manifest for the platform and the config of img and
// returns the config's descriptor and the layers.
func readImage(ctx context.Context, cs content.Provider, platform platforms.MatchComparer, img images.Image) (ocispec.Descriptor, []layer, error) {
	_, manifest, err := images.Manifest(ctx, cs, img.Target, platform)
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("image %s: %w", img.Name, err)
	}
	config, err := images.ReadConfig(ctx, cs, manifest.Config)
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("image %s: %w", img.Name, err)
	}
	diffIDs := config.RootFS.DiffIDs
	if len(diffIDs) != len(manifest.Layers) {
		return ocispec.Descriptor{}, nil, errdefs.Errorf(errdefs.ErrInvalidArgument,
			"image %s: its manifest lists %d layers but its config %d diff_ids: the image is broken, rebuild it",
			img.Name, len(manifest.Layers), len(diffIDs))
	}
	for i, d := range diffIDs {
		if err := d.Validate(); err != nil {
			return ocispec.Descriptor{}, nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "image %s: diff_id %d %q of the config: %v", img.Name, i, d, err)
		}
	}
	chain := ChainIDs(config)
	layers := make([]layer, len(diffIDs))
	for i := range diffIDs {
		layers[i] = layer{name: fmt.Sprintf("layer %d/%d", i+1, len(diffIDs)), desc: manifest.Layers[i], diffID: diffIDs[i], chainID: chain[i]}
	}
	return manifest.Config, layers, nil
}

// missingLayers returns the layers, from the bottom up, whose snapshots do
// not exist yet. A committed snapshot keeps its parents, so the search goes
// down from the top and stops at the first snapshot that exists.
func missingLayers(ctx context.Context, sn snapshots.Snapshotter, layers []layer) ([]layer, error) {
	for i := len(layers) - 1; i >= 0; i-- {
		info, err := sn.Stat(ctx, layers[i].chainID.String())
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("looking up the snapshot of %s (%s): %w", layers[i].name, layers[i].chainID, err)
		}
		if info.Kind != snapshots.KindCommitted {
			return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition,
				"snapshot %s, which should hold %s unpacked, is %s rather than committed: remove it with 'berth snapshot rm %s'",
				info.Name, layers[i].name, info.Kind, info.Name)
		}
		return layers[i+1:], nil
	}
	return layers, nil
}

// unpacker applies the missing layers of one image.
type unpacker struct {
	sn      snapshots.Snapshotter
	applier diff.Applier
	image   string
}

// sequential prepares each layer on its parent, applies and commits it.
func (u *unpacker) sequential(ctx context.Context, layers []layer, parent string) error {
	for _, l := range layers {
		key, err := activeKey(l.chainID)
		if err != nil {
			return err
		}
		mounts, err := u.sn.Prepare(ctx, key, parent)
		if err != nil {
			return fmt.Errorf("preparing a snapshot for %s of image %s: %w", l.name, u.image, err)
		}
		if _, err := u.apply(ctx, l, mounts); err != nil {
			return errors.Join(err, u.remove(ctx, key))
		}
		if err := u.sn.Commit(ctx, l.chainID.String(), key); err != nil {
			if rerr := u.remove(ctx, key); rerr != nil || !errdefs.IsAlreadyExists(err) {
				return errors.Join(fmt.Errorf("committing %s of image %s as snapshot %s: %w", l.name, u.image, l.chainID, err), rerr)
			}
			// Another unpack committed the same layer meanwhile: use it.
		}
		parent = l.chainID.String()
	}
	return nil
}

// parallel applies the layers concurrently into parentless snapshots, at
// most limit at a time, then commits them in order, each onto the one
// below. A layer can need the layers below it while it is applied (a hard
// link to a file of a lower layer), which a parentless snapshot lacks: from
// the first layer that failed to apply, the rest are applied again one by
// one on top of what was committed, which also reports a real failure.
func (u *unpacker) parallel(ctx context.Context, layers []layer, parent string, limit int) (retErr error) {
	keys := make([]string, len(layers))
	for i, l := range layers {
		key, err := activeKey(l.chainID)
		if err != nil {
			return err
		}
		keys[i] = key
	}
	// prepared[i] is true while keys[i] is an active snapshot of ours.
	prepared := make([]bool, len(layers))
	removeFrom := func(first int) error {
		var errs []error
		for i := first; i < len(keys); i++ {
			if prepared[i] {
				errs = append(errs, u.remove(ctx, keys[i]))
				prepared[i] = false
			}
		}
		return errors.Join(errs...)
	}
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, removeFrom(0))
		}
	}()

	errs := make([]error, len(layers))
	// final[i] says that errs[i] would be the same one by one: the diff ID
	// does not depend on the layers below, and a failed Prepare is not
	// about them.
	final := make([]bool, len(layers))
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i, l := range layers {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			mounts, err := u.sn.Prepare(ctx, keys[i], "", snapshots.WithLabels(map[string]string{snapshots.LabelRebase: "true"}))
			if err != nil {
				errs[i], final[i] = fmt.Errorf("preparing a snapshot for %s of image %s: %w", l.name, u.image, err), true
				return
			}
			prepared[i] = true // read only after wg.Wait
			final[i], errs[i] = u.apply(ctx, l, mounts)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	first := slices.IndexFunc(errs, func(err error) bool { return err != nil })
	if first < 0 {
		first = len(layers)
	} else if final[first] {
		return errs[first]
	}
	for i, l := range layers[:first] {
		err := u.sn.Commit(ctx, l.chainID.String(), keys[i], snapshots.WithParent(parent))
		switch {
		case err == nil:
			prepared[i] = false
		case errdefs.IsAlreadyExists(err):
			// Another unpack committed the same layer meanwhile; its parent
			// is the same chain by definition. Ours goes.
			if rerr := u.remove(ctx, keys[i]); rerr != nil {
				return rerr
			}
			prepared[i] = false
		default:
			return fmt.Errorf("committing %s of image %s as snapshot %s on %s: %w", l.name, u.image, l.chainID, orNone(parent), err)
		}
		parent = l.chainID.String()
	}
	if first == len(layers) {
		return nil
	}
	if err := removeFrom(first); err != nil {
		return err
	}
	return u.sequential(ctx, layers[first:], parent)
}

// apply applies layer l onto mounts and checks what was applied against
// the layer's diff ID. A mismatch is final: the diff ID is the digest of
// the layer's tar, whatever it was applied onto.
func (u *unpacker) apply(ctx context.Context, l layer, mounts []mount.Mount) (final bool, err error) {
	applied, err := u.applier.Apply(ctx, l.desc, mounts)
	if err != nil {
		return false, fmt.Errorf("%s of image %s: %w", l.name, u.image, err)
	}
	if applied.Digest != l.diffID {
		return true, errdefs.Errorf(errdefs.ErrFailedPrecondition,
			"%s (%s) of image %s unpacks to %s, but the image config says its diff_id is %s: the image is corrupt",
			l.name, l.desc.Digest, u.image, applied.Digest, l.diffID)
	}
	return false, nil
}

// remove removes an active snapshot of this call, even when ctx was
// cancelled.
func (u *unpacker) remove(ctx context.Context, key string) error {
	if err := u.sn.Remove(context.WithoutCancel(ctx), key); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("removing the unfinished snapshot %s: %w", key, err)
	}
	return nil
}

// activeKey returns a key, unique to this call, for the active snapshot a
// layer is applied into.
func activeKey(chainID digest.Digest) (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("making a snapshot key: %w", err)
	}
	return "extract-" + hex.EncodeToString(b[:]) + "-" + chainID.String(), nil
}

func orNone(parent string) string {
	if parent == "" {
		return "no parent"
	}
	return parent
}
