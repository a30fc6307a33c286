package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/berth-engine/berth/internal/errdefs"
	nsctx "github.com/berth-engine/berth/internal/namespaces"
	eventsv1 "github.com/berth-engine/berth/proto/events/v1"
	"github.com/berth-engine/berth/services/containers"
)

type containerStore struct{ db *DB }

var _ containers.Store = (*containerStore)(nil)

func containerNotFound(id, ns string) error {
	return fmt.Errorf("container %q not found in namespace %q: %w", id, ns, errdefs.ErrNotFound)
}

// nameInUse is Docker's message, word for word, for a name taken by
// another container.
func nameInUse(name, id string) error {
	return errdefs.Errorf(errdefs.ErrAlreadyExists,
		"the container name %q is already in use by container %q. You have to remove (or rename) that container to be able to reuse that name.",
		"/"+name, id)
}

func (s *containerStore) Get(ctx context.Context, id string) (containers.Container, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return containers.Container{}, err
	}
	var c containers.Container
	err = s.db.bdb.View(func(tx *bolt.Tx) error {
		cb := containerBucket(tx, ns, id)
		if cb == nil {
			return containerNotFound(id, ns)
		}
		c, err = readContainer(id, cb)
		return err
	})
	return c, err
}

// List returns the containers matching the filters (fields id, name, image,
// runtime.name, snapshotter, snapshot_key, labels.KEY), by name.
func (s *containerStore) List(ctx context.Context, fs ...string) ([]containers.Container, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	out, err := readMatching(s.db.bdb, fs, func(tx *bolt.Tx) *bolt.Bucket { return containersBucket(tx, ns) }, readContainer, containers.Adaptor)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

func (s *containerStore) Create(ctx context.Context, c containers.Container) (containers.Container, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return containers.Container{}, err
	}
	c = cloneContainer(c)
	if err := validateContainer(c); err != nil {
		return containers.Container{}, fmt.Errorf("creating container in namespace %q: %w", ns, err)
	}
	now := time.Now().UTC()
	c.CreatedAt, c.UpdatedAt = now, now
	err = s.db.bdb.Update(func(tx *bolt.Tx) error {
		if _, err := createNamespace(tx, ns); err != nil {
			return err
		}
		bkt, err := createBucketIfNotExists(tx, nsPath(ns, bucketKeyContainers)...)
		if err != nil {
			return err
		}
		names, err := createBucketIfNotExists(tx, nsPath(ns, bucketKeyContainerNames)...)
		if err != nil {
			return err
		}
		if owner := names.Get([]byte(c.Name)); owner != nil {
			return nameInUse(c.Name, string(owner))
		}
		cb, err := bkt.CreateBucket([]byte(c.ID))
		if errors.Is(err, berrors.ErrBucketExists) {
			return fmt.Errorf("container %q already exists in namespace %q: %w", c.ID, ns, errdefs.ErrAlreadyExists)
		}
		if err != nil {
			return err
		}
		if err := names.Put([]byte(c.Name), []byte(c.ID)); err != nil {
			return err
		}
		return writeContainer(cb, c)
	})
	if err != nil {
		return containers.Container{}, err
	}
	s.db.publish(ctx, "/containers/create", &eventsv1.ContainerCreate{Id: c.ID, Name: c.Name, Image: c.Image, Runtime: c.Runtime.Name})
	return c, nil
}

// Update changes the fields named by fieldpaths: "name" (a rename, checked
// against the other names in the same transaction), "image", "spec",
// "snapshot_key", "labels" or "labels.KEY", "extensions" or
// "extensions.KEY". With none it replaces all of those, and the runtime and
// snapshotter given must be the recorded ones: they cannot change.
func (s *containerStore) Update(ctx context.Context, c containers.Container, fieldpaths ...string) (containers.Container, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return containers.Container{}, err
	}
	if c.ID == "" {
		return containers.Container{}, fmt.Errorf("updating a container in namespace %q: container ID must not be empty: %w", ns, errdefs.ErrInvalidArgument)
	}
	c = cloneContainer(c)
	var updated containers.Container
	snapshotChanged := false
	err = s.db.bdb.Update(func(tx *bolt.Tx) error {
		cb := containerBucket(tx, ns, c.ID)
		if cb == nil {
			return containerNotFound(c.ID, ns)
		}
		if updated, err = readContainer(c.ID, cb); err != nil {
			return err
		}
		old := updated
		if len(fieldpaths) == 0 {
			if c.Runtime.Name != updated.Runtime.Name {
				return fmt.Errorf("updating container %q in namespace %q: the runtime cannot change (from %q to %q): create a new container: %w",
					c.ID, ns, updated.Runtime.Name, c.Runtime.Name, errdefs.ErrInvalidArgument)
			}
			if c.Snapshotter != updated.Snapshotter {
				return fmt.Errorf("updating container %q in namespace %q: the snapshotter cannot change (from %q to %q): create a new container: %w",
					c.ID, ns, updated.Snapshotter, c.Snapshotter, errdefs.ErrInvalidArgument)
			}
			fieldpaths = []string{"name", "image", "spec", "snapshot_key", "labels", "extensions"}
		}
		for _, fp := range fieldpaths {
			switch fp {
			case "name":
				updated.Name = c.Name
				continue
			case "image":
				updated.Image = c.Image
				continue
			case "spec":
				updated.Spec = c.Spec
				continue
			case "snapshot_key":
				updated.SnapshotKey = c.SnapshotKey
				continue
			case "extensions":
				updated.Extensions = c.Extensions
				continue
			}
			if key, ok := strings.CutPrefix(fp, "extensions."); ok {
				if v := c.Extensions[key]; v != nil {
					if updated.Extensions == nil {
						updated.Extensions = map[string]*anypb.Any{}
					}
					updated.Extensions[key] = v
				} else {
					delete(updated.Extensions, key)
				}
				continue
			}
			var ok bool
			if updated.Labels, ok = applyLabelPaths(updated.Labels, c.Labels, "labels", fp); ok {
				continue
			}
			return fmt.Errorf("updating container %q in namespace %q: cannot update field %q: use \"name\", \"image\", \"spec\", \"snapshot_key\", \"labels\", \"labels.KEY\", \"extensions\" or \"extensions.KEY\": %w",
				c.ID, ns, fp, errdefs.ErrInvalidArgument)
		}
		updated.Labels = copyMap(updated.Labels)
		if len(updated.Extensions) == 0 {
			updated.Extensions = nil
		}
		if err := validateContainer(updated); err != nil {
			return fmt.Errorf("updating container %q in namespace %q: %w", c.ID, ns, err)
		}
		if updated.Name != old.Name {
			if err := renameContainer(tx, ns, updated.ID, old.Name, updated.Name); err != nil {
				return err
			}
		}
		snapshotChanged = updated.SnapshotKey != old.SnapshotKey
		updated.UpdatedAt = time.Now().UTC()
		return writeContainer(cb, updated)
	})
	if err != nil {
		return containers.Container{}, err
	}
	s.db.publish(ctx, "/containers/update", &eventsv1.ContainerUpdate{
		Id: updated.ID, Name: updated.Name, Image: updated.Image, Labels: updated.Labels, SnapshotKey: updated.SnapshotKey,
	})
	if snapshotChanged {
		// The old snapshot may have lost its last reference.
		s.db.scheduleGC()
	}
	return updated, nil
}

// renameContainer moves id's entry in the name index from oldName to
// newName, which must be free.
func renameContainer(tx *bolt.Tx, ns, id, oldName, newName string) error {
	names, err := createBucketIfNotExists(tx, nsPath(ns, bucketKeyContainerNames)...)
	if err != nil {
		return err
	}
	if owner := names.Get([]byte(newName)); owner != nil {
		return nameInUse(newName, string(owner))
	}
	if err := names.Delete([]byte(oldName)); err != nil {
		return err
	}
	return names.Put([]byte(newName), []byte(id))
}

// Delete removes the record and its name; the snapshot it named is left to
// the garbage collector.
func (s *containerStore) Delete(ctx context.Context, id string) error {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	var name string
	err = s.db.bdb.Update(func(tx *bolt.Tx) error {
		cb := containerBucket(tx, ns, id)
		if cb == nil {
			return containerNotFound(id, ns)
		}
		name = string(cb.Get(keyName))
		if names := getBucket(tx, nsPath(ns, bucketKeyContainerNames)...); names != nil && string(names.Get([]byte(name))) == id {
			if err := names.Delete([]byte(name)); err != nil {
				return err
			}
		}
		return containersBucket(tx, ns).DeleteBucket([]byte(id))
	})
	if err != nil {
		return err
	}
	s.db.publish(ctx, "/containers/delete", &eventsv1.ContainerDelete{Id: id, Name: name})
	s.db.scheduleGC()
	return nil
}

func validateContainer(c containers.Container) error {
	if err := containers.ValidateID(c.ID); err != nil {
		return err
	}
	if err := containers.ValidateName(c.Name); err != nil {
		return fmt.Errorf("container %q: %w", c.ID, err)
	}
	if c.Runtime.Name == "" {
		return fmt.Errorf("container %q: runtime name must not be empty: %w", c.ID, errdefs.ErrInvalidArgument)
	}
	if c.Spec == nil {
		return fmt.Errorf("container %q: spec must be set: %w", c.ID, errdefs.ErrInvalidArgument)
	}
	if c.Spec.GetTypeUrl() != containers.SpecTypeURL {
		return fmt.Errorf("container %q: spec has type %q, want %q: %w", c.ID, c.Spec.GetTypeUrl(), containers.SpecTypeURL, errdefs.ErrInvalidArgument)
	}
	if !json.Valid(c.Spec.GetValue()) {
		return fmt.Errorf("container %q: spec is not valid JSON: %w", c.ID, errdefs.ErrInvalidArgument)
	}
	if (c.Snapshotter == "") != (c.SnapshotKey == "") {
		return fmt.Errorf("container %q: snapshotter %q and snapshot key %q must be given together: %w", c.ID, c.Snapshotter, c.SnapshotKey, errdefs.ErrInvalidArgument)
	}
	if err := validateLabels(c.Labels); err != nil {
		return fmt.Errorf("container %q: %w", c.ID, err)
	}
	for k, v := range c.Extensions {
		if k == "" {
			return fmt.Errorf("container %q: extension name must not be empty: %w", c.ID, errdefs.ErrInvalidArgument)
		}
		if v == nil {
			return fmt.Errorf("container %q: extension %q has no value: %w", c.ID, k, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// cloneContainer copies the maps and messages of c, so that the caller's
// and the store's copies do not share them.
func cloneContainer(c containers.Container) containers.Container {
	c.Labels = copyMap(c.Labels)
	c.Spec = cloneAny(c.Spec)
	c.Runtime.Options = cloneAny(c.Runtime.Options)
	if len(c.Extensions) == 0 {
		c.Extensions = nil
	} else {
		ext := make(map[string]*anypb.Any, len(c.Extensions))
		for k, v := range c.Extensions {
			ext[k] = cloneAny(v)
		}
		c.Extensions = ext
	}
	return c
}

func cloneAny(a *anypb.Any) *anypb.Any {
	if a == nil {
		return nil
	}
	return proto.Clone(a).(*anypb.Any)
}

func writeContainer(bkt *bolt.Bucket, c containers.Container) error {
	if err := writeTimestamps(bkt, c.CreatedAt, c.UpdatedAt); err != nil {
		return err
	}
	for _, kv := range []struct {
		k []byte
		v string
	}{
		{keyName, c.Name},
		{keyImage, c.Image},
		{keySnapshotter, c.Snapshotter},
		{keySnapshotKey, c.SnapshotKey},
	} {
		if err := putOrDelete(bkt, kv.k, kv.v); err != nil {
			return err
		}
	}
	if err := writeMap(bkt, bucketKeyLabels, c.Labels); err != nil {
		return err
	}
	if bkt.Bucket(bucketKeyRuntime) != nil {
		if err := bkt.DeleteBucket(bucketKeyRuntime); err != nil {
			return err
		}
	}
	rb, err := bkt.CreateBucket(bucketKeyRuntime)
	if err != nil {
		return err
	}
	if err := rb.Put(keyName, []byte(c.Runtime.Name)); err != nil {
		return err
	}
	if err := writeAny(rb, keyOptions, c.Runtime.Options); err != nil {
		return err
	}
	if err := writeAny(bkt, keySpec, c.Spec); err != nil {
		return err
	}
	if bkt.Bucket(bucketKeyExtensions) != nil {
		if err := bkt.DeleteBucket(bucketKeyExtensions); err != nil {
			return err
		}
	}
	if len(c.Extensions) == 0 {
		return nil
	}
	eb, err := bkt.CreateBucket(bucketKeyExtensions)
	if err != nil {
		return err
	}
	for k, v := range c.Extensions {
		if err := writeAny(eb, []byte(k), v); err != nil {
			return err
		}
	}
	return nil
}

func readContainer(id string, bkt *bolt.Bucket) (containers.Container, error) {
	c := containers.Container{
		ID:          id,
		Name:        string(bkt.Get(keyName)),
		Image:       string(bkt.Get(keyImage)),
		Snapshotter: string(bkt.Get(keySnapshotter)),
		SnapshotKey: string(bkt.Get(keySnapshotKey)),
		Labels:      readMap(bkt, bucketKeyLabels),
	}
	var errs []error
	var err error
	c.CreatedAt, err = readTime(bkt, keyCreatedAt)
	errs = append(errs, err)
	c.UpdatedAt, err = readTime(bkt, keyUpdatedAt)
	errs = append(errs, err)
	if rb := bkt.Bucket(bucketKeyRuntime); rb != nil {
		c.Runtime.Name = string(rb.Get(keyName))
		c.Runtime.Options, err = readAny(rb, keyOptions)
		errs = append(errs, err)
	}
	c.Spec, err = readAny(bkt, keySpec)
	errs = append(errs, err)
	if eb := bkt.Bucket(bucketKeyExtensions); eb != nil {
		c.Extensions = map[string]*anypb.Any{}
		errs = append(errs, eb.ForEach(func(k, _ []byte) error {
			v, err := readAny(eb, k)
			c.Extensions[string(k)] = v
			return err
		}))
	}
	if err := errors.Join(errs...); err != nil {
		return containers.Container{}, fmt.Errorf("reading record of container %q: %w", id, err)
	}
	return c, nil
}

// putOrDelete stores v under key, or removes key when v is empty.
func putOrDelete(bkt *bolt.Bucket, key []byte, v string) error {
	if v == "" {
		return bkt.Delete(key)
	}
	return bkt.Put(key, []byte(v))
}

// writeAny stores a marshalled Any under key, or removes key when a is nil.
func writeAny(bkt *bolt.Bucket, key []byte, a *anypb.Any) error {
	if a == nil {
		return bkt.Delete(key)
	}
	b, err := proto.Marshal(a)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", key, err)
	}
	return bkt.Put(key, b)
}

func readAny(bkt *bolt.Bucket, key []byte) (*anypb.Any, error) {
	v := bkt.Get(key)
	if v == nil {
		return nil, nil
	}
	a := &anypb.Any{}
	if err := proto.Unmarshal(v, a); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", key, err)
	}
	return a, nil
}
