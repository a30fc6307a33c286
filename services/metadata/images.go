package metadata

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/filters"
	nsctx "github.com/berth-engine/berth/internal/namespaces"
	eventsv1 "github.com/berth-engine/berth/proto/events/v1"
	"github.com/berth-engine/berth/services/images"
)

type imageStore struct{ db *DB }

var _ images.Store = (*imageStore)(nil)

func imageNotFound(name, ns string) error {
	return fmt.Errorf("image %q not found in namespace %q: %w", name, ns, errdefs.ErrNotFound)
}

func (s *imageStore) Get(ctx context.Context, name string) (images.Image, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return images.Image{}, err
	}
	var img images.Image
	err = s.db.bdb.View(func(tx *bolt.Tx) error {
		bkt := imagesBucket(tx, ns)
		if bkt == nil || bkt.Bucket([]byte(name)) == nil {
			return imageNotFound(name, ns)
		}
		img, err = readImage(name, bkt.Bucket([]byte(name)))
		return err
	})
	return img, err
}

// List returns the images matching the filters (fields name, target.digest,
// target.mediatype, target.size, labels.KEY, annotations.KEY), by name.
func (s *imageStore) List(ctx context.Context, fs ...string) ([]images.Image, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	out, err := readMatching(s.db.bdb, fs, func(tx *bolt.Tx) *bolt.Bucket { return imagesBucket(tx, ns) }, readImage, imageAdaptor)
	// bbolt iterates in key order already; sort anyway so the order is
	// part of the contract and not of the storage.
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

func imageAdaptor(img images.Image) filters.Adaptor {
	return filters.AdaptorFunc(func(path []string) (string, bool) {
		if len(path) == 0 {
			return "", false
		}
		switch path[0] {
		case "name":
			return img.Name, true
		case "target":
			if len(path) != 2 {
				return "", false
			}
			switch path[1] {
			case "digest":
				return img.Target.Digest.String(), true
			case "mediatype":
				return img.Target.MediaType, true
			case "size":
				return strconv.FormatInt(img.Target.Size, 10), true
			}
		case "labels":
			return filters.MapField(img.Labels, path)
		case "annotations":
			return filters.MapField(img.Target.Annotations, path)
		}
		return "", false
	})
}

func (s *imageStore) Create(ctx context.Context, img images.Image) (images.Image, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return images.Image{}, err
	}
	if err := validateImage(img); err != nil {
		return images.Image{}, err
	}
	now := time.Now().UTC()
	img.CreatedAt, img.UpdatedAt = now, now
	img.Labels = copyMap(img.Labels)
	err = s.db.bdb.Update(func(tx *bolt.Tx) error {
		if _, err := createNamespace(tx, ns); err != nil {
			return err
		}
		bkt, err := createBucketIfNotExists(tx, nsPath(ns, bucketKeyImages)...)
		if err != nil {
			return err
		}
		ib, err := bkt.CreateBucket([]byte(img.Name))
		if errors.Is(err, berrors.ErrBucketExists) {
			return fmt.Errorf("image %q already exists in namespace %q: %w", img.Name, ns, errdefs.ErrAlreadyExists)
		}
		if err != nil {
			return err
		}
		return writeImage(ib, img)
	})
	if err != nil {
		return images.Image{}, err
	}
	s.db.publish(ctx, "/images/create", &eventsv1.ImageCreate{Name: img.Name, Labels: img.Labels})
	return img, nil
}

// Update changes the fields named by fieldpaths: "target" (with its
// annotations), "annotations" or "annotations.KEY" (of the target), "labels"
// or "labels.KEY". With none it replaces target and labels.
func (s *imageStore) Update(ctx context.Context, img images.Image, fieldpaths ...string) (images.Image, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return images.Image{}, err
	}
	if img.Name == "" {
		return images.Image{}, fmt.Errorf("image name must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if len(fieldpaths) == 0 {
		fieldpaths = []string{"target", "labels"}
	}
	var updated images.Image
	targetChanged := false
	err = s.db.bdb.Update(func(tx *bolt.Tx) error {
		bkt := imagesBucket(tx, ns)
		if bkt == nil || bkt.Bucket([]byte(img.Name)) == nil {
			return imageNotFound(img.Name, ns)
		}
		ib := bkt.Bucket([]byte(img.Name))
		if updated, err = readImage(img.Name, ib); err != nil {
			return err
		}
		old := updated.Target
		for _, fp := range fieldpaths {
			if fp == "target" {
				updated.Target = img.Target
				updated.Target.Annotations = copyMap(img.Target.Annotations)
				continue
			}
			var ok bool
			if updated.Labels, ok = applyLabelPaths(updated.Labels, img.Labels, "labels", fp); ok {
				continue
			}
			if updated.Target.Annotations, ok = applyLabelPaths(updated.Target.Annotations, img.Target.Annotations, "annotations", fp); ok {
				continue
			}
			return fmt.Errorf("updating image %q in namespace %q: cannot update field %q: use \"target\", \"labels\", \"labels.KEY\", \"annotations\" or \"annotations.KEY\": %w",
				img.Name, ns, fp, errdefs.ErrInvalidArgument)
		}
		updated.Labels = copyMap(updated.Labels)
		updated.Target.Annotations = copyMap(updated.Target.Annotations)
		if err := validateImage(updated); err != nil {
			return err
		}
		targetChanged = old.Digest != updated.Target.Digest
		updated.UpdatedAt = time.Now().UTC()
		return writeImage(ib, updated)
	})
	if err != nil {
		return images.Image{}, err
	}
	s.db.publish(ctx, "/images/update", &eventsv1.ImageUpdate{Name: updated.Name, Labels: updated.Labels})
	if targetChanged {
		// The old target may have lost its last reference.
		s.db.scheduleGC()
	}
	return updated, nil
}

func (s *imageStore) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	var do images.DeleteOptions
	for _, o := range opts {
		o(&do)
	}
	err = s.db.bdb.Update(func(tx *bolt.Tx) error {
		bkt := imagesBucket(tx, ns)
		if bkt == nil || bkt.Bucket([]byte(name)) == nil {
			return imageNotFound(name, ns)
		}
		return bkt.DeleteBucket([]byte(name))
	})
	if err != nil {
		return err
	}
	s.db.publish(ctx, "/images/delete", &eventsv1.ImageDelete{Name: name})
	if do.Synchronous {
		if _, err := s.db.GarbageCollect(ctx); err != nil {
			return fmt.Errorf("image %q deleted from namespace %q, but garbage collection failed: %w", name, ns, err)
		}
		return nil
	}
	s.db.scheduleGC()
	return nil
}

func validateImage(img images.Image) error {
	if img.Name == "" {
		return fmt.Errorf("image name must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if img.Target.Digest == "" {
		return fmt.Errorf("image %q has no target digest: %w", img.Name, errdefs.ErrInvalidArgument)
	}
	if err := img.Target.Digest.Validate(); err != nil {
		return fmt.Errorf("image %q: target digest %q: %v: %w", img.Name, img.Target.Digest, err, errdefs.ErrInvalidArgument)
	}
	if img.Target.MediaType == "" {
		return fmt.Errorf("image %q: target %s has no media type: %w", img.Name, img.Target.Digest, errdefs.ErrInvalidArgument)
	}
	if img.Target.Size < 0 {
		return fmt.Errorf("image %q: target %s has negative size %d: %w", img.Name, img.Target.Digest, img.Target.Size, errdefs.ErrInvalidArgument)
	}
	if err := validateLabels(img.Labels); err != nil {
		return fmt.Errorf("image %q: %w", img.Name, err)
	}
	if err := validateLabels(img.Target.Annotations); err != nil {
		return fmt.Errorf("image %q: target annotation: %w", img.Name, err)
	}
	return nil
}

func writeImage(bkt *bolt.Bucket, img images.Image) error {
	if err := writeTimestamps(bkt, img.CreatedAt, img.UpdatedAt); err != nil {
		return err
	}
	if err := writeMap(bkt, bucketKeyLabels, img.Labels); err != nil {
		return err
	}
	if bkt.Bucket(bucketKeyTarget) != nil {
		if err := bkt.DeleteBucket(bucketKeyTarget); err != nil {
			return err
		}
	}
	tb, err := bkt.CreateBucket(bucketKeyTarget)
	if err != nil {
		return err
	}
	if err := tb.Put(keyDigest, []byte(img.Target.Digest)); err != nil {
		return err
	}
	if err := tb.Put(keyMediaType, []byte(img.Target.MediaType)); err != nil {
		return err
	}
	if err := writeInt(tb, keySize, img.Target.Size); err != nil {
		return err
	}
	return writeMap(tb, bucketKeyAnnot, img.Target.Annotations)
}

func readImage(name string, bkt *bolt.Bucket) (images.Image, error) {
	img := images.Image{Name: name, Labels: readMap(bkt, bucketKeyLabels)}
	var errs [3]error
	img.CreatedAt, errs[0] = readTime(bkt, keyCreatedAt)
	img.UpdatedAt, errs[1] = readTime(bkt, keyUpdatedAt)
	if tb := bkt.Bucket(bucketKeyTarget); tb != nil {
		img.Target = ocispec.Descriptor{
			Digest:      digest.Digest(tb.Get(keyDigest)),
			MediaType:   string(tb.Get(keyMediaType)),
			Annotations: readMap(tb, bucketKeyAnnot),
		}
		img.Target.Size, errs[2] = readInt(tb, keySize)
	}
	if err := errors.Join(errs[:]...); err != nil {
		return images.Image{}, fmt.Errorf("reading record of image %q: %w", name, err)
	}
	return img, nil
}
