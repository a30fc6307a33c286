package metadata

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	digest "github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/filters"
	"github.com/berth-engine/berth/internal/identifiers"
	nsctx "github.com/berth-engine/berth/internal/namespaces"
	"github.com/berth-engine/berth/services/leases"
)

// Resource types a lease can hold.
const (
	ResourceContent = "content" // ID is a digest
	ResourceIngests = "ingests" // ID is an ingest ref
)

type leaseManager struct{ db *DB }

var _ leases.Manager = (*leaseManager)(nil)

func leaseNotFound(id, ns string) error {
	return fmt.Errorf("lease %q not found in namespace %q: %w", id, ns, errdefs.ErrNotFound)
}

// newLeaseID returns a unique, time-ordered lease id.
func newLeaseID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return strconv.FormatInt(time.Now().UnixNano(), 10) + "-" + hex.EncodeToString(b[:])
}

func (m *leaseManager) Create(ctx context.Context, opts ...leases.Opt) (leases.Lease, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return leases.Lease{}, err
	}
	var l leases.Lease
	for _, o := range opts {
		if err := o(&l); err != nil {
			return leases.Lease{}, err
		}
	}
	if l.ID == "" {
		l.ID = newLeaseID()
	}
	if err := identifiers.Validate(l.ID); err != nil {
		return leases.Lease{}, fmt.Errorf("lease id: %w", err)
	}
	if err := validateLabels(l.Labels); err != nil {
		return leases.Lease{}, fmt.Errorf("lease %q: %w", l.ID, err)
	}
	if v, ok := l.Labels[LabelGCExpire]; ok {
		if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
			return leases.Lease{}, fmt.Errorf("lease %q: label %s=%q is not an RFC 3339 time: %w", l.ID, LabelGCExpire, v, errdefs.ErrInvalidArgument)
		}
	}
	l.Labels = copyMap(l.Labels)
	l.CreatedAt = time.Now().UTC()
	err = m.db.bdb.Update(func(tx *bolt.Tx) error {
		if _, err := createNamespace(tx, ns); err != nil {
			return err
		}
		bkt, err := createBucketIfNotExists(tx, nsPath(ns, bucketKeyLeases)...)
		if err != nil {
			return err
		}
		lb, err := bkt.CreateBucket([]byte(l.ID))
		if errors.Is(err, berrors.ErrBucketExists) {
			return fmt.Errorf("lease %q already exists in namespace %q: %w", l.ID, ns, errdefs.ErrAlreadyExists)
		}
		if err != nil {
			return err
		}
		if err := writeTime(lb, keyCreatedAt, l.CreatedAt); err != nil {
			return err
		}
		return writeMap(lb, bucketKeyLabels, l.Labels)
	})
	if err != nil {
		return leases.Lease{}, err
	}
	return l, nil
}

func (m *leaseManager) Delete(ctx context.Context, lease leases.Lease, opts ...leases.DeleteOpt) error {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	var do leases.DeleteOptions
	for _, o := range opts {
		o(&do)
	}
	err = m.db.bdb.Update(func(tx *bolt.Tx) error {
		bkt := leasesBucket(tx, ns)
		if bkt == nil || bkt.Bucket([]byte(lease.ID)) == nil {
			return leaseNotFound(lease.ID, ns)
		}
		return bkt.DeleteBucket([]byte(lease.ID))
	})
	if err != nil {
		return err
	}
	if do.Synchronous {
		if _, err := m.db.GarbageCollect(ctx); err != nil {
			return fmt.Errorf("lease %q deleted from namespace %q, but garbage collection failed: %w", lease.ID, ns, err)
		}
		return nil
	}
	m.db.scheduleGC()
	return nil
}

// List returns the leases matching the filters (fields id, labels.KEY),
// oldest first.
func (m *leaseManager) List(ctx context.Context, fs ...string) ([]leases.Lease, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	filter, err := filters.Parse(fs...)
	if err != nil {
		return nil, err
	}
	var out []leases.Lease
	err = m.db.bdb.View(func(tx *bolt.Tx) error {
		return forEachBucket(leasesBucket(tx, ns), func(k []byte, lb *bolt.Bucket) error {
			l := leases.Lease{ID: string(k), Labels: readMap(lb, bucketKeyLabels)}
			var err error
			if l.CreatedAt, err = readTime(lb, keyCreatedAt); err != nil {
				return fmt.Errorf("reading lease %q: %w", l.ID, err)
			}
			if filter.Match(leaseAdaptor(l)) {
				out = append(out, l)
			}
			return nil
		})
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, err
}

func leaseAdaptor(l leases.Lease) filters.Adaptor {
	return filters.AdaptorFunc(func(path []string) (string, bool) {
		if len(path) == 0 {
			return "", false
		}
		switch path[0] {
		case "id":
			return l.ID, true
		case "labels":
			return filters.MapField(l.Labels, path)
		}
		return "", false
	})
}

// resourceKey checks r and returns its bucket in a lease.
func resourceKey(r leases.Resource) ([]byte, error) {
	switch r.Type {
	case ResourceContent:
		if err := digest.Digest(r.ID).Validate(); err != nil {
			return nil, fmt.Errorf("content resource %q is not a digest: %v: %w", r.ID, err, errdefs.ErrInvalidArgument)
		}
		return bucketKeyContent, nil
	case ResourceIngests:
		if r.ID == "" {
			return nil, fmt.Errorf("ingest resource needs a ref: %w", errdefs.ErrInvalidArgument)
		}
		return bucketKeyIngests, nil
	}
	return nil, fmt.Errorf("resource type %q is not supported: use %q or %q: %w", r.Type, ResourceContent, ResourceIngests, errdefs.ErrInvalidArgument)
}

func (m *leaseManager) AddResource(ctx context.Context, lease leases.Lease, r leases.Resource) error {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	kind, err := resourceKey(r)
	if err != nil {
		return err
	}
	return m.db.bdb.Update(func(tx *bolt.Tx) error {
		return addLeaseResource(tx, ns, lease.ID, kind, r.ID)
	})
}

func (m *leaseManager) DeleteResource(ctx context.Context, lease leases.Lease, r leases.Resource) error {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	kind, err := resourceKey(r)
	if err != nil {
		return err
	}
	err = m.db.bdb.Update(func(tx *bolt.Tx) error {
		return deleteLeaseResource(tx, ns, lease.ID, kind, r.ID)
	})
	if err != nil {
		return err
	}
	m.db.scheduleGC()
	return nil
}

func (m *leaseManager) ListResources(ctx context.Context, lease leases.Lease) ([]leases.Resource, error) {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	var out []leases.Resource
	err = m.db.bdb.View(func(tx *bolt.Tx) error {
		lb := getBucket(tx, nsPath(ns, bucketKeyLeases, []byte(lease.ID))...)
		if lb == nil {
			return leaseNotFound(lease.ID, ns)
		}
		for _, kind := range [][]byte{bucketKeyContent, bucketKeyIngests} {
			if rb := lb.Bucket(kind); rb != nil {
				if err := rb.ForEach(func(k, _ []byte) error {
					out = append(out, leases.Resource{ID: string(k), Type: string(kind)})
					return nil
				}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return out, err
}

// addLeaseResource records id under kind ("content" or "ingests") in the
// lease; the lease must exist.
func addLeaseResource(tx *bolt.Tx, ns, lease string, kind []byte, id string) error {
	lb := getBucket(tx, nsPath(ns, bucketKeyLeases, []byte(lease))...)
	if lb == nil {
		return leaseNotFound(lease, ns)
	}
	rb, err := lb.CreateBucketIfNotExists(kind)
	if err != nil {
		return err
	}
	return rb.Put([]byte(id), nil)
}

// deleteLeaseResource removes id from the lease; removing what the lease
// does not hold is not an error.
func deleteLeaseResource(tx *bolt.Tx, ns, lease string, kind []byte, id string) error {
	lb := getBucket(tx, nsPath(ns, bucketKeyLeases, []byte(lease))...)
	if lb == nil {
		return leaseNotFound(lease, ns)
	}
	if rb := lb.Bucket(kind); rb != nil {
		return rb.Delete([]byte(id))
	}
	return nil
}
