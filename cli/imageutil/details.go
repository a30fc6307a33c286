// Package imageutil gives the command line Docker's view of images: an image
// is known by its names (image records) and by its IMAGE ID, the digest of
// its config, which this package reads from the content store. It resolves
// what a user types (a name, an ID or a unique ID prefix, a digest
// reference) to image records.
package imageutil

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/services/content"
)

// Docker's media types for the image manifest and the manifest list, which
// `docker save` archives and Docker registries use beside the OCI ones.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// maxIndexDepth bounds how many indexes may nest, so that a cycle of
// indexes cannot loop.
const maxIndexDepth = 4

// Details is what the manifest and config of one target say: the same for
// every name that points at that target.
type Details struct {
	// Manifest is the image manifest used: the target itself or, for an
	// index, the one for the current platform.
	Manifest ocispec.Descriptor
	// ConfigDesc is the config blob; its digest is the IMAGE ID.
	ConfigDesc ocispec.Descriptor
	// Size is the size of the config and the layers, as stored.
	Size int64
	// Created is when the image was built, from its config; zero when the
	// config does not say.
	Created time.Time

	mu     sync.Mutex
	config *ocispec.Image
}

// ID is the IMAGE ID: the digest of the config.
func (d *Details) ID() digest.Digest { return d.ConfigDesc.Digest }

// Config is the image config, or nil when it was not read: a listing
// learns IDs, sizes and creation times from LabelSummary
// (Resolver.LoadConfig reads the rest).
func (d *Details) Config() *ocispec.Image {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.config
}

func (d *Details) setConfig(cfg *ocispec.Image) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.config = cfg
	if cfg.Created != nil {
		d.Created = *cfg.Created
	}
}

// readConfig reads and decodes the config blob of d.
func readConfig(ctx context.Context, cs content.Provider, d *Details) (*ocispec.Image, error) {
	blob, err := content.ReadBlob(ctx, cs, d.ConfigDesc)
	if err != nil {
		return nil, fmt.Errorf("reading image config %s of manifest %s: %w", d.ConfigDesc.Digest, d.Manifest.Digest, err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(blob, &cfg); err != nil {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "decoding image config %s: %v", d.ConfigDesc.Digest, err)
	}
	return &cfg, nil
}

// readDetails reads the manifest (choosing one from an index) and the config
// of target.
func readDetails(ctx context.Context, cs content.Provider, platform platforms.MatchComparer, target ocispec.Descriptor) (*Details, error) {
	desc := target
	for depth := 0; ; depth++ {
		if depth > maxIndexDepth {
			return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "image index %s nests more than %d indexes", target.Digest, maxIndexDepth)
		}
		blob, err := content.ReadBlob(ctx, cs, desc)
		if err != nil {
			return nil, fmt.Errorf("reading %s %s: %w", kindOf(desc.MediaType), desc.Digest, err)
		}
		switch mediaType(desc.MediaType, blob) {
		case ocispec.MediaTypeImageIndex, MediaTypeDockerManifestList:
			var idx ocispec.Index
			if err := json.Unmarshal(blob, &idx); err != nil {
				return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "decoding image index %s: %v", desc.Digest, err)
			}
			next, err := choose(idx.Manifests, platform)
			if err != nil {
				return nil, fmt.Errorf("image index %s: %w", desc.Digest, err)
			}
			desc = next
		case ocispec.MediaTypeImageManifest, MediaTypeDockerManifest:
			return manifestDetails(ctx, cs, desc, blob)
		default:
			return nil, errdefs.Errorf(errdefs.ErrNotImplemented, "%s has media type %q, which is neither an image manifest nor an index", desc.Digest, desc.MediaType)
		}
	}
}

func manifestDetails(ctx context.Context, cs content.Provider, desc ocispec.Descriptor, blob []byte) (*Details, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(blob, &m); err != nil {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "decoding image manifest %s: %v", desc.Digest, err)
	}
	if m.Config.Digest == "" {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "image manifest %s has no config", desc.Digest)
	}
	d := &Details{Manifest: desc, ConfigDesc: m.Config, Size: m.Config.Size}
	for _, l := range m.Layers {
		d.Size += l.Size
	}
	cfg, err := readConfig(ctx, cs, d)
	if err != nil {
		return nil, err
	}
	d.setConfig(cfg)
	return d, nil
}

// choose picks the manifest of an index for the current platform. Without
// one, it falls back to a manifest that states no platform, then to the
// first manifest, so that an image for another platform still has an ID.
func choose(manifests []ocispec.Descriptor, platform platforms.MatchComparer) (ocispec.Descriptor, error) {
	var matching, unplatformed []ocispec.Descriptor
	for _, m := range manifests {
		switch {
		case m.Platform == nil:
			unplatformed = append(unplatformed, m)
		case platform.Match(*m.Platform):
			matching = append(matching, m)
		}
	}
	slices.SortStableFunc(matching, func(a, b ocispec.Descriptor) int {
		switch {
		case platform.Less(*a.Platform, *b.Platform):
			return -1
		case platform.Less(*b.Platform, *a.Platform):
			return 1
		}
		return 0
	})
	switch {
	case len(matching) > 0:
		return matching[0], nil
	case len(unplatformed) > 0:
		return unplatformed[0], nil
	case len(manifests) > 0:
		return manifests[0], nil
	}
	return ocispec.Descriptor{}, errdefs.Errorf(errdefs.ErrInvalidArgument, "index lists no manifests")
}

// mediaType returns the media type of a blob: the one its descriptor
// states or, when that is empty, the one the JSON states or implies.
func mediaType(declared string, blob []byte) string {
	if declared != "" {
		return declared
	}
	var probe struct {
		MediaType string            `json:"mediaType"`
		Manifests []json.RawMessage `json:"manifests"`
		Config    json.RawMessage   `json:"config"`
	}
	if json.Unmarshal(blob, &probe) != nil {
		return ""
	}
	switch {
	case probe.MediaType != "":
		return probe.MediaType
	case probe.Manifests != nil:
		return ocispec.MediaTypeImageIndex
	case probe.Config != nil:
		return ocispec.MediaTypeImageManifest
	}
	return ""
}

func kindOf(mt string) string {
	switch mt {
	case ocispec.MediaTypeImageIndex, MediaTypeDockerManifestList:
		return "image index"
	case ocispec.MediaTypeImageManifest, MediaTypeDockerManifest:
		return "image manifest"
	}
	return "blob"
}
