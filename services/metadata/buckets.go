package metadata

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-engine/berth/internal/errdefs"
	"github.com/berth-engine/berth/internal/filters"
)

// Bucket and key names of the layout documented in doc.go.
var (
	bucketKeyVersion = []byte(schemaName)
	keyDBVersion     = []byte("version")

	bucketKeyLabels  = []byte("labels")
	bucketKeyContent = []byte("content")
	bucketKeyBlob    = []byte("blob")
	bucketKeyIngests = []byte("ingests")
	bucketKeyImages  = []byte("images")
	bucketKeyLeases  = []byte("leases")
	bucketKeyTarget  = []byte("target")
	bucketKeyAnnot   = []byte("annotations")

	bucketKeySnapshots = []byte("snapshots")
	bucketKeyChildren  = []byte("children")

	bucketKeyContainers     = []byte("containers")
	bucketKeyContainerNames = []byte("containernames")
	bucketKeyRuntime        = []byte("runtime")
	bucketKeyExtensions     = []byte("extensions")

	keyCreatedAt = []byte("createdat")
	keyUpdatedAt = []byte("updatedat")
	keySize      = []byte("size")
	keyDigest    = []byte("digest")
	keyMediaType = []byte("mediatype")
	keyLease     = []byte("lease")
	keyExpected  = []byte("expected")
	keyName      = []byte("name")
	keyKind      = []byte("kind")
	keyParent    = []byte("parent")

	keyImage       = []byte("image")
	keySnapshotter = []byte("snapshotter")
	keySnapshotKey = []byte("snapshotkey")
	keyOptions     = []byte("options")
	keySpec        = []byte("spec")
)

// getBucket walks path from the top of the database; nil when any part is
// missing.
func getBucket(tx *bolt.Tx, path ...[]byte) *bolt.Bucket {
	bkt := tx.Bucket(path[0])
	for _, p := range path[1:] {
		if bkt == nil {
			return nil
		}
		bkt = bkt.Bucket(p)
	}
	return bkt
}

// createBucketIfNotExists creates every missing bucket along path.
func createBucketIfNotExists(tx *bolt.Tx, path ...[]byte) (*bolt.Bucket, error) {
	bkt, err := tx.CreateBucketIfNotExists(path[0])
	if err != nil {
		return nil, err
	}
	for _, p := range path[1:] {
		if bkt, err = bkt.CreateBucketIfNotExists(p); err != nil {
			return nil, err
		}
	}
	return bkt, nil
}

func namespaceBucket(tx *bolt.Tx, ns string) *bolt.Bucket {
	return getBucket(tx, bucketKeyVersion, []byte(ns))
}

// createNamespace makes the namespace's bucket: any write into a namespace
// creates it, as containerd does.
func createNamespace(tx *bolt.Tx, ns string) (*bolt.Bucket, error) {
	if ns == string(keyDBVersion) {
		// The schema bucket keeps its version under this key.
		return nil, fmt.Errorf("namespace name %q is reserved: choose another: %w", ns, errdefs.ErrInvalidArgument)
	}
	return createBucketIfNotExists(tx, bucketKeyVersion, []byte(ns))
}

func nsPath(ns string, path ...[]byte) [][]byte {
	return append([][]byte{bucketKeyVersion, []byte(ns)}, path...)
}

func blobsBucket(tx *bolt.Tx, ns string) *bolt.Bucket {
	return getBucket(tx, nsPath(ns, bucketKeyContent, bucketKeyBlob)...)
}

func blobBucket(tx *bolt.Tx, ns, dgst string) *bolt.Bucket {
	return getBucket(tx, nsPath(ns, bucketKeyContent, bucketKeyBlob, []byte(dgst))...)
}

func ingestsBucket(tx *bolt.Tx, ns string) *bolt.Bucket {
	return getBucket(tx, nsPath(ns, bucketKeyContent, bucketKeyIngests)...)
}

func imagesBucket(tx *bolt.Tx, ns string) *bolt.Bucket {
	return getBucket(tx, nsPath(ns, bucketKeyImages)...)
}

func containersBucket(tx *bolt.Tx, ns string) *bolt.Bucket {
	return getBucket(tx, nsPath(ns, bucketKeyContainers)...)
}

func containerBucket(tx *bolt.Tx, ns, id string) *bolt.Bucket {
	return getBucket(tx, nsPath(ns, bucketKeyContainers, []byte(id))...)
}

func leasesBucket(tx *bolt.Tx, ns string) *bolt.Bucket {
	return getBucket(tx, nsPath(ns, bucketKeyLeases)...)
}

// snapshotsBucket holds the namespace's records of snapshotter sn.
func snapshotsBucket(tx *bolt.Tx, ns, sn string) *bolt.Bucket {
	return getBucket(tx, nsPath(ns, bucketKeySnapshots, []byte(sn))...)
}

func snapshotBucket(tx *bolt.Tx, ns, sn, key string) *bolt.Bucket {
	return getBucket(tx, nsPath(ns, bucketKeySnapshots, []byte(sn), []byte(key))...)
}

// forEachBucket calls fn for each nested bucket of bkt (skipping plain keys).
// fn must not change bkt.
func forEachBucket(bkt *bolt.Bucket, fn func(name []byte, b *bolt.Bucket) error) error {
	if bkt == nil {
		return nil
	}
	c := bkt.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		b := bkt.Bucket(k)
		if b == nil {
			continue
		}
		if err := fn(k, b); err != nil {
			return err
		}
	}
	return nil
}

// countBuckets counts the nested buckets of bkt.
func countBuckets(bkt *bolt.Bucket) int {
	n := 0
	_ = forEachBucket(bkt, func([]byte, *bolt.Bucket) error { n++; return nil })
	return n
}

func writeTimestamps(bkt *bolt.Bucket, created, updated time.Time) error {
	for _, kv := range []struct {
		k []byte
		t time.Time
	}{{keyCreatedAt, created}, {keyUpdatedAt, updated}} {
		if kv.t.IsZero() {
			continue
		}
		if err := writeTime(bkt, kv.k, kv.t); err != nil {
			return err
		}
	}
	return nil
}

func writeTime(bkt *bolt.Bucket, key []byte, t time.Time) error {
	b, err := t.UTC().MarshalBinary()
	if err != nil {
		return err
	}
	return bkt.Put(key, b)
}

func readTime(bkt *bolt.Bucket, key []byte) (time.Time, error) {
	var t time.Time
	if v := bkt.Get(key); v != nil {
		if err := t.UnmarshalBinary(v); err != nil {
			return t, fmt.Errorf("decoding %s: %w", key, err)
		}
	}
	return t, nil
}

func writeInt(bkt *bolt.Bucket, key []byte, n int64) error {
	buf := make([]byte, binary.MaxVarintLen64)
	return bkt.Put(key, buf[:binary.PutVarint(buf, n)])
}

func readInt(bkt *bolt.Bucket, key []byte) (int64, error) {
	v := bkt.Get(key)
	if v == nil {
		return 0, nil
	}
	n, read := binary.Varint(v)
	if read <= 0 {
		return 0, fmt.Errorf("decoding %s: bad varint: %w", key, errdefs.ErrUnknown)
	}
	return n, nil
}

// writeMap replaces the nested bucket name of bkt with m; an empty m leaves
// no bucket.
func writeMap(bkt *bolt.Bucket, name []byte, m map[string]string) error {
	if bkt.Bucket(name) != nil {
		if err := bkt.DeleteBucket(name); err != nil {
			return err
		}
	}
	if len(m) == 0 {
		return nil
	}
	mb, err := bkt.CreateBucket(name)
	if err != nil {
		return err
	}
	for k, v := range m {
		if err := mb.Put([]byte(k), []byte(v)); err != nil {
			return err
		}
	}
	return nil
}

// readMap reads the nested bucket name of bkt; nil when absent or empty.
func readMap(bkt *bolt.Bucket, name []byte) map[string]string {
	mb := bkt.Bucket(name)
	if mb == nil {
		return nil
	}
	var m map[string]string
	_ = mb.ForEach(func(k, v []byte) error {
		if mb.Bucket(k) != nil {
			return nil
		}
		if m == nil {
			m = map[string]string{}
		}
		m[string(k)] = string(v)
		return nil
	})
	return m
}

// readMatching reads the records that are the nested buckets of the bucket
// that bucketOf finds, in one read transaction, and returns those that match
// the filters, in key order.
func readMatching[T any](db *bolt.DB, fs []string, bucketOf func(*bolt.Tx) *bolt.Bucket,
	read func(key string, b *bolt.Bucket) (T, error), adapt func(T) filters.Adaptor) ([]T, error) {
	filter, err := filters.Parse(fs...)
	if err != nil {
		return nil, err
	}
	var out []T
	err = db.View(func(tx *bolt.Tx) error {
		return forEachBucket(bucketOf(tx), func(k []byte, b *bolt.Bucket) error {
			rec, err := read(string(k), b)
			if err != nil {
				return err
			}
			if filter.Match(adapt(rec)) {
				out = append(out, rec)
			}
			return nil
		})
	})
	return out, err
}
