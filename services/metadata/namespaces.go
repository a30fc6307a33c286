package metadata

import (
	"context"
	"fmt"
	"sort"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/identifiers"
	nsctx "github.com/berth-engine/berth/internal/namespaces"
	eventsv1 "github.com/berth-engine/berth/proto/events/v1"
)

type namespaceStore struct{ db *DB }

func (s *namespaceStore) Create(ctx context.Context, name string, labels map[string]string) error {
	if err := identifiers.Validate(name); err != nil {
		return fmt.Errorf("namespace name: %w", err)
	}
	if err := validateLabels(labels); err != nil {
		return fmt.Errorf("namespace %q: %w", name, err)
	}
	err := s.db.bdb.Update(func(tx *bolt.Tx) error {
		if namespaceBucket(tx, name) != nil {
			return fmt.Errorf("namespace %q already exists: %w", name, errdefs.ErrAlreadyExists)
		}
		bkt, err := createNamespace(tx, name)
		if err != nil {
			return err
		}
		return writeMap(bkt, bucketKeyLabels, labels)
	})
	if err != nil {
		return err
	}
	s.db.publish(nsctx.WithNamespace(ctx, name), "/namespaces/create", &eventsv1.NamespaceCreate{Name: name, Labels: labels})
	return nil
}

func (s *namespaceStore) Labels(ctx context.Context, name string) (map[string]string, error) {
	var labels map[string]string
	err := s.db.bdb.View(func(tx *bolt.Tx) error {
		bkt := namespaceBucket(tx, name)
		if bkt == nil {
			return namespaceNotFound(name)
		}
		labels = readMap(bkt, bucketKeyLabels)
		return nil
	})
	return labels, err
}

// SetLabel sets a label of an existing namespace; an empty value removes it.
func (s *namespaceStore) SetLabel(ctx context.Context, name, key, value string) error {
	if err := validateLabel(key, value); err != nil {
		return fmt.Errorf("namespace %q: %w", name, err)
	}
	var labels map[string]string
	err := s.db.bdb.Update(func(tx *bolt.Tx) error {
		bkt := namespaceBucket(tx, name)
		if bkt == nil {
			return namespaceNotFound(name)
		}
		labels = readMap(bkt, bucketKeyLabels)
		if labels == nil {
			labels = map[string]string{}
		}
		if value == "" {
			delete(labels, key)
		} else {
			labels[key] = value
		}
		return writeMap(bkt, bucketKeyLabels, labels)
	})
	if err != nil {
		return err
	}
	s.db.publish(nsctx.WithNamespace(ctx, name), "/namespaces/update", &eventsv1.NamespaceUpdate{Name: name, Labels: labels})
	return nil
}

func (s *namespaceStore) List(ctx context.Context) ([]string, error) {
	var names []string
	err := s.db.bdb.View(func(tx *bolt.Tx) error {
		return forEachBucket(tx.Bucket(bucketKeyVersion), func(name []byte, _ *bolt.Bucket) error {
			names = append(names, string(name))
			return nil
		})
	})
	sort.Strings(names)
	return names, err
}

// Delete removes an empty namespace. Ingests count even when only the
// backing store knows them (a writer that crashed before recording its
// ingest), since they would otherwise outlive the namespace.
func (s *namespaceStore) Delete(ctx context.Context, name string) error {
	statuses, err := s.db.cs.ListStatuses(ctx)
	if err != nil {
		return fmt.Errorf("deleting namespace %q: listing ingests: %w", name, err)
	}
	backingIngests := map[string]bool{}
	for _, st := range statuses {
		if ns, ref, ok := splitBackingRef(st.Ref); ok && ns == name {
			backingIngests[ref] = true
		}
	}
	err = s.db.bdb.Update(func(tx *bolt.Tx) error {
		bkt := namespaceBucket(tx, name)
		if bkt == nil {
			return namespaceNotFound(name)
		}
		_ = forEachBucket(ingestsBucket(tx, name), func(ref []byte, _ *bolt.Bucket) error {
			backingIngests[string(ref)] = true
			return nil
		})
		var left []string
		for _, c := range []struct {
			n    int
			what string
		}{
			{countBuckets(containersBucket(tx, name)), "container"},
			{countBuckets(imagesBucket(tx, name)), "image"},
			{countBuckets(blobsBucket(tx, name)), "blob"},
			{len(backingIngests), "ingest"},
			{countBuckets(leasesBucket(tx, name)), "lease"},
			{countSnapshots(tx, name), "snapshot"},
		} {
			if c.n == 1 {
				left = append(left, fmt.Sprintf("1 %s", c.what))
			} else if c.n > 1 {
				left = append(left, fmt.Sprintf("%d %ss", c.n, c.what))
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("namespace %q is not empty: it still has %s: remove them first: %w",
				name, strings.Join(left, ", "), errdefs.ErrFailedPrecondition)
		}
		return tx.Bucket(bucketKeyVersion).DeleteBucket([]byte(name))
	})
	if err != nil {
		return err
	}
	s.db.publish(nsctx.WithNamespace(ctx, name), "/namespaces/delete", &eventsv1.NamespaceDelete{Name: name})
	return nil
}

// countSnapshots counts the namespace's snapshot records of every
// snapshotter.
func countSnapshots(tx *bolt.Tx, ns string) int {
	n := 0
	_ = forEachBucket(getBucket(tx, nsPath(ns, bucketKeySnapshots)...), func(_ []byte, sbkt *bolt.Bucket) error {
		n += countBuckets(sbkt)
		return nil
	})
	return n
}

func namespaceNotFound(name string) error {
	return fmt.Errorf("namespace %q not found: %w", name, errdefs.ErrNotFound)
}
