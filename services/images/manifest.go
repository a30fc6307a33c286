package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/content"
)

const (
	// MaxMetadataSize bounds what is read into memory of one manifest,
	// index or config (and of an archive's index.json or manifest.json).
	MaxMetadataSize = 16 << 20
	// MaxIndexDepth bounds how deep indexes may nest, so that a cycle of
	// indexes cannot loop.
	MaxIndexDepth = 8
)

// ErrNoPlatform is wrapped by the error of Manifest for an index that has
// no manifest for the platform asked for.
var ErrNoPlatform = fmt.Errorf("no manifest for the platform: %w", errdefs.ErrNotFound)

// ReadMetadata reads a manifest, index or config blob whole. It refuses a
// blob larger than MaxMetadataSize, and one whose bytes do not match desc.
// An error of the provider is returned as it is, for the caller to say what
// it was reading.
func ReadMetadata(ctx context.Context, p content.Provider, desc ocispec.Descriptor) ([]byte, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "invalid digest %q: %v", desc.Digest, err)
	}
	if desc.Size > MaxMetadataSize {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "blob %s is %d bytes, more than the %d allowed for image metadata",
			desc.Digest, desc.Size, MaxMetadataSize)
	}
	ra, err := p.ReaderAt(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer ra.Close()
	// The store's size, not the descriptor's, is what would be allocated.
	if ra.Size() != desc.Size {
		return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "blob %s has %d bytes in the content store but its descriptor says %d",
			desc.Digest, ra.Size(), desc.Size)
	}
	data := make([]byte, desc.Size)
	if _, err := ra.ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading blob %s: %w", desc.Digest, err)
	}
	if desc.Digest.Algorithm().FromBytes(data) != desc.Digest {
		return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "blob %s in the content store does not match its descriptor", desc.Digest)
	}
	return data, nil
}

// ReadConfig reads and decodes the image config desc.
func ReadConfig(ctx context.Context, p content.Provider, desc ocispec.Descriptor) (ocispec.Image, error) {
	blob, err := ReadMetadata(ctx, p, desc)
	if err != nil {
		return ocispec.Image{}, fmt.Errorf("reading image config %s: %w", desc.Digest, err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(blob, &cfg); err != nil {
		return ocispec.Image{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "decoding image config %s: %v", desc.Digest, err)
	}
	return cfg, nil
}

// ManifestOpt changes how Manifest chooses among the manifests of an index.
type ManifestOpt func(*manifestOptions)

type manifestOptions struct {
	fallback bool
	keep     func(ocispec.Descriptor) bool
}

// WithFallbackToFirst makes Manifest take the first manifest of an index
// that has none for the platform, rather than fail: what is the same on
// every platform (an image ID to show) can come from it, but nothing that
// runs.
func WithFallbackToFirst() ManifestOpt {
	return func(o *manifestOptions) { o.fallback = true }
}

// WithFilter makes Manifest consider, in indexes, only the manifests for
// which keep is true (those whose blobs are all present, say).
func WithFilter(keep func(ocispec.Descriptor) bool) ManifestOpt {
	return func(o *manifestOptions) { o.keep = keep }
}

// Manifest returns the image manifest of target for platform, and its
// descriptor.
//
// A target that is a manifest is used whatever platform it is for, as
// containerd does. In an index, nested ones included, the manifests are
// tried best first: those whose descriptor states a matching platform, the
// better by platform.Less first; then those that state none, in index
// order, which match only when there is nothing better (as in containerd):
// a nested index is searched in turn, a manifest is taken when its config
// is for a matching platform. An index without a manifest for platform is
// an error that wraps ErrNoPlatform.
func Manifest(ctx context.Context, p content.Provider, target ocispec.Descriptor, platform platforms.MatchComparer, opts ...ManifestOpt) (ocispec.Descriptor, ocispec.Manifest, error) {
	r := &manifestResolver{p: p, platform: platform, root: target.Digest}
	for _, o := range opts {
		o(&r.opts)
	}
	return r.resolve(ctx, target, 0, false)
}

type manifestResolver struct {
	p        content.Provider
	platform platforms.MatchComparer
	opts     manifestOptions
	// root is the target, for messages.
	root digest.Digest
}

// resolve reads desc and returns its manifest or the one it chooses from
// desc's index. byConfig says that desc states no platform, so that a
// manifest must be checked against its config's.
func (r *manifestResolver) resolve(ctx context.Context, desc ocispec.Descriptor, depth int, byConfig bool) (ocispec.Descriptor, ocispec.Manifest, error) {
	if depth > MaxIndexDepth {
		return ocispec.Descriptor{}, ocispec.Manifest{}, errdefs.Errorf(errdefs.ErrInvalidArgument,
			"image index %s nests more than %d indexes", r.root, MaxIndexDepth)
	}
	blob, err := ReadMetadata(ctx, r.p, desc)
	if err != nil {
		return ocispec.Descriptor{}, ocispec.Manifest{}, fmt.Errorf("reading %s %s: %w", kindName(desc.MediaType), desc.Digest, err)
	}
	switch mt := MediaType(desc.MediaType, blob); {
	case IsManifestType(mt):
		m, err := decodeManifest(desc.Digest, blob)
		if err != nil {
			return ocispec.Descriptor{}, ocispec.Manifest{}, err
		}
		if byConfig {
			if err := r.checkConfig(ctx, desc, m); err != nil {
				return ocispec.Descriptor{}, ocispec.Manifest{}, err
			}
		}
		return desc, m, nil
	case IsIndexType(mt):
		var idx ocispec.Index
		if err := json.Unmarshal(blob, &idx); err != nil {
			return ocispec.Descriptor{}, ocispec.Manifest{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "decoding image index %s: %v", desc.Digest, err)
		}
		return r.choose(ctx, desc, idx.Manifests, depth)
	default:
		return ocispec.Descriptor{}, ocispec.Manifest{}, errdefs.Errorf(errdefs.ErrNotImplemented,
			"%s has media type %q, which is neither an image manifest nor an index", desc.Digest, mt)
	}
}

// choose returns the best manifest of index for the platform.
func (r *manifestResolver) choose(ctx context.Context, index ocispec.Descriptor, manifests []ocispec.Descriptor, depth int) (ocispec.Descriptor, ocispec.Manifest, error) {
	var kept, matching, unplatformed []ocispec.Descriptor
	for _, m := range manifests {
		if r.opts.keep != nil && !r.opts.keep(m) {
			continue
		}
		kept = append(kept, m)
		switch {
		case m.Platform == nil:
			unplatformed = append(unplatformed, m)
		case r.platform.Match(*m.Platform):
			matching = append(matching, m)
		}
	}
	slices.SortStableFunc(matching, func(a, b ocispec.Descriptor) int {
		switch {
		case r.platform.Less(*a.Platform, *b.Platform):
			return -1
		case r.platform.Less(*b.Platform, *a.Platform):
			return 1
		}
		return 0
	})
	for _, m := range append(matching, unplatformed...) {
		desc, manifest, err := r.resolve(ctx, m, depth+1, m.Platform == nil)
		if !errors.Is(err, ErrNoPlatform) {
			return desc, manifest, err
		}
	}
	if r.opts.fallback && len(kept) > 0 {
		return r.resolve(ctx, kept[0], depth+1, false)
	}
	if len(manifests) == 0 {
		return ocispec.Descriptor{}, ocispec.Manifest{}, fmt.Errorf("image index %s lists no manifests: %w", index.Digest, ErrNoPlatform)
	}
	return ocispec.Descriptor{}, ocispec.Manifest{}, fmt.Errorf("image index %s lists %d manifests, none for this platform: %w",
		index.Digest, len(manifests), ErrNoPlatform)
}

// checkConfig checks that the config of m, whose descriptor desc states no
// platform, is for the platform.
func (r *manifestResolver) checkConfig(ctx context.Context, desc ocispec.Descriptor, m ocispec.Manifest) error {
	cfg, err := ReadConfig(ctx, r.p, m.Config)
	if err != nil {
		return fmt.Errorf("image manifest %s: %w", desc.Digest, err)
	}
	p := platforms.Normalize(cfg.Platform)
	if !r.platform.Match(p) {
		return fmt.Errorf("image manifest %s states no platform and its config is for %s: %w", desc.Digest, platforms.Format(p), ErrNoPlatform)
	}
	return nil
}

func decodeManifest(dgst digest.Digest, blob []byte) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(blob, &m); err != nil {
		return ocispec.Manifest{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "decoding image manifest %s: %v", dgst, err)
	}
	if m.Config.Digest == "" {
		return ocispec.Manifest{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "image manifest %s has no config", dgst)
	}
	return m, nil
}
