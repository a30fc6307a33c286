package metadata

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
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
	// ResourceSnapshotPrefix followed by a snapshotter's name is the type
	// of its snapshots ("snapshots/overlay"); ID is the snapshot's key.
	ResourceSnapshotPrefix = "snapshots/"
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

// resourcePath checks r and returns its bucket path in a lease.
func resourcePath(r leases.Resource) ([][]byte, error) {
	switch {
	case r.Type == ResourceContent:
		if err := digest.Digest(r.ID).Validate(); err != nil {
			return nil, fmt.Errorf("content resource %q is not a digest: %v: %w", r.ID, err, errdefs.ErrInvalidArgument)
		}
		return [][]byte{bucketKeyContent}, nil
	case r.Type == ResourceIngests:
		if r.ID == "" {
			return nil, fmt.Errorf("ingest resource needs a ref: %w", errdefs.ErrInvalidArgument)
		}
		return [][]byte{bucketKeyIngests}, nil
	case strings.HasPrefix(r.Type, ResourceSnapshotPrefix):
		sn := strings.TrimPrefix(r.Type, ResourceSnapshotPrefix)
		if err := identifiers.Validate(sn); err != nil {
			return nil, fmt.Errorf("resource type %q does not name a snapshotter: %w", r.Type, err)
		}
		if r.ID == "" {
			return nil, fmt.Errorf("snapshot resource needs a key: %w", errdefs.ErrInvalidArgument)
		}
		return snapshotLeasePath(sn), nil
	}
	return nil, fmt.Errorf("resource type %q is not supported: use %q, %q or %q: %w",
		r.Type, ResourceContent, ResourceIngests, ResourceSnapshotPrefix+"<snapshotter>", errdefs.ErrInvalidArgument)
}

// snapshotLeasePath is where a lease holds the snapshots of snapshotter sn.
func snapshotLeasePath(sn string) [][]byte {
	return [][]byte{bucketKeySnapshots, []byte(sn)}
}

func (m *leaseManager) AddResource(ctx context.Context, lease leases.Lease, r leases.Resource) error {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	path, err := resourcePath(r)
	if err != nil {
		return err
	}
	return m.db.bdb.Update(func(tx *bolt.Tx) error {
		return addLeaseResourceAt(tx, ns, lease.ID, path, r.ID)
	})
}

func (m *leaseManager) DeleteResource(ctx context.Context, lease leases.Lease, r leases.Resource) error {
	ns, err := nsctx.NamespaceRequired(ctx)
	if err != nil {
		return err
	}
	path, err := resourcePath(r)
	if err != nil {
		return err
	}
	err = m.db.bdb.Update(func(tx *bolt.Tx) error {
		return deleteLeaseResourceAt(tx, ns, lease.ID, path, r.ID)
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
		return forEachBucket(lb.Bucket(bucketKeySnapshots), func(sn []byte, rb *bolt.Bucket) error {
			return rb.ForEach(func(k, _ []byte) error {
				out = append(out, leases.Resource{ID: string(k), Type: ResourceSnapshotPrefix + string(sn)})
				return nil
			})
		})
	})
	return out, err
}

// addLeaseResource records id under kind ("content" or "ingests") in the
// lease; the lease must exist.
func addLeaseResource(tx *bolt.Tx, ns, lease string, kind []byte, id string) error {
	return addLeaseResourceAt(tx, ns, lease, [][]byte{kind}, id)
}

// addLeaseResourceAt records id under the bucket path in the lease; the
// lease must exist.
func addLeaseResourceAt(tx *bolt.Tx, ns, lease string, path [][]byte, id string) error {
	lb := getBucket(tx, nsPath(ns, bucketKeyLeases, []byte(lease))...)
	if lb == nil {
		return leaseNotFound(lease, ns)
	}
	rb := lb
	for _, p := range path {
		var err error
		if rb, err = rb.CreateBucketIfNotExists(p); err != nil {
			return err
		}
	}
	return rb.Put([]byte(id), nil)
}

// deleteLeaseResource removes id from the lease; removing what the lease
// does not hold is not an error.
func deleteLeaseResource(tx *bolt.Tx, ns, lease string, kind []byte, id string) error {
	return deleteLeaseResourceAt(tx, ns, lease, [][]byte{kind}, id)
}

// deleteLeaseResourceAt removes id from the bucket path in the lease.
func deleteLeaseResourceAt(tx *bolt.Tx, ns, lease string, path [][]byte, id string) error {
	lb := getBucket(tx, nsPath(ns, bucketKeyLeases, []byte(lease))...)
	if lb == nil {
		return leaseNotFound(lease, ns)
	}
	if rb := nestedBucket(lb, path...); rb != nil {
		return rb.Delete([]byte(id))
	}
	return nil
}
