// Package imageutil gives the command line Docker's view of images: an image
// is known by its names (image records) and by its IMAGE ID, the digest of
// its config, which this package reads from the content store. It resolves
// what a user types (a name, an ID or a unique ID prefix, a digest
// reference) to image records.
package imageutil

import (
	"context"
	"sync"
	"time"

	"github.com/containerd/platforms"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/images"
)

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
	cfg, err := images.ReadConfig(ctx, cs, d.ConfigDesc)
	if err != nil {
		return nil, err
	}
	return &cfg, nil
}

// readDetails reads the manifest (choosing one from an index) and the config
// of target. An index without a manifest for the platform gives its first
// one, so that an image for another platform still has an ID.
func readDetails(ctx context.Context, cs content.Provider, platform platforms.MatchComparer, target ocispec.Descriptor) (*Details, error) {
	desc, m, err := images.Manifest(ctx, cs, target, platform, images.WithFallbackToFirst())
	if err != nil {
		return nil, err
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
