// Package fakestore holds in-memory image and content stores for the unit
// tests of the command line's packages.
package fakestore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/filters"
	"github.com/berth-engine/berth/services/content"
	"github.com/berth-engine/berth/services/images"
)

// Content is an in-memory content.Provider that counts its reads.
type Content struct {
	mu    sync.Mutex
	blobs map[digest.Digest][]byte
	reads atomic.Int64
}

// NewContent returns an empty store.
func NewContent() *Content { return &Content{blobs: map[digest.Digest][]byte{}} }

// Add stores blob and returns its descriptor.
func (c *Content) Add(mediaType string, blob []byte) ocispec.Descriptor {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := digest.FromBytes(blob)
	c.blobs[d] = blob
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(blob))}
}

// AddJSON marshals v and stores it.
func (c *Content) AddJSON(mediaType string, v any) ocispec.Descriptor {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return c.Add(mediaType, b)
}

// Remove deletes a blob.
func (c *Content) Remove(d digest.Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.blobs, d)
}

// Reads is how many blobs were opened.
func (c *Content) Reads() int64 { return c.reads.Load() }

type readerAt struct{ *bytes.Reader }

func (readerAt) Close() error { return nil }

// ReaderAt implements content.Provider.
func (c *Content) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	c.reads.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.blobs[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", desc.Digest, errdefs.ErrNotFound)
	}
	return readerAt{bytes.NewReader(b)}, nil
}

// Image is one image made by AddImage.
type Image struct {
	Manifest ocispec.Descriptor
	Config   ocispec.Descriptor
	Layers   []ocispec.Descriptor
}

// AddImage stores a config with the given creation time and platform, the
// layers (as their bytes) and a manifest naming them.
func (c *Content) AddImage(created time.Time, platform ocispec.Platform, layers ...string) Image {
	var img Image
	cfg := ocispec.Image{Created: &created, Platform: platform, RootFS: ocispec.RootFS{Type: "layers"}}
	for _, l := range layers {
		d := c.Add(ocispec.MediaTypeImageLayer, []byte(l))
		img.Layers = append(img.Layers, d)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, d.Digest)
	}
	img.Config = c.AddJSON(ocispec.MediaTypeImageConfig, cfg)
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: img.Config, Layers: img.Layers}
	m.SchemaVersion = 2
	img.Manifest = c.AddJSON(ocispec.MediaTypeImageManifest, m)
	return img
}

// AddIndex stores an index of the given manifests, each with its platform.
func (c *Content) AddIndex(manifests ...ocispec.Descriptor) ocispec.Descriptor {
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: manifests}
	idx.SchemaVersion = 2
	return c.AddJSON(ocispec.MediaTypeImageIndex, idx)
}

// Images is an in-memory images.Store of one namespace.
type Images struct {
	mu      sync.Mutex
	records map[string]images.Image
	updates atomic.Int64
	// Deleted lists the names deleted, with "sync" appended when the
	// delete asked for garbage collection.
	Deleted []string
}

// NewImages returns an empty store.
func NewImages() *Images { return &Images{records: map[string]images.Image{}} }

// Get implements images.Store.
func (s *Images) Get(ctx context.Context, name string) (images.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, ok := s.records[name]
	if !ok {
		return images.Image{}, fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
	}
	return img, nil
}

// List implements images.Store over the fields name, target.digest,
// target.mediatype and labels.
func (s *Images) List(ctx context.Context, fs ...string) ([]images.Image, error) {
	f, err := filters.Parse(fs...)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []images.Image
	for _, img := range s.records {
		if f.Match(adaptor(img)) {
			out = append(out, img)
		}
	}
	slices.SortFunc(out, func(a, b images.Image) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func adaptor(img images.Image) filters.Adaptor {
	return filters.AdaptorFunc(func(path []string) (string, bool) {
		switch strings.Join(path, ".") {
		case "name":
			return img.Name, true
		case "target.digest":
			return img.Target.Digest.String(), true
		case "target.mediatype":
			return img.Target.MediaType, true
		}
		if len(path) > 1 && path[0] == "labels" {
			v, ok := img.Labels[strings.Join(path[1:], ".")]
			return v, ok
		}
		return "", false
	})
}

// Create implements images.Store.
func (s *Images) Create(ctx context.Context, img images.Image) (images.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.records[img.Name]; ok {
		return images.Image{}, fmt.Errorf("image %q: %w", img.Name, errdefs.ErrAlreadyExists)
	}
	now := time.Now().UTC()
	img.CreatedAt, img.UpdatedAt = now, now
	s.records[img.Name] = img
	return img, nil
}

// Updates is how many times Update was called.
func (s *Images) Updates() int64 { return s.updates.Load() }

// Update implements images.Store for the field paths "target", "labels"
// and "labels.KEY".
func (s *Images) Update(ctx context.Context, img images.Image, fieldpaths ...string) (images.Image, error) {
	s.updates.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.records[img.Name]
	if !ok {
		return images.Image{}, fmt.Errorf("image %q: %w", img.Name, errdefs.ErrNotFound)
	}
	if len(fieldpaths) == 0 {
		fieldpaths = []string{"target", "labels"}
	}
	for _, p := range fieldpaths {
		switch p {
		case "target":
			old.Target = img.Target
		case "labels":
			old.Labels = img.Labels
		default:
			k, ok := strings.CutPrefix(p, "labels.")
			if !ok {
				return images.Image{}, fmt.Errorf("field %q: %w", p, errdefs.ErrNotImplemented)
			}
			labels := map[string]string{}
			for lk, lv := range old.Labels {
				labels[lk] = lv
			}
			labels[k] = img.Labels[k]
			old.Labels = labels
		}
	}
	old.UpdatedAt = time.Now().UTC()
	s.records[img.Name] = old
	return old, nil
}

// Delete implements images.Store.
func (s *Images) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	var o images.DeleteOptions
	for _, opt := range opts {
		opt(&o)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.records[name]; !ok {
		return fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
	}
	delete(s.records, name)
	if o.Synchronous {
		name += " sync"
	}
	s.Deleted = append(s.Deleted, name)
	return nil
}

// Put stores a record as it is, for setting up a test.
func (s *Images) Put(name string, target ocispec.Descriptor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[name] = images.Image{Name: name, Target: target}
}

// SetTarget points a record at another target, keeping its labels, as an
// update by a client that knows nothing of them does.
func (s *Images) SetTarget(name string, target ocispec.Descriptor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.records[name]
	rec.Target = target
	s.records[name] = rec
}

// SetLabel sets one label of a record.
func (s *Images) SetLabel(name, key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := s.records[name]
	labels := map[string]string{key: value}
	for k, v := range rec.Labels {
		if k != key {
			labels[k] = v
		}
	}
	rec.Labels = labels
	s.records[name] = rec
}
